"""benchlib - the plumbing of scripts/bench.py and its scale phases: the API
double and a mount started and always stopped, timed commands in their own
process groups, figures and how they print."""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOUBLE = os.path.join(ROOT, "scripts", "apidouble.py")
KEY = "llx-bench-key-0123456789"
STATUSES = ("pending", "processing", "completed", "failed", "skipped", "cancelled")
PAGE = 1000  # items per page: the API's maximum, which batchfs asks for
GREP_TEXT = "Timeout"  # occurs in the error_message of some failed items
ITEMS_PATH = "/api/v1/beta/batch-processing/%s/items"


class Abort(Exception):
    """The run cannot go on (the double or the mount is broken)."""


def die_on_signal(signum, frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

def run_timed(args, cwd=None, stdout=None, timeout=600, shell=False):
    """Runs a command in its own process group with stdout to a file;
    returns (seconds, exit status, stderr text). On a timeout
    (subprocess.TimeoutExpired) or an interruption the whole group is
    killed.

    The wait blocks until the command exits, and a timer kills it at the
    timeout: Popen.wait(timeout) polls, sleeping 1, 2, 4 ... 50 ms between
    looks, which rounded every figure up to 15, 31, 63, 113 ms or the next
    50 ms step, and made a 5 ms grep and a 14 ms one look the same."""
    out = open(stdout or os.devnull, "wb")
    err = tempfile.TemporaryFile()
    argv = ["sh", "-c", args[0], "sh"] + list(args[1:]) if shell else list(args)
    expired = threading.Event()
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        timer = threading.Timer(timeout, expire, (proc, expired))
        timer.start()
        try:
            status = proc.wait()
        except BaseException:
            kill_group(proc)
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        if expired.is_set():
            raise subprocess.TimeoutExpired(argv, timeout)
        err.seek(0)
        return seconds, status, err.read().decode("utf-8", "replace")
    finally:
        out.close()
        err.close()


def expire(proc, expired):
    """run_timed's timer: kills the command's group if it still runs."""
    if proc.returncode is None:
        expired.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


class Double:
    """The API double on a free loopback port, for the whole run."""

    def __init__(self, items, latency_ms, workdir, dataset=None, name="double"):
        """Serves one big extract job of `items` items, or the data set that the
        double's arguments `dataset` describe; `name` names its files in
        workdir. start_seconds is how long it took to listen."""
        port_file = os.path.join(workdir, name + ".port")
        self.log = open(os.path.join(workdir, name + ".log"), "w+")
        if dataset is None:
            # An extract job: its folder holds the item files alone (a
            # parse job's also shows its documents: the documents phase).
            dataset = ["--jobs", "0", "--batches", "0", "--big-job", str(items),
                       "--big-job-type", "extract"]
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, DOUBLE, "--port", "0", "--port-file", port_file,
             "--api-key", KEY] + list(dataset) + ["--latency-ms", str(latency_ms), "--quiet"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        try:
            self.port = self.wait_port(port_file)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - start
        self.url = "http://127.0.0.1:%d" % self.port

    def wait_port(self, port_file):
        deadline = time.monotonic() + 600  # building a big data set takes a while
        while True:
            if self.proc.poll() is not None:
                raise Abort("the API double exited:\n" + self.output())
            try:
                with open(port_file) as f:
                    return int(f.read().strip())
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise Abort("the API double did not start")
            time.sleep(0.05)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def call(self, path, data=None, auth=False):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Bearer " + KEY
        req = urllib.request.Request(self.url + path, data=data, headers=headers,
                                     method="GET" if data is None else "POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")

    def stats(self):
        return self.call("/__double/stats")

    def reset(self):
        self.call("/__double/reset", b"{}")

    def faults(self, specs):
        """Replaces the double's faults with `specs` (a list)."""
        self.call("/__double/faults", json.dumps(specs).encode())

    def memory(self):
        """VmHWM and VmRSS of the double, in bytes."""
        return proc_memory(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
        self.log.close()


def proc_memory(pid):
    """VmHWM and VmRSS of process `pid`, in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) * 1024
    return out


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


class Mount:
    """batchfs in the foreground on `path`; stop() unmounts and reaps it."""

    def __init__(self, binary, double, path, options, errlog, env_extra=None):
        self.path = path
        env = {k: v for k, v in os.environ.items()
               if k not in ("LLAMA_PARSE_API_KEY", "LLAMA_CLOUD_BASE_URL")}
        env.update(env_extra or {})
        env["LLAMA_CLOUD_API_KEY"] = KEY
        opts = ["base_url=" + double.url] + options
        self.err = tempfile.TemporaryFile(mode="w+")
        self.errlog = errlog
        self.proc = subprocess.Popen([binary, "-f", "-o", ",".join(opts), path], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self.wait_mounted()
        except BaseException:
            self.stop()
            raise

    def wait_mounted(self):
        deadline = time.monotonic() + 60
        while not is_mounted(self.path):
            if self.proc.poll() is not None:
                self.err.seek(0)
                raise Abort("batchfs exited with %d: %s" % (self.proc.returncode,
                                                            self.err.read()))
            if time.monotonic() > deadline:
                raise Abort("batchfs did not mount within 60 s")
            time.sleep(0.01)

    def memory(self):
        """VmHWM and VmRSS of the driver, in bytes."""
        return proc_memory(self.proc.pid)

    def stats(self):
        """The driver's .batchfs/stats, parsed."""
        with open(os.path.join(self.path, ".batchfs", "stats")) as f:
            return json.load(f)

    def cpu(self):
        """User plus system CPU seconds the driver has used so far."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if not is_mounted(self.path) and self.proc.poll() is None:
            self.proc.terminate()  # it never mounted: nothing to unmount
        for args in (["fusermount3", "-u", self.path], ["fusermount3", "-uz", self.path]):
            if not is_mounted(self.path):
                break
            subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while is_mounted(self.path) and time.monotonic() < deadline:
                time.sleep(0.02)
        try:
            status = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            status = "killed"
        if is_mounted(self.path):
            subprocess.run(["umount", "-l", self.path], stderr=subprocess.DEVNULL)
        self.err.seek(0)
        text = self.err.read()
        self.err.close()
        if status != 0:
            self.errlog.append("batchfs exited with status %s" % status)
        for line in text.splitlines():
            if line.strip():
                self.errlog.append(line.strip())
        return status


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------

class Figure:
    """Repetitions of one measurement: seconds, requests, in-flight maximum."""

    def __init__(self, key, label, group):
        self.key, self.label, self.group = key, label, group
        self.seconds, self.requests, self.in_flight = [], [], []
        self.endpoints, self.cpu = [], []
        self.note = ""

    def add(self, seconds, stats=None, cpu=None):
        self.seconds.append(seconds)
        if stats is not None:
            self.requests.append(stats["requests"])
            self.in_flight.append(stats["in_flight_max"])
            self.endpoints.append({k: v for k, v in stats["by_endpoint"].items() if v})
        if cpu is not None:
            self.cpu.append(cpu)

    @property
    def median(self):
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def min(self):
        return min(self.seconds) if self.seconds else None

    def as_dict(self):
        return {"label": self.label, "group": self.group, "seconds": self.seconds,
                "median_s": self.median, "min_s": self.min, "requests": self.requests,
                "in_flight_max": self.in_flight, "by_endpoint": self.endpoints,
                "driver_cpu_s": self.cpu, "note": self.note}


def fmt_s(value):
    return "-" if value is None else "%.3f" % value


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1024.0


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def sorted_lines(path, skip_first=False):
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    return sorted(lines[1:] if skip_first else lines)
