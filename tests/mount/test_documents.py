"""What a batch produced, mounted against the API double: the content folders.

Checks which content folders each batch and job has; that every document
file holds exactly the string the double serves (markdown/ and text/ of
parse_v2 batches and v1 parse jobs, extracted/ and extracted.ndjson of
extract_v2 batches), with st_size and st_mtime right before it is read;
that only completed documents appear and errors.tsv says why the others do
not; that hostile display names follow doc/naming.md; that grep, tar, cat,
wc and cmp see the same bytes; the xattrs; the requests a listing and a
walk cost, and how long a folder is kept; that faults on the document
endpoints give the right bytes or the right errno, never wrong bytes, also
with documents larger than the cache; and that a document which changed
on the server is ESTALE, then read as the server has it.
"""
import datetime
import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import apidouble, run  # noqa: E402

PHRASE = apidouble.apidouble_content.SEARCH_PHRASE
EXPIRED_MESSAGE = "expired: the job's results are no longer available (404)"
V2_DOCS = r"^/api/v2/parse/"
V1_DOCS = r"^/api/v1/parsing/job/[^/]+/result/"
DIRECTORY = r"^/api/v1/beta/directories/"
QUICK = ("retries=2", "timeout=2", "connect_timeout=2", "cache_ttl=60")
TSV_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", "\\": "\\\\"}


def display_bytes(name):
    """The bytes batchfs decodes a display_name of the double to: U+DC80..
    U+DCFF are raw bytes, an unpaired surrogate escape its three bytes."""
    out = bytearray()
    for ch in name:
        if 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append(ord(ch) - 0xDC00)
        else:
            out += ch.encode("utf-8", "surrogatepass")
    return bytes(out)


def moment(stamp):
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def tsv_field(text):
    return "".join(TSV_ESCAPES.get(c, c) for c in text).encode("utf-8")


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def v2_names(docs, suffix):
    """{file id: file name} over every counted result of a batch."""
    names = harness.file_names(
        [(d.file_id.encode(), None if d.name is None else display_bytes(d.name))
         for d in docs], suffix)
    return {d.file_id: names[d.file_id.encode()] for d in docs}


def v2_files(data, batch_id, field):
    """{file name: (Document, expected bytes)} of markdown/ (field
    "markdown_full"), text/ ("text_full") or extracted/ ("extract_result")."""
    docs = data.batch_documents(batch_id)
    suffix = {"markdown_full": b".md", "text_full": b".txt", "extract_result": b".json"}[field]
    names = v2_names(docs, suffix)
    out = {}
    for d in docs:
        value = getattr(d, field)
        if d.status != "COMPLETED" or value is None:
            continue
        if field == "extract_result":
            out[names[d.file_id]] = (d, apidouble.render(value).encode())
        else:
            out[names[d.file_id]] = (d, value.encode("utf-8"))
    return out


def v1_files(data, job_id, suffix):
    """{file name: (V1Document, expected bytes or None when expired)}: the
    names of completed/ with .json replaced by `suffix`."""
    items = [i for i in data.items[job_id] if i["status"] == "completed"]
    names = harness.file_names([(i["item_id"].encode(), (i.get("item_name") or "").encode())
                                for i in items], b".json")
    field = "markdown" if suffix == b".md" else "text"
    out = {}
    for d in data.job_documents(job_id):
        if d.item_id.encode() not in names:
            continue
        name = names[d.item_id.encode()][:-len(b".json")] + suffix
        value = getattr(d, field)
        out[name] = (d, None if value is None else value.encode("utf-8"))
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


def drop_kernel_copy(path):
    """Drops the kernel's cached pages of one file (clean pages only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def mount_stats(root):
    with open(os.path.join(root, ".batchfs", "stats")) as f:
        return json.load(f)


class Checks:
    """Assertions shared by the test classes."""

    def assert_exact(self, folder, files, mtime=None):
        """Folder `folder` (bytes path) holds exactly `files` {name: (doc,
        bytes)}, each a 0444 regular file with st_size (asked before
        reading) and st_mtime (mtime(doc), when given) right."""
        self.assertEqual(sorted(os.listdir(folder)), sorted(files))
        for name, (doc, want) in sorted(files.items()):
            self.assert_file(os.path.join(folder, name), want,
                             None if mtime is None else mtime(doc))

    def assert_file(self, path, want, mtime=None):
        """One document file: stat first (size, mode, mtime), then bytes."""
        st = os.stat(path)
        self.assertTrue(stat.S_ISREG(st.st_mode), path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o444, path)
        self.assertEqual(st.st_size, len(want), path)
        if mtime is not None:
            self.assertAlmostEqual(st.st_mtime, moment(mtime), delta=0.001, msg=path)
        data = read(path)
        self.assertEqual(len(data), len(want), path)
        self.assertTrue(data == want, "%r: content differs" % path)

    def assert_tar_round_trip(self, folder, files):
        """tar of `folder`, unpacked elsewhere, gives exactly `files`."""
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "a.tar")
            res = run("tar", "-C", folder, "-cf", archive, ".")
            self.assertEqual(res.stderr, b"")
            out = os.path.join(tmp, "out")
            os.mkdir(out)
            run("tar", "-C", out, "-xf", archive)
            out = os.fsencode(out)
            self.assertEqual(sorted(os.listdir(out)), sorted(files))
            for name, (_, want) in files.items():
                self.assertTrue(read(os.path.join(out, name)) == want, name)

    def assert_fails(self, call, allowed, within=30):
        """call() fails with an errno of `allowed`, within `within` seconds."""
        start = time.monotonic()
        with self.assertRaises(OSError) as cm:
            call()
        self.assertIn(cm.exception.errno, allowed, os.strerror(cm.exception.errno))
        self.assertLess(time.monotonic() - start, within)

    def listing_fails(self, folder, allowed):
        self.assert_fails(lambda: os.listdir(folder), allowed)


# --------------------------------------------------------------------------
# The default data set: every kind of batch and job, hostile names.
# --------------------------------------------------------------------------

DATA = apidouble.make_dataset(large_kb=64)
PARSE_BATCH = next(b for b in DATA.batches if b["config"]["job"]["type"] == "parse_v2"
                   and DATA.results[b["id"]])
EXTRACT_BATCH = max((b for b in DATA.batches if b["config"]["job"]["type"] == "extract_v2"),
                    key=lambda b: len(DATA.results[b["id"]] or ()))
PARSE_JOB = DATA.jobs[0]
assert PARSE_JOB["job_type"] == "parse" and PARSE_JOB["status"] == "completed"
OTHER_PARSE_JOB = next(j for j in DATA.jobs[1:] if j["job_type"] == "parse")


class Layout(Checks, harness.MountTestCase):
    """One mount of the default data set (large documents of 64 KB)."""
    DOUBLE_ARGS = ("--large-kb", "64")
    MOUNT_OPTIONS = ("cache_ttl=300",)

    def batch(self, batch, *parts):
        return os.fsencode(self.path("batches", batch["id"], *parts))

    def job(self, job, *parts):
        return os.fsencode(self.path("jobs", job["id"], *parts))

    def assert_absent(self, path):
        with self.assertRaises(FileNotFoundError):
            os.stat(path)
        with self.assertRaises(FileNotFoundError):
            os.listdir(path)

    # ---- layout -------------------------------------------------------------

    def test_batch_folders_by_type(self):
        for batch in DATA.batches:
            with self.subTest(batch=batch["id"]):
                listed = set(os.listdir(self.path("batches", batch["id"])))
                parse = batch["config"]["job"]["type"] == "parse_v2"
                for name in ("markdown", "text"):
                    self.assertEqual(name in listed, parse)
                for name in ("extracted", "extracted.ndjson"):
                    self.assertEqual(name in listed, not parse)
                present = ("markdown", "text") if parse else ("extracted",)
                absent = ("extracted", "extracted.ndjson") if parse else ("markdown", "text")
                for name in present:
                    self.assertTrue(os.path.isdir(self.batch(batch, name)))
                if not parse:
                    self.assertTrue(os.path.isfile(self.batch(batch, "extracted.ndjson")))
                for name in absent:
                    self.assertFalse(os.path.lexists(self.batch(batch, name)))
                    with self.assertRaises(FileNotFoundError):
                        os.stat(self.batch(batch, name))

    def test_batches_without_documents_have_empty_folders(self):
        for batch in DATA.batches:
            if DATA.batch_documents(batch["id"]):
                continue
            with self.subTest(batch=batch["id"]):
                if batch["config"]["job"]["type"] == "parse_v2":
                    self.assertEqual(os.listdir(self.batch(batch, "markdown")), [])
                    self.assertEqual(os.listdir(self.batch(batch, "text")), [])
                else:
                    self.assertEqual(os.listdir(self.batch(batch, "extracted")), [])
                    self.assertEqual(read(self.batch(batch, "extracted.ndjson")), b"")

    def test_job_folders_by_type(self):
        for job in DATA.jobs:
            with self.subTest(job=job["id"], type=job["job_type"]):
                listed = set(os.listdir(self.path("jobs", job["id"])))
                parse = job["job_type"] == "parse"
                for name in ("markdown", "text"):
                    self.assertEqual(name in listed, parse)
                    if parse:
                        self.assertTrue(os.path.isdir(self.job(job, name)))
                    else:
                        self.assert_absent(self.job(job, name))
                for name in ("extracted", "extracted.ndjson"):
                    self.assertNotIn(name, listed)

    # ---- v2 content -----------------------------------------------------------

    def test_v2_markdown_exact(self):
        files = v2_files(DATA, PARSE_BATCH["id"], "markdown_full")
        self.assertGreater(len(files), 20)
        self.assert_exact(self.batch(PARSE_BATCH, "markdown"), files,
                          mtime=lambda d: d.updated_at)

    def test_v2_text_exact(self):
        files = v2_files(DATA, PARSE_BATCH["id"], "text_full")
        self.assert_exact(self.batch(PARSE_BATCH, "text"), files, mtime=lambda d: d.updated_at)

    def test_v2_only_completed_documents(self):
        """COMPLETED only; a fast-tier job has its .txt and no .md; the
        names are those of every counted result, so .md and .txt match."""
        docs = DATA.batch_documents(PARSE_BATCH["id"])
        md_names = v2_names(docs, b".md")
        txt_names = v2_names(docs, b".txt")
        markdown = set(os.listdir(self.batch(PARSE_BATCH, "markdown")))
        text = set(os.listdir(self.batch(PARSE_BATCH, "text")))
        statuses = set()
        for d in docs:
            statuses.add((d.status, d.tier == "fast"))
            done = d.status == "COMPLETED"
            self.assertEqual(md_names[d.file_id] in markdown, done and d.tier != "fast", d)
            self.assertEqual(txt_names[d.file_id] in text, done, d)
            if len(txt_names[d.file_id]) < 254:  # not cut to fit by rule 4
                self.assertEqual(md_names[d.file_id][:-3], txt_names[d.file_id][:-4])
        # The data set really has every case.
        for case in (("RUNNING", False), ("PENDING", False), ("FAILED", False),
                     ("CANCELLED", False), (None, False), ("COMPLETED", True)):
            self.assertIn(case, statuses)
        self.assertEqual(len(markdown), sum(1 for d in docs if d.markdown_full is not None))
        self.assertEqual(len(text), sum(1 for d in docs if d.text_full is not None))
        for d in docs:
            if d.status != "COMPLETED":
                with self.assertRaises(FileNotFoundError):
                    os.stat(os.path.join(self.batch(PARSE_BATCH, "markdown"),
                                         md_names[d.file_id]))

    def test_extracted_exact(self):
        files = v2_files(DATA, EXTRACT_BATCH["id"], "extract_result")
        self.assertGreater(len(files), 5)
        folder = self.batch(EXTRACT_BATCH, "extracted")
        self.assert_exact(folder, files, mtime=lambda d: d.updated_at)
        for name, (doc, _) in files.items():
            self.assertEqual(json.loads(read(os.path.join(folder, name))), doc.extract_result)
        # Both shapes of extract_result are there.
        shapes = {type(doc.extract_result) for doc, _ in files.values()}
        self.assertEqual(shapes, {dict, list})

    def test_extracted_ndjson(self):
        files = v2_files(DATA, EXTRACT_BATCH["id"], "extract_result")
        data = read(self.batch(EXTRACT_BATCH, "extracted.ndjson"))
        self.assertEqual(os.stat(self.batch(EXTRACT_BATCH, "extracted.ndjson")).st_size,
                         len(data))
        self.assertTrue(data.endswith(b"\n"))
        lines = data[:-1].split(b"\n")
        order = sorted(files)
        self.assertEqual(len(lines), len(order))
        for line, name in zip(lines, order):
            doc = files[name][0]
            obj = json.loads(line)
            self.assertEqual(list(obj), ["name", "source_directory_file_id", "extract_result"])
            self.assertEqual(obj["name"].encode("utf-8"), name[:-len(b".json")])
            self.assertEqual(obj["source_directory_file_id"], doc.file_id)
            self.assertEqual(obj["extract_result"], doc.extract_result)
            # Compact, the result's text as served.
            self.assertTrue(line.startswith(b'{"name":"'), line[:40])
            self.assertTrue(line.endswith(b'","source_directory_file_id":"' + doc.file_id.encode()
                                          + b'","extract_result":' + compact(doc.extract_result)
                                          + b"}"), line[-200:])
        run("jq", "-e", "-s", "length > 0", self.batch(EXTRACT_BATCH, "extracted.ndjson"))

    def test_extract_total_with_jq(self):
        """The issue's example: jq sums the extracted totals."""
        files = v2_files(DATA, EXTRACT_BATCH["id"], "extract_result")
        want = 0
        for doc, _ in files.values():
            result = doc.extract_result
            want += sum(x["total"] for x in result) if isinstance(result, list) else result["total"]
        out = run("jq", "-s", "[.[].extract_result | if type == \"array\" then .[].total "
                  "else .total end] | add",
                  self.batch(EXTRACT_BATCH, "extracted.ndjson"), text=True).stdout
        self.assertAlmostEqual(float(out), want, places=4)

    # ---- v1 content -----------------------------------------------------------

    def assert_v1_exact(self, job, suffix):
        files = v1_files(DATA, job["id"], suffix)
        folder = self.job(job, "markdown" if suffix == b".md" else "text")
        listed = set(os.listdir(folder))
        live = {n: v for n, v in files.items() if v[1] is not None}
        # Expired documents are listed until looked up once.
        self.assertLessEqual(set(live), listed)
        self.assertLessEqual(listed, set(files))
        for name, (doc, want) in sorted(live.items()):
            self.assert_file(os.path.join(folder, name), want, doc.completed_at)
        return files

    def test_v1_markdown_exact(self):
        files = self.assert_v1_exact(PARSE_JOB, b".md")
        self.assertGreater(len(files), 200)
        self.assertTrue(any(d.status == "PARTIAL_SUCCESS" for d, _ in files.values()))

    def test_v1_text_exact(self):
        self.assert_v1_exact(PARSE_JOB, b".txt")

    def test_v1_other_job_exact(self):
        self.assert_v1_exact(OTHER_PARSE_JOB, b".md")
        self.assert_v1_exact(OTHER_PARSE_JOB, b".txt")

    def test_v1_names_are_those_of_completed(self):
        """The names of completed/ with .md for .json (also checks this
        file's naming rules against the filesystem's)."""
        completed = sorted(os.listdir(self.job(PARSE_JOB, "completed")))
        files = v1_files(DATA, PARSE_JOB["id"], b".json")
        self.assertEqual(completed, sorted(files))
        live = sorted(n[:-5] + b".md" for n, v in files.items() if v[1] is not None)
        listed = set(os.listdir(self.job(PARSE_JOB, "markdown")))
        self.assertLessEqual(set(live), listed)
        # Hostile item names really are there.
        self.assertTrue(any(b"~itm-" in n for n in live))
        self.assertIn(b"...md", live)

    # ---- names ----------------------------------------------------------------

    def test_hostile_display_names(self):
        """Literal names, independent of the rules' implementation above."""
        docs = DATA.batch_documents(PARSE_BATCH["id"])
        by_name = {}
        for d in docs:
            by_name.setdefault(d.name, []).append(d)
        markdown = set(os.listdir(self.batch(PARSE_BATCH, "markdown")))
        text = set(os.listdir(self.batch(PARSE_BATCH, "text")))

        def one(display):
            (doc,) = by_name[display]
            return doc

        expect = {
            "/": b"_", ".": b".", "a/b/report.pdf": b"a_b_report.pdf",
            "bad-\udcff.pdf": b"bad-_.pdf", "ctl\u0001\u001f.pdf": b"ctl__.pdf",
            "lone-\ud800.pdf": b"lone-___.pdf", "line\nbreak.pdf": b"line_break.pdf",
            "report.pdf": b"report.pdf", "cut-\udce2\udc82.pdf": b"cut-__.pdf",
            "\u65e5\u672c\u8a9e\u306e\u5831\u544a\u66f8.pdf":
                "\u65e5\u672c\u8a9e\u306e\u5831\u544a\u66f8.pdf".encode(),
            "emoji-\U0001f4c4.pdf": "emoji-\U0001f4c4.pdf".encode(),
        }
        for display, base in expect.items():
            with self.subTest(display=display):
                self.assertIn(base + b".md", markdown)
                self.assertIn(base + b".txt", text)
        # Fast tier: ".." and "Report.pdf" have a .txt only.
        for display, base in (("..", b".."), ("Report.pdf", b"Report.pdf")):
            self.assertEqual(one(display).tier, "fast")
            self.assertIn(base + b".txt", text)
            self.assertNotIn(base + b".md", markdown)
        self.assertIn(b"...txt", text)
        # Duplicates: both tagged with their file id, none plain.
        dups = by_name["duplicate.pdf"]
        self.assertEqual(len(dups), 2)
        self.assertNotIn(b"duplicate.pdf.md", markdown)
        for d in dups:
            self.assertIn(b"duplicate.pdf~" + d.file_id.encode() + b".md", markdown)
        # Empty and deleted: named by the file id.
        for d in by_name[""] + [d for d in by_name[None] if d.status == "COMPLETED"]:
            self.assertIn(d.file_id.encode() + b".md", markdown)
        # 304 bytes: cut to fit 255 with the id.
        fid = one("x" * 300 + ".pdf").file_id.encode()
        name = b"x" * (255 - 1 - len(fid) - 3) + b"~" + fid + b".md"
        self.assertEqual(len(name), 255)
        self.assertIn(name, markdown)
        # 284 bytes of two-byte characters: cut at a character boundary.
        fid = one("\u00e9" * 140 + ".pdf").file_id.encode()
        room = 255 - 1 - len(fid) - 4
        cut = "\u00e9".encode() * (room // 2)
        self.assertIn(cut + b"~" + fid + b".txt", text)
        for name in markdown | text:
            self.assertLessEqual(len(name), 255)
            name.decode("utf-8")
            self.assertFalse(set(name) & (set(range(32)) | {0x2F, 0x7F}), name)

    def test_names_follow_the_rules(self):
        for batch, field in ((PARSE_BATCH, "markdown_full"), (PARSE_BATCH, "text_full"),
                             (EXTRACT_BATCH, "extract_result")):
            folder = {"markdown_full": "markdown", "text_full": "text",
                      "extract_result": "extracted"}[field]
            with self.subTest(folder=folder):
                self.assertEqual(sorted(os.listdir(self.batch(batch, folder))),
                                 sorted(v2_files(DATA, batch["id"], field)))

    # ---- tools ----------------------------------------------------------------

    def test_grep_finds_exactly_the_documents_with_the_phrase(self):
        for base, field, folder in (
                (self.batch(PARSE_BATCH), "markdown_full", "markdown"),
                (self.batch(PARSE_BATCH), "text_full", "text")):
            files = v2_files(DATA, PARSE_BATCH["id"], field)
            want = sorted(n for n, (_, data) in files.items() if PHRASE.encode() in data)
            self.assertTrue(want)
            self.assertLess(len(want), len(files))
            out = run("grep", "-rl", PHRASE, os.path.join(base, os.fsencode(folder))).stdout
            got = sorted(os.path.basename(p) for p in out.split(b"\n") if p)
            self.assertEqual(got, want)
        files = v1_files(DATA, PARSE_JOB["id"], b".md")
        want = sorted(n for n, (_, data) in files.items() if data and PHRASE.encode() in data)
        res = run("grep", "-rl", PHRASE, self.job(PARSE_JOB, "markdown"), check=False)
        got = sorted(os.path.basename(p) for p in res.stdout.split(b"\n") if p)
        self.assertEqual(got, want)
        # grep's only complaints are the expired documents, if any.
        expired = [n for n, (_, data) in files.items() if data is None]
        for line in res.stderr.split(b"\n"):
            if line:
                self.assertTrue(any(n in line for n in expired), line)

    def test_tar_round_trip(self):
        for folder, files in ((self.batch(PARSE_BATCH, "markdown"),
                               v2_files(DATA, PARSE_BATCH["id"], "markdown_full")),
                              (self.batch(EXTRACT_BATCH, "extracted"),
                               v2_files(DATA, EXTRACT_BATCH["id"], "extract_result"))):
            with self.subTest(folder=folder):
                self.assert_tar_round_trip(folder, files)

    def test_cat_wc_cmp(self):
        folder = self.batch(PARSE_BATCH, "text")
        files = v2_files(DATA, PARSE_BATCH["id"], "text_full")
        env = dict(os.environ, LC_ALL="C")
        out = subprocess.run("cat -- *", shell=True, cwd=folder, env=env, check=True,
                             capture_output=True).stdout
        visible = sorted(n for n in files if not n.startswith(b"."))
        self.assertTrue(out == b"".join(files[n][1] for n in visible))
        names = sorted(files)
        res = run("wc", "-c", "--", *names, cwd=folder)
        lines = res.stdout.split(b"\n")
        for name, line in zip(names, lines):
            self.assertEqual(int(line.split()[0]), len(files[name][1]), name)
        with tempfile.TemporaryDirectory() as tmp:
            for name, (_, want) in files.items():
                expected = os.path.join(tmp, "want")
                with open(expected, "wb") as f:
                    f.write(want)
                res = run("cmp", expected, os.path.join(folder, name), check=False)
                self.assertEqual(res.returncode, 0, (name, res.stdout, res.stderr))

    # ---- xattrs ---------------------------------------------------------------

    def test_xattrs(self):
        for field, folder in (("markdown_full", "markdown"), ("text_full", "text")):
            for name, (doc, _) in v2_files(DATA, PARSE_BATCH["id"], field).items():
                path = os.path.join(self.batch(PARSE_BATCH, folder), name)
                self.assertEqual(os.getxattr(path, "user.llamacloud.job_id"),
                                 doc.job_id.encode())
                self.assertEqual(os.getxattr(path, "user.llamacloud.status"), b"COMPLETED")
        for name, (doc, _) in v2_files(DATA, EXTRACT_BATCH["id"], "extract_result").items():
            path = os.path.join(self.batch(EXTRACT_BATCH, "extracted"), name)
            self.assertEqual(os.getxattr(path, "user.llamacloud.job_id"), doc.job_id.encode())
            self.assertEqual(os.getxattr(path, "user.llamacloud.status"), b"COMPLETED")
        for name, (doc, data) in v1_files(DATA, PARSE_JOB["id"], b".md").items():
            if data is None:
                continue
            path = os.path.join(self.job(PARSE_JOB, "markdown"), name)
            listed = os.listxattr(path)
            self.assertIn("user.llamacloud.job_id", listed)
            self.assertIn("user.llamacloud.status", listed)
            self.assertEqual(os.getxattr(path, "user.llamacloud.job_id"), doc.job_id.encode())
            self.assertEqual(os.getxattr(path, "user.llamacloud.status"), b"completed")


# --------------------------------------------------------------------------
# Fresh mounts: what the first listing does.
# --------------------------------------------------------------------------

def tsv_lines(data):
    return [] if not data else data[:-1].split(b"\n")


class FirstListings(Checks, harness.MountTestCase):
    """errors.tsv before and after the content folders are listed; an
    expired v1 document."""
    DOUBLE_ARGS = ("--large-kb", "64")
    MOUNT_OPTIONS = ("cache_ttl=300", "log_level=info")

    def expected_error_lines(self, batch, suffix):
        docs = DATA.batch_documents(batch["id"])
        names = v2_names(docs, suffix)
        out = []
        for d in docs:
            if d.status == "FAILED":
                message = "FAILED: " + d.error_message if d.error_message else "FAILED"
            elif d.status == "CANCELLED":
                message = "CANCELLED: " + d.error_message if d.error_message else "CANCELLED"
            elif d.status is None:
                message = EXPIRED_MESSAGE
            else:
                continue
            out.append(b"\t".join((tsv_field(names[d.file_id][:-len(suffix)].decode()),
                                   d.file_id.encode(), tsv_field(message))))
        return out

    def test_1_errors_tsv_lists_the_documents_on_a_fresh_mount(self):
        """Its content never depends on what was looked at before: read
        first, it holds the document lines, by listing text/ (extracted/),
        whose requests are then shared with that folder."""
        for batch, folder, suffix, endpoint in (
                (PARSE_BATCH, "text", b".md", "parse_v2"),
                (EXTRACT_BATCH, "extracted", b".json", "extract_v2")):
            with self.subTest(batch=batch["id"]):
                self.double.reset()
                lines = tsv_lines(read(self.path("batches", batch["id"], "errors.tsv")))
                results = sum(1 for r in DATA.results[batch["id"]] if r.get("error_message"))
                self.assertEqual(sorted(lines[results:]),
                                 sorted(self.expected_error_lines(batch, suffix)))
                asked = self.double.stats()["by_endpoint"][endpoint]
                self.assertEqual(asked, len(DATA.batch_documents(batch["id"])))
                os.listdir(self.path("batches", batch["id"], folder))
                if folder == "extracted":
                    read(self.path("batches", batch["id"], "extracted.ndjson"))
                self.assertEqual(self.double.stats()["by_endpoint"][endpoint], asked)
        mine = mount_stats(self.root)["requests"]["by_endpoint"]
        self.assertEqual(sum(mine["get_parse"].values()),
                         len(DATA.batch_documents(PARSE_BATCH["id"])))
        self.assertEqual(sum(mine["get_extract"].values()),
                         len(DATA.batch_documents(EXTRACT_BATCH["id"])))

    def test_2_errors_tsv_once_per_job_and_logged(self):
        for batch, folders, suffix in ((PARSE_BATCH, ("markdown", "text"), b".md"),
                                       (EXTRACT_BATCH, ("extracted",), b".json")):
            with self.subTest(batch=batch["id"]):
                path = self.path("batches", batch["id"], "errors.tsv")
                results = sum(1 for r in DATA.results[batch["id"]] if r.get("error_message"))
                want = self.expected_error_lines(batch, suffix)
                self.assertGreaterEqual(len(want), 3)
                for folder in folders:
                    os.listdir(self.path("batches", batch["id"], folder))
                    after = tsv_lines(read(path))
                    self.assertEqual(os.stat(path).st_size,
                                     len(b"".join(line + b"\n" for line in after)))
                    # After the results' lines, once per job however many
                    # folders list it.
                    self.assertEqual(len(after), results + len(want))
                    for line in after[:results]:
                        self.assertEqual(len(line.split(b"\t")), 3, line)
                    self.assertEqual(sorted(after[results:]), sorted(want))
                # One info line for each (each time its document is fetched).
                log = self.mount.stderr().split("\n")
                for d in DATA.batch_documents(batch["id"]):
                    if d.status not in ("FAILED", "CANCELLED", None):
                        continue
                    lines = [line for line in log if d.job_id in line]
                    self.assertTrue(1 <= len(lines) <= len(folders) + 1, (d, lines))
                    for line in lines:
                        self.assertIn(" info: ", line)
                for status in ("FAILED", "CANCELLED", None):
                    self.assertTrue(any(d.status == status
                                        for d in DATA.batch_documents(batch["id"])))

    def test_3_v1_expired_document_is_enoent(self):
        job = OTHER_PARSE_JOB
        for suffix, folder in ((b".md", "markdown"), (b".txt", "text")):
            with self.subTest(folder=folder):
                files = v1_files(DATA, job["id"], suffix)
                expired = sorted(n for n, (_, data) in files.items() if data is None)
                self.assertTrue(expired)
                path = os.fsencode(self.path("jobs", job["id"], folder))
                # Listed without a request per document, so listed at first.
                self.assertEqual(sorted(os.listdir(path)), sorted(files))
                for name in expired:
                    def logged():
                        return [line for line in self.mount.stderr().split("\n")
                                if files[name][0].job_id in line]
                    before = logged()
                    with self.assertRaises(FileNotFoundError):
                        os.stat(os.path.join(path, name))
                    lines = logged()[len(before):]
                    self.assertEqual(len(lines), 1, lines)  # one info line
                    self.assertIn(" info: ", lines[0])
                    with self.assertRaises(FileNotFoundError):
                        open(os.path.join(path, name), "rb")
                self.assertEqual(sorted(os.listdir(path)),
                                 sorted(n for n in files if n not in expired))
                live = {n: v for n, v in files.items() if v[1] is not None}
                self.assert_exact(path, live, mtime=lambda d: d.completed_at)


class Freshness(harness.MountTestCase):
    """A folder with unfinished documents lives for cache_ttl, one whose
    documents are all finished for terminal_ttl."""
    DOUBLE_ARGS = ("--large-kb", "64", "--output-batch", "10", "--verbose")
    MOUNT_OPTIONS = ("cache_ttl=1", "terminal_ttl=600")

    def asked(self, jobs):
        return [p for p in self.double.requested()
                if p.startswith("/api/v2/parse/") and p.split("?")[0].split("/")[-1] in jobs]

    def test_unfinished_folder_refreshed_finished_one_kept(self):
        data = apidouble.make_dataset(large_kb=64, output_batch=10)
        finished = self.path("batches", data.batches[-1]["id"], "markdown")
        unfinished = self.path("batches", PARSE_BATCH["id"], "markdown")
        self.assertTrue(any(d.status in ("RUNNING", "PENDING")
                            for d in data.batch_documents(PARSE_BATCH["id"])))
        self.assertEqual(len(os.listdir(finished)), 10)
        first = len(os.listdir(unfinished))
        self.double.reset()

        def refreshed():
            self.assertEqual(len(os.listdir(unfinished)), first)
            return self.double.stats()["by_endpoint"]["parse_v2"] > 0
        harness.wait_until(refreshed, "the unfinished folder asked for again")
        # More than cache_ttl has passed: the finished folder is still cached.
        jobs = {d.job_id for d in data.batch_documents(data.batches[-1]["id"])}
        self.assertEqual(len(self.asked(jobs)), 10)
        self.assertEqual(len(os.listdir(finished)), 10)
        for name in os.listdir(finished):
            read(os.path.join(finished, name))
        self.assertEqual(len(self.asked(jobs)), 10)


# --------------------------------------------------------------------------
# Requests.
# --------------------------------------------------------------------------

OUT_ARGS = ("--jobs", "0", "--batches", "0", "--output-batch", "30", "--output-job", "40",
            "--large-kb", "256")
OUT_DATA = apidouble.make_dataset(jobs=0, batches=0, output_batch=30, output_job=40,
                                  large_kb=256)
OUT_BATCH = OUT_DATA.batches[-1]
OUT_JOB = OUT_DATA.jobs[-1]
assert OUT_BATCH["id"].startswith("bat-out-") and OUT_JOB["id"].startswith("bjb-out-")


class Requests(Checks, harness.MountTestCase):
    """What listing and reading cost, counted by the double and the mount."""
    DOUBLE_ARGS = OUT_ARGS + ("--latency-ms", "20", "--verbose")
    MOUNT_OPTIONS = ("cache_ttl=300", "max_connections=4")

    def by_endpoint(self):
        return self.double.stats()["by_endpoint"]

    def folder(self, *parts):
        return os.fsencode(self.path(*parts))

    def test_1_v2_listing_one_request_per_document(self):
        os.listdir(self.path("batches"))
        self.double.reset()
        markdown = self.folder("batches", OUT_BATCH["id"], "markdown")
        files = v2_files(OUT_DATA, OUT_BATCH["id"], "markdown_full")
        self.assertEqual(len(files), 30)
        self.assertEqual(sorted(os.listdir(markdown)), sorted(files))
        stats = self.double.stats()
        by = stats["by_endpoint"]
        self.assertEqual(by["parse_v2"], 30)
        self.assertEqual(by["directory_files"], 1)  # 33 files: one page
        self.assertLessEqual(by["get_batch"], 1)
        self.assertEqual(stats["requests"], by["parse_v2"] + by["directory_files"]
                         + by["get_batch"])
        # In parallel, never more than max_connections at once.
        self.assertLessEqual(stats["in_flight_max"], 4)
        self.assertGreaterEqual(stats["in_flight_max"], 2)
        self.assert_one_request_per_job("markdown_full")
        mine = mount_stats(self.root)["requests"]["by_endpoint"]
        self.assertEqual(sum(mine["get_parse"].values()), 30)
        self.assertEqual(sum(mine["list_directory_files"].values()), 1)
        # Reading, and grepping twice, costs nothing more.
        self.assert_exact(markdown, files, mtime=lambda d: d.updated_at)
        for _ in range(2):
            run("grep", "-rl", PHRASE, markdown, check=False)
            run("tar", "-cf", "/dev/null", "-C", markdown, ".")
        self.assertEqual(self.double.stats()["requests"], stats["requests"])
        # text/: its own request per document, the directory is known.
        text = self.folder("batches", OUT_BATCH["id"], "text")
        self.assert_exact(text, v2_files(OUT_DATA, OUT_BATCH["id"], "text_full"),
                          mtime=lambda d: d.updated_at)
        by = self.by_endpoint()
        self.assertEqual(by["parse_v2"], 60)
        self.assertEqual(by["directory_files"], 1)
        self.assert_one_request_per_job("text_full")

    def assert_one_request_per_job(self, expand):
        """Each job of the batch asked for once, with `expand`."""
        jobs = []
        for path in self.double.requested():
            url = urllib.parse.urlsplit(path)
            if not url.path.startswith("/api/v2/parse/"):
                continue
            query = urllib.parse.parse_qs(url.query)
            if expand in ",".join(query.get("expand", [])).split(","):
                jobs.append(url.path.split("/")[-1])
        self.assertEqual(sorted(jobs),
                         sorted(d.job_id for d in OUT_DATA.batch_documents(OUT_BATCH["id"])))

    def test_2_v1_listing_costs_no_request_per_document(self):
        self.double.reset()
        folder = self.folder("jobs", OUT_JOB["id"], "markdown")
        files = v1_files(OUT_DATA, OUT_JOB["id"], b".md")
        self.assertEqual(len(files), 40)
        out = run("ls", "-1", folder, env=dict(os.environ, LC_ALL="C")).stdout
        self.assertEqual(out.split(b"\n")[:-1], sorted(files))
        by = self.by_endpoint()
        for endpoint in ("parse_v1_markdown", "parse_v1_text", "parse_v1_job", "parse_v2"):
            self.assertEqual(by[endpoint], 0, endpoint)
        self.assertGreaterEqual(by["list_items"], 1)
        listing = self.double.stats()["requests"]
        # A walk in folder order: one request per document, no more.
        self.double.reset()
        for name in sorted(files):
            self.assertTrue(read(os.path.join(folder, name)) == files[name][1], name)
        stats = self.double.stats()
        self.assertEqual(stats["by_endpoint"]["parse_v1_markdown"], 40)
        self.assertEqual(stats["requests"], 40)
        # Fetched ahead in parallel, never more than max_connections at once.
        self.assertLessEqual(stats["in_flight_max"], 4)
        self.assertGreaterEqual(stats["in_flight_max"], 2)
        mine = mount_stats(self.root)
        self.assertEqual(sum(mine["requests"]["by_endpoint"]["get_parse_result"].values()), 40)
        self.assertGreater(mine["fetching"]["prefetched"], 0)  # a walk was seen
        # Read again: cached.
        self.double.reset()
        run("grep", "-rl", PHRASE, folder, check=False)
        run("cat", *[os.path.join(folder, n) for n in sorted(files)])
        self.assertEqual(self.double.stats()["requests"], 0)
        self.assertGreater(listing, 0)

    def test_3_v1_ls_l_fetches_and_sizes(self):
        """ls first (no content), then ls -l: sizes exact, one request each."""
        folder = self.folder("jobs", OUT_JOB["id"], "text")
        files = v1_files(OUT_DATA, OUT_JOB["id"], b".txt")
        run("ls", folder)
        self.double.reset()
        out = run("ls", "-l", "--time-style=+%s", folder,
                  env=dict(os.environ, LC_ALL="C")).stdout
        sizes = {}
        for line in out.split(b"\n")[1:]:
            if line:
                fields = line.split(None, 6)
                sizes[fields[6]] = int(fields[4])
        self.assertEqual(sizes, {n: len(v[1]) for n, v in files.items()})
        self.assertEqual(self.by_endpoint()["parse_v1_text"], 40)
        self.assertEqual(self.double.stats()["requests"], 40)
        for name, (_, want) in files.items():
            self.assertTrue(read(os.path.join(folder, name)) == want, name)
        self.assertEqual(self.double.stats()["requests"], 40)


# --------------------------------------------------------------------------
# Faults on the document endpoints.
# --------------------------------------------------------------------------

class Faults(Checks, harness.FreshMountTestCase):
    """Each test mounts afresh, arms a fault on the document requests, and
    gets the right bytes or the right errno."""
    DOUBLE_ARGS = OUT_ARGS
    CUT_SHORT = ("truncate", "reset_body", "chunked_cut", "empty_reply", "reset")

    def mounted(self, *options):
        return super().mounted(*(QUICK + options))

    def arm(self, path, **fault):
        fault["path"] = path
        self.double.faults([fault])

    def assert_spent(self):
        """Every fault armed was used up: the test saw what it arms."""
        for fault in self.double.control("faults"):
            self.assertEqual(fault["remaining"], 0, fault)

    def v2(self, folder="markdown"):
        return os.fsencode(os.path.join(self.mount.path, "batches", OUT_BATCH["id"], folder))

    def v1(self, folder="markdown"):
        return os.fsencode(os.path.join(self.mount.path, "jobs", OUT_JOB["id"], folder))

    def assert_v2_exact(self):
        self.assert_exact(self.v2(), v2_files(OUT_DATA, OUT_BATCH["id"], "markdown_full"))

    def assert_v1_exact(self):
        files = v1_files(OUT_DATA, OUT_JOB["id"], b".md")
        self.assert_exact(self.v1(), files)

    def large_v1(self):
        """(path, bytes) of the largest v1 document."""
        files = v1_files(OUT_DATA, OUT_JOB["id"], b".md")
        name = max(files, key=lambda n: len(files[n][1]))
        self.assertGreater(len(files[name][1]), 200 * 1024)
        return os.path.join(self.v1(), name), files[name][1]

    # ---- statuses -------------------------------------------------------------

    def test_429_then_success(self):
        self.mounted()
        self.double.faults([
            {"path": V2_DOCS, "kind": "status", "status": 429, "times": 2,
             "headers": {"retry-after-ms": "100"}},
            {"path": V1_DOCS, "kind": "status", "status": 429, "times": 2,
             "headers": {"retry-after-ms": "100"}}])
        self.assert_v2_exact()
        self.assert_v1_exact()
        self.assert_spent()
        self.assertEqual(self.double.stats()["by_status"].get("429"), 4)

    def test_503_then_success(self):
        self.mounted()
        self.double.faults([{"path": V2_DOCS, "kind": "status", "status": 503, "times": 2},
                            {"path": V1_DOCS, "kind": "status", "status": 503, "times": 2},
                            {"path": DIRECTORY, "kind": "status", "status": 503, "times": 2}])
        self.assert_v2_exact()
        self.assert_v1_exact()
        self.assert_spent()
        self.assertEqual(self.double.stats()["by_status"].get("503"), 6)

    def test_503_forever_is_eio_then_exact(self):
        """A document that cannot be fetched fails its folder's listing
        (never a short one) or its own lookup; nothing wrong is cached."""
        self.mounted()
        self.arm(V2_DOCS, kind="status", status=503)
        self.listing_fails(self.v2(), (errno.EIO,))
        self.arm(V1_DOCS, kind="status", status=503)
        path, _ = self.large_v1()
        self.assert_fails(lambda: os.stat(path), (errno.EIO,))
        self.double.faults([])
        self.assert_v2_exact()
        self.assert_v1_exact()

    def test_429_forever_is_eagain(self):
        self.mounted()
        self.arm(V2_DOCS, kind="status", status=429, headers={"retry-after-ms": "50"})
        self.listing_fails(self.v2(), (errno.EAGAIN,))
        self.arm(V1_DOCS, kind="status", status=429, headers={"retry-after-ms": "50"})
        path, _ = self.large_v1()
        self.assert_fails(lambda: os.stat(path), (errno.EAGAIN,))

    def test_one_document_failing_fails_the_listing(self):
        """Never a listing silently short of a document."""
        self.mounted()
        doc = OUT_DATA.batch_documents(OUT_BATCH["id"])[5]
        self.arm(r"^/api/v2/parse/%s$" % doc.job_id, kind="status", status=503)
        self.listing_fails(self.v2(), (errno.EIO,))
        self.double.faults([])
        self.assert_v2_exact()

    def test_hostile_bodies_are_eio_then_exact(self):
        """Malformed, not an object, without its job or content, or a
        redirect: EIO for the folder (v2) or the file (v1), never content."""
        self.mounted()
        path, _ = self.large_v1()
        for kind in ("malformed", "not_object", "missing_required", "redirect"):
            with self.subTest(kind=kind):
                self.arm(V2_DOCS, kind=kind)
                self.listing_fails(self.v2(), (errno.EIO,))
                self.arm(V1_DOCS, kind=kind)
                self.assert_fails(lambda: os.stat(path), (errno.EIO,))
        self.double.faults([])
        self.assert_v2_exact()
        self.assert_v1_exact()

    def test_gzip_bodies(self):
        """Compressed answers decode to the same bytes; a corrupt one is
        EIO; a bomb beyond max_response is EFBIG."""
        self.mounted("max_response=1M")
        path, _ = self.large_v1()
        self.double.control("config", {"gzip": True})
        try:
            self.arm(V2_DOCS, kind="bad_gzip")
            self.listing_fails(self.v2(), (errno.EIO,))
            self.arm(V1_DOCS, kind="gzip_bomb", size=64 << 20)
            self.assert_fails(lambda: os.stat(path), (errno.EFBIG,))
            self.double.faults([])
            self.assert_v2_exact()
            self.assert_v1_exact()
        finally:
            self.double.control("config", {"gzip": False})

    def test_directory_listing_fails_the_folder(self):
        self.mounted()
        self.arm(DIRECTORY, kind="status", status=503)
        self.listing_fails(self.v2(), (errno.EIO,))
        self.double.faults([])
        self.assert_v2_exact()

    def test_failed_refresh_keeps_the_folder(self):
        """stale_if_error: a folder whose refresh fails is still served,
        its documents exact."""
        self.mounted("cache_ttl=1", "terminal_ttl=1")
        self.assert_v2_exact()
        self.arm(V2_DOCS, kind="status", status=503)

        def refresh_failed():
            self.assertEqual(len(os.listdir(self.v2())), 30)
            return self.double.stats()["by_status"].get("503", 0) > 0
        harness.wait_until(refresh_failed, "a refresh of the folder answered 503")
        self.assert_v2_exact()

    def test_concurrent_readers_share_each_fetch(self):
        """Four readers walking a v1 folder at once, in different orders:
        still one request per document, and every reader gets exact bytes."""
        self.mounted()
        files = v1_files(OUT_DATA, OUT_JOB["id"], b".md")
        self.arm(V1_DOCS, kind="delay", ms=50)
        names = sorted(files)
        orders = [names, names[::-1], names[1::2] + names[::2], names[20:] + names[:20]]
        errors = []

        def walk(order):
            try:
                for name in order:
                    if read(os.path.join(self.v1(), name)) != files[name][1]:
                        errors.append(name)
            except OSError as err:
                errors.append(err)
        threads = [threading.Thread(target=walk, args=(order,)) for order in orders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertFalse(any(thread.is_alive() for thread in threads))
        self.assertEqual(errors, [])
        self.assertEqual(self.double.stats()["by_endpoint"]["parse_v1_markdown"], len(files))

    # ---- slow, stalled and cut short ------------------------------------------

    def test_latency(self):
        self.mounted()
        self.double.faults([{"path": V2_DOCS, "kind": "delay", "ms": 200},
                            {"path": V1_DOCS, "kind": "delay", "ms": 200}])
        self.assert_v2_exact()
        self.assert_v1_exact()

    def test_slow_body(self):
        self.mounted()
        self.double.faults([{"path": V2_DOCS, "kind": "slow_body", "chunk": 16384, "ms": 5},
                            {"path": V1_DOCS, "kind": "slow_body", "chunk": 16384, "ms": 5}])
        self.assert_v2_exact()
        self.assert_v1_exact()

    def test_cut_short_is_redone(self):
        for kind in self.CUT_SHORT:
            with self.subTest(kind=kind):
                self.mounted()
                self.double.faults([{"path": V2_DOCS, "kind": kind, "times": 2},
                                    {"path": V1_DOCS, "kind": kind, "times": 2}])
                self.assert_v2_exact()
                self.assert_v1_exact()
                self.assert_spent()

    def test_cut_short_forever_is_eio_never_wrong_bytes(self):
        self.mounted()
        for kind in self.CUT_SHORT:
            with self.subTest(kind=kind):
                self.arm(V2_DOCS, kind=kind)
                self.listing_fails(self.v2("text"), (errno.EIO,))
                self.arm(V1_DOCS, kind=kind)
                path, _ = self.large_v1()
                self.assert_fails(lambda: os.stat(path), (errno.EIO,))
        self.double.faults([])
        self.assert_exact(self.v2("text"), v2_files(OUT_DATA, OUT_BATCH["id"], "text_full"))
        self.assert_v1_exact()

    def test_truncated_large_document_then_retry(self):
        """retries=2: three truncated answers are EIO; the next try (the
        fault spent) gives the right bytes."""
        self.mounted()
        path, want = self.large_v1()
        self.arm(V1_DOCS, kind="truncate", times=3)
        self.assert_fails(lambda: read(path), (errno.EIO,))
        self.assert_spent()
        self.assertEqual(os.stat(path).st_size, len(want))
        self.assertTrue(read(path) == want)

    def test_stall_once_then_success(self):
        self.mounted()
        self.double.faults([{"path": V2_DOCS, "kind": "stall", "ms": 30000, "times": 1},
                            {"path": V1_DOCS, "kind": "stall", "ms": 30000, "times": 1}])
        start = time.monotonic()
        self.assert_v2_exact()
        self.assert_v1_exact()
        self.assert_spent()
        self.assertLess(time.monotonic() - start, 20)

    def test_stall_forever_times_out(self):
        self.mounted()
        self.arm(V2_DOCS, kind="stall", ms=30000)
        self.listing_fails(self.v2(), (errno.ETIMEDOUT,))
        path, _ = self.large_v1()
        self.arm(V1_DOCS, kind="stall", ms=30000, after=1000)
        self.assert_fails(lambda: os.stat(path), (errno.ETIMEDOUT,))
        self.double.faults([])
        self.double.control("release", {})
        self.assert_v1_exact()

    def test_over_max_response_is_efbig(self):
        self.mounted("max_response=128K")
        path, _ = self.large_v1()
        self.assert_fails(lambda: os.stat(path), (errno.EFBIG,))
        files = v1_files(OUT_DATA, OUT_JOB["id"], b".md")
        for name, (_, want) in files.items():
            if len(want) < 64 * 1024:
                self.assertTrue(read(os.path.join(self.v1(), name)) == want, name)
        self.listing_fails(self.v2(), (errno.EFBIG, errno.EIO))


# --------------------------------------------------------------------------
# Documents larger than the cache.
# --------------------------------------------------------------------------

BIG_ARGS = ("--jobs", "0", "--batches", "0", "--output-batch", "20", "--output-job", "20",
            "--large-kb", "3072")
BIG_DATA = apidouble.make_dataset(jobs=0, batches=0, output_batch=20, output_job=20,
                                  large_kb=3072)


class SmallCache(Checks, harness.MountTestCase):
    """cache_size=2M with documents of 3 MB: still byte-exact."""
    DOUBLE_ARGS = BIG_ARGS + ("--verbose",)
    MOUNT_OPTIONS = ("cache_size=2M", "cache_ttl=300")

    def asked(self, job):
        return sum(1 for path in self.double.requested() if job in path)

    def folders(self):
        batch, job = BIG_DATA.batches[-1]["id"], BIG_DATA.jobs[-1]["id"]
        return (
            (os.fsencode(self.path("batches", batch, "markdown")),
             v2_files(BIG_DATA, batch, "markdown_full")),
            (os.fsencode(self.path("batches", batch, "text")),
             v2_files(BIG_DATA, batch, "text_full")),
            (os.fsencode(self.path("jobs", job, "markdown")),
             v1_files(BIG_DATA, job, b".md")),
            (os.fsencode(self.path("jobs", job, "text")), v1_files(BIG_DATA, job, b".txt")),
        )

    def test_large_documents_exact_twice(self):
        for folder, files in self.folders():
            with self.subTest(folder=folder):
                self.assertGreater(max(len(v[1]) for v in files.values()), 2 << 20)
                for _ in range(2):
                    self.assert_exact(folder, files)
                    # The budget holds though a document is larger.
                    self.assertLessEqual(mount_stats(self.root)["cache"]["bytes"], 2 << 20)

    def test_document_larger_than_the_cache_is_fetched_again(self):
        """Once other documents were read after it, the largest document is
        no longer kept (doc/design.md: kept only while among the most
        recently read): read again, it is fetched again, still exact. The
        kernel's copies are dropped first, so that every read reaches
        batchfs."""
        for folder, files in self.folders():
            name = max(files, key=lambda n: len(files[n][1]))
            path, want = os.path.join(folder, name), files[name][1]
            job = files[name][0].job_id
            with self.subTest(folder=folder):
                drop_kernel_copy(path)
                self.assertTrue(read(path) == want)
                asked = self.asked(job)
                for other in sorted(set(files) - {name}):
                    drop_kernel_copy(os.path.join(folder, other))
                    self.assertTrue(read(os.path.join(folder, other)) == files[other][1])
                drop_kernel_copy(path)
                self.assertTrue(read(path) == want)
                # Asked for again (when read, or ahead of the reads).
                self.assertGreater(self.asked(job), asked)

    def test_reads_at_any_offset(self):
        for folder, files in self.folders():
            name = max(files, key=lambda n: len(files[n][1]))
            want = files[name][1]
            with self.subTest(folder=folder):
                fd = os.open(os.path.join(folder, name), os.O_RDONLY)
                try:
                    for offset in (len(want) - 1000, len(want) // 2, 0, len(want) - 1,
                                   len(want), len(want) // 3):
                        self.assertEqual(os.pread(fd, 65536, offset),
                                         want[offset:offset + 65536], offset)
                finally:
                    os.close(fd)

    def test_tar_cp_wc_of_folders_larger_than_the_cache(self):
        for folder, files in self.folders():
            with self.subTest(folder=folder):
                self.assert_tar_round_trip(folder, files)
                with tempfile.TemporaryDirectory() as tmp:
                    copy = os.path.join(os.fsencode(tmp), b"copy")
                    run("cp", "-r", folder, copy)
                    self.assertEqual(sorted(os.listdir(copy)), sorted(files))
                    for name, (_, want) in files.items():
                        self.assertTrue(read(os.path.join(copy, name)) == want, name)
                res = run("wc", "-c", "--", *sorted(files), cwd=folder)
                total = res.stdout.split(b"\n")[-2].split()[0]
                self.assertEqual(int(total), sum(len(v[1]) for v in files.values()))



class ChangedDocument(Checks, harness.FreshMountTestCase):
    """A document dropped for the budget that comes back other than it was
    (doc/design.md's failure table): ESTALE, never the changed bytes under
    the size first given, one warning; the folder is listed again, and the
    file is then the server's document as it is now."""
    DOUBLE_ARGS = BIG_ARGS

    def check(self, folder, files, path_of):
        self.mounted("cache_size=2M", "cache_ttl=300")
        folder = os.fsencode(os.path.join(self.mount.path, folder))
        name = max(files, key=lambda n: len(files[n][1]))
        path, (doc, want) = os.path.join(folder, name), files[name]
        self.assert_file(path, want)
        # The server's copy changes (same length, first byte); armed before
        # the other reads, so that a read ahead gets the change too.
        self.double.faults([{"kind": "content_revision", "value": "~",
                             "path": path_of(doc)}])
        changed = b"~" + want[1:]
        for other in sorted(set(files) - {name}):
            self.assertTrue(read(os.path.join(folder, other)) == files[other][1])
        drop_kernel_copy(path)
        self.assert_fails(lambda: read(path), (errno.ESTALE,))
        self.assertEqual(mount_stats(self.mount.path)["cache"]["pages"]["changed"], 1)
        harness.wait_until(lambda: any(" warning: " in line and doc.job_id in line
                                       for line in self.mount.stderr().split("\n")),
                           "the warning about the changed document")

        def servers_copy():
            self.assertIn(name, os.listdir(folder))
            try:
                size = os.stat(path).st_size
                data = read(path)
            except OSError as err:
                self.assertEqual(err.errno, errno.ESTALE)
                return False
            self.assertEqual(size, len(data))
            self.assertTrue(data == changed, "neither ESTALE nor the server's copy")
            return True
        harness.wait_until(servers_copy, "the changed document read as the server has it")
        for other in sorted(set(files) - {name}):
            self.assertTrue(read(os.path.join(folder, other)) == files[other][1])

    def test_v1_document_changed(self):
        job = BIG_DATA.jobs[-1]["id"]
        self.check(os.path.join("jobs", job, "markdown"), v1_files(BIG_DATA, job, b".md"),
                   lambda doc: r"^/api/v1/parsing/job/%s/result/" % doc.job_id)

    def test_v2_document_changed(self):
        batch = BIG_DATA.batches[-1]["id"]
        self.check(os.path.join("batches", batch, "text"), v2_files(BIG_DATA, batch, "text_full"),
                   lambda doc: r"^/api/v2/parse/%s$" % doc.job_id)


# --------------------------------------------------------------------------
# A parse job whose folders are larger than the whole cache.
# --------------------------------------------------------------------------

WIDE_ITEMS = 12000
WIDE_ARGS = ("--jobs", "0", "--batches", "0", "--big-job", str(WIDE_ITEMS),
             "--big-job-type", "parse")
WIDE_DATA = apidouble.make_dataset(jobs=0, batches=0, big_job=WIDE_ITEMS,
                                   big_job_type="parse")
WIDE_JOB = WIDE_DATA.jobs[-1]["id"]


class FolderLargerThanTheCache(Checks, harness.FreshMountTestCase):
    """Under cache_size=1M, markdown/ of a job of 12,000 items: its listing
    (and completed/'s) is larger than the whole budget. Reading its
    documents one by one must not list the folder again for each (every
    lookup needs the folder; each document read pushed it out of the
    cache; a document found gone had it listed again), and a page of
    completed/ that cannot be fetched again fails the folder rather than
    leaving its documents out."""
    DOUBLE_ARGS = WIDE_ARGS

    def folder(self, name):
        return os.fsencode(os.path.join(self.mount.path, "jobs", WIDE_JOB, name))

    def test_documents_read_one_by_one_list_nothing_again(self):
        self.mounted("cache_size=1M", "cache_ttl=300")
        folder = self.folder("markdown")
        files = v1_files(WIDE_DATA, WIDE_JOB, b".md")
        self.assertGreater(len(files), 10000)
        self.assertEqual(sorted(os.listdir(folder)), sorted(files))
        self.assertGreater(mount_stats(self.mount.path)["cache"]["pages"]["dropped"], 0)
        self.double.reset()
        # Up to the second expired document: a document found gone must
        # not have the folder listed again either.
        names = sorted(files)
        gone = [n for n in names if files[n][1] is None][:2]
        self.assertEqual(len(gone), 2)
        for name in names[:names.index(gone[1]) + 1]:
            if files[name][1] is None:
                with self.assertRaises(FileNotFoundError):
                    read(os.path.join(folder, name))
            else:
                self.assert_file(os.path.join(folder, name), files[name][1])
        by = self.double.stats()["by_endpoint"]
        self.assertEqual(by["list_items"], 0)
        # About one request a document: with the budget spent, a walk reads
        # one document ahead, not eight that would be dropped before they
        # are read (two requests a document). One read ahead may still be
        # dropped when it arrives before the document before it is read.
        walked = names.index(gone[1]) + 1
        self.assertGreaterEqual(by["parse_v1_markdown"], walked)
        self.assertLessEqual(by["parse_v1_markdown"], walked * 3 // 2, by)
        # ...and it is listed without them from then on.
        self.assertEqual(sorted(os.listdir(folder)), sorted(set(names) - set(gone)))
        self.assertEqual(self.double.stats()["by_endpoint"]["list_items"], 0)

    def test_page_not_had_again_fails_the_folder(self):
        self.mounted("cache_size=1M", "cache_ttl=300", "retries=1", "timeout=5")
        files = v1_files(WIDE_DATA, WIDE_JOB, b".md")
        self.assertEqual(len(os.listdir(self.folder("completed"))), len(files))
        self.assertGreater(mount_stats(self.mount.path)["cache"]["pages"]["dropped"], 0)
        self.double.faults([{"kind": "status", "status": 500,
                             "path": r"^/api/v1/beta/batch-processing/[^/]+/items$"}])
        # In a process of its own: a folder that skipped each item it could
        # not read would retry page after page for hours, not fail.
        res = run("ls", "-f", self.folder("markdown"), check=False, timeout=60)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn(b"Input/output error", res.stderr)
        self.assertGreater(self.double.stats()["by_endpoint"]["list_items"], 0)
        self.double.faults([])
        self.assertEqual(sorted(os.listdir(self.folder("markdown"))), sorted(files))


if __name__ == "__main__":
    unittest.main(verbosity=2)
