"""Many readers over a running job while its cache expires and faults fire,
and many listers of jobs/ while the job list arrives.

Sixteen `cat` processes (xargs -P16) read every item file of a job whose
items the double keeps moving between statuses, with a one-second cache
lifetime and intermittent 503s, truncated bodies and resets. For a fixed
number of rounds, every file that is read must be complete, valid JSON of the
folder's status, or fail with a clear errno; the driver must not crash, hang
or report a sanitizer error. Between rounds a SIGHUP expires every listing,
so each round reads the moved items from new listings.
"""
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import apidouble  # noqa: E402

ROUNDS = int(os.environ.get("BATCHFS_CONCURRENCY_ROUNDS", "5"))
STATUSES = ["pending", "processing", "completed", "failed", "skipped", "cancelled"]


class ConcurrentReaders(harness.MountTestCase):
    DOUBLE_ARGS = ("--jobs", "6", "--items", "600", "--dialect", "capped", "--page-cap", "50")
    MOUNT_OPTIONS = ("cache_ttl=1", "terminal_ttl=1", "retries=3", "timeout=5",
                     "max_connections=4")

    def running_job(self):
        data = apidouble.make_dataset(jobs=6, items=600)
        for job in data.jobs:
            items = data.items[job["id"]]
            if any(i["status"] in ("pending", "processing") for i in items):
                return job["id"]
        self.skipTest("no running job in the data set")

    def test_readers_during_refresh_and_faults(self):
        job = self.running_job()
        base = self.path("jobs", job)
        self.double.faults([
            {"kind": "status", "status": 503, "probability": 0.15},
            {"kind": "truncate", "probability": 0.05},
            {"kind": "reset", "probability": 0.05},
        ])
        checked = 0
        seen = {}  # item id: the folder it was last read from
        moved = 0
        for round_no in range(ROUNDS):
            self.double.control("advance", {"job_id": job, "count": 25})
            script = (
                "find %s -name '*.json' -print0 2>/dev/null | "
                "xargs -0 -r -P16 -n8 sh -c 'for f; do "
                "if cat \"$f\" > \"$0/$(basename \"$(dirname \"$f\")\")~$(basename \"$f\")\" "
                "2>/dev/null; then :; else rm -f \"$0/$(basename \"$(dirname \"$f\")\")~$(basename \"$f\")\"; fi; "
                "done' %s" % (base, self.outdir))
            start = time.monotonic()
            res = subprocess.run(["sh", "-c", script], capture_output=True, timeout=300)
            self.assertLess(time.monotonic() - start, 240, "round %d took too long" % round_no)
            for name in os.listdir(self.outdir):
                path = os.path.join(self.outdir, name)
                status, _, _ = name.partition("~")
                with open(path, "rb") as f:
                    data = f.read()
                os.unlink(path)
                if status == job:  # job.json
                    obj = json.loads(data)
                    self.assertEqual(obj["id"], job)
                    continue
                self.assertTrue(data.endswith(b"}\n"), "incomplete file %s" % name)
                obj = json.loads(data)
                self.assertIn(status, STATUSES)
                # A file read from a folder always holds an item of that status:
                # the content and the folder come from one listing.
                self.assertEqual(obj["status"], status, name)
                moved += seen.get(obj["item_id"], status) != status
                seen[obj["item_id"]] = status
                checked += 1
            self.assertIsNone(self.mount.proc.poll(), "batchfs died: " + self.mount.stderr())
            self.mount.hangup()  # the next round reads from new listings
            del res
        self.assertGreater(checked, ROUNDS * 100)
        # The rounds saw the double's moves: the listings were refreshed.
        self.assertGreater(moved, 0)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import tempfile
        cls.outdir = tempfile.mkdtemp(prefix="batchfs-readers-")

    @classmethod
    def tearDownClass(cls):
        import shutil
        try:
            cls.double.faults([])
        finally:
            shutil.rmtree(cls.outdir, ignore_errors=True)
            super().tearDownClass()


class ConcurrentJobListings(harness.MountTestCase):
    """Many `ls` of jobs/ at once, each round on a job list read afresh and
    handed out as its pages arrive, while pages fail now and then: every ls
    lists every job, or fails with a clear error after some of them."""
    DOUBLE_ARGS = ("--jobs", "2500", "--items", "0")
    MOUNT_OPTIONS = ("retries=1", "timeout=5", "max_connections=4")
    READERS = 8

    def test_listers_while_the_list_arrives(self):
        every = set(os.listdir(self.path("jobs")))
        self.assertEqual(len(every), 2500)
        self.double.faults([
            {"kind": "status", "status": 503, "probability": 0.25,
             "path": r"^/api/v1/beta/batch-processing$"},
            {"kind": "reset", "probability": 0.02},
        ])
        whole = failed = 0
        for round_no in range(ROUNDS):
            self.mount.hangup()  # the next ls reads the list afresh
            streamed = self.mount.stats()["fetching"]["streamed"]
            listers = [subprocess.Popen(["ls", "-f", self.path("jobs")],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True) for _ in range(self.READERS)]
            for lister in listers:
                out, err = lister.communicate(timeout=240)
                shown = set(out.split()) - {".", ".."}
                if lister.returncode == 0:
                    self.assertEqual(shown, every, "round %d" % round_no)
                    whole += 1
                else:
                    # Some of the jobs, never one that is not there, and the
                    # error said.
                    self.assertLessEqual(shown, every)
                    self.assertRegex(err, "Input/output error|Resource temporarily "
                                     "unavailable|Connection timed out")
                    failed += 1
            self.assertGreater(self.mount.stats()["fetching"]["streamed"], streamed)
            self.assertIsNone(self.mount.proc.poll(), "batchfs died: " + self.mount.stderr())
        self.assertGreater(whole, 0)
        print("  ls of jobs/ whole: %d, failed: %d" % (whole, failed), file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.double.faults([])
        finally:
            super().tearDownClass()


if __name__ == "__main__":
    unittest.main(verbosity=2)
