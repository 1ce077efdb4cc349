"""bench_scale - the scale phases of scripts/bench.py, chosen with --phases:

  million   one job of --million-items items (default 1,000,000) walked with
            `grep -r` on mounts with each --million-caps cache_size (default
            64M and 256M): the driver's peak resident memory (VmHWM, and
            VmRSS sampled) against 1.25 x cache_size + 32 MiB + 100 bytes for
            each inode it holds (the most .batchfs/stats showed during the
            walk), the walk's time and requests, its output against the data
            set, then every item file's sha256 (find -exec sha256sum on the
            same mount) against the data set computed here;
  accounts  an account of --account-jobs jobs (default 200,000): cold
            `ls -f jobs/` beside curl --parallel fetching the same pages over
            as many connections; then, on a mount whose cache_ttl is
            --account-ttl seconds, `cat` of the job.json of --account-read
            jobs after the job list has expired: time and requests;
  hung      --hung-folders status folders (default 50) whose item lists
            stall at the double, each listed by an `ls` in the background:
            once the double holds them all (or --hung-wait seconds passed),
            `stat` of a cached job.json and `ls -f` of the root, timed
            --hung-samples times; then every background `ls` is killed and
            reaped.

Each phase starts a double of its own and runs every side of the run in turn
(the binary, then --baseline-bin when given), so before/after figures come
from one run. A side's figures carry its prefix ("base_" for the baseline).
"""

import collections
import contextlib
import hashlib
import json
import math
import os
import signal
import subprocess
import threading
import time

from benchlib import (GREP_TEXT, ITEMS_PATH, KEY, PAGE, STATUSES, Abort, Double, Mount,
                      fmt_bytes, fmt_s, kill_group, read_bytes, run_timed)

Side = collections.namedtuple("Side", "name binary prefix env")
JOBS_PATH = "/api/v1/beta/batch-processing"
MIB = 1 << 20


def parse_size(text):
    """'64M' -> bytes (K, M, G suffixes, powers of 1024)."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def memory_bound(cap, inodes):
    """The issue's bound: 1.25 x cache_size + 32 MiB + 100 bytes per inode."""
    return int(1.25 * cap) + 32 * MIB + 100 * inodes


def held_inodes(stats):
    """The inodes the driver holds for the kernel, from .batchfs/stats:
    (count, the field it came from). The tree frees a node when the kernel
    forgets it, so inodes.known counts what the kernel holds (and their
    ancestors) when no field says it more precisely."""
    inodes = stats.get("inodes", {})
    for field in ("kernel", "held", "known"):
        if isinstance(inodes.get(field), int):
            return inodes[field], "inodes." + field
    return None, None


def median_max(values):
    values = sorted(values)
    if not values:
        return None, None
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return median, values[-1]


class Sampler:
    """Samples a mounted driver until stopped: VmRSS every 0.1 s (from /proc,
    which never blocks) and .batchfs/stats every 0.5 s (through the mount,
    on a thread of its own since a read can wait). Keeps the peaks."""

    def __init__(self, mount):
        self.mount = mount
        self.peaks = {"rss": 0, "inodes": 0, "cache": 0}
        self.inode_field = None
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.sample_rss, daemon=True),
                        threading.Thread(target=self.sample_stats, daemon=True)]
        for thread in self.threads:
            thread.start()

    def sample_rss(self):
        while not self.stop_event.wait(0.1):
            try:
                rss = self.mount.memory()["VmRSS"]
            except (OSError, KeyError):
                continue
            self.peaks["rss"] = max(self.peaks["rss"], rss)

    def sample_stats(self):
        while not self.stop_event.wait(0.5):
            try:
                stats = self.mount.stats()
            except (OSError, ValueError):
                continue
            count, field = held_inodes(stats)
            if count is not None:
                self.peaks["inodes"] = max(self.peaks["inodes"], count)
                self.inode_field = field
            cache = stats.get("cache", {})
            held = cache.get("bytes", 0) + cache.get("pages", {}).get("kept_bytes", 0)
            self.peaks["cache"] = max(self.peaks["cache"], held)

    def stop(self):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(5)  # a stats read stuck in the mount ends with it
        return self.peaks


class ScalePhases:
    """The phases above, as methods of bench.Bench (a mixin): they use its
    opts, figures, measure(), problem(), log(), mount and double."""

    def sides(self):
        sides = [Side("batchfs", self.opts.binary, "", {})]
        if self.opts.baseline_bin:
            sides.append(Side("baseline", self.opts.baseline_bin, "base_",
                              self.opts.baseline_env))
        return sides

    @contextlib.contextmanager
    def as_side(self, side):
        """Mounts and figures of the block belong to `side`."""
        saved = self.binary, self.prefix, self.env_extra
        self.binary, self.prefix, self.env_extra = side.binary, side.prefix, side.env
        try:
            yield
        finally:
            self.binary, self.prefix, self.env_extra = saved

    @contextlib.contextmanager
    def serving(self, double):
        """measure() counts the requests `double` sees in the block; the
        double is stopped at its end, and any mount of the block unmounted."""
        saved, self.double = self.double, double
        try:
            yield double
        finally:
            self.double = saved
            try:
                self.do_unmount()
            finally:
                double.stop()

    def mount_with(self, options):
        """A mount of the current side on self.double with exactly `options`."""
        self.mount = Mount(self.binary, self.double, self.mnt, options, self.driver_log,
                           self.env_extra)
        return self.mount

    def curl_list(self, fig, urls):
        """curl --parallel over max_connections connections fetching `urls`;
        checks that every answer is a 200."""
        argv = ["curl", "-s", "--no-progress-meter", "-H", "Authorization: Bearer " + KEY,
                "-w", "%{http_code} %{size_download}\\n", "--parallel", "--parallel-immediate",
                "--parallel-max", str(self.opts.max_connections)]
        for url in urls:
            argv += ["-o", "/dev/null", url]
        self.measure(fig, argv, cwd=self.work)
        codes = [line.split() for line in read_bytes(self.out).decode().splitlines()]
        if len(codes) != len(urls) or not all(c[0] == "200" for c in codes):
            self.problem("%s: expected %d answers 200, got %r" % (fig.label, len(urls),
                                                                codes[:5]))
        return sum(int(c[1]) for c in codes if len(c) == 2)

    # ---- the 1,000,000-item job ----
    def million_phase(self):
        o = self.opts
        info = self.info["million"] = {"items": o.million_items, "caps": {}}
        self.log("million: starting the API double with %d items ..." % o.million_items)
        with self.serving(Double(o.million_items, o.latency_ms, self.work,
                                 name="million")) as double:
            info["double_start_s"] = double.start_seconds
            info["double_memory"] = double.memory()
            self.log("  double listening after %.1f s, VmRSS %s"
                     % (double.start_seconds, fmt_bytes(info["double_memory"]["VmRSS"])))
            job, counts = self.million_job()
            info["job"], info["counts"] = job, counts
            started = time.perf_counter()
            expected = self.million_expected(job)
            info["expected_s"] = time.perf_counter() - started
            urls = ["%s%s?status=%s&limit=%d&offset=%d" % (double.url, ITEMS_PATH % job, s,
                                                          PAGE, k)
                    for s in STATUSES for k in range(0, max(1, counts[s]), PAGE)]
            fig = self.figure("curl_million_pages", "curl --parallel, every page of the job "
                              "(%d pages)" % len(urls), "1M-item job")
            for _ in range(o.reps):
                info["page_bytes"] = self.curl_list(fig, urls)
            self.log("  %-40s %s s" % (fig.label, fmt_s(fig.median)))
            for cap_text in o.million_caps:
                for side in self.sides():
                    with self.as_side(side):
                        self.million_walk(job, cap_text, expected)

    def million_job(self):
        jobs = self.double.call(JOBS_PATH + "?limit=10", auth=True)["items"]
        big = [j["id"] for j in jobs if j["id"].startswith("bjb-big-")]
        if len(big) != 1:
            raise Abort("the double does not serve the big job")
        counts = {s: self.double.call(ITEMS_PATH % big[0] + "?status=%s&limit=1" % s,
                                      auth=True)["total_size"] for s in STATUSES}
        return big[0], counts

    def million_expected(self, job_id):
        """What the walks must print, from the data set made here as the
        double makes it: grep's lines from the item files, sorted, and the
        sorted `sha256sum` lines of every item file."""
        import apidouble
        self.log("  computing the expected files (%d items) ..." % self.opts.million_items)
        dataset = apidouble.make_dataset(jobs=0, batches=0, big_job=self.opts.million_items,
                                         big_job_type="extract")
        if dataset.jobs[0]["id"] != job_id:
            raise Abort("the double serves job %s, the data set here is %s"
                        % (job_id, dataset.jobs[0]["id"]))
        grep, sums = [], []
        for item in dataset.items[job_id]:
            path = "jobs/%s/%s/%s.json" % (job_id, item["status"], item["item_name"])
            text = apidouble.render(item).encode()
            sums.append(b"%s  %s" % (hashlib.sha256(text).hexdigest().encode(), path.encode()))
            if GREP_TEXT.encode() in text:
                grep += [path.encode() + b":" + line for line in text.splitlines()
                         if GREP_TEXT.encode() in line]
        grep.sort()
        sums.sort()
        return {"grep": grep, "sha256": sums}

    def million_walk(self, job, cap_text, expected):
        o, cap = self.opts, parse_size(cap_text)
        info = self.info["million"]["caps"].setdefault(cap_text, {})
        side = info[self.prefix or "batchfs"] = {"cap_bytes": cap}
        self.mount_with(self.mount_options(["cache_size=%s" % cap_text]))
        try:
            side["idle_memory"] = self.mount.memory()
            sampler = Sampler(self.mount)
            try:
                fig = self.figure("bfs_million_%s_grep" % cap_text, "grep -r %s <1M job>, "
                                  "cache_size=%s" % (GREP_TEXT, cap_text), "1M-item job")
                side["grep_done"] = self.million_step(
                    fig, ["grep", "-r", "--", GREP_TEXT, "jobs/" + job])
                side["after_grep"] = self.mount.memory()
                if side["grep_done"]:
                    self.million_check_grep(fig, side, job, expected["grep"])
                fig = self.figure("bfs_million_%s_sha" % cap_text, "byte check: find "
                                  "<status folders> -exec sha256sum, cache_size=%s"
                                  % cap_text, "1M-item job")
                folders = ["jobs/%s/%s" % (job, s) for s in STATUSES]
                if self.million_step(fig, ["find \"$@\" -type f -exec sha256sum -- {} +",
                                           *folders], shell=True):
                    got = sorted(read_bytes(self.out).splitlines())
                    side["files"] = len(got)
                    side["same"] = got == expected["sha256"]
                    if not side["same"]:
                        wrong = len(set(expected["sha256"]) - set(got))
                        self.problem("%s: %d of %d files differ from the data set (or are "
                                     "missing), %d lines printed" % (fig.label, wrong,
                                                                     len(expected["sha256"]),
                                                                     len(got)))
            finally:
                side["peaks"] = sampler.stop()
                side["inode_field"] = sampler.inode_field
            side["memory"] = self.mount.memory()
            try:
                count, _ = held_inodes(self.mount.stats())
                side["inodes_end"] = count
            except (OSError, ValueError):
                pass
        finally:
            self.do_unmount()
        inodes = max(side["peaks"]["inodes"], side.get("inodes_end") or 0)
        side["bound_bytes"] = memory_bound(cap, inodes)
        self.log("  %s cache_size=%s: grep VmHWM %s, end VmHWM %s, bound %s (%d inodes), "
                 "files same: %s" % (self.prefix or "batchfs", cap_text,
                                     fmt_bytes(side["after_grep"]["VmHWM"]),
                                     fmt_bytes(side["memory"]["VmHWM"]),
                                     fmt_bytes(side["bound_bytes"]), inodes, side.get("same")))

    def million_step(self, fig, command, shell=False):
        """One timed walk of the mount; False when it timed out."""
        try:
            self.measure(fig, command, cwd=self.mnt, shell=shell,
                         timeout=self.opts.million_timeout)
        except subprocess.TimeoutExpired:
            stats, cpu = self.timed_out
            fig.add(float(self.opts.million_timeout), stats, cpu)
            fig.note = "stopped after %d s" % self.opts.million_timeout
            self.problem("%s: did not finish within %d s" % (fig.label,
                                                             self.opts.million_timeout))
            return False
        self.log("  %-40s %s s, %s requests" % (fig.label, fmt_s(fig.median),
                                                fig.requests[-1:]))
        return True

    def million_check_grep(self, fig, side, job, expected):
        """grep's lines from the item files must be the data set's; the
        lines from the job's other files (items.ndjson, errors.tsv) are
        counted."""
        folders = tuple(("jobs/%s/%s/" % (job, s)).encode() for s in STATUSES)
        lines = read_bytes(self.out).splitlines()
        mine = sorted(line for line in lines if line.startswith(folders))
        side["grep_item_lines"], side["grep_other_lines"] = len(mine), len(lines) - len(mine)
        if mine != expected:
            self.problem("%s: %d lines from item files, expected %d (or they differ)"
                         % (fig.label, len(mine), len(expected)))

    def million_report(self):
        info, lines = self.info["million"], []
        lines.append("million: one job of %d items (%s), %g ms per request; double "
                     "listening after %.1f s (VmRSS %s), expected data computed in %.1f s"
                     % (info["items"], ", ".join("%s %d" % (s, info["counts"][s])
                                                 for s in STATUSES),
                        self.opts.latency_ms, info["double_start_s"],
                        fmt_bytes(info["double_memory"]["VmRSS"]), info["expected_s"]))
        fig = self.figures["curl_million_pages"]
        lines.append("the double serves every page (%s) to curl --parallel in %s s"
                     % (fmt_bytes(info["page_bytes"]), fmt_s(fig.median)))
        row = "%-10s %-9s %9s %8s %9s %10s %10s %10s %9s %12s %5s %6s"
        head = row % ("cap", "side", "grep s", "drv cpu", "requests", "VmHWM", "peak RSS",
                      "bound", "inodes", "VmHWM+check", "same", "result")
        lines += [head, "-" * len(head)]
        for cap_text, sides in info["caps"].items():
            for name, side in sides.items():
                key = ("" if name == "batchfs" else name) + "bfs_million_%s_grep" % cap_text
                fig = self.figures.get(key)
                hwm = side["after_grep"]["VmHWM"]
                lines.append(row % (cap_text, "baseline" if name != "batchfs" else name,
                                    fmt_s(fig.median), fmt_s(fig.cpu[-1] if fig.cpu else None),
                                    fig.requests[-1] if fig.requests
                                    else "-", fmt_bytes(hwm), fmt_bytes(side["peaks"]["rss"]),
                                    fmt_bytes(side["bound_bytes"]),
                                    max(side["peaks"]["inodes"], side.get("inodes_end") or 0),
                                    fmt_bytes(side["memory"]["VmHWM"]),
                                    {True: "yes", False: "NO", None: "-"}[side.get("same")],
                                    "PASS" if hwm <= side["bound_bytes"] else "FAIL"))
        field = next((s.get("inode_field") for c in info["caps"].values()
                      for s in c.values() if s.get("inode_field")), None)
        lines.append("(bound: 1.25 x cache_size + 32 MiB + 100 B x inodes, inodes the most "
                     "%s showed during the walks; drv cpu: the driver's user+sys s of the "
                     "grep walk; VmHWM after the grep walk; VmHWM+check: after the sha256 "
                     "walk of every item file too; same: every item file's sha256 equals the "
                     "data set's)" % (field or "-"))
        return lines

    # ---- the 200,000-job account ----
    def accounts_phase(self):
        o = self.opts
        info = self.info["accounts"] = {"jobs": o.account_jobs, "sides": {}}
        self.log("accounts: starting the API double with %d jobs ..." % o.account_jobs)
        dataset = ["--jobs", str(o.account_jobs), "--items", "0", "--batches", "0"]
        with self.serving(Double(0, o.latency_ms, self.work, dataset, "accounts")) as double:
            info["double_start_s"] = double.start_seconds
            info["double_memory"] = double.memory()
            urls = ["%s%s?limit=%d&offset=%d" % (double.url, JOBS_PATH, PAGE, k)
                    for k in range(0, o.account_jobs, PAGE)]
            curl = self.figure("curl_accounts", "curl --parallel, the job list (%d pages, "
                               "%d conns)" % (len(urls), o.max_connections), "200k-job account")
            names = None
            for _ in range(o.reps):
                info["page_bytes"] = self.curl_list(curl, urls)
                for side in self.sides():
                    with self.as_side(side):
                        names = self.accounts_listing() or names
            self.log("  %-40s %s s" % (curl.label, fmt_s(curl.median)))
            if names:
                for side in self.sides():
                    with self.as_side(side):
                        self.accounts_expired(names)

    def accounts_listing(self):
        """A cold `ls -f jobs/` on a fresh mount; the job ids it printed."""
        fig = self.figure("bfs_accounts_ls", "batchfs cold ls -f jobs/ (%d jobs)"
                          % self.opts.account_jobs, "200k-job account")
        long_fig = self.figure("bfs_accounts_ls_l", "batchfs ls -l jobs/ after it (listed)",
                               "200k-job account")
        self.mount_with(self.mount_options())
        try:
            self.measure(fig, ["ls", "-f", "--", "jobs"], cwd=self.mnt)
            names = [n for n in read_bytes(self.out).decode().splitlines()
                     if n not in (".", "..")]
            # What every job's attributes cost once the list is at hand.
            self.measure(long_fig, ["ls", "-l", "--", "jobs"], cwd=self.mnt)
        finally:
            self.do_unmount()
        if len(names) != self.opts.account_jobs:
            self.problem("%s: %d jobs, expected %d" % (fig.label, len(names),
                                                       self.opts.account_jobs))
        self.log("  %-40s %s s, %s requests" % (fig.label, fmt_s(fig.seconds[-1]),
                                                fig.requests[-1:]))
        return names

    def accounts_expired(self, names):
        """On a mount with cache_ttl --account-ttl: the job list once, then,
        once it expired, `cat` of the job.json of --account-read jobs spread
        over the list."""
        o = self.opts
        ttl = o.account_ttl
        every = max(1, len(names) // o.account_read)
        chosen = names[::every][:o.account_read]
        side = self.info["accounts"]["sides"][self.prefix or "batchfs"] = {
            "ttl_s": ttl, "read": len(chosen)}
        self.mount_with(["cache_ttl=%d" % ttl, "terminal_ttl=%d" % ttl,
                         "max_connections=%d" % o.max_connections])
        try:
            fig = self.figure("bfs_accounts_ls_ttl", "batchfs ls -f jobs/, cache_ttl=%d" % ttl,
                              "200k-job account")
            self.measure(fig, ["ls", "-f", "--", "jobs"], cwd=self.mnt)
            # The list expires ttl seconds after it was fetched: waiting is
            # the point here, there is no state to wait on instead.
            time.sleep(ttl + 1)
            fig = self.figure("bfs_accounts_expired", "cat job.json of %d jobs, job list "
                              "expired" % len(chosen), "200k-job account")
            self.measure(fig, ["cat -- \"$@\"", *("jobs/%s/job.json" % n for n in chosen)],
                         cwd=self.mnt, shell=True)
            got = read_bytes(self.out).count(b'"id": "bjb-')
            if got != len(chosen):
                self.problem("%s: %d job objects read, expected %d" % (fig.label, got,
                                                                      len(chosen)))
            side["by_endpoint"] = fig.endpoints[-1]
        finally:
            self.do_unmount()
        self.log("  %-40s %s s, %s" % (fig.label, fmt_s(fig.median), side["by_endpoint"]))

    def accounts_report(self):
        info, lines = self.info["accounts"], []
        lines.append("accounts: %d jobs, %g ms per request, max_connections=%d; "
                     "double listening after %.1f s (VmRSS %s), job list %s"
                     % (info["jobs"], self.opts.latency_ms, self.opts.max_connections,
                        info["double_start_s"], fmt_bytes(info["double_memory"]["VmRSS"]),
                        fmt_bytes(info.get("page_bytes", 0))))
        row = "%-58s %9s %9s %9s %s"
        head = row % ("measurement", "median s", "max s", "requests", "")
        lines += [head, "-" * len(head)]
        for key in ("curl_accounts", "bfs_accounts_ls", "base_bfs_accounts_ls",
                    "bfs_accounts_ls_l", "base_bfs_accounts_ls_l"):
            fig = self.figures.get(key)
            if fig:
                ratio = "" if key == "curl_accounts" else \
                    "%s curl" % self.ratio(fig, "curl_accounts")
                lines.append(row % (fig.label, fmt_s(fig.median), fmt_s(max(fig.seconds)),
                                    fig.requests[-1] if fig.requests else "-", ratio))
        for prefix in [s.prefix for s in self.sides()]:
            fig = self.figures.get(prefix + "bfs_accounts_expired")
            if fig:
                by = ", ".join("%s %d" % kv for kv in sorted(fig.endpoints[-1].items()))
                lines.append(row % (fig.label, fmt_s(fig.median), fmt_s(max(fig.seconds)),
                                    fig.requests[-1], "(%s)" % (by or "none")))
        lines.append("(target: ls -f jobs/ <= 1.5x curl; after expiry, the job list again "
                     "(%d pages), not a request per job)" % math.ceil(info["jobs"] / PAGE))
        return lines

    # ---- stat while folders hang ----
    def hung_phase(self):
        o = self.opts
        info = self.info["hung"] = {"folders": o.hung_folders, "sides": {}}
        jobs = math.ceil(o.hung_folders / len(STATUSES)) + 1
        dataset = ["--jobs", str(jobs), "--items", "30", "--batches", "0"]
        with self.serving(Double(0, o.latency_ms, self.work, dataset, "hung")) as double:
            ids = [j["id"] for j in double.call(JOBS_PATH + "?limit=1000", auth=True)["items"]]
            # The first job's job.json is the cached file; the others hang.
            folders = [(j, s) for j in ids[1:] for s in STATUSES][:o.hung_folders]
            for side in self.sides():
                with self.as_side(side):
                    self.hung_side(ids[0], folders)

    def hung_side(self, cached_job, folders):
        o = self.opts
        side = self.info["hung"]["sides"][self.prefix or "batchfs"] = {}
        stall = [{"kind": "stall", "ms": 600000,
                  "path": "^%s/%s/items$" % (JOBS_PATH, job),
                  "query": "(^|&)status=%s(&|$)" % status} for job, status in folders]
        # Enough connections that every hung folder can reach the double:
        # the wait below counts the requests the double holds.
        connections = max(o.max_connections, len(folders) + 8)
        side["max_connections"] = connections
        self.mount_with(["cache_ttl=3600", "terminal_ttl=3600", "timeout=600",
                         "max_connections=%d" % connections])
        cached = "jobs/%s/job.json" % cached_job
        background = []
        try:
            for argv in (["ls", "-f", "--", "jobs"], ["cat", "--", cached],
                         ["ls", "-f", "--", "."]):
                seconds, status, err = run_timed(argv, cwd=self.mnt, stdout=self.out,
                                                 timeout=o.timeout)
                if status != 0:
                    raise Abort("%s before the stalls: exit %d: %s" % (argv, status, err))
            self.double.faults(stall)
            self.double.reset()
            for job, status in folders:
                background.append(subprocess.Popen(
                    ["ls", "-f", "--", "jobs/%s/%s" % (job, status)], cwd=self.mnt,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL, start_new_session=True))
            start, held = time.monotonic(), 0
            while time.monotonic() - start < o.hung_wait:
                held = self.double.stats()["by_endpoint"]["list_items"]
                if held >= len(folders):
                    break
                time.sleep(0.05)
            side["held"], side["held_after_s"] = held, time.monotonic() - start
            self.log("  %s: %d of %d folders held at the double after %.1f s"
                     % (self.prefix or "batchfs", held, len(folders), side["held_after_s"]))
            self.hung_samples(cached)
        finally:
            try:
                self.double.faults([])
            finally:
                side["background"] = self.end_background(background)
                self.do_unmount()
                side["background"]["after_unmount"] = self.reap(background)

    def hung_samples(self, cached):
        """--hung-samples timings of `stat` of the cached file and `ls -f` of
        the root; a command that times out once is not tried again."""
        o = self.opts
        commands = (("bfs_hung_stat", "stat %s (cached) while folders hang" % "job.json",
                     ["stat", "--", cached]),
                    ("bfs_hung_ls_root", "ls -f of the root while folders hang",
                     ["ls", "-f", "--", "."]))
        for key, label, argv in commands:
            fig = self.figure(key, label, "hung folders")
            for _ in range(o.hung_samples):
                try:
                    seconds, status, err = run_timed(argv, cwd=self.mnt, stdout=self.out,
                                                     timeout=o.hung_timeout)
                except subprocess.TimeoutExpired:
                    fig.add(float(o.hung_timeout))
                    fig.note = "timed out after %d s, not tried again" % o.hung_timeout
                    break
                fig.add(seconds)
                if status != 0:
                    self.problem("%s: exit status %d (%s)" % (label, status, err.strip()))
            median, worst = median_max(fig.seconds)
            self.log("  %-40s median %s s, max %s s %s" % (fig.label, fmt_s(median),
                                                           fmt_s(worst), fig.note))

    def end_background(self, procs):
        """Kills the background commands still running, reaps them; what
        had ended before (and how) and what had to be killed."""
        out = {"ended_before_kill": 0, "statuses": {}, "killed": 0, "not_reaped": 0}
        for proc in procs:
            status = proc.poll()
            if status is not None:
                out["ended_before_kill"] += 1
                out["statuses"][str(status)] = out["statuses"].get(str(status), 0) + 1
                continue
            out["killed"] += 1
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        out["not_reaped"] = self.reap(procs, 10)
        return out

    def reap(self, procs, seconds=30):
        """Waits for every process (they were killed); how many still run."""
        deadline = time.monotonic() + seconds
        left = 0
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                left += 1
        if left and seconds == 30:
            self.problem("%d background ls did not end even after the unmount" % left)
            for proc in procs:
                if proc.poll() is None:
                    kill_group(proc)
        return left

    def hung_report(self):
        info, lines = self.info["hung"], []
        lines.append("hung folders: %d status folders stalled at the double (%g ms per "
                     "request), one `ls` on each in the background"
                     % (info["folders"], self.opts.latency_ms))
        row = "%-42s %-9s %7s %9s %9s %8s"
        head = row % ("while the folders hang", "side", "held", "median s", "max s", "samples")
        lines += [head, "-" * len(head)]
        for name, side in info["sides"].items():
            prefix = "" if name == "batchfs" else name
            for key in ("bfs_hung_stat", "bfs_hung_ls_root"):
                fig = self.figures.get(prefix + key)
                if not fig:
                    continue
                median, worst = median_max(fig.seconds)
                cut = ">" if fig.note else ""  # the slowest sample was stopped
                label = fig.label.replace(" while folders hang", "")
                lines.append(row % (label.replace(" [baseline]", ""),
                                    "baseline" if prefix else "batchfs",
                                    "%d/%d" % (side.get("held", 0), info["folders"]),
                                    fmt_s(median), cut + fmt_s(worst), len(fig.seconds))
                             + ("  " + fig.note if fig.note else ""))
            bg = side.get("background", {})
            lines.append("  %s: background ls: %d ended by themselves (%s), %d killed, of "
                         "which %d still ran 10 s after SIGKILL, %d left after the unmount; "
                         "max_connections=%d"
                         % ("baseline" if prefix else "batchfs", bg.get("ended_before_kill", 0),
                            ", ".join("exit %s: %d" % kv for kv in bg.get("statuses", {}).items())
                            or "none", bg.get("killed", 0), bg.get("not_reaped", 0),
                            bg.get("after_unmount", 0), side.get("max_connections", 0)))
        return lines

    # ---- before/after ----
    def baseline_report(self):
        """Every figure measured on both sides, side by side."""
        if not self.opts.baseline_bin:
            return []
        env = " ".join("%s=%s" % kv for kv in sorted(self.opts.baseline_env.items()))
        lines = ["before/after in one run: %s against the baseline %s%s"
                 % (self.opts.binary, self.opts.baseline_bin,
                    " run with " + env if env else "")]
        row = "%-64s %10s %10s %8s"
        head = row % ("figure (median s)", "batchfs", "baseline", "ratio")
        lines += [head, "-" * len(head)]
        for key, fig in self.figures.items():
            base = self.figures.get("base_" + key)
            if key.startswith("base_") or base is None:
                continue
            lines.append(row % (fig.label, fmt_s(fig.median), fmt_s(base.median),
                                self.ratio(fig, "base_" + key)))
        return lines

    def scale_report(self):
        lines = []
        for phase, report in (("million", self.million_report),
                              ("accounts", self.accounts_report),
                              ("hung", self.hung_report)):
            if phase in self.info:
                lines += [""] + report()
        return lines

    def scale_json(self):
        return {k: self.info[k] for k in ("million", "accounts", "hung") if k in self.info}


def add_arguments(p):
    """The scale phases' options."""
    g = p.add_argument_group("scale phases (--phases million,accounts,hung; off by default)")
    g.add_argument("--million-items", type=int, default=1000000,
                   help="items of the job the million phase walks (default 1000000)")
    g.add_argument("--million-caps", default="64M,256M",
                   help="cache_size of each million walk, comma separated (default 64M,256M)")
    g.add_argument("--million-timeout", type=int, default=1200,
                   help="seconds one million walk may take (default 1200)")
    g.add_argument("--account-jobs", type=int, default=200000,
                   help="jobs of the accounts phase (default 200000)")
    g.add_argument("--account-read", type=int, default=1000,
                   help="jobs whose job.json is read after the list expired (default 1000)")
    g.add_argument("--account-ttl", type=int, default=10,
                   help="cache_ttl of the expiry mount, seconds (default 10)")
    g.add_argument("--hung-folders", type=int, default=50,
                   help="status folders that hang (default 50)")
    g.add_argument("--hung-samples", type=int, default=10,
                   help="timings of stat and of ls of the root (default 10)")
    g.add_argument("--hung-wait", type=int, default=30,
                   help="seconds to wait for the double to hold every folder (default 30)")
    g.add_argument("--hung-timeout", type=int, default=20,
                   help="seconds one timed stat or ls may take (default 20)")


def check_arguments(p, opts):
    opts.million_caps = [c.strip() for c in opts.million_caps.split(",") if c.strip()]
    try:
        for cap in opts.million_caps:
            parse_size(cap)
    except ValueError:
        p.error("--million-caps takes sizes such as 64M,256M")
    if min(opts.million_items, opts.account_jobs, opts.account_read, opts.hung_folders,
           opts.hung_samples) < 1:
        p.error("the scale phases' counts must be >= 1")
