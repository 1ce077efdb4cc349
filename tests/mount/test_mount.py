"""The core filesystem, mounted against the API double, seen through real tools.

Checks that every job, item, batch and result is there exactly once, in the
right folder, with byte-exact content and exact attributes, under each
pagination dialect and under a cache smaller than one folder (where a folder
evicted while open is found again, not fetched again, and a finished job's
pages are dropped and fetched again by offset); that a wrong key fails
the mount; that junk names cost no request; that a second walk within the
cache lifetime costs no request; that a folder its job counts at more than a
page has its first pages asked for together; that every write fails
with EROFS; that allow_other, and only it, brings default_permissions; and
that libfuse's own errors come out as batchfs's log lines.
"""
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import apidouble, run  # noqa: E402

STATUSES = ["pending", "processing", "completed", "failed", "skipped", "cancelled"]
MTIME_KEYS = ["completed_at", "updated_at", "started_at", "effective_at", "created_at"]


def expected_mtime(obj):
    import datetime
    for key in MTIME_KEYS:
        value = obj.get(key)
        if isinstance(value, str):
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


class LayoutChecks:
    """Checks shared by every dialect: the whole tree against the data set."""
    SIZES = dict(seed=1, jobs=6, items=300, batches=4, results=50)

    @classmethod
    def dataset(cls):
        if not hasattr(cls, "_dataset"):
            cls._dataset = apidouble.make_dataset(**cls.SIZES)
        return cls._dataset

    def test_root(self):
        self.assertEqual(sorted(os.listdir(self.root)),
                         [".batchfs", "batches", "by-status", "by-type", "jobs"])
        self.assertEqual(run("ls", self.root, text=True).stdout.split(),
                         ["batches", "by-status", "by-type", "jobs"])

    def test_jobs_listed_once(self):
        ids = [job["id"] for job in self.dataset().jobs]
        out = run("ls", "-1", self.path("jobs"), text=True).stdout.split()
        self.assertEqual(sorted(out), sorted(ids))

    def test_job_folders(self):
        for job in self.dataset().jobs:
            names = sorted(os.listdir(self.path("jobs", job["id"])))
            # Parse jobs show what their documents became too.
            content = ["markdown", "text"] if job["job_type"] == "parse" else []
            self.assertEqual(names, sorted(STATUSES + content + [
                "job.json", "items.ndjson", "errors.tsv", "progress"]))

    def test_job_json_exact(self):
        for job in self.dataset().jobs:
            with open(self.path("jobs", job["id"], "job.json"), "rb") as f:
                self.assertEqual(f.read().decode(), apidouble.render(job))

    def test_job_json_sizes_after_listing(self):
        # A job's size is measured when it is first asked for, not when
        # jobs/ is listed: whichever asks first (stat, ls -l of its folder,
        # a stat through by-type/), the size is the number of bytes read.
        run("ls", "-f", self.path("jobs"))
        for n, job in enumerate(self.dataset().jobs):
            want = apidouble.render(job).encode()
            path = self.path("jobs", job["id"], "job.json")
            if n % 3 == 0:
                size = os.stat(path).st_size
            elif n % 3 == 1:
                listed = run("ls", "-ln", self.path("jobs", job["id"]), text=True).stdout
                size = int(next(line.split()[4] for line in listed.splitlines()
                                if line.endswith(" job.json")))
            else:
                size = os.stat(self.path("by-type", job["job_type"], job["id"],
                                         "job.json")).st_size
            self.assertEqual(size, len(want), job["id"])
            self.assertEqual(run("cat", path).stdout, want)
            self.assertEqual(os.stat(path).st_size, len(want))
            self.assertEqual(run("wc", "-c", path, text=True).stdout.split()[0],
                             str(len(want)))

    def test_every_item_once_in_right_folder_exact(self):
        data = self.dataset()
        for job in data.jobs:
            expected = {item["item_id"]: item for item in data.items[job["id"]]}
            seen = set()
            for status in STATUSES:
                folder = self.path("jobs", job["id"], status)
                for name in os.listdir(folder):
                    self.assertTrue(name.endswith(".json"), name)
                    self.assertLessEqual(len(name.encode()), 255)
                    self.assertNotIn(name, (".", ".."))
                    self.assertFalse(any(ord(c) < 32 or c == "\x7f" for c in name), repr(name))
                    with open(os.path.join(folder, name), "rb") as f:
                        content = f.read().decode()
                    item = json.loads(content)
                    self.assertEqual(item["status"], status)
                    self.assertNotIn(item["item_id"], seen)
                    seen.add(item["item_id"])
                    self.assertEqual(content, apidouble.render(expected[item["item_id"]]))
            self.assertEqual(seen, set(expected), job["id"])

    def test_items_listed_in_api_order(self):
        """readdir gives a folder's items in the API's order, the order of
        their pages, so that a tool reading them one after another (grep
        -r, tar, find -exec) takes the pages one after another too."""
        data = self.dataset()
        for job in data.jobs:
            for status in STATUSES:
                folder = self.path("jobs", job["id"], status)
                listed = []
                for name in os.listdir(folder):
                    with open(os.path.join(folder, name), "rb") as f:
                        listed.append(json.loads(f.read())["item_id"])
                shown = set(listed)
                api_order = [i["item_id"] for i in data.items[job["id"]]
                             if i.get("status") == status and i.get("item_id") in shown]
                self.assertEqual(listed, list(dict.fromkeys(api_order)),
                                 (job["id"], status))

    def test_ordinary_names_recognisable(self):
        data = self.dataset()
        checked = 0
        for job in data.jobs:
            for item in data.items[job["id"]]:
                name = item["item_name"]
                if (isinstance(name, str) and name.isascii() and name.isprintable()
                        and "/" not in name and name not in ("", ".", "..")
                        and len(name) < 200):
                    same = [i for i in data.items[job["id"]]
                            if i["status"] == item["status"] and i["item_name"] == name]
                    if len(same) == 1:
                        path = self.path("jobs", job["id"], item["status"], name + ".json")
                        self.assertTrue(os.path.isfile(path), path)
                        checked += 1
        self.assertGreater(checked, 100)

    def test_stat_attributes(self):
        data = self.dataset()
        job = next(j for j in data.jobs if data.items[j["id"]])
        st = os.stat(self.path("jobs", job["id"]))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o555)
        self.assertTrue(stat.S_ISDIR(st.st_mode))
        self.assertEqual(st.st_uid, os.getuid())
        # Folders ask for 1 MiB getdents buffers (glibc sizes them by this).
        self.assertEqual(st.st_blksize, 1 << 20)
        item = data.items[job["id"]][0]
        folder = self.path("jobs", job["id"], item["status"])
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                obj = json.loads(f.read())
            if obj["item_id"] != item["item_id"]:
                continue
            st = os.stat(path)
            self.assertTrue(stat.S_ISREG(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o444)
            self.assertEqual(st.st_blksize, 4096)
            self.assertEqual(st.st_size, len(apidouble.render(item).encode()))
            self.assertEqual(st.st_uid, os.getuid())
            want = expected_mtime(item)
            if want is not None:
                self.assertAlmostEqual(st.st_mtime, want, delta=0.001)
            # stat(1) agrees with os.stat
            out = run("stat", "-c", "%s %a", path, text=True).stdout.split()
            self.assertEqual(out, [str(st.st_size), "444"])
            break
        else:
            self.fail("item file not found")

    def test_grep_finds_failed_items(self):
        data = self.dataset()
        for job in data.jobs:
            want = sorted(i["item_id"] for i in data.items[job["id"]]
                          if i["status"] == "failed" and "Timeout" in (i.get("error_message") or ""))
            folder = self.path("jobs", job["id"], "failed")
            res = run("grep", "-rlZ", "Timeout", folder, check=False)
            self.assertIn(res.returncode, (0, 1))
            files = [p for p in res.stdout.split(b"\0") if p]
            got = []
            for p in files:
                with open(p, "rb") as f:
                    got.append(json.loads(f.read())["item_id"])
            got.sort()
            self.assertEqual(got, want)

    def test_jq_reads_error_messages(self):
        data = self.dataset()
        job = max(data.jobs, key=lambda j: sum(i["status"] == "failed" for i in data.items[j["id"]]))
        folder = self.path("jobs", job["id"], "failed")
        files = sorted(os.path.join(folder, n) for n in os.listdir(folder))
        self.assertTrue(files)
        out = run("jq", "-c", "[.item_id, .error_message]", *files).stdout
        got = sorted(json.loads(line)[0] for line in out.decode().splitlines())
        want = sorted(i["item_id"] for i in data.items[job["id"]] if i["status"] == "failed")
        self.assertEqual(got, want)

    def test_find_counts_every_file(self):
        data = self.dataset()
        want = len(data.jobs) + sum(len(v) for v in data.items.values())
        out = run("find", self.path("jobs"), "-type", "f", "-name", "*.json", "-print0").stdout
        self.assertEqual(len([p for p in out.split(b"\0") if p]), want)

    def test_tar_archives_a_job(self):
        data = self.dataset()
        job = max(data.jobs, key=lambda j: len(data.items[j["id"]]))
        docs = [d for d in data.job_documents(job["id"])
                if d.status in ("SUCCESS", "PARTIAL_SUCCESS", None)]  # the completed items
        expired = [d for d in docs if d.status is None]
        res = subprocess.run("tar -C %s -cf - %s | tar -tf -" % (
            self.path("jobs"), job["id"]), shell=True, capture_output=True, check=True)
        files = [l for l in res.stdout.split(b"\n") if l and not l.endswith(b"/")]
        # job.json, items.ndjson, errors.tsv, progress, the items, and for a
        # parse job each document whose results are there, as .md and .txt
        self.assertEqual(len(files),
                         4 + len(data.items[job["id"]]) + 2 * (len(docs) - len(expired)))
        self.assertNotIn(b"file changed as we read it", res.stderr)
        # A document whose results expired is listed (that costs no request)
        # but gone when read: tar says so, for those and nothing else.
        gone = [l for l in res.stderr.split(b"\n") if l]
        self.assertEqual(len(gone), 2 * len(expired), res.stderr)
        for line in gone:
            self.assertIn(b"File removed before we read it", line)

    def test_batches(self):
        data = self.dataset()
        self.assertEqual(sorted(os.listdir(self.path("batches"))),
                         sorted(b["id"] for b in data.batches))
        for batch in data.batches:
            base = self.path("batches", batch["id"])
            kind = batch["config"]["job"]["type"]
            content = {"parse_v2": ["markdown", "text"],
                       "extract_v2": ["extracted", "extracted.ndjson"]}.get(kind, [])
            self.assertEqual(sorted(os.listdir(base)), sorted(
                ["batch.json", "errors.tsv", "results", "results.ndjson"] + content))
            with open(os.path.join(base, "batch.json")) as f:
                self.assertEqual(f.read(), apidouble.render(harness.expected_batch(data, batch)))
            results = data.results[batch["id"]] or []
            names = sorted(os.listdir(os.path.join(base, "results")))
            self.assertEqual(names, sorted(r["source_directory_file_id"] + ".json" for r in results))
            for r in results:
                with open(os.path.join(base, "results", r["source_directory_file_id"] + ".json")) as f:
                    self.assertEqual(f.read(), apidouble.render(r))


class DialectBoth(LayoutChecks, harness.MountTestCase):
    DOUBLE_ARGS = ("--dialect", "both")


class DialectToken(LayoutChecks, harness.MountTestCase):
    DOUBLE_ARGS = ("--dialect", "token")


class DialectTotal(LayoutChecks, harness.MountTestCase):
    DOUBLE_ARGS = ("--dialect", "total")


class DialectCappedMultiPage(LayoutChecks, harness.MountTestCase):
    """Pages capped well below the limit asked for: many short pages."""
    SIZES = dict(seed=3, jobs=4, items=1500, batches=3, results=20)
    DOUBLE_ARGS = ("--dialect", "capped", "--page-cap", "97", "--seed", "3", "--jobs", "4",
                   "--items", "1500", "--batches", "3", "--results", "20")


class Behaviour(harness.MountTestCase):
    """Caching, junk names, read-only-ness."""
    MOUNT_OPTIONS = ("cache_ttl=300",)

    def test_junk_names_cost_no_request(self):
        os.listdir(self.path("jobs"))
        before = self.double.requests()
        for name in (".git", "HEAD", "foo?x=1", "..%2f", "a b", "x" * 200, "node_modules",
                     "bjb-../x"):
            for top in ("jobs", "batches"):
                with self.assertRaises(OSError) as cm:
                    os.stat(self.path(top, name))
                self.assertIn(cm.exception.errno, (errno.ENOENT, errno.ENAMETOOLONG))
        self.assertEqual(self.double.requests(), before)

    def test_second_walk_costs_no_request(self):
        # The first walk finds the documents of parse jobs whose results
        # expired gone (listed, then ENOENT: see test_tar_archives_a_job);
        # the folders are listed without them from then on.
        first = run("find", self.root, "-type", "f", "-exec", "cat", "{}", "+", check=False)
        errors = [l for l in first.stderr.split(b"\n") if l]
        self.assertTrue(all(b"No such file or directory" in l for l in errors), errors)
        before = self.double.requests()
        first = run("find", self.root, "-type", "f", "-exec", "cat", "{}", "+").stdout
        run("ls", "-lR", self.root)
        self.assertEqual(self.double.requests(), before)
        self.assertTrue(first)

    def test_unknown_job_is_enoent(self):
        with self.assertRaises(FileNotFoundError):
            os.stat(self.path("jobs", "bjb-00000000-0000-0000-0000-000000000000"))
        with self.assertRaises(FileNotFoundError):
            os.stat(self.path("batches", "bat-00000000-0000-0000-0000-000000000000"))

    def test_writes_fail_with_erofs(self):
        job = os.listdir(self.path("jobs"))[0]
        target = self.path("jobs", job, "job.json")
        attempts = [
            lambda: open(target, "w"),
            lambda: open(self.path("jobs", job, "new.json"), "w"),
            lambda: os.mkdir(self.path("jobs", job, "d")),
            lambda: os.unlink(target),
            lambda: os.rmdir(self.path("jobs", job, "failed")),
            lambda: os.rename(target, self.path("jobs", job, "x.json")),
            lambda: os.chmod(target, 0o644),
            lambda: os.truncate(target, 0),
            lambda: os.symlink("x", self.path("jobs", job, "link")),
        ]
        for attempt in attempts:
            with self.assertRaises(OSError) as cm:
                attempt()
            self.assertEqual(cm.exception.errno, errno.EROFS)

    def test_directory_read_is_eisdir(self):
        with self.assertRaises(IsADirectoryError):
            open(self.path("jobs"), "rb").read()


class SmallCache(LayoutChecks, harness.MountTestCase):
    """A cache smaller than the folders together (each smaller than the
    cap, so none is kept beyond it): the tree stays exact while listings
    are evicted and fetched again."""
    SIZES = dict(seed=5, jobs=3, items=4000, big_job=6000, batches=2, results=10)
    DOUBLE_ARGS = ("--seed", "5", "--jobs", "3", "--items", "4000", "--big-job", "6000",
                   "--batches", "2", "--results", "10")
    MOUNT_OPTIONS = ("cache_size=1M", "cache_ttl=300")

    def test_evictions_happened(self):
        for job in self.dataset().jobs:
            run("cat", self.path("jobs", job["id"], "items.ndjson"))
        with open(self.path(".batchfs", "stats")) as f:
            self.assertGreater(json.load(f)["cache"]["evictions"], 0)


class SmallCacheFolderInUse(harness.MountTestCase):
    """A folder evicted while open is found again, not fetched again; one
    bigger than the whole cache is kept beside it while it is the latest."""
    # Each job's completed/ holds about 1.3 MiB of entries (about 95 bytes
    # an item): more than the cap alone.
    DOUBLE_ARGS = ("--seed", "5", "--jobs", "1", "--items", "16000", "--big-job", "16000",
                   "--batches", "0")
    MOUNT_OPTIONS = ("cache_size=1M", "cache_ttl=300")
    DATA = apidouble.make_dataset(seed=5, jobs=1, items=16000, big_job=16000, batches=0)

    def cache(self):
        with open(self.path(".batchfs", "stats")) as f:
            return json.load(f)["cache"]

    def listed(self):
        return self.double.stats()["by_endpoint"]["list_items"]

    def test_open_folder_not_fetched_again(self):
        data = self.DATA
        job, other = data.jobs[-1]["id"], data.jobs[0]["id"]
        completed = self.path("jobs", job, "completed")
        fd = os.open(completed, os.O_RDONLY | os.O_DIRECTORY)
        try:
            names = sorted(os.listdir(fd))
            self.assertGreater(len(names), 10000)
            # Listing a small folder leaves it cached: it is spared.
            os.listdir(self.path("jobs", job, "failed"))
            before, reused = self.listed(), self.cache()["reused"]
            self.assertEqual(len(os.listdir(completed)), len(names))
            self.assertEqual(self.listed(), before)
            self.assertEqual(self.cache()["reused"], reused)
            # Another folder bigger than the cap evicts it; the open folder
            # still holds it.
            self.assertGreater(len(os.listdir(self.path("jobs", other, "completed"))), 10000)
            before, reused = self.listed(), self.cache()["reused"]
            with open(os.path.join(completed, names[-1]), "rb") as f:
                item = json.loads(f.read())
            # The listing is not fetched again; the file's page may be (the
            # job is finished, so its pages are kept within the cache too).
            self.assertLessEqual(self.listed(), before + 1)
            self.assertEqual(self.cache()["reused"], reused + 1)
            self.assertIn(item["item_id"],
                          {i["item_id"] for i in data.items[job] if i["status"] == "completed"})
        finally:
            os.close(fd)


class FinishedJobSmallCache(harness.MountTestCase):
    """A finished job's folder under a cache far smaller than its pages: the
    pages are dropped and fetched again, by the offset that first fetched
    them, when their files are read; a walk in readdir order fetches each
    page about once more, and every file stays byte for byte exact. A page
    that comes back other than it was fails its files with ESTALE and has
    the folder listed again; one that cannot be fetched fails them with the
    request's error."""
    BIG = 6000
    DOUBLE_ARGS = ("--seed", "7", "--jobs", "1", "--items", "10", "--big-job", str(BIG),
                   "--batches", "0")
    # Room for the listings (completed/ holds about 1 MiB of entries), not
    # for the pages (2.3 MiB).
    MOUNT_OPTIONS = ("cache_size=1536K", "cache_ttl=300", "retries=0")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = apidouble.make_dataset(seed=7, jobs=1, items=10, big_job=cls.BIG,
                                          batches=0)
        cls.job = cls.data.jobs[-1]["id"]
        cls.expected = {i["item_id"]: i for i in cls.data.items[cls.job]
                        if i["status"] == "completed"}

    def setUp(self):
        self.double.faults([])
        self.folder = self.path("jobs", self.job, "completed")

    def pages_stats(self):
        with open(self.path(".batchfs", "stats")) as f:
            return json.load(f)["cache"]["pages"]

    def list_items(self):
        return self.double.stats()["by_endpoint"]["list_items"]

    def test_3_walk_exact_each_page_fetched_again_once(self):
        self.assertEqual(self.data.jobs[-1]["status"], "completed")
        before, was = self.list_items(), self.pages_stats()
        names = os.listdir(self.folder)
        pages = -(-len(self.expected) // 1000)
        self.assertGreater(pages, 3)
        for name in names:
            with open(os.path.join(self.folder, name), "rb") as f:
                content = f.read().decode()
            item = self.expected[json.loads(content)["item_id"]]
            self.assertEqual(content, apidouble.render(item))
        self.assertEqual(len(names), len(self.expected))
        stats = self.pages_stats()
        self.assertGreater(stats["dropped"], was["dropped"])
        self.assertGreater(stats["fetched_again"], was["fetched_again"])
        self.assertEqual(stats["changed"], was["changed"])
        # The listing's pages, then each page at most once more.
        self.assertLessEqual(self.list_items() - before, 2 * pages)
        # A second walk (grep -r reads in readdir order too): each page at
        # most once more, and the same matches as the data.
        before = self.list_items()
        out = run("grep", "-rlF", '"status": "completed"', self.folder, text=True).stdout
        self.assertEqual(len(out.split("\n")) - 1, len(self.expected))
        self.assertLessEqual(self.list_items() - before, pages)

    def test_0_dropped_page_read_waits_parked(self):
        """A read of a file whose page was dropped waits parked while the
        page is fetched again, holding no thread: the fetch runs on a fetch
        thread. On a mount of its own, so that the kernel has read nothing."""
        mount = harness.Mount(self.double, *self.MOUNT_OPTIONS)
        reader = None

        def stats():
            with open(os.path.join(mount.path, ".batchfs", "stats")) as f:
                return json.load(f)

        try:
            os.stat(os.path.join(mount.path, "jobs", self.job))  # seen finished
            folder = os.path.join(mount.path, "jobs", self.job, "completed")
            names = os.listdir(folder)
            # Read the last pages, so that the first one is dropped.
            for name in names[-1500:]:
                with open(os.path.join(folder, name), "rb") as f:
                    f.read()
            self.assertGreater(stats()["cache"]["pages"]["dropped"], 0)
            self.double.faults([{"kind": "stall", "path": "/items$", "ms": 120000,
                                 "query": "(^|&)offset=0(&|$)"}])
            try:
                reader = subprocess.Popen(["cat", os.path.join(folder, names[0])],
                                          stdout=subprocess.PIPE)
                harness.wait_until(lambda: stats()["fetching"]["parked"] == 1,
                                   "the read parked")
                harness.wait_until(lambda: self.double.stats()["stalled"] == 1,
                                   "the page's fetch held by the double")
            finally:
                self.double.faults([])
                self.double.control("release", {})
            content = reader.communicate(timeout=60)[0].decode()
            item = self.expected[json.loads(content)["item_id"]]
            self.assertEqual(content, apidouble.render(item))
            self.assertEqual(stats()["fetching"]["parked"], 0)
        finally:
            if reader and reader.poll() is None:
                reader.kill()
                reader.wait()
            err = mount.stop()
            harness.check_driver_output(err, mount.status)

    # Files are read once each, first those of the faults (the kernel keeps
    # what it has read: a file read before would not reach batchfs).
    def test_1_changed_page_is_estale(self):
        os.stat(self.path("jobs", self.job))  # the job is seen finished
        names = os.listdir(self.folder)
        # Read the last pages, so that the first one is dropped.
        for name in names[-1500:]:
            with open(os.path.join(self.folder, name), "rb") as f:
                f.read()
        # The page fetched again comes back changed, once.
        self.double.faults([{"kind": "nul_in_string", "query": "(^|&)offset=0(&|$)",
                             "path": "/items$", "times": 1}])
        before = self.list_items()
        try:
            with open(os.path.join(self.folder, names[0]), "rb") as f:
                content = f.read().decode()
        except OSError as e:
            # ESTALE, unless the kernel tried the read again, after the
            # folder was listed again (then it is the server's file now).
            self.assertEqual(e.errno, errno.ESTALE)
        else:
            item = self.expected[json.loads(content)["item_id"]]
            self.assertEqual(content, apidouble.render(item))
        self.assertEqual(self.pages_stats()["changed"], 1)
        self.assertIn("the page differs from the one listed", self.mount.stderr())
        # The folder is listed again for the next file, which is as the
        # server has it now.
        with open(os.path.join(self.folder, names[1]), "rb") as f:
            content = f.read().decode()
        item = self.expected[json.loads(content)["item_id"]]
        self.assertEqual(content, apidouble.render(item))
        self.assertGreater(self.list_items(), before + 1)
        self.assertEqual(self.pages_stats()["changed"], 1)

    def test_2_failed_fetch_is_the_requests_error(self):
        names = os.listdir(self.folder)
        # Files not read before (test_1 read the last ones, and page 1 may
        # have been read ahead then), so that page 1 is dropped; reading
        # ahead goes forward, not back to it.
        for name in names[2000:3500]:
            with open(os.path.join(self.folder, name), "rb") as f:
                f.read()
        self.double.faults([{"kind": "status", "status": 500,
                             "query": "(^|&)offset=1000(&|$)", "path": "/items$"}])
        with self.assertRaises(OSError) as cm:
            with open(os.path.join(self.folder, names[1000]), "rb") as f:
                f.read()
        self.assertEqual(cm.exception.errno, errno.EIO)
        # Once the server answers again, so does the file.
        self.double.faults([])
        with open(os.path.join(self.folder, names[1000]), "rb") as f:
            item = json.loads(f.read())
        self.assertIn(item["item_id"], self.expected)


class CountedFolders(harness.MountTestCase):
    """A folder its job counts at more than a page has its first pages asked
    for together, and costs no more requests for it; a folder counted at one
    page (or not counted) starts with one."""
    DOUBLE_ARGS = ("--seed", "9", "--jobs", "1", "--items", "10", "--big-job", "1800",
                   "--batches", "0", "--latency-ms", "200")

    def test_first_pages_together(self):
        data = apidouble.make_dataset(seed=9, jobs=1, items=10, big_job=1800, batches=0)
        job = data.jobs[-1]["id"]
        os.stat(self.path("jobs", job))  # the job's lookup brings its counters
        for status in ("completed", "failed", "pending"):
            want = sorted(i["item_id"] for i in data.items[job] if i["status"] == status)
            self.double.reset()
            names = os.listdir(self.path("jobs", job, status))
            stats = self.double.stats()
            self.assertEqual(len(names), len(want), status)
            pages = max(1, -(-len(want) // 1000))
            # Its pages, and for a single short page one more to confirm the end.
            self.assertEqual(stats["by_endpoint"]["list_items"],
                             pages if pages > 1 else 2, status)
            # completed/ holds two pages: both in flight at once, not the
            # second after the first (each takes 200 ms at the double).
            self.assertEqual(stats["in_flight_max"], 2 if status == "completed" else 1,
                             status)
        ids = set()
        for name in os.listdir(self.path("jobs", job, "completed")):
            with open(self.path("jobs", job, "completed", name), "rb") as f:
                ids.add(json.loads(f.read())["item_id"])
        self.assertEqual(sorted(ids), sorted(i["item_id"] for i in data.items[job]
                                             if i["status"] == "completed"))


class NoBatchListEndpoint(harness.MountTestCase):
    """An older server without GET /api/v2/batches: lookups by id still work."""
    DOUBLE_ARGS = ("--no-batches-list",)

    def test_lookup_by_id_then_listed(self):
        data = apidouble.make_dataset()
        self.assertEqual(os.listdir(self.path("batches")), [])
        batch = data.batches[0]
        with open(self.path("batches", batch["id"], "batch.json")) as f:
            self.assertEqual(f.read(), apidouble.render(harness.expected_batch(data, batch)))
        self.assertEqual(os.listdir(self.path("batches")), [batch["id"]])


class MountFailures(unittest.TestCase):
    def setUp(self):
        self.double = harness.Double()

    def tearDown(self):
        self.double.stop()

    def failed_mount(self, options=(), **kwargs):
        m = harness.Mount(self.double, *options, wait=False, **kwargs)
        try:
            status = m.wait_exit(30)
            mounted = harness.is_mounted(m.path)
        finally:
            err = m.stop()
        self.assertNotEqual(status, 0)
        self.assertFalse(mounted)
        harness.check_driver_output(err, 0)
        return err

    def test_wrong_key(self):
        err = self.failed_mount(key="llx-wrong-key-987654")
        self.assertIn("refused the key", err)
        self.assertNotIn("llx-wrong-key-987654", err)

    def test_missing_key(self):
        err = self.failed_mount(key=None)
        self.assertIn("LLAMA_CLOUD_API_KEY", err)

    def test_huge_key_refused_before_it_is_sent(self):
        # Sent, the server answered 431 and the mount said "Input/output error".
        key = harness.TEST_KEY + "x" * (100 * 1024)
        err = self.failed_mount(key=key)
        self.assertIn("LLAMA_CLOUD_API_KEY: the API key is %d bytes long; a key is at most "
                      "4096" % len(key), err)
        self.assertNotIn(harness.TEST_KEY, err)
        self.assertEqual(self.double.requests(), 0)

    def test_key_file_through_a_symbolic_link(self):
        # Followed when it leads to a private regular file, as ssh does.
        home = tempfile.mkdtemp(prefix="batchfs-key-")
        try:
            target = os.path.join(home, "key")
            with open(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(harness.TEST_KEY + "\n")
            os.symlink(target, os.path.join(home, "link"))
            m = harness.Mount(self.double, "api_key_file=" + os.path.join(home, "link"),
                              key=None)
            try:
                self.assertIn("jobs", os.listdir(m.path))
            finally:
                harness.check_driver_output(m.stop(), m.status)
            os.chmod(target, 0o644)
            err = self.failed_mount(key=None, options=("api_key_file=" +
                                                       os.path.join(home, "link"),))
            self.assertIn("a symbolic link to a file that is open to others (mode 0644)", err)
        finally:
            shutil.rmtree(home)

    def test_unreachable_url(self):
        m = harness.Mount(self.double, "base_url=http://127.0.0.1:9", "connect_timeout=2",
                          "retries=0", wait=False)
        try:
            status = m.wait_exit(60)
        finally:
            err = m.stop()
        self.assertNotEqual(status, 0)
        self.assertIn("127.0.0.1:9", err)

    def test_key_on_command_line_refused(self):
        m = harness.Mount(self.double, "api_key=llx-secret-on-argv", wait=False)
        try:
            status = m.wait_exit(30)
        finally:
            err = m.stop()
        self.assertNotEqual(status, 0)
        self.assertNotIn("llx-secret-on-argv", err)

    def test_bad_option(self):
        err = self.failed_mount_with("cache_ttl=abc")
        self.assertIn("cache_ttl", err)

    def test_libfuse_error_is_a_log_line(self):
        # libfuse refuses an option it does not know; its message comes
        # through batchfs's logger like any other.
        err = self.failed_mount_with("no_such_fuse_option")
        lines = [l for l in err.splitlines() if "no_such_fuse_option" in l]
        self.assertEqual(len(lines), 1, err)
        self.assertRegex(lines[0], r"^batchfs [0-9:.]+ error: fuse: unknown option")

    def failed_mount_with(self, option):
        m = harness.Mount(self.double, option, wait=False)
        try:
            status = m.wait_exit(30)
        finally:
            err = m.stop()
        self.assertNotEqual(status, 0)
        return err


class MountOptionsPassedOn(unittest.TestCase):
    """allow_other is found among the options (not in the text of another
    option's value) and brings default_permissions with it."""

    def setUp(self):
        self.double = harness.Double()

    def tearDown(self):
        self.double.stop()

    def mount_options(self, *options):
        """The options the kernel holds for a mount with `options`."""
        m = harness.Mount(self.double, *options)
        try:
            path = os.path.realpath(m.path)
            with open("/proc/self/mountinfo") as f:
                line = [l for l in f if l.split()[4] == path][0]
        finally:
            harness.check_driver_output(m.stop(), m.status)
        return line.split()[-1].split(",")

    @unittest.skipUnless(os.geteuid() == 0, "allow_other needs root or user_allow_other")
    def test_allow_other_brings_default_permissions(self):
        options = self.mount_options("allow_other")
        self.assertIn("allow_other", options)
        self.assertIn("default_permissions", options)

    def test_a_value_naming_allow_other_is_not_it(self):
        options = self.mount_options("fsname=allow_other")
        self.assertNotIn("allow_other", options)
        self.assertNotIn("default_permissions", options)


class JobListExpiry(harness.MountTestCase):
    """Once the job list has expired, looking jobs up lists the jobs again,
    once, rather than asking for each job by id: reading every job's file
    costs the job list's pages, not a request per job."""
    JOBS = 40
    DOUBLE_ARGS = ("--jobs", str(JOBS), "--items", "1", "--batches", "0", "--page-cap", "15")
    MOUNT_OPTIONS = ("cache_ttl=300",)

    def read_every_job(self):
        jobs = apidouble.make_dataset(jobs=self.JOBS, items=1, batches=0).jobs
        for job in jobs:
            with open(self.path("jobs", job["id"], "job.json"), "rb") as f:
                self.assertEqual(json.loads(f.read())["id"], job["id"])
        return len(jobs)

    def test_lookups_after_expiry_list_the_jobs_once(self):
        self.double.reset()
        self.assertEqual(len(os.listdir(self.path("jobs"))), self.JOBS)
        listing = self.double.stats()["by_endpoint"]["list_jobs"]
        self.assertGreater(listing, 1)
        self.double.reset()
        self.read_every_job()
        self.assertEqual(self.double.requests(), 0)
        self.mount.hangup()
        self.double.reset()
        self.read_every_job()
        by = self.double.stats()["by_endpoint"]
        self.assertEqual(by["get_job"], 0)
        self.assertEqual(by["list_jobs"], listing)


class NoRestart(unittest.TestCase):
    """The driver runs as it was started: it does not execute itself again
    with allocator tunables of its own, so its environment is the one it
    was given."""

    def setUp(self):
        self.double = harness.Double()

    def tearDown(self):
        self.double.stop()

    def environ_of_mount(self, tunables):
        env = {} if tunables is None else {"GLIBC_TUNABLES": tunables}
        m = harness.Mount(self.double, env=env)
        try:
            self.assertIn("jobs", os.listdir(m.path))
            with open("/proc/%d/environ" % m.proc.pid, "rb") as f:
                return f.read().replace(b"\0", b"\n").decode(errors="replace")
        finally:
            err = m.stop()
            harness.check_driver_output(err, m.status)

    def test_no_tunables_added(self):
        self.assertNotIn("GLIBC_TUNABLES", self.environ_of_mount(None))

    def test_users_tunables_kept_as_given(self):
        environ = self.environ_of_mount("glibc.malloc.tcache_count=7")
        self.assertIn("GLIBC_TUNABLES=glibc.malloc.tcache_count=7\n", environ)



if __name__ == "__main__":
    unittest.main(verbosity=2)
