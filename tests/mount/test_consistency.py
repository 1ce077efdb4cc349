"""Reads while the server's data changes: one version of a file, whole; fresh
data once a refresh showed it; listings that notice pages shifting under them.

Each test mounts batchfs afresh against the API double, makes the double
change its data (a fault that rewrites answers), and reads with real tools.
Tests wait on what they check (a deadline, never a fixed sleep).
"""
import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_faults  # noqa: E402
from harness import apidouble, run, wait_until  # noqa: E402
from test_faults import ITEMS_PATH, JOB_ID, items_of  # noqa: E402

JOB_PATH = r"^/api/v1/beta/batch-processing/%s$" % JOB_ID
# What `progress` holds: one line, a percentage and a bar.
PROGRESS_LINE = re.compile(r"^[^\n\0]*\d+% \[[#.]*\][^\n\0]*\n$")


def read_text(path):
    with open(path) as f:
        return f.read()


def poll(condition, deadline_s, what):
    """Waits until condition() is true (returning its value), at most
    deadline_s seconds."""
    return wait_until(condition, what, deadline_s)


class ConsistencyTest(test_faults.FaultTest):
    """FaultTest's mount and double, without its tests (see load_tests)."""

    def job(self, *parts):
        return os.path.join(self.mount.path, "jobs", JOB_ID, *parts)

    def requests_for(self, endpoint):
        return self.double.stats()["by_endpoint"][endpoint]


class TornReads(ConsistencyTest):
    """cache_ttl=0 and a job object whose length changes on every request."""

    def test_job_files_are_whole(self):
        self.mounted("cache_ttl=0", "terminal_ttl=0")
        self.arm(kind="job_grows_shrinks", path=JOB_PATH)
        versions = set()
        for _ in range(12):
            with open(self.job("job.json"), "rb") as f:
                data = f.read()
            self.assertNotIn(b"\0", data)
            versions.add(len(json.loads(data)["x_padding"]))
            with open(self.job("progress"), "rb") as f:
                text = f.read().decode()
            self.assertRegex(text, PROGRESS_LINE)
            data = run("cat", self.job("job.json")).stdout
            json.loads(data)
            self.assertRegex(run("cat", self.job("progress")).stdout.decode(), PROGRESS_LINE)
        # The double did change the job under the reads.
        self.assertGreater(len(versions), 1)

    def test_tar_and_wc_agree_with_cat(self):
        self.mounted("cache_ttl=0", "terminal_ttl=0")
        self.arm(kind="job_grows_shrinks", path=JOB_PATH)
        for _ in range(6):
            # tar stats, opens, reads st_size bytes and stats again: a size
            # that moves under it is "file changed as we read it" (status 1).
            out = subprocess.run(["tar", "cf", "-", "-C", self.job(), "job.json", "progress"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr.decode())
            listed = subprocess.run(["tar", "xOf", "-", "job.json"], input=out.stdout,
                                    stdout=subprocess.PIPE, check=True, timeout=60).stdout
            json.loads(listed)
            # wc -c takes the size from fstat and reads the rest: the two
            # must describe the same version.
            with open(self.job("job.json"), "rb") as f:
                count = run("wc", "-c", stdin=f).stdout.split()[0]
            self.assertGreater(int(count), 0)

    def test_meta_files_are_whole(self):
        self.mounted("cache_ttl=0", "terminal_ttl=0")
        for _ in range(20):
            with open(os.path.join(self.mount.path, ".batchfs", "stats"), "rb") as f:
                json.loads(f.read())


class StaleAfterExpiry(ConsistencyTest):
    """cache_ttl=1 and an item that changes on the server, keeping its length."""

    def test_item_follows_its_folder(self):
        self.mounted("cache_ttl=1", "terminal_ttl=1")
        self.arm(kind="item_revision", value="r000")
        first = items_of("completed")[0]["item_id"]
        folder = self.folder("completed")
        path = poll(lambda: next((os.path.join(folder, n) for n in os.listdir(folder)
                                  if first in read_text(os.path.join(folder, n))), None),
                    10, "the changing item")
        ndjson = self.job("items.ndjson")
        for turn in range(1, 7):
            revision = "r%03d" % turn
            self.arm(kind="item_revision", value=revision)
            poll(lambda: re.search('"x_revision": *"%s"' % revision, read_text(ndjson)), 10,
                 "items.ndjson to show " + revision)
            # The kernel may keep what it was told about the item for the
            # TTL after it last asked; past that, an access is answered from
            # the cached folder while the folder is refreshed in the
            # background (stale-while-revalidate): until the refresh lands
            # the item reads as the previous revision, then it is fresh,
            # whole, and never an older revision.
            seen = []

            def item_fresh():
                obj = json.loads(read_text(path))
                seen.append(obj["x_revision"])
                return obj["x_revision"] == revision

            poll(item_fresh, 10, "the item to show " + revision)
            self.assertTrue(all(r in ("r%03d" % (turn - 1), revision) for r in seen), seen)


class PaginationWhileChanging(ConsistencyTest):
    def list_completed(self):
        names = os.listdir(self.folder("completed"))
        self.assertEqual(len(names), len(set(names)))
        return names

    def test_id_repeated_within_a_page(self):
        self.mounted()
        self.double.control("config", {"dialect": "capped", "page_cap": 40})
        self.list_completed()
        plain = self.requests_for("list_items")
        self.tearDown()
        self.setUp()
        self.mounted()
        self.double.control("config", {"dialect": "capped", "page_cap": 40})
        self.arm(kind="repeat_within_page")
        self.list_completed()
        # The next offset follows the objects a page held: no extra page.
        self.assertEqual(self.requests_for("list_items"), plain)
        self.assertNotIn("already seen", self.mount.stderr())

    def test_total_size_moves_once(self):
        self.mounted()
        self.double.control("config", {"dialect": "capped", "page_cap": 40})
        self.arm(kind="shrink_mid_listing", count=30)
        # Listed again once: exactly what the server holds now.
        self.assert_folder_exact("completed", items_of("completed")[30:])
        self.assertNotIn("still changing", self.mount.stderr())

    def test_total_size_keeps_moving(self):
        self.mounted()
        self.double.control("config", {"dialect": "capped", "page_cap": 40})
        self.arm(kind="shrink_mid_listing", count=30, every=True)
        names = self.list_completed()
        self.assertGreater(len(names), 0)
        err = self.mount.stderr()
        self.assertIn("still changing", err)
        self.assertEqual(err.count("still changing"), 1)


def load_tests(loader, standard_tests, pattern):
    """Only the tests defined here, not the ones inherited from FaultTest."""
    suite = unittest.TestSuite()
    for cls in (TornReads, StaleAfterExpiry, PaginationWhileChanging):
        suite.addTests(cls(name) for name in sorted(vars(cls)) if name.startswith("test"))
    return suite


if __name__ == "__main__":
    unittest.main(verbosity=2)
