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
        return status, json.loads(body)

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
