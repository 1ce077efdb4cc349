"""batchfs in the Unix toolbox: aggregate files, xattrs, .batchfs/, SIGHUP,
mount -t fuse.batchfs, the man page; each checked with the real tool."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import apidouble, run  # noqa: E402

DATA = apidouble.make_dataset()
STATUSES = ["pending", "processing", "completed", "failed", "skipped", "cancelled"]


def busiest_job():
    return max(DATA.jobs, key=lambda j: sum(i["status"] == "failed" for i in DATA.items[j["id"]]))


def tsv_escape(text):
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\0", "\\0"))


class Toolbox(harness.MountTestCase):
    MOUNT_OPTIONS = ("cache_ttl=300",)

    def test_items_ndjson(self):
        for job in DATA.jobs:
            path = self.path("jobs", job["id"], "items.ndjson")
            with open(path, "rb") as f:
                lines = f.read().decode().splitlines()
            items = DATA.items[job["id"]]
            self.assertEqual(len(lines), len(items))
            self.assertEqual(sorted(json.loads(l)["item_id"] for l in lines),
                             sorted(i["item_id"] for i in items))
            # Compact, one object per line, the API's bytes.
            expected = {json.dumps(i, separators=(",", ":")) for i in items}
            self.assertTrue(set(lines) <= expected)
            self.assertEqual(os.stat(path).st_size, sum(len(l.encode()) + 1 for l in lines))
        job = busiest_job()
        out = run("jq", "-c", 'select(.status=="failed") | .item_id',
                  self.path("jobs", job["id"], "items.ndjson")).stdout.split()
        self.assertEqual(len(out), sum(i["status"] == "failed" for i in DATA.items[job["id"]]))
        wc = run("wc", "-l", self.path("jobs", job["id"], "items.ndjson"), text=True).stdout
        self.assertEqual(int(wc.split()[0]), len(DATA.items[job["id"]]))

    def test_items_ndjson_read_in_pieces(self):
        # items.ndjson is made from the item files as it is read: reads of
        # any size, starting mid-line, must give the bytes of a whole read.
        job = busiest_job()
        path = self.path("jobs", job["id"], "items.ndjson")
        with open(path, "rb") as f:
            whole = f.read()
        self.assertGreater(len(whole), 1000)
        pieces = run("dd", "if=" + path, "bs=777", "status=none").stdout
        self.assertEqual(pieces, whole)
        tail = run("tail", "-c", "1001", path).stdout
        self.assertEqual(tail, whole[-1001:])
        with open(path, "rb", buffering=0) as f:
            for off in (1, 333, len(whole) // 2, len(whole) - 5):
                f.seek(off)
                self.assertEqual(f.read(97), whole[off:off + 97], off)
            f.seek(len(whole) + 10)
            self.assertEqual(f.read(10), b"")

    def test_errors_tsv(self):
        job = busiest_job()
        path = self.path("jobs", job["id"], "errors.tsv")
        with open(path, "rb") as f:
            text = f.read().decode()
        failed = [i for i in DATA.items[job["id"]]
                  if i["status"] == "failed" and i.get("error_message")]
        lines = text.split("\n")
        self.assertEqual(lines[-1], "")
        lines = lines[:-1]
        self.assertEqual(len(lines), len(failed))
        for line in lines:
            self.assertEqual(len(line.split("\t")), 3, repr(line))
        got = sorted(l.split("\t")[2] for l in lines)
        self.assertEqual(got, sorted(tsv_escape(i["error_message"]) for i in failed))
        report = subprocess.run("cut -f3 '%s' | sort | uniq -c | sort -rn" % path, shell=True,
                                capture_output=True, text=True, check=True).stdout
        self.assertTrue(report.strip())

    def test_progress(self):
        for job in DATA.jobs:
            with open(self.path("jobs", job["id"], "progress")) as f:
                line = f.read()
            self.assertTrue(line.endswith("\n"))
            m = re.fullmatch(r"(\S+) (\d+)/(\d+) failed (\d+) skipped (\d+) (\d+)% \[([#.]{10})\]\n",
                             line)
            self.assertIsNotNone(m, line)
            self.assertEqual(m.group(1), job["status"])
            self.assertEqual(int(m.group(2)), job.get("processed_items") or 0)
            self.assertEqual(int(m.group(4)), job.get("failed_items") or 0)
            pct = int(m.group(6))
            self.assertEqual(m.group(7).count("#"), pct // 10)

    def test_batch_files(self):
        for batch in DATA.batches:
            results = DATA.results[batch["id"]] or []
            base = self.path("batches", batch["id"])
            with open(os.path.join(base, "results.ndjson")) as f:
                lines = f.read().splitlines()
            self.assertEqual([json.loads(l) for l in lines], results)
            with open(os.path.join(base, "errors.tsv")) as f:
                errors = f.read().splitlines()
            # The results' errors, then the documents whose job failed, was
            # cancelled or expired.
            failed = [d for d in DATA.batch_documents(batch["id"])
                      if d.status in ("FAILED", "CANCELLED", None)]
            self.assertEqual(len(errors), sum(1 for r in results if r.get("error_message")) +
                             len(failed))
            self.assertEqual(sorted(l.split("\t")[1] for l in errors[len(errors) - len(failed):]),
                             sorted(d.file_id for d in failed))

    def test_grouped_views(self):
        for view, key in (("by-status", "status"), ("by-type", "job_type")):
            groups = sorted({j[key] for j in DATA.jobs})
            self.assertEqual(sorted(os.listdir(self.path(view))), groups)
            for group in groups:
                folder = self.path(view, group)
                ids = sorted(j["id"] for j in DATA.jobs if j[key] == group)
                self.assertEqual(sorted(os.listdir(folder)), ids)
                for job_id in ids:
                    link = os.path.join(folder, job_id)
                    self.assertTrue(os.path.islink(link))
                    self.assertEqual(os.readlink(link), "../../jobs/" + job_id)
                    self.assertEqual(os.path.realpath(link),
                                     os.path.realpath(self.path("jobs", job_id)))
        failed = [j for j in DATA.jobs if j["status"] == "failed"]
        out = run("ls", self.path("by-status", "failed"), text=True).stdout.split()
        self.assertEqual(sorted(out), sorted(j["id"] for j in failed))
        with self.assertRaises(FileNotFoundError):
            os.stat(self.path("by-status", "no-such-status"))
        # grep -r does not follow the links: each job is searched once.
        res = run("grep", "-rlc", "item_id", self.root, check=False, text=True)
        self.assertFalse(any("/by-" in line for line in res.stdout.splitlines()))

    def test_xattrs(self):
        job = busiest_job()
        out = run("getfattr", "-d", "--absolute-names", self.path("jobs", job["id"]),
                  text=True).stdout
        self.assertIn('user.llamacloud.id="%s"' % job["id"], out)
        self.assertIn('user.llamacloud.status="%s"' % job["status"], out)
        item = next(i for i in DATA.items[job["id"]]
                    if i["status"] == "failed" and i.get("error_message")
                    and "\n" not in i["error_message"] and "\t" not in i["error_message"])
        folder = self.path("jobs", job["id"], "failed")
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if os.getxattr(path, "user.llamacloud.id").decode() == item["item_id"]:
                break
        else:
            self.fail("item not found by xattr")
        self.assertEqual(os.getxattr(path, "user.llamacloud.status"), b"failed")
        self.assertEqual(os.getxattr(path, "user.llamacloud.error_message").decode(),
                         item["error_message"])
        self.assertEqual(os.getxattr(path, "user.llamacloud.job_id").decode(), item["job_id"])
        names = os.listxattr(path)
        self.assertIn("user.llamacloud.id", names)
        with self.assertRaises(OSError) as cm:
            os.getxattr(path, "user.other")
        self.assertEqual(cm.exception.errno, 61)  # ENODATA
        for name in ("security.selinux", "system.posix_acl_access", "trusted.x"):
            with self.assertRaises(OSError) as cm:
                os.getxattr(path, name)
            self.assertEqual(cm.exception.errno, 95, name)  # EOPNOTSUPP
        res = run("setfattr", "-n", "user.x", "-v", "1", path, check=False, text=True)
        self.assertNotEqual(res.returncode, 0)
        with self.assertRaises(OSError) as cm:
            os.setxattr(path, "user.x", b"1")
        self.assertIn(cm.exception.errno, (30, 95))  # EROFS, ENOTSUP
        with self.assertRaises(OSError):
            os.removexattr(path, "user.llamacloud.id")

    def test_ls_long_asks_for_security_attributes_once(self):
        # ls -l asks each file for its SELinux label and ACL unless told the
        # file system has none; told once, it stops asking for that device.
        job = busiest_job()
        folder = self.path("jobs", job["id"], "completed")
        files = os.listdir(folder)
        self.assertGreater(len(files), 5)
        with tempfile.NamedTemporaryFile("r", prefix="batchfs-strace-") as trace:
            run("strace", "-o", trace.name, "-e", "trace=getxattr,lgetxattr,fgetxattr",
                "ls", "-l", folder)
            calls = [line for line in trace if "getxattr(" in line]
        self.assertLessEqual(len(calls), 3, calls)
        self.assertTrue(all("EOPNOTSUPP" in line for line in calls), calls)

    def test_batchfs_folder(self):
        self.assertNotIn(".batchfs", run("ls", self.root, text=True).stdout.split())
        self.assertIn(".batchfs", run("ls", "-a", self.root, text=True).stdout.split())
        stats = json.loads(run("cat", self.path(".batchfs", "stats")).stdout)
        for key in ("requests", "cache", "last_error"):
            self.assertIn(key, stats)
        self.assertGreater(stats["requests"]["sent"], 0)
        by = stats["requests"]["by_endpoint"]
        self.assertGreaterEqual(by["list_jobs"].get("2xx", 0), 1)  # the mount's own check
        os.listdir(self.path("jobs", DATA.jobs[0]["id"], "skipped"))
        with self.assertRaises(FileNotFoundError):
            os.stat(self.path("jobs", "bjb-00000000-0000-0000-0000-00000000dead"))
        by = json.loads(run("cat", self.path(".batchfs", "stats")).stdout)["requests"][
            "by_endpoint"]
        self.assertGreaterEqual(by["list_items"].get("2xx", 0), 1)
        self.assertEqual(by["get_job"].get("404"), 1)
        config = json.loads(run("jq", ".", self.path(".batchfs", "config")).stdout)
        self.assertEqual(config["base_url"], self.double.url)
        self.assertTrue(config["api_key"].startswith("set"))
        with open(self.path(".batchfs", "config")) as f:
            self.assertNotIn(harness.TEST_KEY, f.read())
        res = run("grep", "-rl", "base_url", self.path("jobs"), check=False)
        self.assertNotIn(b".batchfs", res.stdout)

    def test_stats_are_live(self):
        first = json.loads(run("cat", self.path(".batchfs", "stats")).stdout)
        run("ls", "-R", self.path("batches"))
        os.listdir(self.path("jobs", DATA.jobs[0]["id"], "cancelled"))
        second = json.loads(run("cat", self.path(".batchfs", "stats")).stdout)
        self.assertGreater(second["cache"]["misses"] + second["cache"]["hits"],
                           first["cache"]["misses"] + first["cache"]["hits"])

    def test_sighup_drops_caches(self):
        job = busiest_job()
        folder = self.path("jobs", job["id"], "completed")
        os.listdir(folder)
        before = self.double.requests()
        os.listdir(folder)
        self.assertEqual(self.double.requests(), before)
        stats = self.path(".batchfs", "stats")
        hangups = json.loads(run("cat", stats).stdout)["hangups"]
        self.mount.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: json.loads(run("cat", stats).stdout)["hangups"] > hangups,
                           "the mount to report the SIGHUP handled")
        os.listdir(folder)
        self.assertGreater(self.double.requests(), before)
        self.assertIsNone(self.mount.proc.poll())


class DebugLog(unittest.TestCase):
    """-d: one line per API request, never the key."""

    def test_request_lines_without_secrets(self):
        double = harness.Double()
        try:
            mount = harness.Mount(double, "log_level=debug")
            try:
                os.listdir(os.path.join(mount.path, "jobs"))
            finally:
                err = mount.stop()
        finally:
            double.stop()
        harness.check_driver_output(err, mount.status)
        lines = [l for l in err.splitlines() if re.search(r"GET /api/v1/beta/batch-processing\?", l)]
        self.assertTrue(lines, err[-2000:])
        self.assertRegex(lines[0], r"GET \S+ 200 [0-9.]+ ms [0-9]+ bytes")
        self.assertNotIn(harness.TEST_KEY, err)
        self.assertNotIn("Bearer", err)


class NoXattr(harness.MountTestCase):
    """-o xattr=0: the kernel is told once that there are none."""
    MOUNT_OPTIONS = ("xattr=0",)

    def test_xattrs_off(self):
        job = DATA.jobs[0]["id"]
        res = run("getfattr", "-d", self.path("jobs", job), check=False, text=True)
        self.assertIn("Operation not supported", res.stderr)
        with self.assertRaises(OSError) as cm:
            os.getxattr(self.path("jobs", job), "user.llamacloud.id")
        self.assertEqual(cm.exception.errno, 95)  # EOPNOTSUPP
        with open(self.path(".batchfs", "config")) as f:
            self.assertIs(json.load(f)["xattr"], False)


class ManPage(unittest.TestCase):
    def test_every_help_option_is_in_the_man_page(self):
        help_text = run(harness.BATCHFS_BIN, "--help", text=True).stdout
        options = set(re.findall(r"-o ([a-z_]+)=", help_text))
        self.assertGreater(len(options), 10)
        page = os.path.join(harness.SOURCE_ROOT, "doc", "batchfs.1")
        rendered = subprocess.run(["man", "-l", page], capture_output=True, text=True,
                                  env=dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0"),
                                  check=True).stdout
        rendered = re.sub(r".\x08", "", rendered)
        for option in options:
            self.assertIn(option + "=", rendered, option)
        for flag in ("--help", "--version", "-f", "-d", "SIGHUP"):
            self.assertIn(flag, rendered)


class Background(unittest.TestCase):
    """A double, a private key file and a mount point for a daemonized
    batchfs; whatever happens, the mount and the daemon are stopped."""

    def setUp(self):
        self.double = harness.Double()
        self.dir = tempfile.mkdtemp(prefix="batchfs-daemon-")
        self.key = os.path.join(self.dir, "key")
        with open(self.key, "w") as f:
            f.write(harness.TEST_KEY + "\n")
        os.chmod(self.key, 0o600)
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt)

    def tearDown(self):
        harness.unmount(self.mnt)
        self.kill_daemon()
        self.double.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill_daemon(self):
        """Stops the daemon serving self.mnt, found by its mount point: its
        pending requests then fail, so nothing it held stays stuck."""
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if self.mnt.encode() in argv:
                os.kill(int(pid), signal.SIGKILL)


class Daemonized(Background):
    """batchfs without -f forks into the background (fuse_daemonize): every
    thread it needs must start in the child, or the first fetch hangs."""

    def test_fetches_work_in_the_background(self):
        env = dict(os.environ)
        env.pop("LLAMA_CLOUD_API_KEY", None)
        env.pop("LLAMA_PARSE_API_KEY", None)
        res = subprocess.run(
            [harness.BATCHFS_BIN, "-o", "base_url=%s,api_key_file=%s" % (self.double.url, self.key),
             self.mnt], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertTrue(harness.is_mounted(self.mnt))
        job = DATA.jobs[0]["id"]
        # `ls` in a child with a time limit: a hung fetch fails the test
        # instead of holding it.
        folder = os.path.join(self.mnt, "jobs", job, "completed")
        ls = subprocess.Popen(["ls", "-A", folder],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = ls.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill_daemon()
            ls.communicate()
            self.fail("ls of a folder hung in the background daemon")
        self.assertEqual(ls.returncode, 0, err)
        names = out.splitlines()
        self.assertGreater(len(names), 0)
        self.assertEqual(sorted(names), sorted(os.listdir(folder)))


@unittest.skipUnless(os.geteuid() == 0, "mount(8) needs root")
class MountCommand(Background):
    """mount -t fuse.batchfs, as fstab would run it."""

    def setUp(self):
        super().setUp()
        self.bin = os.path.join(self.dir, "bin")
        os.mkdir(self.bin)
        os.symlink(os.path.abspath(harness.BATCHFS_BIN), os.path.join(self.bin, "batchfs"))

    def test_mount_t_fuse_batchfs(self):
        # mount(8) runs its helpers with a fixed PATH: put batchfs where an
        # installed one would be, for the length of the test.
        link = "/usr/local/bin/batchfs"
        if os.path.lexists(link):
            self.skipTest(link + " exists; not replacing an installed batchfs")
        os.symlink(os.path.abspath(harness.BATCHFS_BIN), link)
        self.addCleanup(os.unlink, link)
        env = dict(os.environ)
        env.pop("LLAMA_CLOUD_API_KEY", None)
        res = subprocess.run(
            ["mount", "-t", "fuse.batchfs", "llamacloud", self.mnt, "-o",
             "base_url=%s,api_key_file=%s,cache_ttl=60,_netdev" % (self.double.url, self.key)],
            env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertTrue(harness.is_mounted(self.mnt))
        self.assertIn("jobs", os.listdir(self.mnt))
        self.assertEqual(sorted(os.listdir(os.path.join(self.mnt, "jobs"))),
                         sorted(j["id"] for j in DATA.jobs))
        with open("/proc/self/mountinfo") as f:
            line = [l for l in f if l.split()[4] == os.path.realpath(self.mnt)][0]
        self.assertIn("fuse.batchfs", line)
        self.assertIn(" ro", line.replace(",", " ").replace("-", " ") + " ")


if __name__ == "__main__":
    unittest.main(verbosity=2)
