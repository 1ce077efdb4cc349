#!/usr/bin/env python3
"""bench - how fast batchfs walks one big job, next to what the network and
the kernel allow.

Starts the API double (scripts/apidouble.py) once with one job of N items
(--big-job: 90% completed, 5% failed, 3% skipped, 1% cancelled, 0.5%
processing, 0.5% pending; an extract job, so that its folder holds the item
files alone: a parse job's also shows its documents, which the documents
phase measures) and a simulated round trip per request, and measures in one
run:

  batchfs   cold `ls -f` and `ls -l` of completed/, cold `grep -rl` over
            failed/, warm `grep -r` over the whole job, `find | wc -l` cold
            and warm, the driver's peak RSS (VmHWM) and the API requests of
            every step (the double's counter, reset before each step);
  network   the pages of completed/ fetched with curl: in parallel over as
            many connections as batchfs may use (curl --parallel
            --parallel-max M, HTTP/1.1 keep-alive), and in series over one
            connection, as a script paging with an SDK does;
  kernel    the same files copied to tmpfs (cp -a from the warm mount) and
            the same commands run there;
  bounds    on a mount that has listed completed/ once: `ls -f` again
            after the kernel's caches are dropped (drop_caches, as root),
            which is the readdirplus that must follow the last page of a
            cold listing, and `ls -f` and `ls -l` with everything cached,
            whose difference is what ls -l costs in ls and in the kernel
            alone; from them, which targets are within reach at all;
  capped    mounts with cache_size a third and a half of the item bytes
            (below and above completed/'s entries alone): the peaks of the
            cache's own bytes (listings and pages, sampled from
            .batchfs/stats) and of RSS, requests, and per-file checksums of
            a full walk compared with the tmpfs copy (each walk stopped
            after --capped-timeout seconds);
  TLS       nghttpx (scripts/tlsproxy.py) in front of the double with a CA
            made for the run: cold `ls -f` of completed/ with HTTP/2 and
            HTTP/1.1 offered, and with HTTP/1.1 alone, beside curl
            --parallel over the same proxy and as many connections; the
            connections each opened (batchfs's from .batchfs/stats, curl's
            num_connects summed) and the protocol spoken.

Request targets count the item-list requests (list_items); the lookup of
the job folder itself (get_job) is shown next to them. The memory target
divides by the sum of the sizes of the item files as the mount shows them
(pretty-printed), taken from the tmpfs copy.

"Cold" is a fresh mount for every repetition, so neither the kernel nor the
driver holds anything. Each figure is the median (and min) of --reps runs.
Every command's output is checked (entry counts, or the output compared with
the same command on the tmpfs copy), so a broken mount cannot pass for a
fast one. Output goes to a file on tmpfs, never to the terminal.

Usage: scripts/bench.py [-n ITEMS] [--latency-ms MS] [--reps R]
                        [--max-connections M] [--json PATH]
                        [--capped-timeout S] [--binary PATH] [--tls-only] [-q]
                        [--phases standard,documents,million,accounts,hung]
                        [--baseline-bin PATH]
--phases picks the phases: standard (everything above), documents (see
bench_docs.py: cold and second `grep -rl` over the markdown/ of a parse_v2
batch of 1,000 documents and of a v1 parse job of 10,000, against curl
--parallel fetching the same documents and grep on a tmpfs copy, the requests
against documents + listing pages, and the batch's cold grep over TLS with
HTTP/2 and HTTP/1.1), both run by default, and the scale phases of
bench_scale.py (a 1,000,000-item job walked under cache_size 64M and 256M, a
200,000-job account, stat while 50 folders hang), which take minutes each.
--baseline-bin measures a second binary in the same run, taking turns with
the first, and prints every figure of both side by side; --baseline-env runs
the baseline (by default the same binary) with settings of its own, such as
an allocator's tunables.
At the defaults (100,000 items, 20 ms, 3 reps) a run takes about three and a
half minutes on two cores, two of them the documents phase's.
Needs root or the right to mount FUSE, fusermount3, curl, openssl, nghttpx
(nghttp2-proxy), and build/batchfs.
Exit status: 0 when every target and check passed, 1 otherwise, 2 when the
run could not be completed.
"""

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import bench_docs
import bench_scale
import tlsproxy
from benchlib import (GREP_TEXT, ITEMS_PATH, KEY, PAGE, ROOT, STATUSES, Abort, Double, Figure,
                      Mount,
                      count_lines, die_on_signal, fmt_bytes, fmt_s, read_bytes, run_timed,
                      sorted_lines)

PHASES = ("standard", "documents", "million", "accounts", "hung")
DEFAULT_PHASES = "standard,documents"


class Bench(bench_scale.ScalePhases, bench_docs.DocsPhases):
    def __init__(self, opts):
        self.opts = opts
        # The side being measured: its binary, and the prefix of its
        # figures' keys ("" for --binary, "base_" for --baseline-bin).
        self.binary, self.prefix = opts.binary, ""
        self.env_extra = {}  # the side's environment for batchfs (--baseline-env)
        self.figures = {}
        self.checks = []      # (name, value text, target text, passed)
        self.problems = []    # output or exit status checks that failed
        self.driver_log = []  # stderr lines of every batchfs process
        self.info = {}
        self.work = tempfile.mkdtemp(prefix="batchfs-bench-")
        self.shm = tempfile.mkdtemp(prefix="batchfs-bench-", dir="/dev/shm")
        self.mnt = os.path.join(self.work, "mnt")
        os.mkdir(self.mnt)
        self.out = os.path.join(self.shm, "out")  # command output, on tmpfs
        self.copy = os.path.join(self.shm, "copy")  # the tmpfs copy: copy/jobs/<id>
        os.makedirs(os.path.join(self.copy, "jobs"))
        self.double = None
        self.mount = None
        self.timed_out = None  # (stats, driver cpu) of a command that timed out

    # ---- plumbing ----
    def figure(self, key, label, group):
        if self.prefix and key.startswith("bfs_"):
            key, label = self.prefix + key, label + " [baseline]"
        fig = self.figures.get(key)
        if fig is None:
            fig = self.figures[key] = Figure(key, label, group)
        return fig

    def log(self, text):
        if not self.opts.quiet:
            print(text, file=sys.stderr, flush=True)

    def mount_options(self, extra=()):
        return ["cache_ttl=3600", "terminal_ttl=3600",
                "max_connections=%d" % self.opts.max_connections] + list(extra)

    def do_mount(self, extra=()):
        self.mount = Mount(self.binary, self.double, self.mnt, self.mount_options(extra),
                           self.driver_log, self.env_extra)
        return self.mount

    def do_unmount(self):
        if self.mount is not None:
            mount, self.mount = self.mount, None
            mount.stop()

    def problem(self, text):
        self.problems.append(text)
        self.log("  problem: " + text)

    def measure(self, fig, command, cwd, shell=False, reset=True, timeout=None):
        """One repetition: resets the double's counter, times the command
        with its output to self.out, records seconds, requests and the
        driver's CPU time. A timeout is recorded (requests so far) and
        re-raised."""
        if reset:
            self.double.reset()
        cpu = self.mount.cpu() if self.mount else None
        try:
            seconds, status, err = run_timed(command, cwd=cwd, stdout=self.out,
                                             timeout=timeout or self.opts.timeout,
                                             shell=shell)
        except subprocess.TimeoutExpired:
            self.timed_out = (self.double.stats() if reset else None,
                              self.mount.cpu() - cpu if self.mount else None)
            raise
        stats = self.double.stats() if reset else None
        fig.add(seconds, stats, self.mount.cpu() - cpu if self.mount else None)
        if status != 0:
            self.problem("%s: exit status %s (%s)" % (fig.label, status, err.strip()[:300]))
        elif err.strip():
            self.problem("%s: stderr: %s" % (fig.label, err.strip()[:300]))
        return seconds

    # ---- the data set ----
    def discover(self):
        jobs = self.double.call("/api/v1/beta/batch-processing?limit=10", auth=True)["items"]
        big = [j for j in jobs if j["id"].startswith("bjb-big-")]
        if len(big) != 1:
            raise Abort("the double does not serve the big job")
        self.job = big[0]["id"]
        self.path = "jobs/" + self.job  # relative to the mount and to the copy
        self.counts = {}
        for status in STATUSES:
            page = self.double.call(ITEMS_PATH % self.job + "?status=%s&limit=1" % status,
                                    auth=True)
            self.counts[status] = page["total_size"]
        if sum(self.counts.values()) != self.opts.items:
            raise Abort("the double serves %d items, not %d" % (sum(self.counts.values()),
                                                                self.opts.items))

    def pages(self, status):
        """Requests a cold listing of one folder may cost: its pages (an
        empty folder still costs one) plus at most one."""
        return max(1, math.ceil(self.counts[status] / PAGE)) + 1

    # ---- the steps ----
    def curl_pages(self, base_url, parallel, *options):
        """curl fetching every page of completed/ from base_url, in parallel
        over max_connections connections (opened at once rather than
        waiting to multiplex) or in series; one output line per page:
        status, bytes, connections opened, protocol."""
        n = math.ceil(self.counts["completed"] / PAGE)
        argv = ["curl", "-s", "--no-progress-meter", "-H", "Authorization: Bearer " + KEY,
                "-w", "%{http_code} %{size_download} %{num_connects} %{http_version}\\n"]
        if parallel:
            argv += ["--parallel", "--parallel-max", str(self.opts.max_connections)]
            if parallel != "multiplex":
                argv.append("--parallel-immediate")
        argv += list(options)
        for k in range(0, n * PAGE, PAGE):
            argv += ["-o", "/dev/null", "%s%s?status=completed&limit=%d&offset=%d"
                     % (base_url, ITEMS_PATH % self.job, PAGE, k)]
        return n, argv

    def measure_curl(self, fig, n, argv):
        """One repetition of curl_pages' command; checks every answer and
        returns the answers' lines, split."""
        self.measure(fig, argv, cwd=self.work)
        codes = [line.split() for line in read_bytes(self.out).decode().splitlines()]
        if len(codes) != n or not all(c[0] == "200" for c in codes):
            self.problem("%s: expected %d answers 200, got %r" % (fig.label, n, codes[:5]))
        return codes

    def network_floor(self):
        conns = self.opts.max_connections
        for key, label, parallel in (
                ("curl_parallel", "curl --parallel, %d connections" % conns, True),
                ("curl_serial", "curl in series, 1 connection", False)):
            n, argv = self.curl_pages(self.double.url, parallel)
            fig = self.figure(key, label + " (%d pages)" % n, "network floor")
            for _ in range(self.opts.reps):
                codes = self.measure_curl(fig, n, argv)
                sizes = [int(c[1]) for c in codes if len(c) >= 2]
                self.info["completed_page_bytes"] = sum(sizes)
                self.info["largest_page_bytes"] = max(sizes, default=0)
            self.log("  %-40s %s s" % (fig.label, fmt_s(fig.median)))

    # The TLS phase: nghttpx in front of the double, offering h2 and
    # http/1.1 by ALPN, or http/1.1 alone. (key suffix, label, http2)
    TLS_VARIANTS = (("h2", "HTTP/2 offered", True), ("h1", "HTTP/1.1 only", False))

    def tls_curl(self, fig, info, n, argv):
        """curl over the proxy, each repetition's connections summed."""
        info["curl_connections"], info["curl_versions"] = [], []
        for _ in range(self.opts.reps):
            codes = self.measure_curl(fig, n, argv)
            info["curl_connections"].append(sum(int(c[2]) for c in codes if len(c) >= 4))
            info["curl_versions"] = sorted({c[3] for c in codes if len(c) >= 4})
        self.log("  %-40s %s s, connections %s" % (fig.label, fmt_s(fig.median),
                                                   info["curl_connections"]))

    def tls_phase(self):
        """Cold `ls -f` of completed/ over TLS, through nghttpx with HTTP/2
        offered and with HTTP/1.1 alone, beside curl --parallel over the same
        proxy and as many connections: seconds, and connections opened
        (curl's num_connects summed; batchfs's .batchfs/stats)."""
        certs = tlsproxy.Certificates(os.path.join(self.work, "certs"))
        os.mkdir(certs.dir)
        certs.make()
        self.info.setdefault("tls", {})
        for suffix, name, http2 in self.TLS_VARIANTS:
            proxy = tlsproxy.TlsProxy(self.double.port, certs.pair("good"), http2=http2,
                                      workdir=self.work)
            info = self.info["tls"][suffix] = {"bfs_connections": [], "bfs_versions": []}
            try:
                version = "--http2" if http2 else "--http1.1"
                n, argv = self.curl_pages(proxy.url, True, "--cacert", certs.ca, version)
                fig = self.figure("tls_curl_" + suffix, "curl --parallel over TLS, %s, %d conns"
                                  % (name, self.opts.max_connections), "TLS")
                self.tls_curl(fig, info, n, argv)
                if http2:
                    # What one multiplexed connection does, for reference.
                    n, argv = self.curl_pages(proxy.url, "multiplex", "--cacert", certs.ca,
                                              version)
                    fig = self.figure("tls_curl_mux", "curl --parallel over TLS, HTTP/2 "
                                      "multiplexed", "TLS")
                    self.tls_curl(fig, self.info["tls"].setdefault("mux", {}), n, argv)
                fig = self.figure("bfs_tls_ls_f_" + suffix, "batchfs cold ls -f completed/ "
                                  "over TLS, %s" % name, "TLS")
                self.cold_listing(fig, info, proxy, ["ca_file=" + certs.ca])
            finally:
                proxy.stop()

    def cold_listing(self, fig, info, server, extra):
        """Cold `ls -f` of completed/ on fresh mounts of `server`, with the
        connections each opened and the protocol it spoke."""
        info["bfs_connections"], info["bfs_versions"] = [], []
        for _ in range(self.opts.reps):
            self.mount = Mount(self.binary, server, self.mnt, self.mount_options(extra),
                               self.driver_log, self.env_extra)
            try:
                self.measure(fig, self.commands()[0][2], cwd=self.mnt)
                with open(os.path.join(self.mnt, ".batchfs", "stats")) as f:
                    connections = json.load(f)["connections"]
            finally:
                self.do_unmount()
            self.check_count(fig.label, self.out, self.counts["completed"] + 2)
            info["bfs_connections"].append(connections["opened"])
            info["bfs_versions"] = [connections["http_version"]]
        self.log("  %-40s %s s, connections %s" % (fig.label, fmt_s(fig.median),
                                                   info["bfs_connections"]))

    def tls_report(self):
        """The TLS phase's lines: figures, connections, ratios."""
        f, lines = self.figures, []
        lines.append("TLS: nghttpx on 127.0.0.1 in front of the double (%g ms per request), "
                     "cold ls -f of completed/ (%d entries), max_connections=%d"
                     % (self.opts.latency_ms, self.counts["completed"],
                        self.opts.max_connections))
        row = "%-38s %9s %9s %14s %9s"
        head = row % ("cold listing", "median s", "min s", "connections", "protocol")
        lines += [head, "-" * len(head)]
        for who, figure, suffix, side in (
                ("curl --parallel, plain HTTP/1.1", "curl_parallel", None, None),
                ("batchfs ls -f, plain HTTP/1.1", "bfs_cold_ls_f", "plain", "bfs"),
                ("curl --parallel, HTTP/2 offered", "tls_curl_h2", "h2", "curl"),
                ("curl --parallel, HTTP/2 multiplexed", "tls_curl_mux", "mux", "curl"),
                ("batchfs ls -f, HTTP/2 offered", "bfs_tls_ls_f_h2", "h2", "bfs"),
                ("curl --parallel, HTTP/1.1 only", "tls_curl_h1", "h1", "curl"),
                ("batchfs ls -f, HTTP/1.1 only", "bfs_tls_ls_f_h1", "h1", "bfs")):
            info, fig = self.info["tls"].get(suffix, {}), f[figure]
            lines.append(row % (who, fmt_s(fig.median), fmt_s(fig.min),
                                "/".join(map(str, info.get("%s_connections" % side, "-"))),
                                ",".join(info.get("%s_versions" % side, "-"))))
        lines.append("")
        for suffix, name, _ in self.TLS_VARIANTS:
            lines.append("batchfs / curl --parallel, %s: %s"
                         % (name, self.ratio(f["bfs_tls_ls_f_" + suffix], "tls_curl_" + suffix)))
        lines.append("batchfs HTTP/2 / batchfs HTTP/1.1: %s"
                     % self.ratio(f["bfs_tls_ls_f_h2"], "bfs_tls_ls_f_h1"))
        lines.append("batchfs HTTP/2 / curl HTTP/2 multiplexed: %s"
                     % self.ratio(f["bfs_tls_ls_f_h2"], "tls_curl_mux"))
        lines.append("curl HTTP/2 / curl HTTP/1.1: %s" % self.ratio(f["tls_curl_h2"],
                                                                     "tls_curl_h1"))
        lines.append("batchfs over TLS (HTTP/2, HTTP/1.1) / plain HTTP: %s, %s"
                     % (self.ratio(f["bfs_tls_ls_f_h2"], "bfs_cold_ls_f"),
                        self.ratio(f["bfs_tls_ls_f_h1"], "bfs_cold_ls_f")))
        lines.append("curl --parallel over TLS (HTTP/2, HTTP/1.1) / plain HTTP: %s, %s"
                     % (self.ratio(f["tls_curl_h2"], "curl_parallel"),
                        self.ratio(f["tls_curl_h1"], "curl_parallel")))
        return lines

    def warm_phase(self):
        """For each side, one mount: a cold full walk (cp -a to tmpfs), then
        warm grep -r and find, then the driver's memory."""
        for side in self.sides():
            with self.as_side(side):
                self.warm_side()
        self.count_item_bytes()

    def warm_side(self):
        # The baseline's copy goes beside the first: only the first is used.
        copy = os.path.join(self.shm, "copy-base") if self.prefix else self.copy
        os.makedirs(os.path.join(copy, "jobs"), exist_ok=True)
        self.do_mount()
        try:
            fig = self.figure("bfs_cold_copy", "batchfs cold full walk: cp -a job to tmpfs",
                              "batchfs")
            self.measure(fig, ["cp", "-a", "--", self.path, os.path.join(copy, "jobs")],
                         cwd=self.mnt)
            self.log("  %-40s %s s, %s requests" % (fig.label, fmt_s(fig.median),
                                                    fig.requests))
            fig = self.figure("bfs_warm_grep_r", "batchfs warm grep -r %s <job>" % GREP_TEXT,
                              "batchfs")
            for _ in range(self.opts.reps):
                self.measure(fig, ["grep", "-r", "--", GREP_TEXT, self.path], cwd=self.mnt)
                lines = sorted_lines(self.out)
                if not self.prefix:
                    self.warm_grep_lines = lines
                elif lines != self.warm_grep_lines:
                    self.problem("%s: output differs from the first binary's" % fig.label)
            self.log("  %-40s %s s, %s requests" % (fig.label, fmt_s(fig.median),
                                                    fig.requests))
            self.info[self.prefix + "memory_after_warm_grep"] = self.mount.memory()
            fig = self.figure("bfs_warm_find", "batchfs warm find <job> -name '*.json' | wc -l",
                              "batchfs")
            for _ in range(self.opts.reps):
                self.measure(fig, ["find \"$1\" -name '*.json' | wc -l", self.path],
                             cwd=self.mnt, shell=True)
                self.check_count(fig.label, self.out, self.opts.items + 1, wc=True)
            self.log("  %-40s %s s, %s requests" % (fig.label, fmt_s(fig.median),
                                                    fig.requests))
        finally:
            self.do_unmount()

    def count_item_bytes(self):
        """The sum of the sizes of the item files in the tmpfs copy."""
        self.item_bytes, self.item_files = 0, 0
        for dirpath, _, files in os.walk(os.path.join(self.copy, self.path)):
            if os.path.basename(dirpath) in STATUSES:
                for name in files:
                    self.item_bytes += os.lstat(os.path.join(dirpath, name)).st_size
                    self.item_files += 1
        if self.item_files != self.opts.items:
            self.problem("the tmpfs copy holds %d item files, not %d" % (self.item_files,
                                                                         self.opts.items))

    def check_count(self, what, path, expected, wc=False):
        """Compares the entries a command printed (or the number wc -l
        printed) with what the data set holds."""
        got = int(read_bytes(path).strip() or b"0") if wc else count_lines(path)
        if got != expected:
            self.problem("%s: %d entries, expected %d" % (what, got, expected))

    def commands(self):
        """The measured commands: key, label, argv (or shell text and
        arguments), expected output check. Run from the root of the mount
        or of the tmpfs copy, so outputs compare byte for byte."""
        job, done = self.path, self.counts["completed"]
        return (
            ("ls_f", "ls -f completed/", ["ls", "-f", "--", job + "/completed"],
             False, ("count", done + 2)),
            ("ls_l", "ls -l completed/", ["ls", "-l", "--", job + "/completed"],
             False, ("same-but-total", None)),
            ("grep_rl", "grep -rl %s failed/" % GREP_TEXT,
             ["grep", "-rl", "--", GREP_TEXT, job + "/failed"], False, ("same", None)),
            ("find", "find <job> -name '*.json' | wc -l",
             ["find \"$1\" -name '*.json' | wc -l", job], True,
             ("wc", self.opts.items + 1)),
        )

    def kernel_floor(self):
        self.tmpfs_out = {}
        extra = (("grep_r", "grep -r %s <job>" % GREP_TEXT,
                  ["grep", "-r", "--", GREP_TEXT, self.path], False, ("same", None)),)
        for key, label, argv, shell, _ in self.commands() + extra:
            fig = self.figure("tmpfs_" + key, "tmpfs " + label, "kernel floor")
            for _ in range(self.opts.reps):
                self.measure(fig, argv, cwd=self.copy, shell=shell, reset=False)
            self.tmpfs_out[key] = read_bytes(self.out)
            self.log("  %-40s %s s" % (fig.label, fmt_s(fig.median)))
        if sorted(self.tmpfs_out["grep_r"].splitlines()) != self.warm_grep_lines:
            self.problem("warm grep -r on batchfs differs from grep -r on the tmpfs copy")
        if not self.tmpfs_out["grep_rl"].strip():
            self.problem("grep -rl %s found nothing in failed/" % GREP_TEXT)
        self.check_count("tmpfs find | wc -l", self.out_of("find"), self.opts.items + 1,
                         wc=True)

    def out_of(self, key):
        path = os.path.join(self.shm, "tmpfs-" + key)
        with open(path, "wb") as f:
            f.write(self.tmpfs_out[key])
        return path

    def cold_phase(self):
        """Each command on fresh mounts, the sides taking turns within each
        repetition so that a drift of the machine's speed touches both."""
        for key, label, argv, shell, (kind, expected) in self.commands():
            for _ in range(self.opts.reps):
                for side in self.sides():
                    with self.as_side(side):
                        fig = self.figure("bfs_cold_" + key, "batchfs cold " + label,
                                          "batchfs")
                        self.cold_run(fig, argv, shell, key, kind, expected, [])
            self.log_sides("bfs_cold_" + key)
        # ls -l asks two extended attributes per file; with xattr=0 the
        # kernel stops asking. Measured apart so both figures are seen.
        key, label, argv, shell, _ = self.commands()[1]
        for _ in range(self.opts.reps):
            for side in self.sides():
                with self.as_side(side):
                    fig = self.figure("bfs_cold_ls_l_noxattr",
                                      "batchfs cold " + label + " (xattr=0)", "batchfs")
                    self.cold_run(fig, argv, shell, key, "same-but-total", None, ["xattr=0"])
        self.log_sides("bfs_cold_ls_l_noxattr")

    def cold_run(self, fig, argv, shell, key, kind, expected, extra):
        """One command on a fresh mount, its output checked."""
        self.do_mount(extra)
        try:
            self.measure(fig, argv, cwd=self.mnt, shell=shell)
        finally:
            self.do_unmount()
        if kind == "count":
            self.check_count(fig.label, self.out, expected)
        elif kind == "wc":
            self.check_count(fig.label, self.out, expected, wc=True)
        else:
            mine = sorted_lines(self.out, kind == "same-but-total")
            theirs = sorted(self.tmpfs_out[key].splitlines()[
                1 if kind == "same-but-total" else 0:])
            if mine != theirs:
                self.problem("%s: output differs from the tmpfs copy (%d lines vs %d)"
                             % (fig.label, len(mine), len(theirs)))

    def log_sides(self, key):
        for side in self.sides():
            fig = self.figures[side.prefix + key]
            self.log("  %-40s %s s, %s requests" % (fig.label, fmt_s(fig.median),
                                                    fig.requests))

    def drop_kernel_caches(self):
        """Makes the kernel forget its dentries and inodes (the mount's
        among them), so the next listing is readdirplus again while the
        driver still holds its listing. False when not allowed (not root)."""
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("2\n")
            return True
        except OSError:
            return False

    def bounds_phase(self):
        """What no cold listing can beat, on one mount that has fetched
        completed/ once: `ls -f` with batchfs's listing cached but the
        kernel's caches dropped (the readdirplus that follows the last page:
        the names must be settled first, see doc/naming.md), and `ls -f`
        and `ls -l` with everything cached (what ls -l costs in ls itself
        and in the kernel, with no request reaching batchfs). Also the
        memory completed/'s listing holds beside its pages."""
        ls_f, ls_l = self.commands()[0][2], self.commands()[1][2]
        done = self.counts["completed"] + 2
        self.do_mount()
        try:
            run_timed(ls_f, cwd=self.mnt, stdout=self.out, timeout=self.opts.timeout)
            self.check_count("bounds: ls -f completed/", self.out, done)
            with open(os.path.join(self.mnt, ".batchfs", "stats")) as f:
                cache = json.load(f)["cache"]
            # The listing's own bytes; its pages are counted apart when the
            # page cache keeps them (a finished job), else among them.
            self.info["completed_entries_bytes"] = cache["bytes"] - (
                0 if cache["pages"]["alive"] else self.info["completed_page_bytes"])
            if self.drop_kernel_caches():
                fig = self.figure("bfs_readdirplus", "batchfs ls -f completed/, kernel caches "
                                  "dropped, listing cached", "bounds")
                for _ in range(self.opts.reps):
                    self.drop_kernel_caches()
                    self.measure(fig, ls_f, cwd=self.mnt)
                    self.check_count(fig.label, self.out, done)
                if any(fig.requests):
                    self.problem("%s: %s requests, expected none (the listing was cached)"
                                 % (fig.label, fig.requests))
                self.log("  %-40s %s s, %s requests" % (fig.label, fmt_s(fig.median),
                                                        fig.requests))
            else:
                self.log("  (not root: the readdirplus bound is not measured)")
            for key, label, argv in (("bfs_warm_ls_f", "ls -f", ls_f),
                                     ("bfs_warm_ls_l", "ls -l", ls_l)):
                fig = self.figure(key, "batchfs warm %s completed/" % label, "bounds")
                run_timed(argv, cwd=self.mnt, stdout=self.out, timeout=self.opts.timeout)
                for _ in range(self.opts.reps):
                    self.measure(fig, argv, cwd=self.mnt)
                self.log("  %-40s %s s, %s requests" % (fig.label, fmt_s(fig.median),
                                                        fig.requests))
        finally:
            self.do_unmount()

    # The capped walks: cache_size as a share of the item bytes. A third is
    # below completed/'s entries alone (a folder kept alone, exceeding the
    # cap by itself); a half is above them, so the cap can hold.
    CAPS = (("third", 3), ("half", 2))

    def capped_phase(self):
        """Fresh mounts whose cache holds a third, then a half, of the item
        bytes: a full walk must still read every file right (evicted
        listings are fetched again, dropped pages of the finished job too),
        while the cache's own bytes (listings and pages, from
        .batchfs/stats) and the driver's resident memory are sampled.
        Bounded by --capped-timeout."""
        walk = ["find \"$1\" -type f -exec sha256sum -- {} +", self.path]
        run_timed(walk, cwd=self.copy, stdout=self.out, shell=True,
                  timeout=self.opts.timeout)
        expected = sorted_lines(self.out)
        self.info["capped"] = {}
        for name, share in self.CAPS:
            self.capped_walk(name, max(1 << 20, self.item_bytes // share), walk, expected)

    def sample_cache(self, peaks, stop):
        """Until `stop` is set: the peaks of the cache's bytes (listings,
        pages kept, both) and of VmRSS, every 0.1 s."""
        stats_path = os.path.join(self.mnt, ".batchfs", "stats")
        while not stop.wait(0.1):
            try:
                with open(stats_path) as f:
                    cache = json.load(f)["cache"]
                rss = self.mount.memory()["VmRSS"]
            except (OSError, ValueError, KeyError):
                continue
            listings, pages = cache["bytes"], cache["pages"]["kept_bytes"]
            for key, value in (("listings", listings), ("pages", pages),
                               ("cache", listings + pages), ("rss", rss)):
                peaks[key] = max(peaks.get(key, 0), value)

    def capped_walk(self, name, cap, walk, expected):
        info = {"cap_bytes": cap, "same": None}
        self.info["capped"][name] = info
        self.do_mount(["cache_size=%d" % cap])
        try:
            info["idle_memory"] = self.mount.memory()
            fig = self.figure("bfs_capped_" + name,
                              "batchfs capped walk: find -exec sha256sum (cache %s)"
                              % fmt_bytes(cap), "capped")
            limit = self.opts.capped_timeout
            peaks, stop = {}, threading.Event()
            sampler = threading.Thread(target=self.sample_cache, args=(peaks, stop))
            sampler.start()
            try:
                self.measure(fig, walk, cwd=self.mnt, shell=True, timeout=limit)
            except subprocess.TimeoutExpired:
                stats, cpu = self.timed_out
                fig.add(float(limit), stats, cpu)
                done = count_lines(self.out)
                fig.note = "stopped after %d s, ~%d of %d files" % (limit, done,
                                                                    len(expected))
                self.problem("capped walk (%s) did not finish within %d s (~%d of %d files, "
                             "%d requests)" % (fmt_bytes(cap), limit, done, len(expected),
                                               stats["requests"]))
            else:
                got = sorted_lines(self.out)
                info["same"] = got == expected
                info["files"] = len(got)
            finally:
                stop.set()
                sampler.join()
            info["peaks"] = peaks
            info["memory"] = self.mount.memory()
            self.log("  %-40s %s s, %s requests %s; peaks: cache %s, listings %s, pages %s"
                     % (fig.label, fmt_s(fig.median), fig.requests, fig.note,
                        fmt_bytes(peaks.get("cache", 0)), fmt_bytes(peaks.get("listings", 0)),
                        fmt_bytes(peaks.get("pages", 0))))
        finally:
            self.do_unmount()

    # ---- targets ----
    def target(self, name, value, target, passed):
        self.checks.append((name, value, target, passed))

    def evaluate(self):
        f, c, info = self.figures, self.counts, self.info
        med = {k: v.median for k, v in f.items()}

        def requests(key):
            """The item-list requests of the worst repetition, and a text
            with all its requests by endpoint."""
            fig = f[key]
            worst = max(range(len(fig.requests)), key=lambda i: fig.requests[i])
            parts = ", ".join("%s %d" % kv for kv in sorted(fig.endpoints[worst].items()))
            return (fig.endpoints[worst].get("list_items", 0),
                    "%d (%s)" % (fig.requests[worst], parts or "none"))

        cold_ls = med["bfs_cold_ls_f"]
        ratio = cold_ls / med["curl_parallel"]
        self.target("cold ls -f completed/ / curl parallel", "%.2fx" % ratio, "<= 1.3x",
                    ratio <= 1.3)
        speedup = med["curl_serial"] / cold_ls
        self.target("cold ls -f completed/ vs curl in series", "%.2fx faster" % speedup,
                    ">= 3x faster", speedup >= 3)
        ratio = med["bfs_cold_ls_l"] / cold_ls
        self.target("cold ls -l / cold ls -f (completed/)", "%.2fx" % ratio, "<= 1.5x",
                    ratio <= 1.5)
        ratio = med["bfs_cold_ls_l_noxattr"] / cold_ls
        self.target("cold ls -l (xattr=0) / cold ls -f", "%.2fx" % ratio, "<= 1.5x",
                    ratio <= 1.5)
        ratio = med["bfs_warm_grep_r"] / med["tmpfs_grep_r"]
        self.target("warm grep -r job / tmpfs grep -r", "%.2fx" % ratio, "<= 2x", ratio <= 2)
        for key, status in (("ls_f", "completed"), ("ls_l", "completed"),
                            ("grep_rl", "failed")):
            got, text = requests("bfs_cold_" + key)
            limit = self.pages(status)
            self.target("requests: cold " + f["bfs_cold_" + key].label[13:], text,
                        "list_items <= %d (%d pages + 1)" % (limit, limit - 1), got <= limit)
        pages = sum(self.pages(s) - 1 for s in STATUSES)
        limit = pages + len(STATUSES)
        for key in ("bfs_cold_find", "bfs_cold_copy"):
            got, text = requests(key)
            self.target("requests: " + f[key].label[8:], text,
                        "list_items <= %d (%d pages + 6)" % (limit, pages), got <= limit)
        got = max(f["bfs_warm_grep_r"].requests + f["bfs_warm_find"].requests)
        self.target("requests: repeat warm walks (grep -r, find)", str(got), "= 0", got == 0)
        hwm = info["memory_after_warm_grep"]["VmHWM"]
        ratio = hwm / self.item_bytes
        self.target("driver VmHWM after warm grep / item bytes",
                    "%s = %.2fx" % (fmt_bytes(hwm), ratio), "<= 3x", ratio <= 3)
        page = info["largest_page_bytes"]
        entries = info["completed_entries_bytes"]
        for name, _ in self.CAPS:
            capped = info["capped"][name]
            cap = capped["cap_bytes"]
            # The pages that may be pinned beyond the cap: two per
            # connection being turned into entries, and the two most
            # recently read, which always stay.
            allowance = (self.opts.max_connections * 2 + 2) * page
            bound = max(cap, entries) + allowance
            capped["cache_limit_bytes"] = bound
            peak = capped["peaks"].get("cache", 0)
            alone = " (completed/'s entries alone %s: kept alone)" % fmt_bytes(entries) \
                if entries > cap else ""
            self.target("capped %s: cache peak (listings + pages)" % fmt_bytes(cap),
                        fmt_bytes(peak), "<= %s (cap%s + pinned pages)"
                        % (fmt_bytes(bound), alone and ", or entries" or ""), peak <= bound)
            idle = capped["idle_memory"]["VmRSS"]
            limit = cap + idle + self.opts.max_connections * 2 * page
            capped["limit_bytes"] = limit
            hwm = capped["memory"]["VmHWM"]
            self.target("capped %s: driver VmHWM" % fmt_bytes(cap), fmt_bytes(hwm),
                        "<= %s (cap+idle+2 pages/conn)" % fmt_bytes(limit), hwm <= limit)
            self.target("capped %s: per-file sha256 of a full walk" % fmt_bytes(cap),
                        {True: "same", False: "DIFFERENT", None: "not finished"}[
                            capped["same"]], "same as tmpfs", bool(capped["same"]))
            self.target("capped %s: requests of the full walk" % fmt_bytes(cap),
                        "%s (uncapped %d)" % (requests("bfs_capped_" + name)[1],
                                              max(f["bfs_cold_copy"].requests)), "-", None)

    def bounds(self):
        """Lines that say which targets the measured bounds leave within
        reach: (text, reachable or None)."""
        f, info, out = self.figures, self.info, []
        med = {k: v.median for k, v in f.items()}
        if "bfs_readdirplus" in f:
            least = med["curl_parallel"] + self.opts.latency_ms / 1000 + med["bfs_readdirplus"]
            ratio = least / med["curl_parallel"]
            out.append(("cold ls -f can be no faster than curl parallel %s s + the job's "
                        "lookup %s s + readdirplus after the last page %s s = %s s = %.2fx "
                        "curl parallel (target <= 1.3x)"
                        % (fmt_s(med["curl_parallel"]), fmt_s(self.opts.latency_ms / 1000),
                           fmt_s(med["bfs_readdirplus"]), fmt_s(least), ratio),
                        ratio <= 1.3))
        extra = med["bfs_warm_ls_l"] - med["bfs_warm_ls_f"]
        need, allow = 2 * extra, med["curl_serial"] / 3
        out.append(("ls -l costs %s s more than ls -f with nothing left to fetch, so "
                    "ls -l <= 1.5x ls -f needs a cold ls -f of >= %s s; 3x faster than "
                    "in series needs <= %s s" % (fmt_s(extra), fmt_s(need), fmt_s(allow)),
                    need <= allow))
        entries = info["completed_entries_bytes"]
        for name, _ in self.CAPS:
            cap = info["capped"][name]["cap_bytes"]
            out.append(("a cache that holds completed/'s entries, names and ids (%s, beside "
                        "its %s of pages) within cache_size %s"
                        % (fmt_bytes(entries), fmt_bytes(info["completed_page_bytes"]),
                           fmt_bytes(cap)), entries <= cap))
        return out

    # ---- report ----
    def report(self):
        """Prints the figures of every phase that ran, then the problems."""
        lines = self.standard_report() if "standard" in self.opts.phases else [
            "batchfs benchmark, phases %s" % ",".join(self.opts.phases)]
        if "documents" in self.info:
            lines += [""] + self.documents_report()
        lines += self.scale_report()
        base = self.baseline_report()
        lines += [""] + base if base else []
        print("\n".join(lines + self.trailer()), flush=True)

    def standard_report(self):
        o, c, info = self.opts, self.counts, self.info
        lines = []
        lines.append("batchfs benchmark: %d items, %g ms per request, %d reps, "
                     "max_connections=%d, cache_ttl=terminal_ttl=3600"
                     % (o.items, o.latency_ms, o.reps, o.max_connections))
        lines.append("job %s: %s" % (self.job, ", ".join("%s %d" % (s, c[s])
                                                            for s in STATUSES)))
        lines.append("item bytes: %s (%d, the sum of the sizes of the %d item files in the "
                     "tmpfs copy)" % (fmt_bytes(self.item_bytes), self.item_bytes,
                                     self.item_files))
        lines.append("")
        row = "%-56s %8s %8s %9s %6s %8s"
        head = row % ("measurement", "median s", "min s", "requests", "in fl.", "drv cpu")
        lines += [head, "-" * len(head)]
        group = None
        for fig in self.figures.values():
            if fig.group != group:
                group = fig.group
                lines.append("[%s]" % group)
            req = "-" if not fig.requests else (
                str(fig.requests[0]) if len(set(fig.requests)) == 1
                else "/".join(map(str, fig.requests)))
            inflight = "-" if not fig.in_flight else str(max(fig.in_flight))
            cpu = fmt_s(statistics.median(fig.cpu)) if fig.cpu else "-"
            lines.append(row % (fig.label, fmt_s(fig.median), fmt_s(fig.min), req, inflight,
                                cpu) + ("  " + fig.note if fig.note else ""))
        lines.append("(requests: per repetition; in fl.: most requests in flight at the "
                     "double; drv cpu: driver user+sys s)")
        lines.append("")
        row = "%-50s %9s %9s %9s"
        head = row % ("ratio batchfs / reference (medians)", "tmpfs", "curl par", "curl ser")
        lines += [head, "-" * len(head)]
        for key in ("ls_f", "ls_l", "grep_rl", "find"):
            fig = self.figures["bfs_cold_" + key]
            curl = (self.ratio(fig, "curl_parallel"), self.ratio(fig, "curl_serial")) \
                if key in ("ls_f", "ls_l") else ("", "")
            lines.append(row % (fig.label, self.ratio(fig, "tmpfs_" + key), *curl))
        for key, tmpfs_key in (("bfs_warm_grep_r", "tmpfs_grep_r"),
                               ("bfs_warm_find", "tmpfs_find")):
            fig = self.figures[key]
            lines.append(row % (fig.label, self.ratio(fig, tmpfs_key), "", ""))
        lines.append("")
        row = "%-48s %-34s %-36s %s"
        head = row % ("target", "measured", "target", "result")
        lines += [head, "-" * len(head)]
        for name, value, target, passed in self.checks:
            lines.append(row % (name, value, target, "info" if passed is None
                                else "PASS" if passed else "FAIL"))
        lines.append("")
        lines.append("bounds (what the targets leave within reach)")
        for text, reachable in self.bounds():
            lines.append("  %s: %s" % ("within reach" if reachable else "out of reach", text))
        mem = info["memory_after_warm_grep"]
        lines.append("")
        lines.append("driver memory: after warm grep VmHWM %s, VmRSS %s"
                     % (fmt_bytes(mem["VmHWM"]), fmt_bytes(mem["VmRSS"])))
        for name, _ in self.CAPS:
            capped = info["capped"][name]
            peaks = capped["peaks"]
            lines.append("capped run, cache_size %s: idle VmRSS %s, VmHWM %s; peaks sampled "
                         "every 0.1 s: cache %s (listings %s, pages kept %s), VmRSS %s"
                         % (fmt_bytes(capped["cap_bytes"]),
                            fmt_bytes(capped["idle_memory"]["VmRSS"]),
                            fmt_bytes(capped["memory"]["VmHWM"]),
                            fmt_bytes(peaks.get("cache", 0)),
                            fmt_bytes(peaks.get("listings", 0)),
                            fmt_bytes(peaks.get("pages", 0)), fmt_bytes(peaks.get("rss", 0))))
        lines.append("network floor: curl %s over HTTP/1.1 keep-alive (--parallel "
                     "--parallel-immediate --parallel-max %d; in series: one curl, one "
                     "connection); completed/ pages %s"
                     % ("".join(info.get("curl_version", ())), o.max_connections,
                        fmt_bytes(info["completed_page_bytes"])))
        lines.append("kernel floor: the job copied with cp -a from the warm mount to tmpfs "
                     "(/dev/shm), same commands, same working folder")
        lines.append("")
        lines += self.tls_report()
        return lines

    def trailer(self):
        """The problems and the drivers' stderr, when there were any."""
        lines = []
        if self.problems:
            lines.append("")
            lines.append("problems (%d):" % len(self.problems))
            lines += ["  " + p for p in self.problems[:20]]
        if self.driver_log:
            lines.append("")
            lines.append("batchfs stderr (%d lines, first 10):" % len(self.driver_log))
            lines += ["  " + p[:200] for p in self.driver_log[:10]]
        return lines

    def ratio(self, fig, key):
        other = self.figures.get(key)
        if not other or not other.median or fig.median is None:
            return "-"
        return "%.2fx" % (fig.median / other.median)

    def write_json(self, path):
        standard = "standard" in self.opts.phases
        doc = {"items": self.opts.items, "latency_ms": self.opts.latency_ms,
               "reps": self.opts.reps, "max_connections": self.opts.max_connections,
               "phases": self.opts.phases, "binary": self.opts.binary,
               "baseline_bin": self.opts.baseline_bin,
               "baseline_env": self.opts.baseline_env,
               "job": getattr(self, "job", None), "counts": getattr(self, "counts", None),
               "item_bytes": getattr(self, "item_bytes", None),
               "item_bytes_source": "sum of the sizes of the item files in the tmpfs copy",
               "figures": {k: v.as_dict() for k, v in self.figures.items()},
               "targets": [{"name": n, "measured": v, "target": t, "passed": p}
                           for n, v, t, p in self.checks],
               "bounds": [{"text": t, "within_reach": r} for t, r in self.bounds()]
               if standard else [],
               "info": self.info, "problems": self.problems,
               "driver_stderr": self.driver_log[:100]}
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")

    # ---- the whole run ----
    def run(self):
        o = self.opts
        version = subprocess.run(["curl", "--version"], capture_output=True, text=True)
        self.info["curl_version"] = version.stdout.split()[1:2]
        if o.tls_only or "standard" in o.phases:
            self.log("starting the API double with %d items ..." % o.items)
            self.double = Double(o.items, o.latency_ms, self.work)
            self.discover()
        if o.tls_only:
            self.log("network floor")
            self.network_floor()
            self.log("cold ls -f over plain HTTP")
            self.cold_listing(self.figure("bfs_cold_ls_f", "batchfs cold ls -f completed/",
                                          "batchfs"),
                              self.info.setdefault("tls", {}).setdefault("plain", {}),
                              self.double, [])
            self.log("TLS")
            self.tls_phase()
            lines = self.tls_report()
            if not o.no_docs_tls:
                self.docs_tls_only()
                lines += [""] + self.documents_report()
            print("\n".join(["batchfs benchmark, TLS phase only: %d items, %d reps"
                             % (o.items, o.reps), ""] + lines + self.trailer()),
                  flush=True)
            if o.json:
                with open(o.json, "w") as f:
                    json.dump({"items": o.items, "latency_ms": o.latency_ms, "reps": o.reps,
                               "max_connections": o.max_connections,
                               "figures": {k: v.as_dict() for k, v in self.figures.items()},
                               "info": self.info, "problems": self.problems}, f, indent=2)
            return 0 if not self.problems else 1
        if "standard" in o.phases:
            self.standard_phases()
        for phase in PHASES[1:]:
            if phase in o.phases:
                self.log(phase)
                getattr(self, phase + "_phase")()
        self.report()
        if o.json:
            self.write_json(o.json)
        return 0 if not self.problems and all(p is not False for *_, p in self.checks) else 1

    def standard_phases(self):
        """The figures of one big job (see the top of this file)."""
        self.log("network floor")
        self.network_floor()
        self.log("warm mount")
        self.warm_phase()
        self.log("kernel floor (tmpfs)")
        self.kernel_floor()
        self.log("cold mounts")
        self.cold_phase()
        self.log("TLS")
        self.tls_phase()
        self.log("bounds")
        self.bounds_phase()
        self.log("capped mount")
        self.capped_phase()
        self.evaluate()

    def cleanup(self):
        try:
            self.do_unmount()
        finally:
            try:
                if self.double:
                    self.double.stop()
            finally:
                shutil.rmtree(self.shm, ignore_errors=True)
                shutil.rmtree(self.work, ignore_errors=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Benchmark batchfs on one big job against "
                                "the network floor (curl) and the kernel floor (tmpfs).")
    p.add_argument("-n", "--items", type=int, default=100000,
                   help="items of the job (default 100000)")
    p.add_argument("--latency-ms", type=float, default=20,
                   help="simulated round trip per request (default 20)")
    p.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    p.add_argument("--max-connections", type=int,
                   help="passed to batchfs, and the curl floor's parallelism (default 8; "
                   "the documents phase uses batchfs's own unless given)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--binary", default=os.environ.get("BATCHFS_BIN",
                                                      os.path.join(ROOT, "build", "batchfs")),
                   help="the batchfs binary (default $BATCHFS_BIN, else build/batchfs)")
    p.add_argument("--baseline-bin", metavar="PATH",
                   help="a second binary measured in the same run, taking turns with the "
                   "first; its figures are printed side by side with the first's")
    p.add_argument("--baseline-env", metavar="NAME=VALUE", action="append", default=[],
                   help="set NAME=VALUE in the baseline's environment (repeatable); without "
                   "--baseline-bin the baseline is --binary itself, so that a setting such "
                   "as GLIBC_TUNABLES=glibc.malloc.arena_max=2 is measured beside the "
                   "defaults")
    p.add_argument("--phases", default=DEFAULT_PHASES,
                   help="comma-separated phases to run (default %(default)s): standard "
                   "(the figures of one big job), documents (grep -rl over a batch's and a "
                   "job's markdown/ against curl and tmpfs, over TLS too), million (a "
                   "1,000,000-item job walked under cache_size 64M and 256M: peak memory), "
                   "accounts (a 200,000-job account: ls jobs/ against curl, job.json after "
                   "the list expired), hung (stat of a cached file while 50 folders hang); "
                   "the last three take minutes")
    p.add_argument("--timeout", type=int, default=600,
                   help="seconds one command may take (default 600)")
    p.add_argument("--capped-timeout", type=int, default=90,
                   help="seconds the walk of the capped mount may take (default 90)")
    p.add_argument("--tls-only", action="store_true",
                   help="run the TLS phase alone (cold ls -f, and the documents' cold "
                   "grep -rl, through nghttpx, HTTP/2 and HTTP/1.1, beside curl --parallel)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    bench_scale.add_arguments(p)
    bench_docs.add_arguments(p)
    opts = p.parse_args(argv)
    opts.max_connections_given = opts.max_connections is not None
    if not opts.max_connections_given:
        opts.max_connections = 8
    opts.phases = [x.strip() for x in opts.phases.split(",") if x.strip()]
    if not opts.phases or set(opts.phases) - set(PHASES):
        p.error("--phases takes some of %s" % ",".join(PHASES))
    bench_scale.check_arguments(p, opts)
    bench_docs.check_arguments(p, opts)
    if opts.items < 1000 or opts.reps < 1 or opts.max_connections < 1:
        p.error("needs -n >= 1000, --reps >= 1 and --max-connections >= 1")
    if any("=" not in x or x.startswith("=") for x in opts.baseline_env):
        p.error("--baseline-env takes NAME=VALUE")
    opts.baseline_env = dict(x.split("=", 1) for x in opts.baseline_env)
    if opts.baseline_env and not opts.baseline_bin:
        opts.baseline_bin = opts.binary
    for binary in filter(None, (opts.binary, opts.baseline_bin)):
        if not os.access(binary, os.X_OK):
            p.error("%s is not built (meson setup build && meson compile -C build)" % binary)
    return opts


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, die_on_signal)
    bench = Bench(opts)
    try:
        return bench.run()
    except Abort as err:
        print("bench: %s" % err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        # A second signal must not cut the cleanup short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
