"""bench_docs - the documents phase of scripts/bench.py (--phases documents):
what a batch produced, read through the mount, beside curl fetching the same
documents and grep over the same files on tmpfs.

The phase starts a double of its own with a completed parse_v2 batch of
--docs-batch documents (the double's --output-batch) and a completed v1
parse job of --docs-job items (--output-job), --latency-ms per request, and
mounts with batchfs's own max_connections (--max-connections only when
given), which it reads from .batchfs/config. PHRASE is the double's
SEARCH_PHRASE ("net revenue"). It measures:

  batch  cold `grep -rl PHRASE batches/<id>/markdown/` on fresh mounts,
         taking turns with curl --parallel --parallel-immediate
         --parallel-max N (N: that max_connections) fetching the same
         GET /api/v2/parse/{id}?expand=markdown_full to files on tmpfs; the
         requests the cold grep cost against what it needs (the batch, the
         directory's listing pages, one per document); then on the last
         mount, within the cache's lifetime, the same grep again (it must
         send no request) taking turns with grep -rl over a copy on tmpfs
         (cp -r from the mount; the first second grep runs before the copy),
         at least 7 times each;
  job    the same for jobs/<id>/markdown/ against GET /api/v1/parsing/job/
         {job_id}/result/markdown of each completed item, --docs-job-reps
         times (1 by default: 10,000 documents take about 30 s a turn);
  TLS    the batch's cold grep through nghttpx (scripts/tlsproxy.py) with
         HTTP/2 offered and with HTTP/1.1 only, beside curl --parallel over
         the same proxy (--http2 over N connections and multiplexed, and
         --http1.1): seconds, connections opened (batchfs's .batchfs/stats,
         curl's num_connects summed) and the protocol spoken. --tls-only
         runs this part too (with the batch alone); --no-docs-tls skips it.

Checked, never timed: every answer is a 200; the copy holds one file per
document and their bytes are exactly the strings curl fetched (multisets of
sha256, so names do not matter); grep prints on the mount what it prints
on the copy, naming as many files as curl's documents hold the phrase; the
second grep sends no request; the cold grep asks for each document once.
Figures and ratios are printed, with the issue's bounds beside them, and
never asserted: the machine is shared, only ratios of one run compare.
"""

import collections
import hashlib
import json
import math
import os
import shutil
import subprocess

import tlsproxy
from apidouble_content import SEARCH_PHRASE
from benchlib import (ITEMS_PATH, KEY, PAGE, Abort, Double, Mount, fmt_bytes, fmt_s,
                      read_bytes, sorted_lines)

BATCHES_PATH = "/api/v2/batches"
JOBS_PATH = "/api/v1/beta/batch-processing"
FILES_PATH = "/api/v1/beta/directories/%s/files"
GROUP = "documents"
# curl's line per transfer: status, bytes, connections opened, protocol.
WRITE_OUT = "%{http_code} %{size_download} %{num_connects} %{http_version}\\n"
# Samples of each of the second grep and tmpfs's grep, at the least.
WARM_REPS = 7
# (key suffix, label, HTTP/2 offered), as in bench.py's TLS phase.
TLS_VARIANTS = (("h2", "HTTP/2 offered", True), ("h1", "HTTP/1.1 only", False))

# One content folder and the documents behind it.
#   key        "batch" or "job": the figures' keys and the report's rows
#   title      what it is, for the report
#   folder     the folder grep walks, relative to the mount
#   paths      the API path (with query) of each document, in listing order
#   field      the JSON field of an answer that holds the document
#   doc_endpoint  the double's endpoint name of those requests
#   listing    {double endpoint: requests the folder needs besides documents}
#   listing_text  the same in words
#   reps       repetitions of the cold figures
Corpus = collections.namedtuple("Corpus", "key title folder paths field doc_endpoint listing "
                                "listing_text reps")


class DocsPhases:
    """The phase above, as methods of bench.Bench (a mixin beside
    bench_scale.ScalePhases): it uses its opts, figures, measure(),
    problem(), log(), sides(), as_side(), serving() and ratio()."""

    # ---- the phase ----
    def documents_phase(self):
        o = self.opts
        self.docs_start(o.docs_batch, o.docs_job)
        with self.serving(self.docs_double) as double:
            corpora = self.docs_discover()
            self.docs_connections()
            for corpus in corpora:
                self.log("  %s: %s" % (corpus.key, corpus.title))
                self.docs_corpus(corpus)
            if not o.no_docs_tls:
                self.docs_tls(corpora[0])
            self.docs_info["double_memory"] = double.memory()

    def docs_tls_only(self):
        """For --tls-only: the batch's plain figures (the reference), then
        its TLS ones."""
        self.docs_start(self.opts.docs_batch, 0)
        with self.serving(self.docs_double):
            corpus = self.docs_discover()[0]
            self.docs_connections()
            self.docs_corpus(corpus, warm=False)
            self.docs_tls(corpus)

    def docs_start(self, batch, job):
        dataset = ["--jobs", "0", "--batches", "0", "--output-batch", str(batch)]
        if job:
            dataset += ["--output-job", str(job)]
        self.log("documents: starting the API double (%d + %d documents) ..." % (batch, job))
        self.docs_double = Double(0, self.opts.latency_ms, self.work, dataset, "documents")
        self.docs_info = self.info["documents"] = {
            "phrase": SEARCH_PHRASE, "double_start_s": self.docs_double.start_seconds,
            "corpora": {}, "tls": {}}
        self.docs_expect = {}  # corpus key -> what curl fetched (docs_digest)
        self.docs_grep = {}    # corpus key -> sorted lines of the first cold grep

    def docs_options(self, extra=()):
        """The mount's options: batchfs's defaults but for the lifetimes,
        long enough that the second grep is within them whatever the run's
        speed, and max_connections when --max-connections was given."""
        options = ["cache_ttl=3600", "terminal_ttl=3600"]
        if self.opts.max_connections_given:
            options.append("max_connections=%d" % self.opts.max_connections)
        return options + list(extra)

    def docs_connections(self):
        """Reads max_connections from .batchfs/config of a mount."""
        mount = self.mount_with(self.docs_options())
        try:
            with open(os.path.join(mount.path, ".batchfs", "config")) as f:
                self.docs_conns = int(json.load(f)["max_connections"])
        finally:
            self.do_unmount()
        self.docs_info["max_connections"] = self.docs_conns
        self.log("  max_connections (from .batchfs/config): %d" % self.docs_conns)

    # ---- the data set ----
    def docs_discover(self):
        """The batch (and the job, when served) of the double, as Corpus."""
        d, out = self.double, []
        batch = next((b for b in d.call(BATCHES_PATH + "?page_size=100", auth=True)["items"]
                      if b["id"].startswith("bat-out-")), None)
        if batch is None:
            raise Abort("the double serves no output batch")
        results = d.call("%s/%s?expand=results" % (BATCHES_PATH, batch["id"]),
                         auth=True)["results"]
        ids = [r["job_reference"]["id"] for r in results
               if isinstance(r.get("job_reference"), dict)]
        files = self.docs_count_files(batch["source_directory_id"])
        pages = max(1, math.ceil(files / PAGE))
        out.append(Corpus("batch", "parse_v2 batch %s, %d documents" % (batch["id"], len(ids)),
                          "batches/%s/markdown" % batch["id"],
                          ["/api/v2/parse/%s?expand=markdown_full" % i for i in ids],
                          "markdown_full", "parse_v2",
                          {"get_batch": 1, "directory_files": pages},
                          "1 batch + %d directory pages (%d files)" % (pages, files),
                          self.opts.reps))
        job = next((j for j in d.call(JOBS_PATH + "?limit=100", auth=True)["items"]
                    if j["id"].startswith("bjb-out-")), None)
        if job is not None:
            ids = self.docs_job_items(job["id"])
            pages = max(1, math.ceil(len(ids) / PAGE))
            out.append(Corpus("job", "v1 parse job %s, %d completed items" % (job["id"],
                                                                            len(ids)),
                              "jobs/%s/markdown" % job["id"],
                              ["/api/v1/parsing/job/%s/result/markdown" % i for i in ids],
                              "markdown", "parse_v1_markdown",
                              {"get_job": 1, "list_items": pages},
                              "1 job + %d pages of completed/" % pages,
                              self.opts.docs_job_reps))
        for corpus in out:
            self.docs_info["corpora"][corpus.key] = {
                "title": corpus.title, "folder": corpus.folder,
                "documents": len(corpus.paths), "listing": corpus.listing}
        return out

    def docs_count_files(self, directory):
        files, token = 0, None
        while True:
            query = "?page_size=%d" % PAGE + ("&page_token=" + token if token else "")
            page = self.double.call(FILES_PATH % directory + query, auth=True)
            files += len(page["items"])
            token = page.get("next_page_token")
            if not token:
                return files

    def docs_job_items(self, job):
        path = ITEMS_PATH % job + "?status=completed&limit=%d&offset=%d"
        total = self.double.call(path % (1, 0), auth=True)["total_size"]
        ids = []
        for offset in range(0, total, PAGE):
            ids += [i["job_id"] for i in self.double.call(path % (PAGE, offset),
                                                         auth=True)["items"]]
        return ids

    # ---- one corpus ----
    def docs_corpus(self, corpus, warm=True):
        """The cold figures, curl and each side taking turns; the second
        grep and tmpfs on each side's last mount."""
        label = corpus.folder.replace(corpus.folder.split("/")[1], "<id>")
        curl = self.figure("curl_docs_%s" % corpus.key, "curl --parallel, %d conns, %d documents"
                           % (self.docs_conns, len(corpus.paths)), GROUP)
        info = self.docs_info["corpora"][corpus.key]
        info["curl_connections"], info["bfs_connections"] = [], []
        for rep in range(corpus.reps):
            conns, info["curl_versions"] = self.docs_curl(curl, corpus, self.double.url, [],
                                                          check=rep == 0)
            info["curl_connections"].append(conns)
            for side in self.sides():
                with self.as_side(side):
                    fig = self.figure("bfs_docs_%s_cold" % corpus.key,
                                      "batchfs cold grep -rl %s/" % label, GROUP)
                    self.mount_with(self.docs_options())
                    try:
                        done = self.docs_cold(fig, corpus, None if side.prefix else info)
                        if done and warm and rep == corpus.reps - 1:
                            self.docs_warm(corpus, label)
                    finally:
                        self.do_unmount()
        self.log("  %-40s %s s" % (curl.label, fmt_s(curl.median)))
        for side in self.sides():
            for key in ("cold", "warm", "cp"):
                fig = self.figures.get(side.prefix + "bfs_docs_%s_%s" % (corpus.key, key))
                if fig:
                    self.log("  %-40s %s s, %s requests" % (fig.label, fmt_s(fig.median),
                                                            fig.requests))

    def docs_curl(self, fig, corpus, base_url, options, check=False, immediate=True):
        """One repetition of curl fetching every document of `corpus` from
        base_url to files on tmpfs; checks the answers, and with `check`
        keeps what they hold (docs_digest). The connections it opened
        summed, and the protocols it spoke."""
        outdir = os.path.join(self.shm, "curl-docs")
        shutil.rmtree(outdir, ignore_errors=True)
        os.mkdir(outdir)
        # The key and the URLs go in a file: not on a command line, and
        # 10,000 URLs would not fit there anyway.
        config = os.path.join(self.work, "curl-docs.rc")
        with open(config, "w") as f:
            f.write('header = "Authorization: Bearer %s"\n' % KEY)
            for n, path in enumerate(corpus.paths):
                f.write('url = "%s%s"\noutput = "%s/%05d.json"\n' % (base_url, path, outdir, n))
        argv = ["curl", "-s", "--no-progress-meter", "-w", WRITE_OUT, "--parallel",
                "--parallel-max", str(self.docs_conns)]
        argv += (["--parallel-immediate"] if immediate else []) + list(options)
        try:
            self.measure(fig, argv + ["-K", config], cwd=self.work, timeout=self.opts.docs_timeout)
            codes = [line.split() for line in read_bytes(self.out).decode().splitlines()]
            if len(codes) != len(corpus.paths) or not all(c[0] == "200" for c in codes):
                bad = [c for c in codes if c[:1] != ["200"]]
                self.problem("%s: %d answers for %d documents, not 200: %r"
                             % (fig.label, len(codes), len(corpus.paths), bad[:5]))
            if check:
                self.docs_expect[corpus.key] = self.docs_digest(corpus, outdir)
            return (sum(int(c[2]) for c in codes if len(c) >= 4),
                    sorted({c[3] for c in codes if len(c) >= 4}))
        finally:
            shutil.rmtree(outdir, ignore_errors=True)

    def docs_digest(self, corpus, outdir):
        """What curl fetched: the sorted sha256 of every document's string,
        how many hold the phrase, their bytes, the largest."""
        sums, phrase, total, largest = [], 0, 0, 0
        for name in sorted(os.listdir(outdir)):
            with open(os.path.join(outdir, name), "rb") as f:
                try:
                    text = json.load(f)[corpus.field]
                except (ValueError, KeyError, TypeError):
                    text = None
            if not isinstance(text, str):
                self.problem("curl: %s holds no %s string" % (name, corpus.field))
                continue
            data = text.encode("utf-8", "surrogatepass")
            sums.append(hashlib.sha256(data).hexdigest())
            phrase += SEARCH_PHRASE in text
            total += len(data)
            largest = max(largest, len(data))
        info = self.docs_info["corpora"][corpus.key]
        info.update({"bytes": total, "largest_bytes": largest, "with_phrase": phrase})
        return {"sha256": sorted(sums), "phrase": phrase}

    def docs_cold(self, fig, corpus, connections_into=None):
        """One cold grep on the mounted side; its output checked. False when
        it timed out or the folder is not there."""
        argv = ["grep", "-rl", "--", SEARCH_PHRASE, corpus.folder]
        try:
            self.measure(fig, argv, cwd=self.mnt, timeout=self.opts.docs_timeout)
        except subprocess.TimeoutExpired:
            stats, cpu = self.timed_out
            fig.add(float(self.opts.docs_timeout), stats, cpu)
            fig.note = "stopped after %d s" % self.opts.docs_timeout
            self.problem("%s: did not finish within %d s (%d requests)"
                         % (fig.label, self.opts.docs_timeout, stats["requests"]))
            return False
        connections = self.mount.stats().get("connections", {})
        if connections_into is not None:
            connections_into["bfs_connections"].append(connections.get("opened"))
            connections_into["bfs_versions"] = [connections.get("http_version")]
        if not os.path.isdir(os.path.join(self.mnt, corpus.folder)):
            self.problem("%s: the folder is not there" % fig.label)
            return False
        lines = sorted_lines(self.out)
        expect = self.docs_expect.get(corpus.key)
        if expect is not None and len(lines) != expect["phrase"]:
            self.problem("%s: %d files named, %d documents hold %r"
                         % (fig.label, len(lines), expect["phrase"], SEARCH_PHRASE))
        first = self.docs_grep.setdefault(corpus.key, lines)
        if lines != first:
            self.problem("%s: output differs from the first cold grep's" % fig.label)
        self.docs_check_requests(fig, corpus)
        return True

    def docs_check_requests(self, fig, corpus):
        """Each document asked once, the listing at most once more than it
        needs (the request that finds its end)."""
        counted = fig.endpoints[-1] if fig.endpoints else {}
        documents = counted.get(corpus.doc_endpoint, 0)
        if documents != len(corpus.paths):
            self.problem("%s: %d document requests for %d documents"
                         % (fig.label, documents, len(corpus.paths)))
        listing = sum(v for k, v in counted.items() if k != corpus.doc_endpoint)
        if listing > sum(corpus.listing.values()) + 1:
            self.problem("%s: %d listing requests (%s), it needs %s"
                         % (fig.label, listing, self.docs_by_endpoint(counted),
                            corpus.listing_text))

    @staticmethod
    def docs_by_endpoint(counted):
        return ", ".join("%s %d" % kv for kv in sorted(counted.items())) or "none"

    def docs_warm(self, corpus, label):
        """On the mount of the last cold grep: the same grep again (no
        request), the folder copied to tmpfs with cp -r and checked against
        curl's strings, then the second grep and grep -rl on the copy
        taking turns."""
        argv = ["grep", "-rl", "--", SEARCH_PHRASE, corpus.folder]
        warm = self.figure("bfs_docs_%s_warm" % corpus.key,
                           "batchfs second grep -rl %s/ (cached)" % label, GROUP)
        copy_fig = self.figure("bfs_docs_%s_cp" % corpus.key,
                               "batchfs cp -r %s/ to tmpfs" % label, GROUP)
        tmpfs = self.figure("tmpfs_docs_%s" % corpus.key,
                            "tmpfs grep -rl %s/ (the cp -r copy)" % label, GROUP)
        copy = os.path.join(self.shm, "docs-copy")
        shutil.rmtree(copy, ignore_errors=True)
        dest = os.path.join(copy, os.path.dirname(corpus.folder))
        os.makedirs(dest)
        try:
            self.docs_warm_grep(warm, argv)
            self.measure(copy_fig, ["cp", "-r", "--", corpus.folder, dest], cwd=self.mnt)
            self.docs_check_copy(corpus, os.path.join(copy, corpus.folder))
            # tmpfs figures come from the first side only: one copy serves.
            reps = self.warm_reps()
            for rep in range(reps):
                if not self.prefix:
                    self.measure(tmpfs, argv, cwd=copy, reset=False)
                    if rep == 0 and sorted_lines(self.out) != self.docs_grep[corpus.key]:
                        self.problem("%s: output differs from the cold grep's on the mount"
                                     % tmpfs.label)
                if rep < reps - 1:
                    self.docs_warm_grep(warm, argv)
        finally:
            shutil.rmtree(copy, ignore_errors=True)

    def warm_reps(self):
        """The second grep and tmpfs's take tens of milliseconds, where a
        few samples are noise: at least WARM_REPS each."""
        return max(WARM_REPS, self.opts.reps)

    def docs_warm_grep(self, fig, argv):
        self.measure(fig, argv, cwd=self.mnt)
        if fig.requests[-1]:
            self.problem("%s: %d requests (%s), expected none within the cache's lifetime"
                         % (fig.label, fig.requests[-1],
                            self.docs_by_endpoint(fig.endpoints[-1])))
        if sorted_lines(self.out) != self.docs_grep[self.docs_key(fig)]:
            self.problem("%s: output differs from the cold grep's" % fig.label)

    @staticmethod
    def docs_key(fig):
        """The corpus key of a [base_]bfs_docs_<key>_<what> figure."""
        return fig.key.split("bfs_docs_", 1)[1].rsplit("_", 1)[0]

    def docs_check_copy(self, corpus, folder):
        """The copy holds one file per document, their bytes exactly the
        strings curl fetched."""
        expect = self.docs_expect.get(corpus.key)
        sums = []
        for dirpath, _, names in os.walk(folder):
            for name in names:
                with open(os.path.join(dirpath, name), "rb") as f:
                    sums.append(hashlib.sha256(f.read()).hexdigest())
        sums.sort()
        same = expect is not None and sums == expect["sha256"]
        info = self.docs_info["corpora"][corpus.key]
        info[self.prefix + "copy_files"], info[self.prefix + "copy_same"] = len(sums), same
        if expect is not None and not same:
            missing = collections.Counter(expect["sha256"]) - collections.Counter(sums)
            self.problem("%s: the cp -r copy holds %d files for %d documents; %d documents' "
                         "bytes are not among them" % (corpus.key, len(sums),
                                                       len(expect["sha256"]),
                                                       sum(missing.values())))

    # ---- TLS ----
    def docs_tls(self, corpus):
        """The corpus's cold grep through nghttpx, HTTP/2 offered and
        HTTP/1.1 only, taking turns with curl over the same proxy."""
        certs = tlsproxy.Certificates(os.path.join(self.work, "docs-certs"))
        os.mkdir(certs.dir)
        certs.make()
        label = corpus.folder.replace(corpus.folder.split("/")[1], "<id>")
        self.log("  TLS: cold grep -rl %s/" % label)
        for suffix, name, http2 in TLS_VARIANTS:
            proxy = tlsproxy.TlsProxy(self.double.port, certs.pair("good"), http2=http2,
                                      workdir=self.work)
            info = self.docs_info["tls"][suffix] = {"bfs_connections": [],
                                                    "curl_connections": []}
            curls = [("docs_tls_curl_" + suffix, "curl --parallel over TLS, %s, %d conns"
                      % (name, self.docs_conns), True, info)]
            if http2:
                mux = self.docs_info["tls"]["mux"] = {"curl_connections": []}
                curls.append(("docs_tls_curl_mux", "curl --parallel over TLS, HTTP/2 "
                              "multiplexed", False, mux))
            version = ["--cacert", certs.ca, "--http2" if http2 else "--http1.1"]
            try:
                for _ in range(self.opts.reps):
                    for key, text, immediate, into in curls:
                        conns, versions = self.docs_curl(self.figure(key, text, "documents TLS"),
                                                         corpus, proxy.url, version,
                                                         immediate=immediate)
                        into["curl_connections"].append(conns)
                        into["curl_versions"] = versions
                    fig = self.figure("bfs_docs_tls_" + suffix, "batchfs cold grep -rl %s/ "
                                      "over TLS, %s" % (label, name), "documents TLS")
                    self.mount = Mount(self.binary, proxy, self.mnt,
                                       self.docs_options(["ca_file=" + certs.ca]),
                                       self.driver_log, self.env_extra)
                    try:
                        self.docs_cold(fig, corpus, info)
                    finally:
                        self.do_unmount()
            finally:
                proxy.stop()
            for key, _, _, into in curls:
                self.log("  %-40s %s s, connections %s" % (self.figures[key].label,
                                                           fmt_s(self.figures[key].median),
                                                           into["curl_connections"]))
            self.log("  %-40s %s s, connections %s" % (fig.label, fmt_s(fig.median),
                                                       info["bfs_connections"]))

    # ---- report ----
    def documents_report(self):
        info, f, lines = self.docs_info, self.figures, []
        lines.append("documents: %g ms per request, max_connections=%d (batchfs's, from "
                     ".batchfs/config; curl --parallel-max the same), grep -rl %r; "
                     "double listening after %.1f s"
                     % (self.opts.latency_ms, info.get("max_connections", 0), SEARCH_PHRASE,
                        info["double_start_s"]))
        for key, corpus in info["corpora"].items():
            lines.append("  %s: %s of markdown (largest %s), %s hold the phrase"
                         % (corpus["title"], fmt_bytes(corpus.get("bytes", 0)),
                            fmt_bytes(corpus.get("largest_bytes", 0)),
                            corpus.get("with_phrase", "-")))
        row = "%-58s %8s %8s %9s %6s %8s"
        head = row % ("measurement", "median s", "min s", "requests", "in fl.", "drv cpu")
        lines += [head, "-" * len(head)]
        for key in info["corpora"]:
            if "curl_docs_" + key not in f:
                continue
            lines.append("[%s: %d cold repetitions]" % (key, len(f["curl_docs_" + key].seconds)))
            keys = ["curl_docs_" + key]
            for side in self.sides():
                keys += [side.prefix + "bfs_docs_%s_%s" % (key, what)
                         for what in ("cold", "warm", "cp")]
            keys.append("tmpfs_docs_" + key)
            lines += [self.docs_row(row, f[k]) for k in keys if k in f]
        lines.append("(requests: per repetition; in fl.: most requests in flight at the "
                     "double; drv cpu: driver user+sys s)")
        lines.append("")
        lines.append("ratios (medians of this run, and of the fastest runs)")
        for key in info["corpora"]:
            for side in self.sides():
                cold = f.get(side.prefix + "bfs_docs_%s_cold" % key)
                warm = f.get(side.prefix + "bfs_docs_%s_warm" % key)
                who = key + (" [baseline]" if side.prefix else "")
                if cold:
                    lines.append("  %-18s cold grep / curl --parallel: %s (issue: <= 1.5x)"
                                 % (who, self.docs_ratios(cold, "curl_docs_" + key)))
                if warm:
                    lines.append("  %-18s second grep / tmpfs grep: %s (issue: <= 1.2x)"
                                 % (who, self.docs_ratios(warm, "tmpfs_docs_" + key)))
        lines.append("")
        lines.append("requests of the cold grep (the double's counters, worst repetition)")
        for key, corpus in info["corpora"].items():
            for side in self.sides():
                lines += self.docs_requests_line(key, corpus, side.prefix)
        if info["tls"]:
            lines.append("")
            lines += self.docs_tls_report()
        return lines

    def docs_ratios(self, fig, key):
        """The ratio of the medians, and of the fastest runs."""
        other = self.figures.get(key)
        if not other or not other.min or fig.min is None:
            return "-"
        return "%s (fastest %.2fx)" % (self.ratio(fig, key), fig.min / other.min)

    def docs_row(self, row, fig):
        req = "-" if not fig.requests else (
            str(fig.requests[0]) if len(set(fig.requests)) == 1
            else "/".join(map(str, fig.requests)))
        inflight = "-" if not fig.in_flight else str(max(fig.in_flight))
        cpu = fmt_s(sorted(fig.cpu)[len(fig.cpu) // 2]) if fig.cpu else "-"
        return row % (fig.label, fmt_s(fig.median), fmt_s(fig.min), req, inflight, cpu) + (
            "  " + fig.note if fig.note else "")

    def docs_requests_line(self, key, corpus, prefix):
        fig = self.figures.get(prefix + "bfs_docs_%s_cold" % key)
        if not fig or not fig.requests:
            return []
        worst = max(range(len(fig.requests)), key=lambda i: fig.requests[i])
        expected = corpus["documents"] + sum(corpus["listing"].values())
        text = "  %s%s: expected %d = %d documents + %s; counted %d (%s)" % (
            key, " [baseline]" if prefix else "", expected, corpus["documents"],
            ", ".join("%s %d" % kv for kv in corpus["listing"].items()),
            fig.requests[worst], self.docs_by_endpoint(fig.endpoints[worst]))
        warm = self.figures.get(prefix + "bfs_docs_%s_warm" % key)
        copied = self.figures.get(prefix + "bfs_docs_%s_cp" % key)
        if warm and warm.requests:
            text += "; second grep %s" % max(warm.requests)
        if copied and copied.requests:
            text += ", cp -r %s" % max(copied.requests)
        return [text]

    def docs_tls_report(self):
        """The TLS lines: figures, connections, protocols, ratios."""
        f, tls, lines = self.figures, self.docs_info["tls"], []
        lines.append("documents over TLS: nghttpx on 127.0.0.1 in front of the double, cold "
                     "grep -rl of the batch's markdown/")
        row = "%-44s %9s %9s %14s %9s"
        head = row % ("cold grep / curl", "median s", "min s", "connections", "protocol")
        lines += [head, "-" * len(head)]
        plain = self.docs_info["corpora"].get("batch", {})
        for who, key, info, side in (
                ("curl --parallel, plain HTTP/1.1", "curl_docs_batch", plain, "curl"),
                ("batchfs grep, plain HTTP/1.1", "bfs_docs_batch_cold", plain, "bfs"),
                ("curl --parallel, HTTP/2 offered", "docs_tls_curl_h2", tls.get("h2"), "curl"),
                ("curl --parallel, HTTP/2 multiplexed", "docs_tls_curl_mux", tls.get("mux"),
                 "curl"),
                ("batchfs grep, HTTP/2 offered", "bfs_docs_tls_h2", tls.get("h2"), "bfs"),
                ("curl --parallel, HTTP/1.1 only", "docs_tls_curl_h1", tls.get("h1"), "curl"),
                ("batchfs grep, HTTP/1.1 only", "bfs_docs_tls_h1", tls.get("h1"), "bfs")):
            fig, info = f.get(key), info or {}
            if fig is None:
                continue
            conns = info.get("%s_connections" % side)
            lines.append(row % (who, fmt_s(fig.median), fmt_s(fig.min),
                                "/".join(map(str, conns)) if conns else "-",
                                ",".join(map(str, info.get("%s_versions" % side) or "-"))))
        lines.append("")
        for suffix, name, _ in TLS_VARIANTS:
            if "bfs_docs_tls_" + suffix in f:
                lines.append("batchfs / curl --parallel, %s: %s" % (
                    name, self.ratio(f["bfs_docs_tls_" + suffix], "docs_tls_curl_" + suffix)))
        if "bfs_docs_tls_h2" in f and "bfs_docs_tls_h1" in f:
            lines.append("batchfs HTTP/2 / batchfs HTTP/1.1: %s"
                         % self.ratio(f["bfs_docs_tls_h2"], "bfs_docs_tls_h1"))
            lines.append("batchfs HTTP/2 / curl HTTP/2 multiplexed: %s"
                         % self.ratio(f["bfs_docs_tls_h2"], "docs_tls_curl_mux"))
            lines.append("batchfs over TLS (HTTP/2, HTTP/1.1) / plain HTTP: %s, %s"
                         % (self.ratio(f["bfs_docs_tls_h2"], "bfs_docs_batch_cold"),
                            self.ratio(f["bfs_docs_tls_h1"], "bfs_docs_batch_cold")))
        return lines


def add_arguments(p):
    """The documents phase's options."""
    g = p.add_argument_group("documents phase (--phases documents)")
    g.add_argument("--docs-batch", type=int, default=1000,
                   help="documents of the parse_v2 batch (default 1000)")
    g.add_argument("--docs-job", type=int, default=10000,
                   help="completed items of the v1 parse job (default 10000)")
    g.add_argument("--docs-job-reps", type=int, default=1,
                   help="repetitions of the job's cold figures (default 1)")
    g.add_argument("--docs-timeout", type=int, default=300,
                   help="seconds one cold grep or curl may take (default 300)")
    g.add_argument("--no-docs-tls", action="store_true",
                   help="skip the documents' cold grep over TLS")


def check_arguments(p, opts):
    if min(opts.docs_batch, opts.docs_job, opts.docs_job_reps, opts.docs_timeout) < 1:
        p.error("the documents phase's counts must be >= 1")
