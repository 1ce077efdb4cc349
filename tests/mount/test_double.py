#!/usr/bin/env python3
"""Self-test of scripts/apidouble.py, the local LlamaCloud batch API double.

For: proving that the double serves exactly make_dataset(), pages the v1
lists as each dialect promises, and injects every fault kind as described,
so that a failing mount test points at the filesystem and not at its
double. Not for: testing batchfs itself.

Run: python3 tests/mount/test_double.py   (starts its own servers on free
ports and always stops them).
"""

import atexit
import base64
import gzip
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "apidouble.py"
sys.path.insert(0, str(SCRIPT.parent))
import apidouble  # noqa: E402

KEY = "llx-test-key"
RUNNING = []


def _kill_all():
    for proc in RUNNING:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


atexit.register(_kill_all)


class Double:
    """One double process on a free port."""

    def __init__(self, *args, env=None, startup_timeout=30.0):
        self.stderr = tempfile.TemporaryFile()
        full_env = dict(os.environ)
        full_env.pop("BATCHFS_DOUBLE_KEY", None)
        full_env.update(env or {})
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self.stderr, env=full_env)
        RUNNING.append(self.proc)
        ready, _, _ = select.select([self.proc.stdout], [], [], startup_timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        self.startup_seconds = time.monotonic() - started
        self.startup_cpu_seconds = self.cpu_seconds() if ready else 0.0
        if not line.startswith("apidouble listening on http://127.0.0.1:"):
            self.stop()
            raise RuntimeError("double did not start: %r" % line)
        self.port = int(line.rsplit(":", 1)[1])

    def connection(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, path, method="GET", key=KEY, headers=None, body=None, timeout=10):
        conn = self.connection(timeout)
        try:
            sent = dict(headers or {})
            if key is not None:
                sent["Authorization"] = "Bearer " + key
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get(self, path, **params):
        query = ("?" + urlencode(params)) if params else ""
        status, _, body = self.request(path + query)
        # Bodies may carry raw bytes that are not UTF-8 (see dumps_raw).
        return status, json.loads(body.decode("utf-8", "surrogateescape"))

    def control(self, name, payload=None):
        method = "GET" if payload is None else "POST"
        body = None if payload is None else json.dumps(payload)
        status, _, raw = self.request("/__double/" + name, method=method, key=None, body=body)
        return status, json.loads(raw)

    def faults(self, *faults):
        status, _ = self.control("faults", list(faults))
        assert status == 200, status

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        """SIGTERM, then the exit code; kills if it does not go in 5 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.stderr.seek(0)
        errors = self.stderr.read().decode(errors="replace")
        self.stderr.close()
        return self.proc.returncode, errors


DOUBLE = None
DATA = apidouble.make_dataset()
JOBS = "/api/v1/beta/batch-processing"


def setUpModule():
    global DOUBLE
    DOUBLE = Double("--quiet")


def tearDownModule():
    code, errors = DOUBLE.stop()
    if code != 0 or errors:
        raise AssertionError("double exited %r with stderr %r" % (code, errors))


def job_by_status(status):
    return next(j for j in DATA.jobs if j["status"] == status)


def items_path(job):
    return "%s/%s/items" % (JOBS, job["id"])


def page_all(double, path, style, limit, **params):
    """Pages a v1 list the way REFERENCE.md documents for that dialect."""
    seen, offset, token, pages = [], 0, None, 0
    while True:
        query = dict(params, limit=limit)
        if token:
            query["page_token"] = token
        else:
            query["offset"] = offset
        status, body = double.get(path, **query)
        assert status == 200, (status, body)
        pages += 1
        assert pages < 10000
        seen.extend(body["items"])
        if not body["items"]:
            break
        if style == "token":
            token = body.get("next_page_token")
            if not token:
                break
        elif style == "total":
            offset += len(body["items"])
            if "total_size" not in body or offset >= body["total_size"]:
                break
        else:
            break
    return seen, pages


class DatasetTest(unittest.TestCase):
    def test_same_seed_same_data(self):
        self.assertEqual(apidouble.make_dataset(seed=7), apidouble.make_dataset(seed=7))

    def test_other_seed_other_data(self):
        other = apidouble.make_dataset(seed=2)
        self.assertNotEqual(DATA, other)
        self.assertNotEqual(DATA.jobs[0]["id"], other.jobs[0]["id"])

    def test_statuses_cover_both_vocabularies(self):
        self.assertEqual({j["status"] for j in DATA.jobs}, set(apidouble.JOB_STATUSES))
        statuses = {i["status"] for items in DATA.items.values() for i in items}
        self.assertEqual(statuses, set(apidouble.ITEM_STATUSES))

    def test_job_counters_match_items(self):
        self.assertIn(0, [j["total_items"] for j in DATA.jobs])
        for job in DATA.jobs:
            items = DATA.items[job["id"]]
            self.assertTrue(job["id"].startswith("bjb-"))
            self.assertEqual(job["total_items"], len(items))
            self.assertEqual(job["failed_items"],
                             sum(i["status"] == "failed" for i in items))
            self.assertEqual(job["skipped_items"],
                             sum(i["status"] == "skipped" for i in items))
            keys = [k for k in job if k in apidouble.JOB_KEYS]
            self.assertEqual(keys, [k for k in apidouble.JOB_KEYS if k in job])
            if job["status"] == "completed":
                self.assertFalse({i["status"] for i in items} & {"pending", "processing"})

    def test_hostile_names_present(self):
        names = [i["item_name"] for i in DATA.items[DATA.jobs[0]["id"]]]
        for name in ("/", ".", "..", "", "a/b/c.pdf", "line\nbreak.pdf", "tab\there.pdf",
                     "nul\u0000inside.pdf", "already.json", "Case.pdf", "case.pdf"):
            self.assertIn(name, names)
        self.assertIn(300, [len(n.encode()) for n in names])
        self.assertGreaterEqual(names.count("duplicate.pdf"), 2)
        self.assertTrue(any("\u007f" in n for n in names))

    def test_batches_results_shapes(self):
        self.assertEqual(len(DATA.batches), 4)
        self.assertTrue(all(b["results"] is None for b in DATA.batches))
        results = [DATA.results[b["id"]] for b in DATA.batches]
        self.assertIn(None, results)
        self.assertIn([], results)
        self.assertTrue(any(r for r in results))

    def test_big_job_mix(self):
        data = apidouble.make_dataset(jobs=1, items=5, big_job=2000, batches=0)
        big = data.jobs[-1]
        self.assertTrue(big["id"].startswith("bjb-big-"))
        self.assertEqual(big["status"], "completed")
        self.assertEqual(len(data.items[big["id"]]), 2000)
        self.assertEqual(data.jobs[0]["id"], DATA.jobs[0]["id"])

    def test_big_job_type(self):
        # The benchmark's extract job has the parse job's id and items.
        parse = apidouble.make_dataset(jobs=0, big_job=300, batches=0)
        extract = apidouble.make_dataset(jobs=0, big_job=300, batches=0,
                                         big_job_type="extract")
        self.assertEqual(parse.jobs[0]["job_type"], "parse")
        self.assertEqual(extract.jobs[0]["job_type"], "extract")
        self.assertEqual(extract.jobs[0]["id"], parse.jobs[0]["id"])
        self.assertEqual(extract.items, parse.items)
        args = apidouble.parse_args(["--big-job", "300", "--big-job-type", "extract"])
        self.assertEqual(args.big_job_type, "extract")

    def test_render(self):
        self.assertEqual(apidouble.render({"a": 1}), '{\n  "a": 1\n}\n')


class EndpointTest(unittest.TestCase):
    def test_auth_required(self):
        for key in (None, "wrong"):
            status, _, body = DOUBLE.request(JOBS, key=key)
            self.assertEqual(status, 401)
            self.assertEqual(json.loads(body), {"detail": "Invalid API key"})

    def test_bad_parameters_422(self):
        job = DATA.jobs[0]
        for path, query, field in ((JOBS, "limit=0", "limit"), (JOBS, "limit=1001", "limit"),
                                   (JOBS, "offset=-1", "offset"), (JOBS, "limit=ten", "limit"),
                                   (JOBS, "status=done", "status"),
                                   (JOBS, "job_type=ocr", "job_type"),
                                   (items_path(job), "status=running", "status"),
                                   (items_path(job), "page_token=%21%21", "page_token"),
                                   ("/api/v2/batches", "page_size=0", "page_size"),
                                   ("/api/v2/batches", "status=done", "status")):
            status, _, body = DOUBLE.request(path + "?" + query)
            self.assertEqual(status, 422, query)
            detail = json.loads(body)["detail"]
            self.assertEqual(detail[0]["loc"], ["query", field])

    def test_not_found_and_method(self):
        self.assertEqual(DOUBLE.get(JOBS + "/bjb-nope")[0], 404)
        self.assertEqual(DOUBLE.get(JOBS + "/bjb-nope/items")[1],
                         {"detail": "Batch job not found"})
        self.assertEqual(DOUBLE.get("/api/v3/other")[1], {"detail": "Not Found"})
        self.assertEqual(DOUBLE.get("/api/v2/batches/bat-nope")[0], 404)
        self.assertEqual(DOUBLE.request(JOBS, method="POST", body="{}")[0], 405)

    def test_list_bytes_are_json_dumps(self):
        job = DATA.jobs[0]
        items = DATA.items[job["id"]]
        _, headers, raw = DOUBLE.request(items_path(job) + "?limit=5&offset=10&project_id=p")
        token = base64.urlsafe_b64encode(b"items:15").decode().rstrip("=")
        expected = '{"items": [%s], "next_page_token": "%s", "total_size": %d}' % (
            ", ".join(json.dumps(i) for i in items[10:15]), token, len(items))
        self.assertEqual(raw.decode(), expected)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(int(headers["Content-Length"]), len(raw))

    def test_job_filters(self):
        status, body = DOUBLE.get(JOBS, status="failed", organization_id="o")
        self.assertEqual(body["items"], [job_by_status("failed")])
        status, body = DOUBLE.get(JOBS, job_type="parse")
        self.assertEqual(body["items"], [j for j in DATA.jobs if j["job_type"] == "parse"])
        directory = DATA.jobs[0]["directory_id"]
        status, body = DOUBLE.get(JOBS, directory_id=directory)
        self.assertEqual(body["items"],
                         [j for j in DATA.jobs if j.get("directory_id") == directory])

    def test_get_job(self):
        job = DATA.jobs[0]
        status, body = DOUBLE.get(JOBS + "/" + job["id"])
        self.assertEqual(status, 200)
        self.assertEqual(body["job"], job)
        self.assertEqual(body["progress_percentage"], 100.0)

    def test_items_status_filter(self):
        job = job_by_status("running")
        status, body = DOUBLE.get(items_path(job), status="failed", limit=1000)
        self.assertEqual(body["items"],
                         [i for i in DATA.items[job["id"]] if i["status"] == "failed"])
        self.assertEqual(body["total_size"], len(body["items"]))
        status, body = DOUBLE.get(items_path(job), offset=100000)
        self.assertEqual((status, body["items"]), (200, []))

    def test_processing_results(self):
        items = DATA.items[DATA.jobs[0]["id"]]
        done = next(i for i in items if i["status"] == "completed")
        path = "%s/items/%s/processing-results" % (JOBS, done["item_id"])
        status, body = DOUBLE.get(path)
        self.assertEqual(status, 200)
        self.assertEqual(body["item_id"], done["item_id"])
        self.assertEqual(len(body["processing_results"]), 1)
        self.assertEqual(body["processing_results"][0]["job_type"], DATA.jobs[0]["job_type"])
        self.assertEqual(DOUBLE.get(path), (status, body))
        self.assertEqual(DOUBLE.get(path, job_type="classify")[1]["processing_results"], [])
        self.assertEqual(DOUBLE.get("%s/items/itm-nope/processing-results" % JOBS)[0], 404)

    def test_batches_by_cursor(self):
        seen, token = [], None
        while True:
            params = {"page_size": 3}
            if token:
                params["page_token"] = token
            status, body = DOUBLE.get("/api/v2/batches", **params)
            self.assertEqual(status, 200)
            seen.extend(body["items"])
            token = body.get("next_page_token")
            if not token:
                break
        self.assertEqual(seen, DATA.batches)
        status, body = DOUBLE.get("/api/v2/batches", status="RUNNING")
        self.assertEqual(body["items"], [b for b in DATA.batches if b["status"] == "RUNNING"])
        status, body = DOUBLE.get("/api/v2/batches",
                                  created_at_on_or_after=DATA.batches[1]["created_at"])
        self.assertEqual(body["items"], DATA.batches[:2])

    def test_get_batch_expand(self):
        for batch in DATA.batches:
            path = "/api/v2/batches/" + quote(batch["id"])
            self.assertEqual(DOUBLE.get(path)[1], batch)
            expected = dict(batch, results=DATA.results[batch["id"]])
            self.assertEqual(DOUBLE.get(path, expand="results")[1], expected)


class DialectTest(unittest.TestCase):
    def tearDown(self):
        DOUBLE.control("config", {"dialect": "both", "page_cap": 250})

    def check(self, dialect, style, limit, job=None, status=None, **config):
        DOUBLE.control("config", dict(config, dialect=dialect))
        job = job or DATA.jobs[0]
        params = {"status": status} if status else {}
        seen, pages = page_all(DOUBLE, items_path(job), style, limit, **params)
        expected = [i for i in DATA.items[job["id"]] if status in (None, i["status"])]
        self.assertEqual(seen, expected, dialect)
        return pages

    def test_both_by_token_and_by_total(self):
        self.assertEqual(self.check("both", "token", 70), 5)
        self.assertEqual(self.check("both", "total", 70), 5)
        self.check("both", "token", 7, status="failed")

    def test_token_only(self):
        self.check("token", "token", 64)
        status, body = DOUBLE.get(items_path(DATA.jobs[0]), limit=10)
        self.assertNotIn("total_size", body)
        self.assertIn("next_page_token", body)

    def test_total_only(self):
        self.check("total", "total", 64)
        status, body = DOUBLE.get(items_path(DATA.jobs[0]), limit=10)
        self.assertEqual(body["total_size"], 300)
        self.assertNotIn("next_page_token", body)

    def test_capped_pages_are_short(self):
        self.assertEqual(self.check("capped", "token", 1000, page_cap=40), 8)
        status, body = DOUBLE.get(items_path(DATA.jobs[0]), limit=1000)
        self.assertEqual(len(body["items"]), 40)
        self.check("capped", "total", 1000, page_cap=40)

    def test_none_gives_first_page_only(self):
        self.assertEqual(self.check("none", "first", 1000), 1)
        status, body = DOUBLE.get(items_path(DATA.jobs[0]), limit=10)
        self.assertEqual(set(body), {"items"})

    def test_jobs_list_and_empty_job(self):
        for dialect in ("both", "token", "total", "capped"):
            DOUBLE.control("config", {"dialect": dialect, "page_cap": 2})
            style = "total" if dialect == "total" else "token"
            self.assertEqual(page_all(DOUBLE, JOBS, style, 4)[0], DATA.jobs)
        self.check("both", "token", 10, job=job_by_status("pending"))


class FaultTest(unittest.TestCase):
    def tearDown(self):
        DOUBLE.faults()

    def first_job_items(self, **params):
        return DOUBLE.request(items_path(DATA.jobs[0]) + "?" + urlencode(params or {}))

    def test_status_with_headers_and_times(self):
        DOUBLE.faults({"kind": "status", "status": 429, "times": 1,
                       "headers": {"Retry-After": "1", "x-should-retry": "true"}})
        status, headers, body = self.first_job_items()
        self.assertEqual((status, headers["Retry-After"]), (429, "1"))
        self.assertIn("detail", json.loads(body))
        self.assertEqual(self.first_job_items()[0], 200)
        self.assertEqual(DOUBLE.control("faults")[1][0]["remaining"], 0)

    def test_path_regex_and_probability(self):
        DOUBLE.faults({"kind": "status", "status": 503, "path": "/items$"},
                      {"kind": "status", "status": 500, "probability": 0.0})
        self.assertEqual(self.first_job_items()[0], 503)
        self.assertEqual(DOUBLE.request(JOBS)[0], 200)

    def test_bad_fault_rejected(self):
        self.assertEqual(DOUBLE.control("faults", [{"kind": "meteor"}])[0], 400)
        self.assertEqual(DOUBLE.control("faults", {"kind": "status"})[0], 400)
        self.assertEqual(DOUBLE.control("faults", [{"kind": "delay", "ms": "x"}])[0], 400)
        self.assertEqual(DOUBLE.control("faults", [{"kind": "reset", "path": "("}])[0], 400)

    def test_delay(self):
        DOUBLE.faults({"kind": "delay", "ms": 300})
        started = time.monotonic()
        self.assertEqual(self.first_job_items()[0], 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)

    def test_stall(self):
        DOUBLE.faults({"kind": "stall", "ms": 400})
        conn = DOUBLE.connection(timeout=5)
        conn.request("GET", JOBS, headers={"Authorization": "Bearer " + KEY})
        started = time.monotonic()
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertGreater(int(resp.getheader("Content-Length")), 0)
        with self.assertRaises(http.client.IncompleteRead) as caught:
            resp.read()
        self.assertEqual(caught.exception.partial, b"")
        self.assertGreaterEqual(time.monotonic() - started, 0.35)
        conn.close()

    def test_stall_after_part_of_the_body(self):
        full = self.first_job_items(limit=50)[2]
        DOUBLE.faults({"kind": "stall", "ms": 400, "after": 100})
        conn = DOUBLE.connection(timeout=5)
        conn.request("GET", items_path(DATA.jobs[0]) + "?limit=50",
                     headers={"Authorization": "Bearer " + KEY})
        resp = conn.getresponse()
        self.assertEqual(int(resp.getheader("Content-Length")), len(full))
        with self.assertRaises(http.client.IncompleteRead) as caught:
            resp.read()
        self.assertEqual(caught.exception.partial, full[:100])
        conn.close()

    def test_reset_body(self):
        DOUBLE.faults({"kind": "reset_body"})
        with self.assertRaises((ConnectionError, http.client.IncompleteRead)):
            self.first_job_items(limit=50)

    def test_chunked_cut(self):
        full = self.first_job_items(limit=50)[2]
        DOUBLE.faults({"kind": "chunked_cut"})
        conn = DOUBLE.connection(timeout=5)
        conn.request("GET", items_path(DATA.jobs[0]) + "?limit=50",
                     headers={"Authorization": "Bearer " + KEY})
        resp = conn.getresponse()
        self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
        self.assertIsNone(resp.getheader("Content-Length"))
        with self.assertRaises(http.client.IncompleteRead) as caught:
            resp.read()
        self.assertEqual(caught.exception.partial, full)
        conn.close()

    def test_empty_reply(self):
        DOUBLE.faults({"kind": "empty_reply"})
        with self.assertRaises(http.client.RemoteDisconnected):
            self.first_job_items()

    def test_truncate(self):
        full = self.first_job_items(limit=50)[2]
        DOUBLE.faults({"kind": "truncate"})
        with self.assertRaises(http.client.IncompleteRead) as caught:
            self.first_job_items(limit=50)
        self.assertEqual(caught.exception.partial, full[:len(full) // 2])

    def test_reset(self):
        DOUBLE.faults({"kind": "reset"})
        with self.assertRaises(ConnectionError):
            self.first_job_items()

    def test_body_replacements(self):
        for kind, check in (("malformed", lambda raw: self.assertRaises(ValueError,
                                                                        json.loads, raw)),
                            ("not_object", lambda raw: self.assertEqual(json.loads(raw),
                                                                        [1, 2, 3])),
                            ("items_not_array", lambda raw: self.assertEqual(
                                json.loads(raw)["items"], {"a": 1}))):
            DOUBLE.faults({"kind": kind})
            status, headers, raw = self.first_job_items()
            self.assertEqual(status, 200, kind)
            self.assertEqual(int(headers["Content-Length"]), len(raw))
            check(raw)

    def test_items_non_objects(self):
        DOUBLE.faults({"kind": "items_non_objects"})
        items = json.loads(self.first_job_items(limit=10)[2])["items"]
        self.assertTrue(any(not isinstance(i, dict) for i in items))
        self.assertEqual([i for i in items if isinstance(i, dict)],
                         DATA.items[DATA.jobs[0]["id"]][:10])

    def test_missing_required(self):
        DOUBLE.faults({"kind": "missing_required"})
        items = json.loads(self.first_job_items(limit=8)[2])["items"]
        self.assertTrue(any("item_id" not in i for i in items))
        self.assertTrue(any(i.get("item_name") == 123 for i in items))
        self.assertTrue(any("status" in i and i["status"] is None for i in items))
        self.assertIn(DATA.items[DATA.jobs[0]["id"]][3], items)

    def test_nul_in_string(self):
        DOUBLE.faults({"kind": "nul_in_string"})
        item = json.loads(self.first_job_items(limit=3)[2])["items"][0]
        self.assertIn("\u0000", item["item_name"])
        self.assertIn("\u0000", item["error_message"])

    def test_huge_field(self):
        DOUBLE.faults({"kind": "huge_field", "size": 1000000})
        items = json.loads(self.first_job_items(limit=3)[2])["items"]
        self.assertEqual(len(items[0]["error_message"]), 1000000)

    def test_deep_nesting(self):
        DOUBLE.faults({"kind": "deep_nesting", "depth": 3000})
        raw = self.first_job_items(limit=2)[2].decode()
        self.assertIn('"x_deep": ' + "[" * 3000 + "]" * 3000 + "}", raw)

    def test_repeat_token(self):
        DOUBLE.faults({"kind": "repeat_token"})
        first = json.loads(self.first_job_items(limit=20)[2])
        again = json.loads(self.first_job_items(limit=20, page_token=first["next_page_token"])[2])
        self.assertEqual(first, again)

    def test_repeat_page(self):
        DOUBLE.faults({"kind": "repeat_page"})
        first = json.loads(self.first_job_items(limit=20)[2])
        later = json.loads(self.first_job_items(limit=20, offset=400)[2])
        self.assertEqual(first["items"], later["items"])
        self.assertGreater(later["total_size"], 420)
        self.assertIn("next_page_token", later)

    def test_total_lies(self):
        DOUBLE.faults({"kind": "total_lies", "factor": 3.0})
        self.assertEqual(json.loads(self.first_job_items(limit=5)[2])["total_size"], 900)
        DOUBLE.faults({"kind": "total_lies", "factor": 0.5})
        self.assertEqual(json.loads(self.first_job_items(limit=5)[2])["total_size"], 150)

    def test_duplicate_ids(self):
        DOUBLE.faults({"kind": "duplicate_ids"})
        ids = [i["item_id"] for i in json.loads(self.first_job_items(limit=5)[2])["items"]]
        self.assertEqual(len(ids), 6)
        self.assertEqual(len(set(ids)), 5)

    def test_duplicate_keys(self):
        DOUBLE.faults({"kind": "duplicate_keys"})
        raw = self.first_job_items(limit=5)[2].decode()
        self.assertEqual(raw.count('"status": "bogus"'), 5)
        self.assertEqual(json.loads(raw)["items"], DATA.items[DATA.jobs[0]["id"]][:5])

    def test_bad_gzip(self):
        DOUBLE.faults({"kind": "bad_gzip"})
        status, headers, raw = self.first_job_items()
        self.assertEqual(headers["Content-Encoding"], "gzip")
        self.assertEqual(raw[:2], b"\x1f\x8b")
        self.assertRaises((OSError, zlib.error, EOFError), gzip.decompress, raw)

    def test_gzip_bomb(self):
        size = 48 * 1024 * 1024 + 5
        DOUBLE.faults({"kind": "gzip_bomb", "size": size})
        status, headers, raw = self.first_job_items()
        self.assertEqual(headers["Content-Encoding"], "gzip")
        self.assertLess(len(raw), size // 500)
        inflater, total = zlib.decompressobj(31), 0
        data = raw
        while data:
            chunk = inflater.decompress(data, 1 << 20)
            self.assertEqual(chunk.strip(b" "), b"")
            total += len(chunk)
            data = inflater.unconsumed_tail
        self.assertTrue(inflater.eof)
        self.assertEqual(total, size)
        DOUBLE.faults({"kind": "gzip_bomb"})
        raw = self.first_job_items()[2]
        self.assertLess(len(raw), 2 << 20)
        self.assertEqual(raw[-4:], (1 << 30).to_bytes(4, "little"))
        self.assertEqual(zlib.decompressobj(31).decompress(raw[:4096], 1 << 16),
                         b" " * (1 << 16))

    def test_redirect(self):
        DOUBLE.faults({"kind": "redirect", "location": "file:///etc/passwd"})
        status, headers, _ = self.first_job_items()
        self.assertEqual((status, headers["Location"]), (302, "file:///etc/passwd"))

    def test_slow_body(self):
        full = self.first_job_items(limit=3)[2]
        DOUBLE.faults({"kind": "slow_body", "chunk": 500, "ms": 20})
        started = time.monotonic()
        self.assertEqual(self.first_job_items(limit=3)[2], full)
        self.assertGreaterEqual(time.monotonic() - started, 0.02 * (len(full) // 500))
        # Only the first `count` chunks go slowly.
        DOUBLE.faults({"kind": "slow_body", "chunk": 2, "ms": 300, "count": 2})
        started = time.monotonic()
        self.assertEqual(self.first_job_items(limit=3)[2], full)
        self.assertGreaterEqual(time.monotonic() - started, 0.6)
        self.assertLess(time.monotonic() - started, 30)


class StatsAndAdvanceTest(unittest.TestCase):
    def tearDown(self):
        DOUBLE.control("config", {"latency_ms": 0})

    def test_counts_and_in_flight(self):
        DOUBLE.control("reset", {})
        DOUBLE.request(JOBS)
        DOUBLE.request(JOBS, key="bad")
        DOUBLE.request(items_path(DATA.jobs[0]))
        DOUBLE.request("/api/v2/batches")
        stats = DOUBLE.control("stats")[1]
        self.assertEqual(stats["requests"], 4)
        self.assertEqual(stats["by_endpoint"]["list_jobs"], 2)
        self.assertEqual(stats["by_endpoint"]["list_batches"], 1)
        self.assertEqual(stats["by_status"], {"200": 3, "401": 1})
        DOUBLE.control("config", {"latency_ms": 400})
        threads = [threading.Thread(target=DOUBLE.request, args=(JOBS,)) for _ in range(4)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertLess(time.monotonic() - started, 1.5)
        self.assertEqual(DOUBLE.control("stats")[1]["in_flight_max"], 4)

    def test_advance_moves_items(self):
        job = job_by_status("dispatched")
        before = DOUBLE.get(JOBS + "/" + job["id"])[1]["job"]
        status, result = DOUBLE.control("advance", {"job_id": job["id"], "count": 5})
        self.assertEqual((status, result["moved"]), (200, 5))
        after = DOUBLE.get(JOBS + "/" + job["id"])[1]["job"]
        self.assertEqual(after["status"], "running")
        self.assertNotEqual(after["updated_at"], before["updated_at"])
        items = DOUBLE.get(items_path(job), limit=1000)[1]["items"]
        original = DATA.items[job["id"]]
        changed = [i for i, (a, b) in enumerate(zip(original, items)) if a != b]
        self.assertEqual(len(changed), 5)
        for index in changed:
            step = {"pending": "processing", "processing": ("completed", "failed")}
            self.assertIn(items[index]["status"], step[original[index]["status"]])
        self.assertEqual(list(items[changed[0]])[:3], ["item_id", "item_name", "status"])
        counted = DOUBLE.get(items_path(job), status="processing", limit=1000)[1]
        self.assertEqual(counted["total_size"],
                         sum(i["status"] == "processing" for i in items))
        self.assertEqual(after["failed_items"], sum(i["status"] == "failed" for i in items))
        self.assertEqual(DOUBLE.control("advance", {"job_id": "bjb-nope"})[0], 404)

    def test_job_list_follows_an_advance(self):
        # The unfiltered job list is kept between requests: an advance
        # must show in it, as in the filtered one.
        job = job_by_status("dispatched")
        DOUBLE.get(JOBS, limit=1000)
        DOUBLE.control("advance", {"job_id": job["id"], "count": 1})
        fresh = DOUBLE.get(JOBS + "/" + job["id"])[1]["job"]
        listed = [j for j in DOUBLE.get(JOBS, limit=1000)[1]["items"] if j["id"] == job["id"]]
        self.assertEqual(listed, [fresh])
        self.assertIn(fresh, DOUBLE.get(JOBS, status=fresh["status"], limit=1000)[1]["items"])


PARSE_BATCH = DATA.batches[0]
EXTRACT_BATCH = DATA.batches[3]
PHRASE = apidouble.apidouble_content.SEARCH_PHRASE


def v1_parse_job():
    return next(j for j in DATA.jobs if j["job_type"] == "parse")


def page_files(double, directory, size, **params):
    seen, token = [], None
    while True:
        query = dict(params, page_size=size)
        if token:
            query["page_token"] = token
        status, body = double.get("/api/v1/beta/directories/%s/files" % directory, **query)
        assert status == 200, (status, body)
        seen.extend(body["items"])
        token = body["next_page_token"]
        if not token:
            return seen


class OutputsDatasetTest(unittest.TestCase):
    """The documents of the data set, as the later mount tests read them."""

    def test_deterministic_and_lazy(self):
        again = apidouble.make_dataset()
        self.assertIsNone(again.outputs_made)
        for batch in DATA.batches:
            self.assertEqual(again.batch_documents(batch["id"]),
                             DATA.batch_documents(batch["id"]))
        self.assertEqual(again.job_documents(v1_parse_job()["id"]),
                         DATA.job_documents(v1_parse_job()["id"]))
        other = apidouble.make_dataset(seed=2)
        self.assertNotEqual(other.batch_documents(other.batches[0]["id"])[0].markdown_full,
                            DATA.batch_documents(PARSE_BATCH["id"])[0].markdown_full)

    def test_new_sizes_leave_old_objects_alone(self):
        data = apidouble.make_dataset(output_batch=5, output_job=5, large_kb=64)
        self.assertEqual(data.jobs[:len(DATA.jobs)], DATA.jobs)
        self.assertEqual(data.batches[:len(DATA.batches)], DATA.batches)
        self.assertEqual(data.batch_documents(PARSE_BATCH["id"])[0],
                         DATA.batch_documents(PARSE_BATCH["id"])[0])

    def test_batches_have_a_source_directory_with_their_files(self):
        for batch in DATA.batches:
            files = DATA.directory_files(batch["source_directory_id"], include_deleted=True)
            ids = {f["id"] for f in files}
            for entry in DATA.results[batch["id"]] or ():
                self.assertIn(entry["source_directory_file_id"], ids)

    def test_parse_batch_mix(self):
        docs = DATA.batch_documents(PARSE_BATCH["id"])
        statuses = {d.status for d in docs}
        self.assertEqual(statuses, {"COMPLETED", "RUNNING", "PENDING", "FAILED", "CANCELLED",
                                    None})
        self.assertTrue(all(d.error_message for d in docs if d.status == "FAILED"))
        self.assertTrue(all(d.text_full is None for d in docs if d.status != "COMPLETED"))
        fast = [d for d in docs if d.tier == "fast" and d.status == "COMPLETED"]
        self.assertTrue(fast)
        self.assertTrue(all(d.markdown_full is None and d.text_full for d in fast))
        gone = [d for d in docs if d.name is None]
        self.assertTrue(gone)
        self.assertTrue(any(d.status == "COMPLETED" for d in gone))
        names = [d.name for d in docs if d.name is not None]
        for name in ("/", ".", "..", "a/b/report.pdf", "ctl\u0001\u001f.pdf", "x" * 300 + ".pdf",
                     "report.pdf", "Report.pdf", "bad-\udcff.pdf", "lone-\ud800.pdf",
                     "cut-\udce2\udc82.pdf"):
            self.assertIn(name, names)
        self.assertEqual(names.count("duplicate.pdf"), 2)

    def test_content_is_rich_and_consistent(self):
        content = apidouble.apidouble_content
        done = [d for d in DATA.batch_documents(PARSE_BATCH["id"]) if d.markdown_full]
        joined = "".join(d.markdown_full for d in done)
        self.assertTrue(all(d.markdown_full.startswith("# ") for d in done))
        for mark in ("\n## ", "|---|", "\u00e9", "\u6771\u4eac", "\U0001f4c8", "**"):
            self.assertTrue(mark in joined, mark)
        for doc in done:
            self.assertEqual(doc.text_full, content.markdown_to_text(doc.markdown_full))
        large = [d for d in done if len(d.markdown_full.encode()) > 2 << 20]
        self.assertEqual(len(large), 1)
        with_phrase = [d for d in done if PHRASE in d.markdown_full]
        self.assertTrue(0 < len(with_phrase) < len(done))
        for doc in done:
            self.assertEqual(PHRASE in doc.markdown_full, PHRASE in doc.text_full)
            self.assertEqual(PHRASE in doc.markdown_full, PHRASE in doc.markdown_full.lower())

    def test_extract_results(self):
        docs = DATA.batch_documents(EXTRACT_BATCH["id"])
        done = [d.extract_result for d in docs if d.status == "COMPLETED"]
        self.assertTrue(any(isinstance(r, dict) for r in done))
        self.assertTrue(any(isinstance(r, list) for r in done))
        self.assertTrue(all(d.extract_result is None for d in docs if d.status != "COMPLETED"))
        self.assertTrue(all(d.markdown_full is None for d in docs))

    def test_v1_job_documents(self):
        job = v1_parse_job()
        docs = DATA.job_documents(job["id"])
        items = {i["item_id"]: i for i in DATA.items[job["id"]]}
        self.assertEqual({d.status for d in docs},
                         {"SUCCESS", "PARTIAL_SUCCESS", "ERROR", None})
        for doc in docs:
            item = items[doc.item_id]
            self.assertEqual((doc.item_name, doc.job_id), (item["item_name"], item["job_id"]))
            done = doc.status in ("SUCCESS", "PARTIAL_SUCCESS")
            self.assertEqual(done, doc.markdown is not None)
            if done:
                self.assertEqual(item["status"], "completed")
        self.assertTrue(any(len(d.markdown.encode()) > 2 << 20 for d in docs if d.markdown))
        self.assertEqual(DATA.job_documents(DATA.jobs[1]["id"]), [])

    def test_output_sizes(self):
        data = apidouble.make_dataset(jobs=0, batches=0, output_batch=120, output_job=150,
                                      large_kb=100)
        batch, job = data.batches[-1], data.jobs[-1]
        self.assertTrue(batch["id"].startswith("bat-out-"))
        docs = data.batch_documents(batch["id"])
        self.assertEqual(len(docs), 120)
        self.assertTrue(all(d.status == "COMPLETED" and d.name and d.markdown_full
                            for d in docs))
        self.assertEqual(len({d.name for d in docs}), 120)
        self.assertEqual(len([d for d in docs if len(d.markdown_full) > 100000]), 2)
        v1 = data.job_documents(job["id"])
        self.assertEqual(len(v1), 150)
        self.assertTrue(all(d.markdown for d in v1))


class OutputsEndpointTest(unittest.TestCase):
    def tearDown(self):
        DOUBLE.faults()

    def parse(self, job_id, *expand):
        query = "&".join("expand=" + quote(e) for e in expand)
        status, headers, raw = DOUBLE.request("/api/v2/parse/%s?%s" % (job_id, query))
        return status, json.loads(raw), raw

    def test_directory_files_by_cursor(self):
        directory = PARSE_BATCH["source_directory_id"]
        self.assertEqual(page_files(DOUBLE, directory, 7), DATA.directory_files(directory))
        deleted = page_files(DOUBLE, directory, 1000, include_deleted="true")
        self.assertEqual(deleted, DATA.directory_files(directory, include_deleted=True))
        gone = [f for f in deleted if f["deleted_at"]]
        self.assertTrue(gone)
        raw = DOUBLE.request("/api/v1/beta/directories/%s/files?page_size=1000" % directory)[2]
        for name in (b'"bad-\xff.pdf"', b'"cut-\xe2\x82.pdf"', b'"lone-\\ud800.pdf"'):
            self.assertIn(b'"display_name": ' + name, raw)
        status, body = DOUBLE.get("/api/v1/beta/directories/%s/files" % directory,
                                  display_name="duplicate.pdf")
        self.assertEqual(len(body["items"]), 2)
        self.assertEqual(body["next_page_token"], "")
        self.assertEqual(DOUBLE.get("/api/v1/beta/directories/dir-nope/files")[0], 404)
        self.assertEqual(DOUBLE.get("/api/v1/beta/directories/%s/files" % directory,
                                    page_size=0)[0], 422)
        item = body["items"][0]
        for key in ("id", "directory_id", "display_name", "project_id", "unique_id",
                    "created_at", "file_id"):
            self.assertIn(key, item)

    def test_parse_v2_every_job(self):
        for n, doc in enumerate(DATA.batch_documents(PARSE_BATCH["id"])):
            expand = ("text_full",) if doc.tier == "fast" else (
                ("markdown_full", "text_full") if n % 2 else ("markdown_full,text_full",))
            status, body, raw = self.parse(doc.job_id, *expand)
            if doc.status is None:
                self.assertEqual((status, body), (404, {"detail": "Parse job not found"}))
                continue
            self.assertEqual(status, 200, doc)
            self.assertEqual(body["job"]["status"], doc.status)
            self.assertEqual(body["job"]["updated_at"], doc.updated_at)
            self.assertEqual(body["job"]["error_message"], doc.error_message)
            self.assertEqual(body["markdown_full"], doc.markdown_full)
            self.assertEqual(body["text_full"], doc.text_full)
            self.assertEqual(raw.decode("ascii"), json.dumps(body))

    def test_parse_v2_expand_pages_and_defaults(self):
        content = apidouble.apidouble_content
        doc = next(d for d in DATA.batch_documents(PARSE_BATCH["id"])
                   if d.markdown_full and len(d.markdown_full) < 200000)
        status, bare, _ = self.parse(doc.job_id)
        self.assertEqual(status, 200)
        self.assertEqual(set(bare["job"]), {"id", "project_id", "status", "created_at",
                                            "updated_at", "error_message", "name", "tier"})
        self.assertIsNone(bare["markdown_full"])
        self.assertIsNone(bare["markdown"])
        status, body, _ = self.parse(doc.job_id, "markdown,text", "job_metadata")
        pages = body["markdown"]["pages"]
        self.assertEqual([p["page_number"] for p in pages], list(range(1, len(pages) + 1)))
        self.assertEqual("\n\n".join(p["markdown"] for p in pages), doc.markdown_full)
        self.assertEqual([t["text"] for t in body["text"]["pages"]],
                         [content.markdown_to_text(p["markdown"]) for p in pages])
        self.assertIsNone(body["markdown_full"])
        self.assertEqual(body["job_metadata"]["job_pages"], len(pages))
        self.assertEqual(self.parse(doc.job_id, "markdown_full", "bogus")[0], 422)

    def test_parse_v2_failed_page(self):
        for doc in DATA.batch_documents(PARSE_BATCH["id"]):
            if doc.status != "COMPLETED" or doc.tier == "fast":
                continue
            pages = self.parse(doc.job_id, "markdown")[1]["markdown"]["pages"]
            failed = [p for p in pages if not p["success"]]
            if failed:
                self.assertEqual(set(failed[0]), {"page_number", "success", "error"})
                self.assertEqual("\n\n".join(p["markdown"] for p in pages if p["success"]),
                                 doc.markdown_full)
                return
        self.fail("no document with a failed page")

    def test_parse_v2_not_done_fast_and_expired(self):
        docs = DATA.batch_documents(PARSE_BATCH["id"])
        running = next(d for d in docs if d.status == "RUNNING")
        status, body, _ = self.parse(running.job_id, "markdown_full", "text_full", "markdown")
        self.assertEqual((status, body["markdown_full"], body["text_full"], body["markdown"]),
                         (200, None, None, None))
        fast = next(d for d in docs if d.tier == "fast" and d.status == "COMPLETED")
        for expand in (("markdown_full",), ("text_full", "markdown"), ("text,markdown_full",)):
            status, body, _ = self.parse(fast.job_id, *expand)
            self.assertEqual(status, 400)
            self.assertIn("fast", body["detail"])
        self.assertEqual(self.parse(fast.job_id, "text_full")[1]["text_full"], fast.text_full)
        for job_id in ("pjb-nope", next(d for d in docs if d.status is None).job_id,
                       DATA.batch_documents(EXTRACT_BATCH["id"])[0].job_id):
            self.assertEqual(self.parse(job_id, "text_full")[0], 404)

    def test_parse_v2_multi_mb_and_non_ascii(self):
        doc = next(d for d in DATA.batch_documents(PARSE_BATCH["id"])
                   if d.markdown_full and len(d.markdown_full.encode()) > 2 << 20)
        status, headers, raw = DOUBLE.request(
            "/api/v2/parse/%s?expand=markdown_full" % doc.job_id, timeout=60)
        self.assertEqual(status, 200)
        self.assertEqual(int(headers["Content-Length"]), len(raw))
        text = json.loads(raw)["markdown_full"]
        self.assertEqual(text.encode("utf-8"), doc.markdown_full.encode("utf-8"))
        self.assertTrue(any(ord(c) > 0xFFFF for c in text) or any(ord(c) > 127 for c in text))

    def test_extract_v2(self):
        docs = DATA.batch_documents(EXTRACT_BATCH["id"])
        for doc in docs:
            status, body = DOUBLE.get("/api/v2/extract/" + doc.job_id)
            if doc.status is None:
                self.assertEqual(status, 404)
                continue
            self.assertEqual((status, body["status"], body["extract_result"]),
                             (200, doc.status, doc.extract_result))
            self.assertEqual(body["updated_at"], doc.updated_at)
        done = next(d for d in docs if d.status == "COMPLETED")
        status, _, body = DOUBLE.request("/api/v2/extract/%s?expand=configuration,"
                                         "extract_metadata" % done.job_id)
        self.assertIsNotNone(json.loads(body)["configuration"])
        self.assertEqual(DOUBLE.get("/api/v2/extract/" + done.job_id, expand="x")[0], 422)
        parse_job = DATA.batch_documents(PARSE_BATCH["id"])[0].job_id
        self.assertEqual(DOUBLE.get("/api/v2/extract/" + parse_job)[0], 404)

    def test_v1_parse_results(self):
        base = "/api/v1/parsing/job/"
        for doc in DATA.job_documents(v1_parse_job()["id"]):
            status, job = DOUBLE.get(base + doc.job_id)
            markdown = DOUBLE.get(base + doc.job_id + "/result/markdown")
            text = DOUBLE.get(base + doc.job_id + "/result/text")
            if doc.status is None:
                self.assertEqual((status, markdown[0], text[0]), (404, 404, 404))
                continue
            self.assertEqual((status, job["id"], job["status"]), (200, doc.job_id, doc.status))
            if doc.markdown is None:
                self.assertEqual((markdown[0], text[0]), (404, 404))
                if doc.status == "ERROR":
                    self.assertTrue(job["error_message"])
                continue
            self.assertEqual((markdown[0], markdown[1]["markdown"]), (200, doc.markdown))
            self.assertEqual((text[0], text[1]["text"]), (200, doc.text))
            self.assertIn("job_pages", text[1]["job_metadata"])

    def test_v1_advanced_item_gets_output(self):
        double = Double("--jobs", "0", "--big-job", "200", "--batches", "0", "--quiet")
        try:
            data = apidouble.make_dataset(jobs=0, big_job=200, batches=0)
            job = data.jobs[0]
            running = [n for n, i in enumerate(data.items[job["id"]])
                       if i["status"] == "processing"]
            base = "/api/v1/parsing/job/%s"
            for index in running:
                job_id = data.items[job["id"]][index]["job_id"]
                self.assertEqual(double.get(base % job_id)[1]["status"], "PENDING")
                self.assertEqual(double.get(base % job_id + "/result/text")[0], 404)
            for _ in range(2):
                double.control("advance", {"job_id": job["id"], "count": 1000})
            items = double.get(items_path(job), limit=1000)[1]["items"]
            completed = 0
            for index in running:
                item = items[index]
                status, body = double.get(base % item["job_id"] + "/result/text")
                if item["status"] == "completed" and index % 50 != 23:
                    pages = data.outputs().v1_pages(index, item)
                    self.assertEqual((status, body["text"]),
                                     (200, apidouble.apidouble_content.join_pages(pages, 2)))
                    completed += 1
                else:
                    self.assertEqual(status, 404)
            self.assertGreater(completed, 0)
        finally:
            self.assertEqual(double.stop(), (0, ""))

    def test_stats_count_each_endpoint(self):
        DOUBLE.control("reset", {})
        doc = DATA.batch_documents(PARSE_BATCH["id"])[0]
        v1 = next(d for d in DATA.job_documents(v1_parse_job()["id"]) if d.markdown)
        for path in ("/api/v1/beta/directories/%s/files" % PARSE_BATCH["source_directory_id"],
                     "/api/v2/parse/" + doc.job_id, "/api/v2/parse/" + doc.job_id,
                     "/api/v2/extract/pjb-nope", "/api/v1/parsing/job/" + v1.job_id,
                     "/api/v1/parsing/job/%s/result/markdown" % v1.job_id,
                     "/api/v1/parsing/job/%s/result/text" % v1.job_id):
            DOUBLE.request(path)
        by = DOUBLE.control("stats")[1]["by_endpoint"]
        self.assertEqual((by["directory_files"], by["parse_v2"], by["extract_v2"],
                          by["parse_v1_job"], by["parse_v1_markdown"], by["parse_v1_text"],
                          by["other"]), (1, 2, 1, 1, 1, 1, 0))

    def test_faults_apply(self):
        doc = next(d for d in DATA.batch_documents(PARSE_BATCH["id"]) if d.markdown_full)
        path = "/api/v2/parse/%s?expand=markdown_full" % doc.job_id
        good = DOUBLE.request(path)[2]
        DOUBLE.faults({"kind": "status", "status": 503, "path": "^/api/v2/parse/", "times": 1})
        self.assertEqual(DOUBLE.request(path)[0], 503)
        self.assertEqual(DOUBLE.request(path)[2], good)
        DOUBLE.faults({"kind": "truncate", "path": "^/api/v2/parse/"})
        with self.assertRaises(http.client.IncompleteRead) as caught:
            DOUBLE.request(path)
        self.assertEqual(caught.exception.partial, good[:len(good) // 2])
        for kind in ("items_non_objects", "duplicate_ids", "repeat_token", "repeat_page",
                     "total_lies"):
            DOUBLE.faults({"kind": kind, "path": "^/api/(v2/parse|v1/parsing)/"})
            self.assertEqual(DOUBLE.request(path)[2], good, kind)
        DOUBLE.faults({"kind": "missing_required", "path": "^/api/v2/parse/"})
        self.assertNotIn("job", json.loads(DOUBLE.request(path)[2]))
        DOUBLE.faults({"kind": "duplicate_keys", "path": "^/api/v2/extract/"})
        done = next(d for d in DATA.batch_documents(EXTRACT_BATCH["id"])
                    if d.status == "COMPLETED")
        raw = DOUBLE.request("/api/v2/extract/" + done.job_id)[2].decode()
        self.assertTrue(raw.startswith('{"status": "bogus", '))
        self.assertEqual(json.loads(raw)["status"], "COMPLETED")
        DOUBLE.faults({"kind": "duplicate_ids", "path": "/files$"})
        status, body = DOUBLE.get("/api/v1/beta/directories/%s/files"
                                  % PARSE_BATCH["source_directory_id"], page_size=4)
        self.assertEqual(len(body["items"]), 5)

    def test_content_revision(self):
        """A document's text gets another first character, same length;
        other answers stay as they were."""
        doc = next(d for d in DATA.batch_documents(PARSE_BATCH["id"]) if d.markdown_full)
        v1 = next(d for d in DATA.job_documents(v1_parse_job()["id"]) if d.text)
        DOUBLE.faults({"kind": "content_revision", "value": "!"})
        for path, key, want in (
                ("/api/v2/parse/%s?expand=markdown_full" % doc.job_id, "markdown_full",
                 doc.markdown_full),
                ("/api/v2/parse/%s?expand=text_full" % doc.job_id, "text_full", doc.text_full),
                ("/api/v1/parsing/job/%s/result/text" % v1.job_id, "text", v1.text)):
            got = json.loads(DOUBLE.request(path)[2])[key]
            self.assertEqual(got, "!" + want[1:], path)
        status, body = DOUBLE.get("/api/v1/beta/directories/%s/files"
                                  % PARSE_BATCH["source_directory_id"], page_size=3)
        self.assertEqual(body["items"], DATA.directory_files(
            PARSE_BATCH["source_directory_id"])[:3])

    def test_every_page_fault_is_harmless_on_single_objects(self):
        doc = next(d for d in DATA.batch_documents(PARSE_BATCH["id"]) if d.markdown_full)
        done = next(d for d in DATA.batch_documents(EXTRACT_BATCH["id"])
                    if d.status == "COMPLETED")
        v1 = next(d for d in DATA.job_documents(v1_parse_job()["id"]) if d.markdown)
        paths = ("/api/v2/parse/%s?expand=text_full" % doc.job_id,
                 "/api/v2/extract/" + done.job_id, "/api/v1/parsing/job/" + v1.job_id,
                 "/api/v1/parsing/job/%s/result/text" % v1.job_id,
                 "/api/v1/beta/directories/%s/files?page_size=3"
                 % PARSE_BATCH["source_directory_id"])
        for kind in apidouble.PAGE_FAULTS:
            DOUBLE.faults({"kind": kind, "depth": 50, "size": 1000})
            for path in paths:
                status, _, raw = DOUBLE.request(path)
                self.assertEqual(status, 200, (kind, path))
                self.assertIsInstance(json.loads(raw.decode("utf-8", "surrogateescape")), dict,
                                      (kind, path))


class OptionsTest(unittest.TestCase):
    def test_key_env_port_file_and_sigterm(self):
        with tempfile.TemporaryDirectory() as tmp:
            port_file = os.path.join(tmp, "port")
            double = Double("--port-file", port_file, "--dialect", "total",
                            env={"BATCHFS_DOUBLE_KEY": "llx-other"})
            try:
                with open(port_file) as f:
                    self.assertEqual(int(f.read()), double.port)
                self.assertEqual(double.request(JOBS)[0], 401)
                status, _, raw = double.request(JOBS + "?limit=2", key="llx-other")
                self.assertEqual(set(json.loads(raw)), {"items", "total_size"})
            finally:
                started = time.monotonic()
                code, errors = double.stop()
            self.assertEqual((code, errors), (0, ""))
            self.assertLess(time.monotonic() - started, 2.0)

    def test_no_batches_list_gzip_and_initial_faults(self):
        faults = json.dumps([{"kind": "status", "status": 500, "times": 1,
                              "path": "^/api/v1/beta/batch-processing$"}])
        double = Double("--no-batches-list", "--gzip", "--faults", faults, "--quiet")
        try:
            self.assertEqual(double.request(JOBS)[0], 500)
            status, _, raw = double.request("/api/v2/batches")
            self.assertEqual((status, json.loads(raw)), (404, {"detail": "Not Found"}))
            plain = double.request(JOBS)[2]
            status, headers, packed = double.request(
                JOBS, headers={"Accept-Encoding": "gzip"})
            self.assertEqual(headers["Content-Encoding"], "gzip")
            self.assertEqual(gzip.decompress(packed), plain)
        finally:
            self.assertEqual(double.stop(), (0, ""))

    def test_output_batch_and_job(self):
        double = Double("--jobs", "0", "--batches", "0", "--output-batch", "30",
                        "--output-job", "40", "--large-kb", "80", "--quiet")
        try:
            data = apidouble.make_dataset(jobs=0, batches=0, output_batch=30, output_job=40,
                                          large_kb=80)
            batch = double.get("/api/v2/batches")[1]["items"][0]
            self.assertEqual(batch, data.batches[0])
            files = page_files(double, batch["source_directory_id"], 1000)
            self.assertEqual(files, data.directory_files(batch["source_directory_id"]))
            docs = data.batch_documents(batch["id"])
            self.assertEqual(len(docs), 30)
            large = docs[17]
            self.assertGreater(len(large.markdown_full.encode()), 80 * 1024)
            body = double.get("/api/v2/parse/" + large.job_id, expand="markdown_full")[1]
            self.assertEqual(body["markdown_full"], large.markdown_full)
            job = double.get(JOBS)[1]["items"][0]
            self.assertEqual(job["id"], data.jobs[0]["id"])
            v1 = data.job_documents(job["id"])
            self.assertEqual(len(v1), 40)
            body = double.get("/api/v1/parsing/job/%s/result/markdown" % v1[39].job_id)[1]
            self.assertEqual(body["markdown"], v1[39].markdown)
        finally:
            self.assertEqual(double.stop(), (0, ""))

    def test_big_job_fast(self):
        double = Double("--big-job", "100000", "--jobs", "1", "--items", "10", "--quiet")
        try:
            # CPU rather than wall time: a loaded test machine must not fail it.
            self.assertLess(double.startup_cpu_seconds, 5.0)
            status, body = double.get(JOBS)
            big = body["items"][-1]
            self.assertEqual(big["total_items"], 100000)
            conn = double.connection()
            cpu = double.cpu_seconds()
            rounds = 30
            for n in range(rounds):
                conn.request("GET", "%s/%s/items?limit=1000&offset=%d"
                             % (JOBS, big["id"], n * 3000),
                             headers={"Authorization": "Bearer " + KEY})
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertGreater(len(resp.read()), 300000)
            conn.close()
            self.assertLess((double.cpu_seconds() - cpu) / rounds, 0.020)
        finally:
            self.assertEqual(double.stop(), (0, ""))


if __name__ == "__main__":
    # A terminated run still stops its servers through atexit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    unittest.main(verbosity=2)
