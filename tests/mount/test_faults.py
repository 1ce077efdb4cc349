"""Every fault the API double can inject, seen through the mounted filesystem.

Each test mounts batchfs afresh (so no cache hides the fault), arms one fault
in the double, touches the tree with real tools and checks that the answer is
the right content or the right errno, within a bounded time, and that the
driver neither crashes nor reports a sanitizer error.
"""
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import apidouble, run  # noqa: E402

DATA = apidouble.make_dataset()
# A job with items in every status folder the tests use.
JOB = max(DATA.jobs, key=lambda j: len(DATA.items[j["id"]]))
JOB_ID = JOB["id"]
ITEMS = DATA.items[JOB_ID]
ITEMS_PATH = r"^/api/v1/beta/batch-processing/%s/items$" % JOB_ID
QUICK = ("retries=2", "timeout=2", "connect_timeout=2", "cache_ttl=60")


def items_of(status):
    return [i for i in ITEMS if i["status"] == status]


def load_file(data):
    """An item file's object; bytes that are not UTF-8 become U+DC80..U+DCFF."""
    return json.loads(data.decode("utf-8", "surrogateescape"))


def decoded(bad):
    """The bytes batchfs decodes the JSON string text `bad` to: raw bytes as
    they are, an unpaired surrogate escape as its three UTF-8-like bytes."""
    if bad in apidouble.NOT_UTF8:
        return bad.encode("utf-8", "surrogateescape")
    return json.loads('"%s"' % bad).encode("utf-8", "surrogatepass")


def sanitised(data):
    """Naming rule 1 on bytes: each byte that is not UTF-8 becomes "_"."""
    text = data.decode("utf-8", "surrogateescape")
    return "".join("_" if "\udc80" <= c <= "\udcff" else c for c in text)


TSV_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", "\\": "\\\\"}


def tsv_field(data):
    """An errors.tsv field: escapes, and bytes that are not UTF-8 as \\xHH."""
    text = data.decode("utf-8", "surrogateescape")
    return "".join("\\x%02x" % (ord(c) - 0xDC00) if "\udc80" <= c <= "\udcff"
                   else TSV_ESCAPES.get(c, c) for c in text).encode("utf-8")


class FaultTest(unittest.TestCase):
    DOUBLE_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.double = harness.Double(*cls.DOUBLE_ARGS)
        # What batchfs mounts: the double itself, or a proxy in front of it.
        cls.server, cls.server_options = cls.double, ()

    @classmethod
    def tearDownClass(cls):
        cls.double.stop()

    def setUp(self):
        self.double.faults([])
        self.double.control("config", {"dialect": "both", "page_cap": 250})
        self.mount = None

    def tearDown(self):
        self.double.faults([])
        if self.mount:
            err = self.mount.stop()
            harness.check_driver_output(err, self.mount.status)

    def mounted(self, *options):
        self.mount = harness.Mount(self.server, *(QUICK + self.server_options + options))
        self.double.reset()  # count only what the test itself causes
        return self.mount.path

    def folder(self, status):
        return os.path.join(self.mount.path, "jobs", JOB_ID, status)

    def arm(self, **fault):
        fault.setdefault("path", ITEMS_PATH)
        self.double.faults([fault])

    def listing_fails(self, status, allowed, within):
        start = time.monotonic()
        with self.assertRaises(OSError) as cm:
            os.listdir(self.folder(status))
        elapsed = time.monotonic() - start
        self.assertIn(cm.exception.errno, allowed, os.strerror(cm.exception.errno))
        self.assertNotEqual(cm.exception.errno, errno.ENOENT)
        self.assertLess(elapsed, within)
        return cm.exception.errno

    def assert_folder_exact(self, status, expect=None):
        """Every item of `status` once, byte-exact, and nothing else."""
        expect = items_of(status) if expect is None else expect
        folder = self.folder(status)
        seen = {}
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), "rb") as f:
                text = f.read().decode()
            obj = json.loads(text)
            self.assertNotIn(obj["item_id"], seen)
            seen[obj["item_id"]] = text
        self.assertEqual(sorted(seen), sorted(i["item_id"] for i in expect))
        for item in expect:
            self.assertEqual(seen[item["item_id"]], apidouble.render(item))

    # ---- statuses and retries ---------------------------------------------

    def test_429_with_retry_after_then_success(self):
        self.mounted()
        self.arm(kind="status", status=429, headers={"Retry-After": "1"}, times=2)
        start = time.monotonic()
        self.assert_folder_exact("completed")
        self.assertGreaterEqual(time.monotonic() - start, 1.5)  # waited twice
        self.assertEqual(self.double.stats()["by_status"].get("429"), 2)

    def test_429_forever_is_eagain_not_enoent(self):
        self.mounted()
        self.arm(kind="status", status=429, headers={"retry-after-ms": "100"})
        self.listing_fails("completed", (errno.EAGAIN, errno.EIO), 20)

    def test_503_forever_is_eio(self):
        self.mounted()
        self.arm(kind="status", status=503)
        self.listing_fails("completed", (errno.EIO,), 20)
        # retries=2: three attempts, no more
        self.assertEqual(self.double.stats()["by_status"].get("503"), 3)

    def test_500_once_is_retried(self):
        self.mounted()
        self.arm(kind="status", status=500, times=1)
        self.assert_folder_exact("failed")

    def test_x_should_retry_false_is_not_retried(self):
        self.mounted()
        self.arm(kind="status", status=503, headers={"x-should-retry": "false"})
        self.listing_fails("completed", (errno.EIO,), 10)
        self.assertEqual(self.double.stats()["by_status"].get("503"), 1)

    def test_408_and_409_are_retried(self):
        self.mounted()
        self.double.faults([
            {"kind": "status", "status": 408, "times": 1, "path": ITEMS_PATH},
            {"kind": "status", "status": 409, "times": 1, "path": ITEMS_PATH},
        ])
        self.assert_folder_exact("completed")

    def test_huge_retry_after_is_clamped(self):
        self.mounted()
        self.arm(kind="status", status=429, headers={"Retry-After": "86400"}, times=1)
        start = time.monotonic()
        self.assert_folder_exact("completed")
        self.assertLess(time.monotonic() - start, 30)

    def test_past_retry_after_date_does_not_spin(self):
        self.mounted()
        self.arm(kind="status", status=503,
                 headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
        self.listing_fails("completed", (errno.EIO,), 20)
        self.assertEqual(self.double.stats()["by_status"].get("503"), 3)

    def test_401_after_mount_is_eacces(self):
        self.mounted()
        self.arm(kind="status", status=401, path=r"^/api/")
        self.listing_fails("completed", (errno.EACCES,), 10)

    def test_403_is_eacces(self):
        self.mounted()
        self.arm(kind="status", status=403)
        self.listing_fails("failed", (errno.EACCES,), 10)

    def test_404_for_a_listed_job_is_enoent(self):
        self.mounted()
        self.assertIn(JOB_ID, os.listdir(os.path.join(self.mount.path, "jobs")))
        self.arm(kind="status", status=404)
        with self.assertRaises(FileNotFoundError):
            os.listdir(self.folder("completed"))

    # ---- slow, stalled and broken connections -------------------------------

    def test_delay(self):
        self.mounted()
        self.arm(kind="delay", ms=300)
        self.assert_folder_exact("completed")

    def test_stall_once_then_success(self):
        self.mounted()
        self.arm(kind="stall", ms=30000, times=1)
        start = time.monotonic()
        self.assert_folder_exact("completed")
        self.assertLess(time.monotonic() - start, 15)

    def test_stall_forever_times_out(self):
        self.mounted()
        self.arm(kind="stall", ms=30000)
        self.listing_fails("completed", (errno.ETIMEDOUT,), 30)

    def test_stall_mid_body_times_out(self):
        self.mounted()
        self.arm(kind="stall", ms=30000, after=100)
        # retries=2, timeout=2: three attempts of 2 s and two back-offs.
        self.listing_fails("completed", (errno.ETIMEDOUT,), 30)
        self.assertIn("timed out after 3 attempts (no byte for 2 s)", self.mount.stderr())

    def test_slow_body_is_waited_for_while_bytes_come(self):
        # 2 bytes every 3 s, slower than a byte a second but never 4 s
        # without one: timeout=4 waits for it.
        self.mounted("timeout=4")
        self.arm(kind="slow_body", chunk=2, ms=3000, count=2)
        start = time.monotonic()
        self.assert_folder_exact("completed")
        self.assertGreaterEqual(time.monotonic() - start, 6)
        self.assertLess(time.monotonic() - start, 60)
        self.assertNotIn("0", self.double.stats()["by_status"])

    CUT_SHORT = ("truncate", "reset_body", "chunked_cut", "empty_reply", "reset")

    def test_responses_cut_short_are_redone(self):
        self.mounted()
        for kind in self.CUT_SHORT:
            with self.subTest(kind=kind):
                self.arm(kind=kind, times=2)
                self.assert_folder_exact("completed")
                self.tearDown()
                self.setUp()
                self.mounted()

    def test_responses_cut_short_forever_are_eio_not_a_short_listing(self):
        self.mounted()
        for kind in self.CUT_SHORT:
            with self.subTest(kind=kind):
                self.arm(kind=kind)
                self.listing_fails("completed", (errno.EIO,), 20)
        self.double.faults([])
        # Nothing partial was cached: the next listing is complete.
        self.assert_folder_exact("completed")

    def test_slow_body(self):
        self.mounted()
        self.arm(kind="slow_body", chunk=4096, ms=20)
        self.assert_folder_exact("failed")

    def test_redirects_are_refused(self):
        self.mounted()
        for location in ("http://127.0.0.2:1/x", "file:///etc/passwd",
                         "http://127.0.0.1:%d/api/v1/beta/batch-processing" % self.double.port):
            self.arm(kind="redirect", status=302, location=location)
            self.listing_fails("completed", (errno.EIO,), 10)

    # ---- the log ----------------------------------------------------------------

    # A fault, the errno it gives, and what its log line says.
    LOGGED_FAILURES = (
        ({"kind": "status", "status": 503}, errno.EIO, ": HTTP 503 after 3 attempts"),
        ({"kind": "reset"}, errno.EIO, ": no complete response after 3 attempts (Recv failure"),
        ({"kind": "stall", "ms": 30000}, errno.ETIMEDOUT,
         ": timed out after 3 attempts (no byte for 2 s)"),
        ({"kind": "redirect", "status": 302, "location": "http://127.0.0.2:1/x"}, errno.EIO,
         ": HTTP 302 redirect to 127.0.0.2 refused"),
        ({"kind": "status", "status": 401}, errno.EACCES, ": HTTP 401"),
        ({"kind": "malformed"}, errno.EIO, ": body is not JSON"),
    )

    def test_one_log_line_per_failed_request(self):
        """Each failed request is logged once, in one line that names it
        (never the key) and says what came back and why, whichever layer
        understood the failure."""
        for fault, expect, why in self.LOGGED_FAILURES:
            with self.subTest(fault=fault["kind"], status=fault.get("status")):
                self.mounted()
                try:
                    self.arm(**fault)
                    self.listing_fails("completed", (expect,), 30)
                    err = self.mount.stderr()
                    self.assertNotIn(harness.TEST_KEY, err)
                    failed = re.findall(
                        r"^batchfs .* GET (\S*/items\?\S*status=completed\S*):", err, re.M)
                    self.assertTrue(failed, err)
                    for url in set(failed):
                        lines = [line for line in err.splitlines() if url in line]
                        self.assertEqual(len(lines), 1, lines)
                        self.assertIn(url + why, lines[0])
                finally:  # each case unmounts, even one that failed
                    self.tearDown()
                    self.setUp()

    # ---- hostile bodies -------------------------------------------------------

    def test_malformed_bodies_are_eio(self):
        self.mounted()
        for kind, status in (("malformed", "completed"), ("not_object", "failed"),
                             ("items_not_array", "skipped")):
            self.arm(kind=kind)
            self.listing_fails(status, (errno.EIO,), 20)
        self.double.faults([])
        self.assert_folder_exact("completed")

    def test_non_object_items_are_dropped(self):
        self.mounted()
        self.arm(kind="items_non_objects")
        self.assert_folder_exact("completed")

    def test_missing_required_fields(self):
        self.mounted()
        self.arm(kind="missing_required")
        folder = self.folder("completed")
        names = os.listdir(folder)
        ids = set()
        for name in names:
            with open(os.path.join(folder, name)) as f:
                obj = json.load(f)
            # Whatever survives has an identity and belongs here.
            self.assertIsInstance(obj["item_id"], str)
            self.assertEqual(obj["status"], "completed")
            ids.add(obj["item_id"])
        self.assertTrue(ids <= {i["item_id"] for i in items_of("completed")})
        self.assertGreater(len(ids), 0)

    def test_nul_in_strings(self):
        self.mounted()
        self.arm(kind="nul_in_string")
        folder = self.folder("completed")
        found = False
        for name in os.listdir(folder):
            self.assertNotIn("\0", name)
            with open(os.path.join(folder, name), "rb") as f:
                raw = f.read()
            obj = json.loads(raw)
            if "\0" in (obj.get("item_name") or "") + (obj.get("error_message") or ""):
                found = True
                self.assertIn(b"\\u0000", raw)
        self.assertTrue(found)

    def test_huge_field(self):
        self.mounted()
        self.arm(kind="huge_field", size=10 * 1024 * 1024)
        folder = self.folder("failed")
        sizes = {}
        for name in os.listdir(folder):
            sizes[name] = os.stat(os.path.join(folder, name)).st_size
        big = max(sizes, key=sizes.get)
        self.assertGreater(sizes[big], 10 * 1024 * 1024)
        out = run("jq", "-r", ".error_message | length", os.path.join(folder, big)).stdout
        self.assertGreaterEqual(int(out), 10 * 1024 * 1024)

    def test_huge_body_over_max_response_is_efbig(self):
        self.mounted("max_response=1M")
        self.arm(kind="huge_field", size=4 * 1024 * 1024)
        self.listing_fails("failed", (errno.EFBIG, errno.EIO), 20)

    def test_deep_nesting(self):
        """Deeply nested values are kept whole, however deep."""
        self.mounted()
        self.arm(kind="deep_nesting", depth=1500)
        folder = self.folder("completed")
        names = os.listdir(folder)
        self.assertEqual(len(names), len(items_of("completed")))
        deepest = 0
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            self.assertTrue(data.startswith(b"{\n") and data.endswith(b"}\n"))
            deepest = max(deepest, data.count(b"["))
        self.assertGreaterEqual(deepest, 1500)
        # jq stops at 256 levels; Python's parser goes deeper when allowed.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(20000)
        try:
            for name in names:
                with open(os.path.join(folder, name), "rb") as f:
                    self.assertIsInstance(json.loads(f.read())["item_id"], str)
        finally:
            sys.setrecursionlimit(limit)
        # Bodies are read without recursion: any depth is kept, byte for byte.
        self.arm(kind="deep_nesting", depth=100000)
        folder = self.folder("failed")
        names = os.listdir(folder)
        self.assertEqual(len(names), len(items_of("failed")))
        sizes = []
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            self.assertTrue(data.endswith(b"}\n"))
            sizes.append(data.count(b"["))
        self.assertGreaterEqual(max(sizes), 100000)

    def test_duplicate_ids(self):
        # One page (limit 1000): the fault adds a copy that takes no place
        # in the server's offsets, while the next offset counts every
        # object a page held (see test_consistency, repeat_within_page).
        self.mounted()
        self.arm(kind="duplicate_ids")
        self.assert_folder_exact("completed")

    def test_duplicate_keys_last_wins(self):
        self.mounted()
        self.arm(kind="duplicate_keys")
        folder = self.folder("completed")
        names = os.listdir(folder)
        self.assertEqual(len(names), len(items_of("completed")))
        out = run("jq", "-r", ".status", *[os.path.join(folder, n) for n in names]).stdout
        self.assertEqual(set(out.decode().split()), {"completed"})

    # ---- strings that are not Unicode, messages that are not strings ----------

    def read_folder(self, status):
        """{item_id: (file name, bytes)} of a status folder."""
        folder = self.folder(status)
        files = {}
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            files[load_file(data)["item_id"]] = (name, data)
        return files

    def job_file_lines(self, name):
        with open(os.path.join(self.mount.path, "jobs", JOB_ID, name), "rb") as f:
            data = f.read()
        self.assertTrue(data.endswith(b"\n"))
        return data[:-1].split(b"\n")

    def test_strings_not_unicode_affect_only_their_item(self):
        """Raw bytes that are not UTF-8 and unpaired surrogate escapes in an
        item_name or error_message: the folder is listed once, and only that
        item shows them: its file keeps the bytes as sent, its name has "_"
        for each byte that is not UTF-8 (an unpaired surrogate escape decodes
        to the three bytes ED A0 80 ... ED BF BF), errors.tsv writes them as
        \\xHH, the xattr holds the decoded bytes."""
        failed = items_of("failed")
        for kind, variants in (("invalid_utf8", apidouble.NOT_UTF8),
                               ("lone_surrogate", apidouble.LONE_SURROGATES)):
            with self.subTest(kind=kind):
                try:
                    self.mounted()
                    self.arm(kind=kind, query="status=failed")
                    files = self.read_folder("failed")
                    # Its page and the empty one past it, as for any folder.
                    requests = self.double.stats()["by_endpoint"]["list_items"]
                    self.assertLessEqual(requests, 2)
                    self.assertEqual(sorted(files), sorted(i["item_id"] for i in failed))
                    tsv = self.job_file_lines("errors.tsv")
                    self.assertEqual(len(tsv), len(failed))
                    planted = {}
                    for index, item in enumerate(failed):
                        name, data = files[item["item_id"]]
                        if index >= len(variants):
                            self.assertEqual(data, apidouble.render(item).encode())
                            continue
                        bad = variants[index]
                        raw = apidouble.planted_bad_string(item, index, bad)
                        self.assertEqual(data, apidouble.render_raw(item, raw).encode(
                            "utf-8", "surrogateescape"))
                        self.assertEqual(name, "bad-%d-%s.pdf.json" % (index, sanitised(decoded(bad))))
                        message = b"failed at " + decoded(bad) + b" here"
                        path = os.path.join(self.folder("failed"), name)
                        self.assertEqual(os.getxattr(path, "user.llamacloud.error_message"), message)
                        self.assertEqual(os.getxattr(path, "user.llamacloud.id"),
                                         item["item_id"].encode())
                        self.assertEqual(tsv[index], b"\t".join(
                            (tsv_field(name[:-5].encode()), item["item_id"].encode(),
                             tsv_field(message))))
                        planted[item["item_id"]] = apidouble.dumps_raw(
                            item, raw, separators=(",", ":")).encode("utf-8", "surrogateescape")
                    # Accepted once, the page is not asked for again.
                    self.assertEqual(len(os.listdir(self.folder("failed"))), len(failed))
                    self.assertEqual(self.double.stats()["by_endpoint"]["list_items"], requests)
                    lines = self.job_file_lines("items.ndjson")
                    self.assertEqual(len(lines), len(ITEMS))
                    for line in lines:
                        item_id = load_file(line)["item_id"]
                        if item_id in planted:
                            self.assertEqual(line, planted.pop(item_id))
                    self.assertEqual(planted, {})
                finally:
                    self.tearDown()
                    self.setUp()

    def test_errors_tsv_has_a_line_for_every_failed_item(self):
        """error_message absent, null, "", a number, a boolean, an object or
        an array: still one line; the message field is empty for the first
        three, else the value's compact JSON text (TSV-escaped)."""
        self.mounted()
        self.arm(kind="error_message_kinds", query="status=failed")
        failed = items_of("failed")
        files = self.read_folder("failed")
        tsv = self.job_file_lines("errors.tsv")
        self.assertEqual(len(tsv), len(failed))
        for index, item in enumerate(failed):
            name, data = files[item["item_id"]]
            fields = tsv[index].split(b"\t")
            self.assertEqual(fields[:2], [tsv_field(name[:-5].encode()),
                                          item["item_id"].encode()])
            if index >= len(apidouble.ERROR_MESSAGE_KINDS):
                self.assertEqual(fields[2], tsv_field(item["error_message"].encode()))
                continue
            obj, raw = apidouble.planted_error_kind(item, index)
            self.assertEqual(data, apidouble.render_raw(obj, raw).encode())
            kind = apidouble.ERROR_MESSAGE_KINDS[index]
            if kind in (None, "null", '""'):
                want = b""
            elif kind[0] in "{[":
                want = json.dumps(json.loads(kind), separators=(",", ":")).encode()
            else:
                want = kind.encode()
            self.assertEqual(fields[2], tsv_field(want), kind)

    def test_xattr_too_big_to_read_is_not_listed(self):
        """An attribute value over 64 KiB (XATTR_SIZE_MAX) cannot be read:
        it is not listed and answers ENODATA; up to 64 KiB it is whole."""
        first = items_of("failed")[0]
        for size, shown in ((100 * 1024, False), (65537, False), (65536, True)):
            with self.subTest(size=size):
                try:
                    self.mounted()
                    self.arm(kind="huge_field", size=size, query="status=failed")
                    name, _ = self.read_folder("failed")[first["item_id"]]
                    path = os.path.join(self.folder("failed"), name)
                    attr = "user.llamacloud.error_message"
                    listed = os.listxattr(path)
                    self.assertIn("user.llamacloud.id", listed)
                    self.assertEqual(attr in listed, shown)
                    if shown:
                        self.assertEqual(len(os.getxattr(path, attr)), size)
                    else:
                        with self.assertRaises(OSError) as cm:
                            os.getxattr(path, attr)
                        self.assertEqual(cm.exception.errno, errno.ENODATA)
                    out = run("tar", "--xattrs", "--xattrs-include=user.*", "-cf", "/dev/null",
                              "-C", self.folder("failed"), name)
                    self.assertEqual(out.stderr, b"")
                finally:
                    self.tearDown()
                    self.setUp()

    def test_hostile_group_names_follow_naming_rule_1(self):
        """job_type and status name their by-type/ and by-status/ folders by
        the same rule as item names: NUL, "/" and bytes that are not UTF-8
        become "_"."""
        self.mounted()
        self.arm(kind="hostile_groups", path=r"^/api/v1/beta/batch-processing$")
        for view in ("by-type", "by-status"):
            groups = os.listdir(os.path.join(self.mount.path, view))
            for index, want in enumerate(("nul_x", "a_b_")):
                self.assertIn(want, groups, view)
                job_id = DATA.jobs[index]["id"]
                folder = os.path.join(self.mount.path, view, want)
                self.assertEqual(os.listdir(folder), [job_id])
                self.assertEqual(os.readlink(os.path.join(folder, job_id)),
                                 "../../jobs/" + job_id)
            self.assertNotIn("nul", groups)

    # ---- pagination that lies or loops -----------------------------------------

    def test_repeat_token_ends(self):
        self.mounted()
        self.double.control("config", {"dialect": "token", "page_cap": 40})
        self.arm(kind="repeat_token")
        start = time.monotonic()
        names = os.listdir(self.folder("completed"))
        self.assertLess(time.monotonic() - start, 20)
        self.assertEqual(len(names), len(set(names)))
        self.assertLess(self.double.requests(), 20)

    def test_repeat_page_ends(self):
        self.mounted()
        self.double.control("config", {"dialect": "both", "page_cap": 40})
        self.arm(kind="repeat_page")
        start = time.monotonic()
        names = os.listdir(self.folder("completed"))
        self.assertLess(time.monotonic() - start, 20)
        self.assertGreater(len(names), 0)
        self.assertLess(self.double.requests(), 30)

    def test_total_lies_low_and_high(self):
        for factor in (0.5, 3.0):
            with self.subTest(factor=factor):
                self.mounted()
                self.double.control("config", {"dialect": "total", "page_cap": 40})
                self.arm(kind="total_lies", factor=factor)
                self.assert_folder_exact("completed")
                self.tearDown()
                self.setUp()

    # ---- compressed bodies ----------------------------------------------------

    def test_bad_gzip_and_gzip_bomb(self):
        self.double.control("config", {"gzip": True})
        try:
            self.mounted()
            self.arm(kind="bad_gzip")
            self.listing_fails("completed", (errno.EIO,), 20)
            self.arm(kind="gzip_bomb")
            self.listing_fails("failed", (errno.EFBIG, errno.EIO), 30)
            with open("/proc/%d/status" % self.mount.proc.pid) as f:
                rss = [l for l in f if l.startswith("VmHWM")][0].split()[1]
            self.assertLess(int(rss), 1024 * 1024)  # KiB: the 1 GiB never landed
            self.double.faults([])
            self.assert_folder_exact("completed")
        finally:
            self.double.control("config", {"gzip": False})

    # ---- staleness, shutdown ----------------------------------------------------

    def test_stale_if_error_serves_the_last_copy(self):
        self.mounted("cache_ttl=1", "terminal_ttl=1")
        self.assert_folder_exact("completed")
        self.arm(kind="status", status=503)

        # Every listing is the copy: fresh at first; once expired, served at
        # once while the refresh runs in the background. Once that has
        # failed, one warning says what is served.
        def listed_until_refresh_failed():
            self.assert_folder_exact("completed")
            return "serving cached copy" in self.mount.stderr()

        harness.wait_until(listed_until_refresh_failed, "a background refresh to fail")
        self.assertGreaterEqual(self.mount.stats()["fetching"]["refreshes"], 1)
        self.assert_folder_exact("completed")
        # One failure, one line: what was served, and why.
        lines = [l for l in self.mount.stderr().splitlines() if "503" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("serving cached copy", lines[0])
        self.assertIn("HTTP 503 after", lines[0])

    def test_stale_if_error_off_fails(self):
        self.mounted("cache_ttl=1", "terminal_ttl=1", "stale_if_error=0")
        self.assert_folder_exact("completed")
        names = sorted(os.listdir(self.folder("completed")))
        self.arm(kind="status", status=503)

        # The copy while it is fresh; once it has expired, the refresh is
        # waited for, and its failure is the answer.
        def listing_failed():
            try:
                self.assertEqual(sorted(os.listdir(self.folder("completed"))), names)
            except OSError as e:
                return e.errno
            return None

        failed = harness.wait_until(listing_failed, "the expired listing to be fetched again")
        self.assertEqual(failed, errno.EIO, os.strerror(failed))
        self.listing_fails("completed", (errno.EIO,), 20)

    def stop_with_a_request_in_flight(self, stop, *options):
        self.mounted(*(options or ("timeout=30",)))
        # One stall, so that the double's count of it says when ls is held.
        self.arm(kind="stall", ms=60000, times=1)
        reader = subprocess.Popen(["ls", self.folder("completed")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            harness.wait_until(lambda: self.double.control("faults")[0]["remaining"] == 0,
                               "ls to reach the stalled request")
            self.assertIsNone(reader.poll(), "ls finished although its request stalls")
            start = time.monotonic()
            stop()
            self.mount.wait_exit(15)
            self.assertLess(time.monotonic() - start, 10)
            self.assertEqual(self.mount.status, 0)
            self.assertFalse(harness.is_mounted(self.mount.path))
            reader.wait(15)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()

    def test_sigterm_with_a_request_in_flight(self):
        self.stop_with_a_request_in_flight(lambda: self.mount.proc.send_signal(signal.SIGTERM))

    def test_sigint_with_a_request_in_flight(self):
        self.stop_with_a_request_in_flight(lambda: self.mount.proc.send_signal(signal.SIGINT))

    def test_unmount_with_a_request_in_flight(self):
        # A lazy unmount leaves the mount to its last user: the reader's
        # request ends at the stall timeout, and the driver exits with it.
        self.stop_with_a_request_in_flight(
            lambda: subprocess.run(["fusermount3", "-uz", self.mount.path], check=True),
            "timeout=3", "retries=0")


class MountCheck(unittest.TestCase):
    """The one request sent before mounting has its own short budget: a
    server that is silent or absent fails the mount promptly, saying so."""

    def failed_mount(self, double, *options):
        start = time.monotonic()
        m = harness.Mount(double, *options, wait=False)
        try:
            status = m.wait_exit(120)
            elapsed = time.monotonic() - start
            mounted = harness.is_mounted(m.path)
        finally:
            err = m.stop()
        self.assertEqual(status, 1, err)
        self.assertFalse(mounted)
        harness.check_driver_output(err, 0)
        return err, elapsed

    def test_silent_server_fails_the_mount_promptly(self):
        # The defaults (timeout=30, retries=4) gave 157 s.
        double = harness.Double("--faults", json.dumps(
            [{"kind": "stall", "ms": 120000, "path": r"^/api/v1/beta/batch-processing$"}]))
        try:
            err, elapsed = self.failed_mount(double)
        finally:
            double.stop()
        self.assertRegex(err, r"batchfs: %s: the server did not answer within 1[45] s"
                         % re.escape(double.url))
        self.assertLess(elapsed, 30)

    def test_nothing_listening_fails_the_mount_at_once(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # Bound but never listening: every connection is refused.
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", port))
            absent = types.SimpleNamespace(url="http://127.0.0.1:%d" % port)
            err, elapsed = self.failed_mount(absent)
        self.assertIn("batchfs: %s: connection refused" % absent.url, err)
        self.assertLess(elapsed, 10)


class FaultOverHttp2Test(FaultTest):
    """The faults a TLS terminator passes on as they are (statuses, their
    headers, latency, a body cut short), through nghttpx over HTTPS."""
    HTTP2 = True
    THROUGH_PROXY = (
        "test_429_with_retry_after_then_success",
        "test_503_forever_is_eio",
        "test_x_should_retry_false_is_not_retried",
        "test_delay",
        "test_responses_cut_short_are_redone",
        "test_responses_cut_short_forever_are_eio_not_a_short_listing",
    )

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.certs = cls.proxy = None
        try:
            cls.certs = harness.Certificates()
            cls.proxy = harness.TlsProxy(cls.double, cls.certs, http2=cls.HTTP2)
        except BaseException:
            cls.tearDownClass()
            raise
        cls.server, cls.server_options = cls.proxy, ("ca_file=" + cls.proxy.ca,)

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.proxy:
                cls.proxy.stop()
            if cls.certs:
                cls.certs.remove()
        finally:
            super().tearDownClass()


class FaultOverHttp1Test(FaultOverHttp2Test):
    """The same through a proxy that offers HTTP/1.1 alone."""
    HTTP2 = False


def load_tests(loader, tests, pattern):
    """Every fault test, and those that make sense through a proxy again
    through each kind of proxy."""
    suite = unittest.TestSuite()
    proxied = (FaultOverHttp2Test, FaultOverHttp1Test)
    for cls in globals().values():
        if (isinstance(cls, type) and issubclass(cls, unittest.TestCase)
                and cls not in proxied):
            suite.addTests(loader.loadTestsFromTestCase(cls))
    for cls in proxied:
        suite.addTests(cls(name) for name in cls.THROUGH_PROXY)
    return suite


if __name__ == "__main__":
    unittest.main(verbosity=2)
