"""Shared machinery of the mount tests: the API double and a mounted batchfs.

Every test mounts the real binary (BATCHFS_BIN) against the double from
scripts/apidouble.py on loopback, looks at the mount with the real tools, and
always unmounts and stops both processes, even when it fails. A sanitizer
report in the driver's output fails the test that caused it.
"""
import json
import os
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
