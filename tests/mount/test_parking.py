"""Requests that wait for the API are parked, not held on a thread.

Against an API that never answers (the double's stall fault, released by
POST /__double/release), a request whose answer needs a fetch waits parked:
the root, cached folders and files and .batchfs/ still answer at once, however
many wait; Ctrl-C on a tool reading a hung folder returns at once (the request
is answered EINTR); and an expired copy within max_stale is served at once
while its refresh runs in the background (stale-while-revalidate).

Every wait is on a counter (the mount's .batchfs/stats, the double's count of
stalled requests); the time limits are upper bounds that turn a hang into a
failure. The latencies measured are printed for the record.
"""
import json
import os
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

import harness
import apidouble

DOUBLE_ARGS = ("--jobs", "10", "--items", "30")
DATA = apidouble.make_dataset(jobs=10, items=30)
STATUSES = ("pending", "processing", "completed", "failed", "skipped", "cancelled")
ANY_ITEMS = r"^/api/v1/beta/batch-processing/[^/]+/items$"
# A job with pending items: advancing it changes its pending/ folder.
JOB = next(j["id"] for j in DATA.jobs
           if any(i["status"] == "pending" for i in DATA.items[j["id"]]))
OTHER_JOB = next(j["id"] for j in DATA.jobs if j["id"] != JOB)
JOB_ITEMS = r"^/api/v1/beta/batch-processing/%s/items$" % JOB
HANG = 5.0  # seconds: what answers "at once" must answer within this
INTERRUPT = 2.0  # seconds: Ctrl-C must end a tool within this


def note(what, seconds):
    print("  %s: %.3f s" % (what, seconds), file=sys.stderr)


def timed(fn, *args):
    start = time.monotonic()
    result = fn(*args)
    return time.monotonic() - start, result


class Readers:
    """Tools started in the background, all stopped after each test."""

    def setUp(self):
        super().setUp()
        self.readers = []

    def tearDown(self):
        # All killed before any is waited for: one may wait in the kernel
        # for another's lookup.
        for reader in self.readers:
            if reader.poll() is None:
                reader.kill()
        for reader in self.readers:
            reader.wait()
        super().tearDown()

    def start(self, *argv, stdout=subprocess.DEVNULL, **kwargs):
        reader = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL, **kwargs)
        self.readers.append(reader)
        return reader


class Parking(Readers, harness.FreshMountTestCase):
    DOUBLE_ARGS = DOUBLE_ARGS
    FLAGS = ()

    def mounted(self, *options):
        self.mount = harness.Mount(self.double, *options, flags=self.FLAGS)
        return self.mount.path

    def path(self, *parts):
        return os.path.join(self.mount.path, *parts)

    def stats(self):
        with open(self.path(".batchfs", "stats")) as f:
            return json.load(f)

    def read(self, path):
        with open(path) as f:
            return f.read()

    def parked(self):
        return self.stats()["fetching"]["parked"]

    def test_fifty_hung_folders_leave_the_rest_answering(self):
        self.mounted("timeout=120", "retries=2", "cache_ttl=300")
        folders = [self.path("jobs", j["id"], s) for j in DATA.jobs for s in STATUSES]
        hung, cached = folders[:50], folders[50]
        job_json = self.path("jobs", JOB, "job.json")
        # The job list, so that the status folders are found without a
        # fetch: fetches beyond the 8 fetch threads wait for one.
        os.listdir(self.path("jobs"))
        with open(job_json) as f:
            job_text = f.read()
        expected_cached = sorted(os.listdir(cached))
        self.double.faults([{"kind": "stall", "path": ANY_ITEMS, "ms": 120000}])
        readers = [self.start("ls", folder) for folder in hung]
        # All 50 parked, and as many fetches held by the double as there
        # are fetch threads (max_connections, 8 by default).
        harness.wait_until(lambda: self.parked() == 50, "50 requests parked")
        harness.wait_until(lambda: self.double.stats()["stalled"] == 8,
                           "8 fetches held by the stall")
        for what, fn in (("ls /", lambda: os.listdir(self.mount.path)),
                         ("stat job.json", lambda: os.stat(job_json)),
                         ("cat job.json", lambda: self.read(job_json)),
                         ("cat .batchfs/stats", self.stats),
                         ("ls cached folder", lambda: sorted(os.listdir(cached)))):
            seconds, result = timed(fn)
            note(what + " while 50 folders hang", seconds)
            self.assertLess(seconds, HANG, what)
            if what == "cat job.json":
                self.assertEqual(result, job_text)
            if what == "ls cached folder":
                self.assertEqual(result, expected_cached)
        self.assertEqual(self.parked(), 50)
        self.assertTrue(all(r.poll() is None for r in readers))
        # Once the API answers, every parked request is answered, once.
        self.double.faults([])
        self.double.control("release", {})
        for reader in readers:
            self.assertEqual(reader.wait(60), 0)
        self.assertEqual(self.parked(), 0)

    def interrupt(self, what, *argv):
        """Starts argv, waits until its request is parked, sends SIGINT and
        returns how long the tool took to end."""
        before = self.parked()
        cancelled = self.stats()["fetching"]["cancelled"]
        reader = self.start(*argv)
        harness.wait_until(lambda: self.parked() > before, what + " parked")
        self.assertIsNone(reader.poll())
        start = time.monotonic()
        reader.send_signal(signal.SIGINT)
        reader.wait(30)
        seconds = time.monotonic() - start
        note("Ctrl-C on " + what, seconds)
        self.assertEqual(reader.returncode, -signal.SIGINT)
        self.assertLess(seconds, INTERRUPT, what)
        harness.wait_until(lambda: self.parked() == before, what + " answered")
        # Nobody else waited for its fetch: that is called off.
        harness.wait_until(lambda: self.stats()["fetching"]["cancelled"] > cancelled,
                           what + "'s fetch called off")
        return seconds

    def test_ctrl_c_on_a_hung_folder(self):
        self.mounted("timeout=120", "retries=2", "cache_ttl=300")
        os.listdir(self.path("jobs"))
        self.double.faults([{"kind": "stall", "path": JOB_ITEMS, "ms": 120000}])
        folder = self.path("jobs", JOB, "completed")
        item = [i for i in DATA.items[JOB] if i["status"] == "completed"][0]
        self.interrupt("ls", "ls", folder)
        self.interrupt("cat", "cat", os.path.join(folder, "whatever.json"))
        self.interrupt("grep -r", "grep", "-r", "completed", self.path("jobs", JOB, "failed"))
        # The driver is healthy: another folder lists.
        seconds, names = timed(os.listdir, self.path("jobs", OTHER_JOB, "completed"))
        self.assertLess(seconds, HANG)
        self.assertTrue(names)
        # The hung folder works once the API answers again: its fetches were
        # called off, so the next access asks anew (the double still holds
        # their requests, which no one reads any more).
        self.double.faults([])
        seconds, names = timed(os.listdir, folder)
        self.assertLess(seconds, HANG)
        self.assertEqual(len(names),
                         sum(1 for i in DATA.items[JOB] if i["status"] == "completed"))
        self.assertTrue(any(item["item_id"] in self.read(os.path.join(folder, n))
                            for n in names))

    def test_expired_copy_served_while_the_api_hangs(self):
        self.mounted("cache_ttl=1", "timeout=120", "retries=2")
        folder = self.path("jobs", JOB, "pending")
        names = sorted(os.listdir(folder))
        self.assertTrue(names)
        item = os.path.join(folder, names[0])
        with open(item) as f:
            text = f.read()
        self.double.faults([{"kind": "stall", "path": JOB_ITEMS, "ms": 120000}])
        # Each ls answers from the copy at once; once the copy has expired,
        # one of them starts its refresh, which the API holds (a refresh
        # answered by a listing still in use sends no request: ls again).
        slowest = 0.0

        def ls_until_refresh_held():
            nonlocal slowest
            seconds, listed = timed(os.listdir, folder)
            slowest = max(slowest, seconds)
            self.assertEqual(sorted(listed), names)
            return self.double.stats()["stalled"] >= 1

        harness.wait_until(ls_until_refresh_held, "a background refresh held by the API")
        self.assertGreaterEqual(self.stats()["fetching"]["refreshes"], 1)
        note("ls of an expired folder while the API hangs (slowest)", slowest)
        self.assertLess(slowest, INTERRUPT)
        seconds, again = timed(self.read, item)
        note("cat of an expired file while the API hangs", seconds)
        self.assertLess(seconds, INTERRUPT)
        self.assertEqual(again, text)
        # The API answers again, with an item moved on: the refresh lands
        # and the new listing shows.
        refreshed = self.stats()["fetching"]["refreshed"]
        self.double.control("advance", {"job_id": JOB, "count": 1})
        self.double.faults([])
        self.double.control("release", {})
        harness.wait_until(lambda: self.stats()["fetching"]["refreshed"] > refreshed,
                           "the refresh to land")
        harness.wait_until(lambda: len(os.listdir(folder)) == len(names) - 1,
                           "the new listing")


JOB_LIST = r"^/api/v1/beta/batch-processing$"
# Prints each entry of a folder as soon as readdir gives it.
LISTER = "import os, sys\nfor e in os.scandir(sys.argv[1]):\n    print(e.name, flush=True)\n"


class StreamedJobList(Readers, harness.FreshMountTestCase):
    """jobs/ opened while the job list is read is handed out as its pages
    arrive, in the API's order: a readdir past the jobs at hand waits
    parked for the next page, Ctrl-C answers it at once, and a page that
    fails ends the listing with the error after the jobs already given."""
    DOUBLE_ARGS = ("--jobs", "2500", "--items", "0")

    def mounted(self, *options):
        self.jobs = os.path.join(super().mounted(*options), "jobs")

    def fetching(self):
        return self.mount.stats()["fetching"]

    def page_ids(self, offset):
        """The ids of one page of the job list, in the API's order."""
        request = urllib.request.Request(
            "%s/api/v1/beta/batch-processing?limit=1000&offset=%d" % (self.double.url, offset),
            headers={"Authorization": "Bearer " + harness.TEST_KEY})
        with urllib.request.urlopen(request) as response:
            return [job["id"] for job in json.load(response)["items"]]

    def test_first_pages_listed_while_the_last_hangs(self):
        self.mounted("timeout=120", "retries=2")
        first = self.page_ids(0) + self.page_ids(1000)
        third_page = self.page_ids(2000)
        every = sorted(first + third_page)
        self.assertEqual(len(every), 2500)
        self.double.faults([{"kind": "stall", "path": JOB_LIST, "query": "offset=2000",
                             "ms": 120000}])
        lister = self.start(sys.executable, "-c", LISTER, self.jobs,
                            stdout=subprocess.PIPE, text=True)
        # Read off the pipe as readdir gives them: the first two pages, in
        # the API's order, while the third is held by the API.
        shown = [lister.stdout.readline().rstrip("\n") for _ in first]
        self.assertEqual(shown, first)
        harness.wait_until(lambda: self.fetching()["readdirs_waiting"] == 1,
                           "the readdir past the second page parked")
        self.assertEqual(self.double.stats()["stalled"], 1)
        self.assertIsNone(lister.poll())
        self.assertEqual(self.fetching()["streamed"], 1)
        # ls opened meanwhile joins the same reading, and waits parked too.
        ls = self.start("ls", "-f", self.jobs)
        harness.wait_until(lambda: self.fetching()["readdirs_waiting"] == 2, "ls parked")
        self.assertEqual(self.fetching()["streamed"], 2)
        # Lookups in the folder go on meanwhile: a job not listed yet is
        # looked up by itself (the kernel is told lookups and readdirs of
        # one folder may run together; otherwise it would wait, asleep,
        # behind the readdirs).
        third = third_page[0]
        looker = self.start("stat", "-c", "%n", os.path.join(self.jobs, third),
                            stdout=subprocess.PIPE, text=True)
        start = time.monotonic()
        harness.wait_until(lambda: looker.poll() is not None or
                           time.monotonic() - start > HANG, "stat of a job to end")
        note("stat of a job while the job list's readdirs wait", time.monotonic() - start)
        self.assertEqual(looker.poll(), 0, "stat of a job waited behind the readdirs")
        self.assertEqual(looker.stdout.read().strip(), os.path.join(self.jobs, third))
        looker.stdout.close()
        lister.stdout.close()
        self.assertEqual(self.fetching()["stream_readers"], 2)
        cancelled = self.fetching()["cancelled"]
        for what, reader, left in (("the lister", lister, 1), ("ls -f", ls, 0)):
            start = time.monotonic()
            reader.send_signal(signal.SIGINT)
            reader.wait(30)
            seconds = time.monotonic() - start
            note("Ctrl-C on %s of a job list half read" % what, seconds)
            self.assertLess(seconds, INTERRUPT, what)
            harness.wait_until(lambda: self.fetching()["readdirs_waiting"] == left,
                               what + "'s readdir answered")
            harness.wait_until(lambda: self.fetching()["stream_readers"] == left,
                               what + "'s folder closed")
            if left:
                # Another folder still reads the list: its fetch goes on.
                self.assertEqual(self.fetching()["cancelled"], cancelled)
        # The last folder reading the list is closed: nobody wants its
        # fetch any more, and it is called off.
        harness.wait_until(lambda: self.fetching()["cancelled"] == cancelled + 1,
                           "the job list's fetch called off")
        # Once the API answers, the list is read anew, whole, and cached (in
        # name order) for the next ls.
        self.double.faults([])
        self.double.control("release", {})
        self.assertEqual(sorted(os.listdir(self.jobs)), every)
        requests = self.double.stats()["requests"]
        self.assertEqual(harness.run("ls", self.jobs, text=True).stdout.split(), every)
        self.assertEqual(self.double.stats()["requests"], requests)

    def test_a_page_that_fails_ends_the_listing_with_its_error(self):
        self.mounted("timeout=120", "retries=1")
        first = self.page_ids(0) + self.page_ids(1000)
        self.double.faults([{"kind": "status", "status": 500, "path": JOB_LIST,
                             "query": "offset=2000"}])
        listed = harness.run("ls", "-f", self.jobs, check=False, text=True)
        self.assertNotEqual(listed.returncode, 0)
        self.assertIn("Input/output error", listed.stderr)
        self.assertEqual(sorted(set(listed.stdout.split()) - {".", ".."}), sorted(first))
        # The line is written once the fetch has ended, which may be just
        # after ls has its answer.
        def failures():
            return [line for line in self.mount.stderr().splitlines()
                    if "offset=2000" in line]

        harness.wait_until(failures, "the failed page's log line")
        self.assertEqual(len(failures()), 1, failures())
        self.assertIn("500", failures()[0])
        # Not remembered: once the API answers, the whole list shows.
        self.double.faults([])
        self.assertEqual(len(os.listdir(self.jobs)), 2500)


class ParkingSingleThreaded(Parking):
    """The same with -s: one thread reads every request, and parked ones
    are answered from the fetch threads."""
    FLAGS = ("-s",)


if __name__ == "__main__":
    unittest.main(verbosity=2)
