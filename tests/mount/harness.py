"""Shared machinery of the mount tests: the API double and a mounted batchfs.

Every test mounts the real binary (BATCHFS_BIN) against the double from
scripts/apidouble.py on loopback, looks at the mount with the real tools, and
always unmounts and stops both processes, even when it fails. A sanitizer
report in the driver's output fails the test that caused it.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

SOURCE_ROOT = os.environ.get(
    "BATCHFS_SOURCE_ROOT",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "scripts"))

import apidouble  # noqa: E402  (the double is importable for its data set)
import tlsproxy  # noqa: E402  (nghttpx and the certificates for it)

BATCHFS_BIN = os.environ.get("BATCHFS_BIN", os.path.join(SOURCE_ROOT, "build", "batchfs"))
TEST_KEY = "llx-test-key-0123456789"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer")


class Double:
    """The API double as a subprocess on a free loopback port."""

    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="batchfs-double-")
        port_file = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "double.log"), "w+")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(SOURCE_ROOT, "scripts", "apidouble.py"),
             "--port", "0", "--port-file", port_file, "--api-key", TEST_KEY, *args],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the API double exited: " + self.output())
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("the API double did not start")
        self.url = "http://127.0.0.1:%d" % self.port

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def control(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/__double/" + path, data=data,
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def stats(self):
        return self.control("stats")

    def requested(self):
        """Every API request (path and query) the double has answered or
        begun answering, in order; needs --verbose (or config verbose)."""
        return re.findall(r'^apidouble: "[A-Z]+ (\S+) HTTP/', self.output(), re.M)

    def requests(self):
        return self.stats()["requests"]

    def reset(self):
        self.control("reset", {})

    def faults(self, faults):
        self.control("faults", faults)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Certificates(tlsproxy.Certificates):
    """A test CA and server certificates (see scripts/tlsproxy.py) in a
    fresh temporary directory; remove() deletes them."""

    def __init__(self):
        super().__init__(tempfile.mkdtemp(prefix="batchfs-certs-"))
        try:
            self.make()
        except BaseException:
            self.remove()
            raise

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class TlsProxy(tlsproxy.TlsProxy):
    """The double behind nghttpx on a free loopback port, serving the
    certificate `kind` of `certs`; HTTP/2 and HTTP/1.1 offered, or HTTP/1.1
    alone. Mount(proxy, "ca_file=" + proxy.ca) mounts through it; stop()
    always ends it."""

    def __init__(self, double, certs, kind="good", http2=True):
        super().__init__(double.port, certs.pair(kind), http2=http2)
        self.ca = certs.ca


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def unmount(path):
    for args in (["fusermount3", "-u", path], ["fusermount3", "-uz", path],
                 ["umount", "-l", path]):
        if not is_mounted(path):
            return
        subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while is_mounted(path) and time.monotonic() < deadline:
            time.sleep(0.05)


class Mount:
    """batchfs in the foreground, mounted on a fresh directory."""

    def __init__(self, double, *options, key=TEST_KEY, env=None, wait=True, flags=()):
        self.dir = tempfile.mkdtemp(prefix="batchfs-mnt-")
        self.path = os.path.join(self.dir, "mnt")
        os.mkdir(self.path)
        self.errfile = open(os.path.join(self.dir, "stderr"), "w+")
        environment = dict(os.environ)
        environment.pop("LLAMA_PARSE_API_KEY", None)
        environment.pop("LLAMA_CLOUD_API_KEY", None)
        if key is not None:
            environment["LLAMA_CLOUD_API_KEY"] = key
        environment.update(env or {})
        opts = ["base_url=" + double.url] + list(options)
        self.argv = [BATCHFS_BIN, "-f", *flags, "-o", ",".join(opts), self.path]
        self.proc = subprocess.Popen(self.argv, env=environment, stdout=subprocess.DEVNULL,
                                     stderr=self.errfile)
        self.status = None
        if wait:
            self.wait_mounted()

    def wait_mounted(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_mounted(self.path):
                return
            if self.proc.poll() is not None:
                raise RuntimeError("batchfs exited with %d: %s" % (self.proc.returncode,
                                                                  self.stderr()))
            time.sleep(0.02)
        raise RuntimeError("batchfs did not mount: " + self.stderr())

    def stats(self):
        """The driver's .batchfs/stats, parsed."""
        with open(os.path.join(self.path, ".batchfs", "stats")) as f:
            return json.load(f)

    def hangup(self):
        """SIGHUP (every cached listing expires), then waits until the
        driver reports that it acted on it."""
        seen = self.stats()["hangups"]
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.stats()["hangups"] > seen, "SIGHUP to be acted on")

    def stderr(self):
        self.errfile.flush()
        self.errfile.seek(0)
        return self.errfile.read()

    def wait_exit(self, timeout=30):
        try:
            self.status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.status = self.proc.wait()
            raise
        return self.status

    def stop(self):
        """Unmounts, waits for the driver to exit, returns its stderr."""
        try:
            unmount(self.path)
            if self.proc.poll() is None:
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.status = self.proc.returncode
            return self.stderr()
        finally:
            unmount(self.path)
            self.errfile.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def run(*args, check=True, **kwargs):
    """Runs a real tool and returns its completed process (text mode)."""
    return subprocess.run(args, check=check, capture_output=True, **kwargs)


def wait_until(condition, what, timeout=30):
    """Polls `condition` until it returns a true value, and returns that.

    For waiting on a state the test can see (a counter of the mount or of
    the double), never on time: the timeout only turns a hang into a
    failure naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("still waiting after %d s for %s" % (timeout, what))
        time.sleep(0.02)


class MountTestCase(unittest.TestCase):
    """A test class with one double and one mount, both always cleaned up.

    Subclasses set DOUBLE_ARGS and MOUNT_OPTIONS.
    """
    DOUBLE_ARGS = ()
    MOUNT_OPTIONS = ()

    @classmethod
    def setUpClass(cls):
        cls.double = Double(*cls.DOUBLE_ARGS)
        try:
            cls.mount = Mount(cls.double, *cls.MOUNT_OPTIONS)
        except BaseException:
            cls.double.stop()
            raise
        cls.root = cls.mount.path

    @classmethod
    def tearDownClass(cls):
        try:
            err = cls.mount.stop()
        finally:
            cls.double.stop()
        check_driver_output(err, cls.mount.status)

    def path(self, *parts):
        return os.path.join(self.root, *parts)


class FreshMountTestCase(unittest.TestCase):
    """One double per class (DOUBLE_ARGS), and a fresh mount per test from
    mounted(): no cache hides what a test arms. Faults are cleared and
    stalled requests let go after each test."""
    DOUBLE_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.double = Double(*cls.DOUBLE_ARGS)

    @classmethod
    def tearDownClass(cls):
        cls.double.stop()

    def setUp(self):
        self.double.faults([])
        self.mount = None

    def tearDown(self):
        self.double.faults([])
        self.double.control("release", {})
        if self.mount:
            mount, self.mount = self.mount, None
            err = mount.stop()
            check_driver_output(err, mount.status)

    def mounted(self, *options):
        """Mounts afresh (unmounting the test's earlier mount) and resets
        the double's counters; returns the mount point."""
        if self.mount:
            self.tearDown()
        self.mount = Mount(self.double, *options)
        self.double.reset()
        return self.mount.path


def check_driver_output(err, status):
    for mark in SANITIZER_MARKS:
        if mark in err:
            raise AssertionError("sanitizer report from batchfs:\n" + err)
    if status not in (0, None):
        raise AssertionError("batchfs exited with status %s:\n%s" % (status, err))


def expected_batch(dataset, batch):
    """The batch object as GET /api/v2/batches/{id}?expand=results gives it."""
    obj = dict(batch)
    obj["results"] = dataset.results[batch["id"]]
    return obj


# ---- file names by the rules of doc/naming.md -------------------------------

NAME_MAX = 255
NAME_MAX_ID = 128


def fnv1a(data):
    """FNV-1a, 64 bits, of bytes: the hash rule 4 shows."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _utf8_len(lead):
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def sanitise_name(data):
    """Rule 1 on bytes: "/", control bytes and every byte of an ill-formed
    UTF-8 sequence become "_"; the length in bytes is kept."""
    out = bytearray()
    i = 0
    while i < len(data):
        n = _utf8_len(data[i])
        try:
            ok = n > 0 and len(data[i:i + n].decode("utf-8")) == 1
        except UnicodeDecodeError:
            ok = False
        if not ok or (n == 1 and (data[i] in b"/\x7f" or data[i] < 0x20)):
            out += b"_"
            i += 1
        else:
            out += data[i:i + n]
            i += n
    return bytes(out)


def file_names(entries, suffix):
    """{raw id: file name} for (raw id, raw name or None) pairs of one
    folder, by rules 1 to 5 of doc/naming.md (all bytes)."""
    items = []
    for rid, name in entries:
        sid = sanitise_name(rid)
        base = sanitise_name(name or b"") or sid
        items.append({"rid": rid, "sid": sid, "base": base, "hash": fnv1a(rid),
                      "unfit": not rid or len(rid) > NAME_MAX_ID})

    def tagged(it, tag):
        room = NAME_MAX - 1 - len(tag) - len(suffix)
        k = min(room, len(it["base"]))
        while 0 < k < len(it["base"]) and it["base"][k] & 0xC0 == 0x80:
            k -= 1
        return it["base"][:k] + b"~" + tag + suffix

    def candidate(it):
        if it["stage"] == 0:
            return it["base"] + suffix
        if it["stage"] == 1 and not it["unfit"]:
            return tagged(it, it["sid"])
        return tagged(it, b"%016x" % it["hash"])

    def next_stage(it):
        return (2 if it["unfit"] else 1) if it["stage"] == 0 else it["stage"] + 1

    for it in items:
        it["stage"] = 0
        if len(it["base"]) + len(suffix) > NAME_MAX:
            it["stage"] = next_stage(it)
        it["name"] = candidate(it)
    while True:
        groups = {}
        for it in items:
            groups.setdefault(it["name"], []).append(it)
        movers = []
        for group in groups.values():
            low = min(it["stage"] for it in group)
            if len(group) >= 2 and low < 2:
                movers += [it for it in group if it["stage"] == low]
        if not movers:
            break
        for it in movers:
            it["stage"] = next_stage(it)
            it["name"] = candidate(it)
    stuck = sorted((it for group in groups.values() if len(group) >= 2 for it in group),
                   key=lambda it: it["rid"])
    taken = {it["name"] for it in items if it not in stuck}
    for it in stuck:
        k = 1
        while tagged(it, b"%016x-%d" % (it["hash"], k)) in taken:
            k += 1
        it["name"] = tagged(it, b"%016x-%d" % (it["hash"], k))
        taken.add(it["name"])
    return {it["rid"]: it["name"] for it in items}
