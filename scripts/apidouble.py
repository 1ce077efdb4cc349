#!/usr/bin/env python3
"""apidouble - a local stand-in for the LlamaCloud batch API.

For: the demo, the mount tests and the benchmarks of batchfs. It serves a
deterministic data set (make_dataset) over HTTP/1.1 on 127.0.0.1 with the v1
beta batch-processing endpoints and the v2 batches endpoints, five pagination
dialects for the v1 lists, simulated round-trip latency and injectable
faults, all controllable at runtime under /__double/.

Not for: modelling LlamaCloud beyond what batchfs reads. It never runs jobs
by itself (POST /__double/advance moves items when a test asks), accepts any
organization_id/project_id, and never binds anything but loopback.

Conventions worth knowing when reading a test against it:
- processed_items counts items that are done (completed, failed or skipped);
  progress_percentage counts those plus cancelled ones.
- Bodies are json.dumps() output (default separators, ASCII only), so the
  bytes a client receives for an object are exactly json.dumps(object);
  only the faults that plant strings json.dumps cannot write (raw bytes
  that are not UTF-8, unpaired surrogate escapes) write other bytes, which
  dumps_raw() gives.
- The last page of GET /api/v2/batches carries "next_page_token": "".
- Stats record a connection closed without an answer as status "0", and
  count a request as finished once its headers are sent.

What a batch produced (the documents; text from apidouble_content, made on
request from the seed and the job id, so make_dataset() costs nothing more):
- GET /api/v1/beta/directories/{id}/files lists each batch's
  source_directory_id: one file per batch result (its id is the result's
  source_directory_file_id) plus three files in no batch, with cursor pages
  (page_size 1..1000, default 50; page_token; "next_page_token": "" on the
  last page) and the filters display_name, display_name_contains, file_id,
  unique_id. The file of every 16th job (position 9 below) is gone: listed
  only with include_deleted=true, with deleted_at set. Display names are
  realistic, except that in each directory the first files whose job
  completed get, in turn, HOSTILE_DISPLAY_NAMES ("/", ".", "..",
  "a/b/report.pdf", two "duplicate.pdf", raw bytes that are not UTF-8, an
  unpaired surrogate escape, control bytes, a newline, 304 bytes, 284 bytes
  of "\u00e9", "Report.pdf" and "report.pdf", CJK, emoji, ""). In a
  display_name, U+DC80..U+DCFF stand for raw bytes, as in dumps_raw().
- The k-th job of a batch (counting results with a job_reference) has the
  status V2_STATUS_CYCLE[k % 16]: COMPLETED mostly, RUNNING, PENDING,
  FAILED (with error_message), CANCELLED, and None: expired, answered 404.
  Position 3 is a fast-tier parse job, 10 a document whose page 2 failed.
- GET /api/v2/parse/{id}: {"job": {id, project_id, status, created_at,
  updated_at, error_message, name, tier}, "markdown", "markdown_full", "text",
  "text_full", "items", "metadata", "job_metadata",
  "result_content_metadata", "images_content_metadata"}: every key present,
  null unless named in expand (repeated or comma-separated) and the job is
  COMPLETED. markdown_full and text_full join the pages that parsed with a
  blank line; a failed page is {page_number, success: false, error} in
  markdown.pages and "" in text.pages. "items" stays null. An unknown expand
  value is a 422; asking a fast-tier job for markdown, markdown_full or
  markdown_content_metadata is a 400 whose detail names the fast tier
  (the official client does not show the real error; this is our choice).
  Unknown, expired and extract job ids answer 404 {"detail": "Parse job not
  found"}.
- GET /api/v2/extract/{id}: the ExtractV2Job object with every key present;
  extract_result is an object, or (every third job) a list of per-page
  objects, each with a numeric "total"; null until COMPLETED. expand takes
  configuration and extract_metadata.
- v1 parse jobs (job_type "parse"): GET /api/v1/parsing/job/{item job_id}
  answers {id, status, error_code, error_message} with PENDING (item
  processing), SUCCESS, PARTIAL_SUCCESS (every 9th item; its page 2 failed
  and is left out) or ERROR (item failed); /result/markdown and /result/text
  answer {"markdown"|"text": ..., "job_metadata": {...}} once the item is
  completed and 404 before. Every 50th completed item (index 23 mod 50) is
  expired: all three answer 404. Items completed by /__double/advance get
  their output too.
- Content: 2 to 8 pages of headings, tables, lists, bold and non-ASCII text;
  the text of a page is apidouble_content.markdown_to_text of its markdown.
  Documents at position 17, 117, 217 and 317 of a batch's results or a
  job's items are about --large-kb (default 3072) KB. About a quarter of the
  documents hold SEARCH_PHRASE ("net revenue"), the others never do.
- --output-batch N adds a COMPLETED parse_v2 batch ("bat-out-...", in a
  directory of its own) and --output-job N a completed v1 parse job
  ("bjb-out-...") whose documents are all available, with plain names.
- Tests get the expected strings from Dataset.batch_documents(batch_id)
  (Document tuples), Dataset.job_documents(job_id) (V1Document tuples) and
  Dataset.directory_files(directory_id, include_deleted).
- Faults match these paths like any other. PAGE faults rewrite the items of
  a directory listing, and treat the single objects of the other endpoints
  as a page of one: those that rewrite the first object change it (for
  example missing_required drops "job" from a parse answer), the others
  leave it as it was. content_revision changes a document's text (its
  first character) without changing its length: a document that changed
  on the server.
"""

import argparse
import base64
import binascii
import calendar
import collections
import dataclasses
import datetime
import gzip
import hashlib
import http
import json
import os
import random
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import apidouble_content

JOB_STATUSES = ("pending", "running", "dispatched", "completed", "failed", "cancelled")
ITEM_STATUSES = ("pending", "processing", "completed", "failed", "skipped", "cancelled")
JOB_TYPES = ("parse", "extract", "classify")
BATCH_STATUSES = ("PENDING", "THROTTLED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
DIALECTS = ("both", "token", "total", "capped", "none")

JOB_KEYS = ("id", "job_type", "project_id", "status", "total_items", "completed_at",
            "created_at", "directory_id", "effective_at", "error_message", "failed_items",
            "job_record_id", "processed_items", "skipped_items", "started_at",
            "updated_at", "workflow_id")
ITEM_KEYS = ("item_id", "item_name", "status", "completed_at", "effective_at",
             "error_message", "job_id", "job_record_id", "skip_reason", "started_at")

# The order of ordinary jobs: with the default six jobs every job status
# appears once, and the pending one (index 5) is the job without items.
JOB_STATUS_CYCLE = ("completed", "running", "failed", "cancelled", "dispatched", "pending")
EMPTY_JOB_INDEX = 5
BATCH_STATUS_CYCLE = ("COMPLETED", "RUNNING", "PENDING", "FAILED", "CANCELLED",
                      "THROTTLED")

# Item statuses a job of each status may hold, with weights.
ITEM_MIX = {
    "completed": (("completed", 85), ("failed", 10), ("skipped", 5)),
    "running": (("completed", 40), ("processing", 10), ("pending", 35), ("failed", 10),
                ("skipped", 5)),
    "dispatched": (("pending", 80), ("processing", 20)),
    "pending": (("pending", 100),),
    "failed": (("completed", 50), ("failed", 30), ("skipped", 5), ("cancelled", 15)),
    "cancelled": (("completed", 30), ("failed", 5), ("skipped", 5), ("cancelled", 60)),
}
BIG_JOB_MIX = (("completed", 1800), ("failed", 100), ("skipped", 60), ("cancelled", 20),
               ("processing", 10), ("pending", 10))

ITEM_ERRORS = (
    "Timeout while parsing page 3",
    "Unsupported file type: .xyz",
    "Rate limit exceeded by upstream parser",
    "Parser crashed:\tsegmentation fault in layout model",
    "Failed to download source file\nstorage answered 403 Forbidden",
    "Document is password protected",
    "File exceeds the maximum page count (1000)",
    "Corrupt PDF: xref table not found",
    "Extraction schema validation failed: field 'total' expected number",
)
SKIP_REASONS = ("already_processed", "size_limit_exceeded")
MAPPING_ERRORS = (
    "Could not create parse job: source file is empty",
    "Source file not found in directory",
    "Unsupported file type: .xyz",
    "Project quota exceeded while creating job",
)

NAME_TEMPLATES = ("report-{i:04d}.pdf", "invoice_{i:05d}.pdf",
                  "Q{q} Financials (final) {i}.docx", "scan {i}.tiff",
                  "r\u00e9sum\u00e9-\u00fc-{i}.pdf", "\u65e5\u672c\u8a9e-{i}.pdf",
                  "slides_{i}.pptx", "data-export-{i}.csv")

# Names a filesystem has to map with care. They replace ordinary names at
# spread-out positions of the first job; the ones in FORCED_COMPLETED share a
# status folder so that duplicates and case variants really collide.
HOSTILE_NAMES = (
    "/", ".", "..", "", "a/b/c.pdf", "line\nbreak.pdf", "tab\there.pdf",
    "x" * 296 + ".pdf",
    "\u00e9" * 148 + ".pdf",
    "duplicate.pdf", "duplicate.pdf", "duplicate.pdf",
    "nul\u0000inside.pdf",
    "del\u007f ctl\u0001\u001b[31m\u001f.pdf",
    "already.json",
    "Case.pdf", "case.pdf", "CASE.pdf",
    "Q3 Financials (final).docx", "r\u00e9sum\u00e9-\u00fc.pdf", "\u65e5\u672c\u8a9e.pdf",
    " leading space.pdf", "trailing space.pdf ", "-dash.pdf", "ends with dot.",
    "\u202etxt.exe", "emoji-\U0001f4c4.pdf",
)
FORCED_COMPLETED = {"duplicate.pdf", "Case.pdf", "case.pdf", "CASE.pdf"}

OUTPUTS_LOCK = threading.Lock()  # protects Dataset.outputs_made
BASE_MS = calendar.timegm((2025, 3, 1, 10, 0, 0)) * 1000 + 123
HOUR_MS = 3600 * 1000


def timestamp(ms):
    """RFC 3339 UTC with milliseconds, or None for None."""
    if ms is None:
        return None
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % millis


def _uuid(bits):
    text = "%032x" % bits
    return "%s-%s-4%s-%s%s-%s" % (text[:8], text[8:12], text[13:16],
                                  "89ab"[int(text[16], 16) & 3], text[17:20], text[20:])


def _rng_uuid(rng):
    return _uuid(rng.getrandbits(128))


def _hash_uuid(*parts):
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return _uuid(int(digest[:32], 16))


def _ordered(obj, keys):
    """Canonical key order: the documented keys first, unknown ones after."""
    out = {k: obj[k] for k in keys if k in obj}
    for k, v in obj.items():
        if k not in out:
            out[k] = v
    return out


def render(obj):
    """Pretty form used by the tests to show expected file contents."""
    return json.dumps(obj, indent=2) + "\n"


def dumps_raw(obj, raw, **kwargs):
    """json.dumps(obj, **kwargs) with the value of each key of `raw` written
    as the JSON text raw[key]: strings json.dumps cannot write. In that text
    U+DC80..U+DCFF stand for the raw bytes 0x80..0xFF (bodies are encoded
    with surrogateescape)."""
    marked = dict(obj)
    marks = {}
    for index, key in enumerate(raw):
        marked[key] = "\x00apidouble-raw-%d" % index
        marks[json.dumps(marked[key])] = raw[key]
    text = json.dumps(marked, **kwargs)
    for mark, value in marks.items():
        text = text.replace(mark, value)
    return text


def render_raw(obj, raw):
    """render() of what dumps_raw(obj, raw) serves."""
    return dumps_raw(obj, raw, indent=2) + "\n"


# --------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------

@dataclasses.dataclass(eq=True)
class Dataset:
    """What the double serves. The documents a batch or job produced are
    not stored: outputs() makes them on demand from the seed (see the
    section "What a batch produced")."""
    jobs: list
    items: dict
    batches: list
    results: dict
    seed: int = 1
    large_bytes: int = 3 << 20
    outputs_made: object = dataclasses.field(default=None, compare=False, repr=False)

    def outputs(self):
        """The Outputs of this data set, made once; safe from any thread."""
        with OUTPUTS_LOCK:
            if self.outputs_made is None:
                self.outputs_made = Outputs(self)
            return self.outputs_made

    def batch_documents(self, batch_id):
        """Per result with a job_reference, in results order: a Document."""
        return self.outputs().batch_documents(batch_id)

    def job_documents(self, job_id):
        """Per item of a v1 parse job that has a parse job_id: a V1Document."""
        return self.outputs().job_documents(job_id)

    def directory_files(self, directory_id, include_deleted=False):
        """The file objects GET .../directories/{id}/files lists, in order."""
        return self.outputs().directory_files(directory_id, include_deleted)


def _pick_statuses(rng, mix, count):
    names = [name for name, _ in mix]
    weights = [weight for _, weight in mix]
    statuses = rng.choices(names, weights, k=count) if count else []
    # Small jobs could miss a status by chance; the tests rely on seeing all.
    if count >= len(names):
        for k, name in enumerate(names):
            if name not in statuses:
                statuses[count - 1 - k] = name
    return statuses


def _make_item(rng, index, name, status, start_ms):
    t0 = start_ms + index * 1500 + rng.randrange(1000)
    started = completed = job_id = record = error = skip = None
    effective = t0
    if status in ("processing", "completed", "failed"):
        started = t0
        job_id = "pjb-" + _rng_uuid(rng)
        record = "jrc-" + _rng_uuid(rng)
        if status != "processing":
            completed = t0 + rng.randrange(2000, 90000)
            effective = completed
    if status == "failed":
        error = ITEM_ERRORS[rng.randrange(len(ITEM_ERRORS))]
    elif status == "skipped":
        skip = SKIP_REASONS[rng.randrange(len(SKIP_REASONS))]
    item = {
        "item_id": "itm-" + _rng_uuid(rng),
        "item_name": name,
        "status": status,
        "completed_at": timestamp(completed),
        "effective_at": timestamp(effective),
        "error_message": error,
        "job_id": job_id,
        "job_record_id": record,
        "skip_reason": skip,
        "started_at": timestamp(started),
    }
    if index % 7 == 3:
        # Optional fields may be absent rather than null.
        item = {k: v for k, v in item.items() if v is not None}
    if index % 11 == 5:
        item["x_cost"] = 0.1
    if index % 13 == 4:
        item["x_note"] = None
    if index % 23 == 7:
        item["x_meta"] = {"pages": 3, "tags": ["a", None], "ratio": 2.5e-3,
                          "big": 12345678901234567890123}
    return item


def _ordinary_name(i):
    return NAME_TEMPLATES[i % len(NAME_TEMPLATES)].format(i=i, q=i % 4 + 1)


def _make_items(rng, count, mix, start_ms, hostile, name_fn):
    statuses = _pick_statuses(rng, mix, count)
    names = [name_fn(i) for i in range(count)]
    if hostile and count >= len(HOSTILE_NAMES):
        for k, name in enumerate(HOSTILE_NAMES):
            pos = k * count // len(HOSTILE_NAMES)
            names[pos] = name
            if name in FORCED_COMPLETED:
                statuses[pos] = "completed"
    return [_make_item(rng, i, names[i], statuses[i], start_ms) for i in range(count)]


def _job_counts(items):
    counts = dict.fromkeys(ITEM_STATUSES, 0)
    for item in items:
        counts[item["status"]] += 1
    return counts


def _make_job(rng, index, status, job_type, project, directory, created_ms, items):
    counts = _job_counts(items)
    started_ms = created_ms + 60000 if status != "pending" else None
    done = [it.get("completed_at") for it in items if it.get("completed_at")]
    terminal = status in ("completed", "failed", "cancelled")
    completed = None
    if terminal:
        completed = max(done) if done else timestamp(created_ms + 120000)
    effective = [it["effective_at"] for it in items if it.get("effective_at")]
    updated = completed or (max(effective) if effective else timestamp(created_ms))
    error = None
    if status == "failed":
        error = "Job failed: %d of %d items failed" % (counts["failed"], len(items))
    elif status == "cancelled":
        error = "Cancelled by user request"
    job = {
        "id": "bjb-" + _rng_uuid(rng),
        "job_type": job_type,
        "project_id": project,
        "status": status,
        "total_items": len(items),
        "completed_at": completed,
        "created_at": timestamp(created_ms),
        "directory_id": directory,
        "effective_at": updated,
        "error_message": error,
        "failed_items": counts["failed"],
        "job_record_id": "jrc-" + _rng_uuid(rng),
        "processed_items": counts["completed"] + counts["failed"] + counts["skipped"],
        "skipped_items": counts["skipped"],
        "started_at": timestamp(started_ms),
        "updated_at": updated,
        "workflow_id": "wf-" + _rng_uuid(rng),
    }
    if status == "pending":
        # An unstarted job lacks the fields that only running gives it.
        for key in ("completed_at", "started_at", "workflow_id"):
            del job[key]
    elif status == "dispatched":
        job["workflow_id"] = None
    if index == 2:
        job["x_region"] = "eu-west-1"
    return job


def _make_batches(seed, count, per_batch, project):
    rng = random.Random("%s/batches" % seed)
    directories = ["dir-" + _rng_uuid(rng) for _ in range(2)]
    batches, results = [], {}
    for b in range(count):
        status = BATCH_STATUS_CYCLE[b % len(BATCH_STATUS_CYCLE)]
        kind = "parse_v2" if b % 2 == 0 else "extract_v2"
        created_ms = BASE_MS - b * 2 * HOUR_MS - 1800 * 1000
        batch = {
            "id": "bat-" + _rng_uuid(rng),
            "config": {"job": {"type": kind, "configuration_id": "cfg-" + _rng_uuid(rng)}},
            "project_id": project,
            "source_directory_id": directories[b % len(directories)],
            "status": status,
            "created_at": timestamp(created_ms),
            "results": None,
            "updated_at": timestamp(created_ms + 600000 + rng.randrange(600000)),
        }
        size = {"COMPLETED": per_batch, "FAILED": per_batch // 2,
                "CANCELLED": per_batch // 3, "PENDING": 0}.get(status)
        error_every = {"COMPLETED": 10, "FAILED": 3, "CANCELLED": 5, "PENDING": 1}.get(status)
        entries = None
        if size is not None:
            entries = []
            for r in range(size):
                failed = r % error_every == error_every - 1
                entries.append({
                    "source_directory_file_id": "dfl-" + _rng_uuid(rng),
                    "job_reference": None if failed else {"type": kind,
                                                          "id": "pjb-" + _rng_uuid(rng)},
                    "error_message": MAPPING_ERRORS[r % len(MAPPING_ERRORS)] if failed
                    else None,
                })
        batches.append(batch)
        results[batch["id"]] = entries
    return batches, results


def _make_output_job(seed, count, project, directory):
    """A completed v1 parse job whose every item is completed."""
    created_ms = BASE_MS - 40 * 24 * HOUR_MS
    job_items = _make_items(random.Random("%s/output-job/items" % seed), count,
                            (("completed", 1),), created_ms + 60000, False,
                            lambda i: "document-%05d.pdf" % i)
    job = _make_job(random.Random("%s/output-job" % seed), -1, "completed", "parse", project,
                    directory, created_ms, job_items)
    job["id"] = "bjb-out-" + job["id"][4:]
    return job, job_items


def _make_output_batch(seed, count, project):
    """A completed parse_v2 batch, in a directory of its own, whose every
    result has a job."""
    rng = random.Random("%s/output-batch" % seed)
    created_ms = BASE_MS - 40 * 24 * HOUR_MS
    batch = {
        "id": "bat-out-" + _rng_uuid(rng),
        "config": {"job": {"type": "parse_v2", "configuration_id": "cfg-" + _rng_uuid(rng)}},
        "project_id": project,
        "source_directory_id": "dir-" + _rng_uuid(rng),
        "status": "COMPLETED",
        "created_at": timestamp(created_ms),
        "results": None,
        "updated_at": timestamp(created_ms + 3 * HOUR_MS),
    }
    entries = [{"source_directory_file_id": "dfl-" + _rng_uuid(rng),
                "job_reference": {"type": "parse_v2", "id": "pjb-" + _rng_uuid(rng)},
                "error_message": None} for _ in range(count)]
    return batch, entries


def make_dataset(seed=1, jobs=6, items=300, big_job=0, batches=4, results=50,
                 output_batch=0, output_job=0, large_kb=3072, big_job_type="parse"):
    """The data set the server serves, deterministic in its arguments.

    Each part draws from its own random stream, so changing one size (say
    --items or --big-job) leaves the ids of the jobs and batches unchanged.
    output_batch and output_job add a parse_v2 batch and a v1 parse job
    whose documents are all available; large_kb sizes the large documents.
    big_job_type is the big job's job_type (its items do not depend on it).
    """
    rng = random.Random("%s/jobs" % seed)
    project = "prj-" + _rng_uuid(rng)
    directories = ["dir-" + _rng_uuid(rng) for _ in range(3)]
    job_list, item_map = [], {}
    for j in range(jobs):
        job_rng = random.Random("%s/job/%d" % (seed, j))
        item_rng = random.Random("%s/job/%d/items" % (seed, j))
        status = JOB_STATUS_CYCLE[j % len(JOB_STATUS_CYCLE)]
        count = 0 if j == EMPTY_JOB_INDEX else items
        created_ms = BASE_MS - j * HOUR_MS - job_rng.randrange(60000)
        job_items = _make_items(item_rng, count, ITEM_MIX[status], created_ms + 60000,
                                j == 0, _ordinary_name)
        job = _make_job(job_rng, j, status, JOB_TYPES[j % len(JOB_TYPES)], project,
                        directories[j % len(directories)], created_ms, job_items)
        job_list.append(job)
        item_map[job["id"]] = job_items
    if big_job > 0:
        big_rng = random.Random("%s/big" % seed)
        created_ms = BASE_MS - 30 * 24 * HOUR_MS
        big_items = _make_items(random.Random("%s/big/items" % seed), big_job, BIG_JOB_MIX,
                                created_ms + 60000, False, lambda i: "doc-%06d.pdf" % i)
        job = _make_job(big_rng, -1, "completed", big_job_type, project, directories[0],
                        created_ms, big_items)
        job["id"] = "bjb-big-" + job["id"][4:]
        job_list.append(job)
        item_map[job["id"]] = big_items
    if output_job > 0:
        job, job_items = _make_output_job(seed, output_job, project, directories[0])
        job_list.append(job)
        item_map[job["id"]] = job_items
    batch_list, result_map = _make_batches(seed, batches, results, project)
    if output_batch > 0:
        batch, entries = _make_output_batch(seed, output_batch, project)
        batch_list.append(batch)
        result_map[batch["id"]] = entries
    return Dataset(job_list, item_map, batch_list, result_map, seed, large_kb * 1024)


# --------------------------------------------------------------------------
# Served state
# --------------------------------------------------------------------------

def _progress(job, counts):
    total = job["total_items"]
    if total == 0:
        return 100.0 if job["status"] in ("completed", "failed", "cancelled") else 0.0
    done = total - counts["pending"] - counts["processing"]
    return round(100.0 * done / total, 2)


class JobView:
    """One job and its items with their JSON text, never changed once built:
    an advance builds a new view and swaps it in, so a reader holding the
    old one still sees a consistent page."""

    __slots__ = ("job", "job_json", "items", "item_json", "by_status", "progress")

    def __init__(self, job, items, item_json=None):
        self.job = job
        self.job_json = json.dumps(job)
        self.items = items
        self.item_json = item_json if item_json is not None else [json.dumps(i) for i in items]
        self.by_status = {s: ([], []) for s in ITEM_STATUSES}
        for item, text in zip(items, self.item_json):
            objs, texts = self.by_status[item["status"]]
            objs.append(item)
            texts.append(text)
        self.progress = _progress(job, {s: len(v[0]) for s, v in self.by_status.items()})


class Fault:
    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("a fault must be an object")
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError("unknown fault kind %r" % (kind,))
        self.spec = dict(spec)
        self.kind = kind
        self.path = re.compile(spec.get("path") or r"^/api/")
        self.query = re.compile(spec["query"]) if spec.get("query") else None
        times = spec.get("times")
        if times is not None and (not isinstance(times, int) or times < 0):
            raise ValueError("times must be a non-negative integer")
        self.remaining = times
        self.probability = spec.get("probability", 1.0)
        if not isinstance(self.probability, (int, float)) or not 0 <= self.probability <= 1:
            raise ValueError("probability must be a number within 0..1")
        # Checked here so that a bad parameter is a 400 now, not a crash later.
        for name in ("status", "ms", "size", "depth", "chunk", "factor", "after", "count"):
            value = spec.get(name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError("%s must be a non-negative number" % name)
        if not isinstance(spec.get("headers", {}), dict):
            raise ValueError("headers must be an object")

    def param(self, name, default):
        value = self.spec.get(name)
        return default if value is None else value

    def describe(self):
        out = dict(self.spec)
        out["remaining"] = self.remaining
        return out


class State:
    """Everything the handlers share. `lock` protects every attribute; it is
    never held while sleeping or writing to a socket."""

    def __init__(self, dataset, opts):
        self.lock = threading.Lock()
        self.dataset = dataset
        self.api_key = opts.api_key
        self.config = {"latency_ms": opts.latency_ms, "dialect": opts.dialect,
                       "page_cap": opts.page_cap, "gzip": opts.gzip,
                       "batches_list": not opts.no_batches_list, "verbose": opts.verbose}
        self.views = {}
        self.item_owner = {}
        for job in dataset.jobs:
            items = dataset.items[job["id"]]
            self.views[job["id"]] = JobView(job, items)
            for index, item in enumerate(items):
                self.item_owner[item["item_id"]] = (job["id"], index)
        self.job_order = [job["id"] for job in dataset.jobs]
        self.unfiltered_jobs = None  # (objs, strs) of every job, built on first use
        self.batch_json = [json.dumps(b) for b in dataset.batches]
        self.batch_by_id = {b["id"]: b for b in dataset.batches}
        self.clock_ms = BASE_MS + 24 * HOUR_MS
        self.fault_rng = random.Random("%s/faults" % opts.seed)
        self.faults = []
        self.in_flight = 0
        self.stalled = 0  # requests held by a stall fault right now
        self.stall_release = threading.Event()  # set by POST release
        self.reset_stats()

    # ---- stats ----
    def reset_stats(self):
        self.requests = 0
        self.by_endpoint = dict.fromkeys(("list_jobs", "get_job", "list_items", "get_batch",
                                          "list_batches", "processing_results", "other"), 0)
        for endpoint, _, _ in ROUTES:
            self.by_endpoint.setdefault(endpoint, 0)
        self.by_status = {}
        self.in_flight_max = self.in_flight

    def begin(self, endpoint):
        with self.lock:
            self.requests += 1
            self.by_endpoint[endpoint] += 1
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)

    def end(self, status):
        with self.lock:
            self.in_flight -= 1
            key = str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "by_endpoint": dict(self.by_endpoint),
                    "by_status": dict(self.by_status), "in_flight_max": self.in_flight_max,
                    "stalled": self.stalled}

    # ---- config and faults ----
    def get_config(self):
        with self.lock:
            return dict(self.config)

    def pick_fault(self, path, query):
        with self.lock:
            for fault in self.faults:
                if fault.remaining == 0 or not fault.path.search(path):
                    continue
                if fault.query is not None and not fault.query.search(query):
                    continue
                if fault.probability < 1.0 and self.fault_rng.random() >= fault.probability:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    # ---- data ----
    def view(self, job_id):
        with self.lock:
            return self.views.get(job_id)

    def job_views(self):
        with self.lock:
            return [self.views[j] for j in self.job_order]

    def all_jobs(self):
        """The objects and JSON texts of every job, in order: built once and
        kept until an advance, so that paging an account of 200,000 jobs
        does not walk every job for every page. Never changed in place."""
        with self.lock:
            if self.unfiltered_jobs is None:
                views = [self.views[j] for j in self.job_order]
                self.unfiltered_jobs = ([v.job for v in views], [v.job_json for v in views])
            return self.unfiltered_jobs

    def find_item(self, item_id):
        with self.lock:
            owner = self.item_owner.get(item_id)
            if owner is None:
                return None, None
            view = self.views[owner[0]]
            return view.job, view.items[owner[1]]

    def advance(self, job_id, count):
        with self.lock:
            view = self.views.get(job_id)
            if view is None:
                return None
            self.clock_ms += 1000
            now = self.clock_ms
            items, texts = list(view.items), list(view.item_json)
            moved = 0
            for index, item in enumerate(items):
                if moved >= count:
                    break
                if item["status"] not in ("pending", "processing"):
                    continue
                items[index] = _step_item(item, now)
                texts[index] = json.dumps(items[index])
                moved += 1
            job = _recount_job(view.job, items, now) if moved else view.job
            self.views[job_id] = JobView(job, items, texts)
            self.unfiltered_jobs = None
            self.dataset.items[job_id] = items
            self.dataset.jobs[self.job_order.index(job_id)] = job
            return {"job_id": job_id, "moved": moved, "job": job}


def _step_item(item, now_ms):
    stamp = timestamp(now_ms)
    new = dict(item)
    item_id = item["item_id"]
    if item["status"] == "pending":
        new.update(status="processing", started_at=stamp, effective_at=stamp,
                   job_id=item.get("job_id") or "pjb-" + _hash_uuid(item_id, "job"),
                   job_record_id=item.get("job_record_id") or "jrc-" + _hash_uuid(item_id))
    else:
        failed = int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) % 5 == 0
        new.update(status="failed" if failed else "completed", completed_at=stamp,
                   effective_at=stamp,
                   error_message=ITEM_ERRORS[len(item_id) % len(ITEM_ERRORS)] if failed
                   else None)
    return _ordered(new, ITEM_KEYS)


def _recount_job(job, items, now_ms):
    counts = _job_counts(items)
    stamp = timestamp(now_ms)
    new = dict(job)
    active = counts["pending"] + counts["processing"]
    if active and new["status"] in ("pending", "dispatched"):
        new["status"] = "running"
        new["started_at"] = new.get("started_at") or stamp
    elif not active and new["status"] in ("pending", "dispatched", "running"):
        new["status"] = "completed"
        new["completed_at"] = stamp
    new.update(failed_items=counts["failed"], skipped_items=counts["skipped"],
               processed_items=counts["completed"] + counts["failed"] + counts["skipped"],
               updated_at=stamp, effective_at=stamp)
    return _ordered(new, JOB_KEYS)


# --------------------------------------------------------------------------
# Requests: query validation, pages
# --------------------------------------------------------------------------

class Query:
    """Query parameters with FastAPI-style 422 error collection."""

    def __init__(self, raw):
        self.params = urllib.parse.parse_qs(raw, keep_blank_values=True)
        self.errors = []

    def raw(self, name):
        values = self.params.get(name)
        return values[-1] if values else None

    def all(self, name):
        return self.params.get(name, [])

    def error(self, name, kind, msg, value):
        self.errors.append({"loc": ["query", name], "msg": msg, "type": kind, "input": value})

    def integer(self, name, default, low, high=None):
        value = self.raw(name)
        if value is None:
            return default
        if not re.fullmatch(r"\s*[+-]?\d+\s*", value):
            self.error(name, "int_parsing",
                        "Input should be a valid integer, unable to parse string as an integer",
                        value)
            return default
        number = int(value)
        if number < low:
            self.error(name, "greater_than_equal",
                        "Input should be greater than or equal to %d" % low, value)
        elif high is not None and number > high:
            self.error(name, "less_than_equal",
                        "Input should be less than or equal to %d" % high, value)
        return number

    def choice(self, name, choices):
        value = self.raw(name)
        if value is not None and value not in choices:
            quoted = ["'%s'" % c for c in choices]
            self.error(name, "enum", "Input should be %s or %s"
                        % (", ".join(quoted[:-1]), quoted[-1]), value)
            return None
        return value

    def moment(self, name):
        value = self.raw(name)
        if value is None:
            return None
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            self.error(name, "datetime_from_date_parsing",
                        "Input should be a valid datetime", value)
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment

    def token(self, name, prefix):
        value = self.raw(name)
        if not value:
            return None
        offset = decode_token(value, prefix)
        if offset is None:
            self.error(name, "value_error", "Invalid page token", value)
        return offset


def encode_token(prefix, offset):
    text = "%s:%d" % (prefix, offset)
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def decode_token(token, prefix):
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        kind, _, number = raw.decode("ascii").partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if kind != prefix or not number.isdigit():
        return None
    return int(number)


class Page:
    """One response that carries objects, before serialisation.

    style: "v1" (items + dialect signals), "v2" (items + cursor), "job"
    (one object under "job"), "batch" (a batch whose results are the
    objects). Faults rewrite strs (the JSON text of each element) and the
    signals; objs keeps the source dict of each element (None for elements
    that are not ours)."""

    def __init__(self, style, objs, strs, offset, size, prefix="v1",
                 token_on=True, total_on=True):
        self.style = style
        self.all_objs, self.all_strs = objs, strs
        self.prefix = prefix
        self.size = size
        self.token_on, self.total_on = token_on, total_on
        self.total = len(strs)
        self.extra = {}
        self.reslice(offset)

    def reslice(self, offset):
        self.offset = offset
        self.objs = self.all_objs[offset:offset + self.size]
        self.strs = self.all_strs[offset:offset + self.size]
        end = offset + len(self.strs)
        self.token = encode_token(self.prefix, end) if end < self.total else None

    def render(self):
        items = "[" + ", ".join(self.strs) + "]"
        if self.style == "job":
            return '{"job": %s, "progress_percentage": %s}' % (
                self.strs[0], json.dumps(self.extra["progress"]))
        if self.style == "batch":
            return _dumps_with(self.extra["batch"], "results",
                               items if self.extra["expanded"] else "null")
        parts = ['{"items": ', items]
        if self.style == "v2":
            parts.append(', "next_page_token": ' + json.dumps(self.token or ""))
        else:
            if self.token_on and self.token:
                parts.append(', "next_page_token": ' + json.dumps(self.token))
            if self.total_on:
                parts.append(', "total_size": %d' % self.total)
        parts.append("}")
        return "".join(parts)


def _dumps_with(obj, key, raw):
    """json.dumps(obj) with the value of `key` given as JSON text."""
    parts = ["%s: %s" % (json.dumps(k), raw if k == key else json.dumps(v))
             for k, v in obj.items()]
    return "{" + ", ".join(parts) + "}"


class Response:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status, body, headers=None):
        self.status = status
        # surrogateescape: U+DC80..U+DCFF in a body are raw bytes (dumps_raw).
        self.body = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        self.headers = dict(headers or {})


def json_response(status, obj, headers=None):
    return Response(status, json.dumps(obj), headers)


NOT_FOUND = {"detail": "Not Found"}


def _dialect_page(style_prefix, objs, strs, query, config, fault):
    offset = query.integer("offset", 0, 0)
    limit = query.integer("limit", 100, 1, 1000)
    token_offset = query.token("page_token", style_prefix)
    if query.errors:
        return json_response(422, {"detail": query.errors})
    if token_offset is not None:
        offset = token_offset
    dialect = config["dialect"]
    if dialect == "capped":
        limit = min(limit, config["page_cap"])
    page = Page("v1", objs, strs, offset, limit, style_prefix,
                token_on=dialect in ("both", "token", "capped"),
                total_on=dialect in ("both", "total", "capped"))
    return _finish_page(page, fault)


def _finish_page(page, fault):
    if fault is not None and fault.kind in PAGE_FAULTS:
        PAGE_FAULTS[fault.kind](page, fault)
    return Response(200, page.render())


def handle_list_jobs(state, query, config, fault):
    directory = query.raw("directory_id")
    job_type = query.choice("job_type", JOB_TYPES)
    status = query.choice("status", JOB_STATUSES)
    if query.errors:
        return json_response(422, {"detail": query.errors})
    if directory is None and job_type is None and status is None:
        objs, strs = state.all_jobs()
        return _dialect_page("jobs", objs, strs, query, config, fault)
    objs, strs = [], []
    for view in state.job_views():
        job = view.job
        if directory is not None and job.get("directory_id") != directory:
            continue
        if job_type is not None and job["job_type"] != job_type:
            continue
        if status is not None and job["status"] != status:
            continue
        objs.append(job)
        strs.append(view.job_json)
    return _dialect_page("jobs", objs, strs, query, config, fault)


def handle_get_job(state, query, config, fault, job_id):
    view = state.view(job_id)
    if view is None:
        return json_response(404, {"detail": "Batch job not found"})
    page = Page("job", [view.job], [view.job_json], 0, 1)
    page.extra["progress"] = view.progress
    return _finish_page(page, fault)


def handle_list_items(state, query, config, fault, job_id):
    status = query.choice("status", ITEM_STATUSES)
    if query.errors:
        return json_response(422, {"detail": query.errors})
    view = state.view(job_id)
    if view is None:
        return json_response(404, {"detail": "Batch job not found"})
    if status is None:
        objs, strs = view.items, view.item_json
    else:
        objs, strs = view.by_status[status]
    return _dialect_page("items", objs, strs, query, config, fault)


def _processing_result(job, item):
    digest = hashlib.sha256(item["item_id"].encode("utf-8")).hexdigest()
    return {
        "item_id": item["item_id"],
        "job_config": {"job_type": job["job_type"],
                       "configuration_id": "cfg-" + _hash_uuid(job["id"], "config"),
                       "mode": "balanced"},
        "job_type": job["job_type"],
        "output_s3_path": "s3://llamacloud-batch-output/%s/%s/%s.json"
        % (job["project_id"], job["id"], item["item_id"]),
        "parameters_hash": hashlib.sha256(job["id"].encode("utf-8")).hexdigest(),
        "processed_at": item.get("completed_at"),
        "result_id": "res-" + _uuid(int(digest[:32], 16)),
        "output_metadata": {"pages": 1 + int(digest[32:36], 16) % 40,
                            "size_bytes": int(digest[36:42], 16)},
    }


def handle_processing_results(state, query, config, fault, item_id):
    job_type = query.choice("job_type", JOB_TYPES)
    if query.errors:
        return json_response(422, {"detail": query.errors})
    job, item = state.find_item(item_id)
    if item is None:
        return json_response(404, {"detail": "Item not found"})
    results = []
    if item["status"] == "completed" and job_type in (None, job["job_type"]):
        results.append(_processing_result(job, item))
    return json_response(200, {"item_id": item["item_id"], "item_name": item["item_name"],
                               "processing_results": results})


def handle_list_batches(state, query, config, fault):
    if not config["batches_list"]:
        return json_response(404, NOT_FOUND)
    size = query.integer("page_size", 50, 1, 1000)
    offset = query.token("page_token", "batches") or 0
    status = query.choice("status", BATCH_STATUSES)
    directory = query.raw("source_directory_id")
    after = query.moment("created_at_on_or_after")
    before = query.moment("created_at_on_or_before")
    if query.errors:
        return json_response(422, {"detail": query.errors})
    objs, strs = [], []
    for batch, text in zip(state.dataset.batches, state.batch_json):
        created = datetime.datetime.fromisoformat(batch["created_at"])
        if status is not None and batch["status"] != status:
            continue
        if directory is not None and batch["source_directory_id"] != directory:
            continue
        if (after is not None and created < after) or (before is not None and created > before):
            continue
        objs.append(batch)
        strs.append(text)
    return _finish_page(Page("v2", objs, strs, offset, size, "batches"), fault)


def handle_get_batch(state, query, config, fault, batch_id):
    expand = query.all("expand")
    for value in expand:
        if value != "results":
            query.error("expand", "enum", "Input should be 'results'", value)
    if query.errors:
        return json_response(422, {"detail": query.errors})
    batch = state.batch_by_id.get(batch_id)
    if batch is None:
        return json_response(404, {"detail": "Batch not found"})
    entries = state.dataset.results[batch_id] if expand else None
    entries = entries if entries is not None else []
    page = Page("batch", entries, [json.dumps(e) for e in entries], 0, len(entries) or 1)
    page.extra["batch"] = batch
    page.extra["expanded"] = bool(expand) and state.dataset.results[batch_id] is not None
    return _finish_page(page, fault)


# --------------------------------------------------------------------------
# What a batch produced: directory files, v2 parse and extract jobs, v1 parse
# results. Made on demand from the data set (apidouble_content builds the
# text), so that make_dataset() costs no more than before.
# --------------------------------------------------------------------------

# Status of the k-th job of a batch (k counts results with a job_reference);
# None is a job whose results expired (404). Position 3 is a fast-tier parse
# job, 9 a file gone from the directory, 10 a document with a failed page.
V2_STATUS_CYCLE = ("COMPLETED", "COMPLETED", "RUNNING", "COMPLETED", "COMPLETED", "FAILED",
                   "COMPLETED", None, "COMPLETED", "COMPLETED", "COMPLETED", "CANCELLED",
                   "COMPLETED", "PENDING", "COMPLETED", "COMPLETED")
FAST_POSITION, MISSING_POSITION, FAILED_PAGE_POSITION = 3, 9, 10
PARSE_TIERS = ("cost_effective", "agentic", "agentic_plus")
DISPLAY_NAMES = ("invoice-{i:04d}.pdf", "Contrat de bail {i}.docx", "Q{q} board pack {i}.pptx",
                 "scan_{i:05d}.tiff", "\u5e74\u5ea6\u5831\u544a-{i}.pdf",
                 "Z\u00e4hlerstand {i}.xlsx")
# Given, in turn, to the files whose job completed, in each directory. In a
# display name, U+DC80..U+DCFF stand for raw bytes that are not UTF-8 (see
# dumps_raw); "\ud800" goes out as an unpaired surrogate escape.
HOSTILE_DISPLAY_NAMES = (
    "/", ".", "..", "a/b/report.pdf", "duplicate.pdf", "bad-\udcff.pdf", "duplicate.pdf",
    "ctl\u0001\u001f.pdf", "lone-\ud800.pdf", "line\nbreak.pdf", "x" * 300 + ".pdf",
    "\u00e9" * 140 + ".pdf", "Report.pdf", "report.pdf",
    "\u65e5\u672c\u8a9e\u306e\u5831\u544a\u66f8.pdf", "emoji-\U0001f4c4.pdf", "",
    "cut-\udce2\udc82.pdf",
)
RAW_BYTE = re.compile("[\udc80-\udcff]")
EXTRA_DIRECTORY_FILES = 3
PARSE_EXPANDS = ("markdown", "markdown_full", "text", "text_full", "items", "metadata",
                 "job_metadata", "text_content_metadata", "markdown_content_metadata",
                 "items_content_metadata", "metadata_content_metadata",
                 "raw_words_content_metadata", "xlsx_content_metadata",
                 "output_pdf_content_metadata", "images_content_metadata")
MARKDOWN_EXPANDS = ("markdown", "markdown_full", "markdown_content_metadata")
EXTRACT_EXPANDS = ("configuration", "extract_metadata")

Document = collections.namedtuple(
    "Document", "file_id name job_id job_type status tier error_message updated_at "
    "markdown_full text_full extract_result")
Document.__doc__ = """One v2 job of a batch as a test expects to read it. name is the
display_name (U+DC80..U+DCFF: raw bytes, see dumps_raw; encode with
surrogateescape), None when the file is gone from the directory; status None
means the job answers 404 (expired); markdown_full is None for fast-tier
jobs (markdown refused) and with text_full and extract_result None unless
COMPLETED."""
V1Document = collections.namedtuple(
    "V1Document", "item_id item_name job_id status completed_at markdown text")
V1Document.__doc__ = """One item of a v1 parse job with a parse job_id. status is the v1
parse status (PENDING, SUCCESS, PARTIAL_SUCCESS, ERROR) or None when the job
answers 404 (expired); markdown and text are None unless SUCCESS or
PARTIAL_SUCCESS."""


def _digest_int(*parts):
    return int(hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:12], 16)


def _has_phrase(key):
    return _digest_int(key, "phrase") % 4 == 0


def _is_large(position):
    """A few large documents per batch or job, never more than four."""
    return position % 100 == 17 and position < 400


def _stamp_ms(stamp):
    moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000)


def _listed_file(obj, deleted):
    """(file object, deleted, JSON text): raw bytes of its display name go
    out raw."""
    name = obj["display_name"]
    if not RAW_BYTE.search(name):
        return obj, deleted, json.dumps(obj)
    # json.dumps writes U+DCxx as an escape; put the character back.
    text = re.sub(r"\\udc([89a-f][0-9a-f])", lambda m: chr(0xDC00 + int(m.group(1), 16)),
                  json.dumps(name))
    return obj, deleted, dumps_raw(obj, {"display_name": text})


class V2Job:
    """One job a batch result references, with everything but its text."""

    def __init__(self, outputs, batch, position, k, entry):
        seed = outputs.dataset.seed
        clean = batch["id"].startswith("bat-out-")
        self.batch = batch
        self.id = entry["job_reference"]["id"]
        self.kind = entry["job_reference"]["type"]
        self.file_id = entry["source_directory_file_id"]
        self.k = k
        self.position = position
        # The output batch plays no tricks: slot -1 matches no position.
        slot = -1 if clean else k % len(V2_STATUS_CYCLE)
        self.status = "COMPLETED" if clean else V2_STATUS_CYCLE[slot]
        self.missing = slot == MISSING_POSITION
        self.failed_page = 2 if slot == FAILED_PAGE_POSITION else 0
        self.large = outputs.dataset.large_bytes if _is_large(position) else 0
        self.tier = None
        if self.kind == "parse_v2":
            self.tier = "fast" if slot == FAST_POSITION else PARSE_TIERS[k % len(PARSE_TIERS)]
        self.created_ms = _stamp_ms(batch["created_at"]) + 60000 + k * 1000
        duration = 4000 + _digest_int(str(seed), self.id) % 80000
        self.updated_ms = self.created_ms + (0 if self.status == "PENDING" else duration)
        self.error = None
        if self.status == "FAILED":
            self.error = ITEM_ERRORS[_digest_int(self.id) % len(ITEM_ERRORS)]

    def pages(self):
        return apidouble_content.parse_pages(self.id, _has_phrase(self.id), self.large,
                                             self.failed_page)

    def extract_result(self):
        return apidouble_content.extract_result(self.id, self.k % 3 == 1)

    def job_object(self):
        return {"id": self.id, "project_id": self.batch["project_id"], "status": self.status,
                "created_at": timestamp(self.created_ms),
                "updated_at": timestamp(self.updated_ms), "error_message": self.error,
                "name": None, "tier": self.tier}


class Outputs:
    """The documents of a Dataset. Indexes are built on first use; `lock`
    protects them. Safe to share between handler threads."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.lock = threading.Lock()
        self.v2_jobs = None      # job id -> V2Job
        self.directories = None  # directory id -> [file object, deleted flag]
        self.v1_index = {}       # v1 job id -> (items list, {parse job id: index})

    # ---- v2 ----
    def _v2_index(self):
        with self.lock:
            if self.v2_jobs is None:
                self.v2_jobs = {}
                for batch in self.dataset.batches:
                    k = 0
                    for position, entry in enumerate(self.dataset.results[batch["id"]] or ()):
                        if isinstance(entry.get("job_reference"), dict):
                            job = V2Job(self, batch, position, k, entry)
                            self.v2_jobs[job.id] = job
                            k += 1
            return self.v2_jobs

    def v2_job(self, job_id):
        return self._v2_index().get(job_id)

    def _directory_index(self):
        jobs = self._v2_index()
        with self.lock:
            if self.directories is None:
                self.directories = self._make_directories(jobs)
            return self.directories

    def _make_directories(self, jobs):
        by_file = {job.file_id: job for job in jobs.values()}
        directories = {}
        for batch in self.dataset.batches:
            files = directories.setdefault(batch["source_directory_id"], [])
            for entry in self.dataset.results[batch["id"]] or ():
                files.append((batch, entry["source_directory_file_id"]))
        out = {}
        for directory, files in directories.items():
            for extra in range(EXTRA_DIRECTORY_FILES):
                files.append((None, "dfl-" + _hash_uuid(str(self.dataset.seed), directory,
                                                        str(extra))))
            listed, hostile = [], 0
            for index, (batch, file_id) in enumerate(files):
                job = by_file.get(file_id)
                name = DISPLAY_NAMES[index % len(DISPLAY_NAMES)].format(i=index, q=index % 4 + 1)
                clean = batch is not None and batch["id"].startswith("bat-out-")
                if job is not None and job.status == "COMPLETED" and not job.missing and not clean:
                    if hostile < len(HOSTILE_DISPLAY_NAMES):
                        name = HOSTILE_DISPLAY_NAMES[hostile]
                        hostile += 1
                created_ms = BASE_MS - 60 * 24 * HOUR_MS + index * 60000
                listed.append(_listed_file({
                    "id": file_id,
                    "directory_id": directory,
                    "display_name": name,
                    "project_id": self.dataset.batches[0]["project_id"],
                    "unique_id": hashlib.sha256(file_id.encode("ascii")).hexdigest()[:32],
                    "created_at": timestamp(created_ms),
                    "deleted_at": timestamp(BASE_MS) if job is not None and job.missing
                    else None,
                    "download_url": None,
                    "file_id": _hash_uuid(file_id, "file"),
                    "metadata": {"source": "upload"},
                    "updated_at": timestamp(created_ms + 1000),
                }, job is not None and job.missing))
            out[directory] = listed
        return out

    def directory_listing(self, directory_id, include_deleted=False):
        """(file objects, their JSON texts) as served, or None for an
        unknown directory."""
        listed = self._directory_index().get(directory_id)
        if listed is None:
            return None
        kept = [(f, text) for f, deleted, text in listed if include_deleted or not deleted]
        return [f for f, _ in kept], [text for _, text in kept]

    def directory_files(self, directory_id, include_deleted=False):
        """None for an unknown directory."""
        listing = self.directory_listing(directory_id, include_deleted)
        return None if listing is None else listing[0]

    def batch_documents(self, batch_id):
        names = {}
        for batch in self.dataset.batches:
            if batch["id"] == batch_id:
                for f in self.directory_files(batch["source_directory_id"]):
                    names[f["id"]] = f["display_name"]
        out = []
        for entry in self.dataset.results.get(batch_id) or ():
            if not isinstance(entry.get("job_reference"), dict):
                continue
            job = self.v2_job(entry["job_reference"]["id"])
            done = job.status == "COMPLETED"
            markdown = text = extract = None
            if done and job.kind == "parse_v2":
                pages = job.pages()
                text = apidouble_content.join_pages(pages, 2)
                if job.tier != "fast":
                    markdown = apidouble_content.join_pages(pages, 1)
            elif done:
                extract = job.extract_result()
            out.append(Document(job.file_id, names.get(job.file_id), job.id, job.kind,
                                job.status, job.tier, job.error, timestamp(job.updated_ms),
                                markdown, text, extract))
        return out

    # ---- v1 ----
    def v1_item(self, parse_job_id):
        """(job, index, item) of the v1 parse job item whose job_id this is."""
        for job in self.dataset.jobs:
            if job["job_type"] != "parse":
                continue
            items = self.dataset.items[job["id"]]
            with self.lock:
                cached = self.v1_index.get(job["id"])
                if cached is None or cached[0] is not items:
                    cached = (items, {it.get("job_id"): i for i, it in enumerate(items)
                                      if it.get("job_id")})
                    self.v1_index[job["id"]] = cached
            index = cached[1].get(parse_job_id)
            if index is not None:
                return job, index, items[index]
        return None

    @staticmethod
    def v1_status(job, index, item):
        status = item["status"]
        if status == "completed":
            if index % 50 == 23 and not job["id"].startswith("bjb-out-"):
                return None
            return "PARTIAL_SUCCESS" if index % 9 == 4 else "SUCCESS"
        return {"processing": "PENDING", "failed": "ERROR"}.get(status)

    def v1_pages(self, index, item):
        large = self.dataset.large_bytes if _is_large(index) else 0
        failed = 2 if index % 9 == 4 else 0
        return apidouble_content.parse_pages(item["job_id"], _has_phrase(item["job_id"]),
                                             large, failed)

    def job_documents(self, job_id):
        job = next((j for j in self.dataset.jobs if j["id"] == job_id), None)
        out = []
        if job is None or job["job_type"] != "parse":
            return out
        for index, item in enumerate(self.dataset.items[job_id]):
            if not item.get("job_id"):
                continue
            status = self.v1_status(job, index, item)
            markdown = text = None
            if status in ("SUCCESS", "PARTIAL_SUCCESS"):
                pages = self.v1_pages(index, item)
                markdown = apidouble_content.join_pages(pages, 1)
                text = apidouble_content.join_pages(pages, 2)
            out.append(V1Document(item["item_id"], item["item_name"], item["job_id"], status,
                                  item.get("completed_at"), markdown, text))
        return out


class ObjectPage(Page):
    """A response that is one object. PAGE faults see it as a page of one:
    those that rewrite an object change it, the others leave it as it is."""

    def __init__(self, obj):
        super().__init__("object", [obj], [json.dumps(obj)], 0, 1)

    def render(self):
        return self.strs[0]


def _object_response(obj, fault):
    return _finish_page(ObjectPage(obj), fault)


def _expands(query, allowed):
    """The expand values, repeated or comma separated; 422 errors go to query."""
    values = []
    for raw in query.all("expand"):
        for value in raw.split(","):
            value = value.strip()
            if value not in allowed:
                query.error("expand", "enum", "Input should be %s"
                            % ", ".join("'%s'" % a for a in allowed), value)
            elif value not in values:
                values.append(value)
    return values


def handle_directory_files(state, query, config, fault, directory_id):
    size = query.integer("page_size", 50, 1, 1000)
    offset = query.token("page_token", "files") or 0
    if query.errors:
        return json_response(422, {"detail": query.errors})
    deleted = (query.raw("include_deleted") or "").lower() == "true"
    listing = state.dataset.outputs().directory_listing(directory_id, deleted)
    if listing is None:
        return json_response(404, {"detail": "Directory not found"})
    files, texts = listing
    for key in ("display_name", "file_id", "unique_id", "display_name_contains"):
        wanted = query.raw(key)
        if wanted is not None:
            kept = [(f, t) for f, t in zip(files, texts)
                    if (wanted in f["display_name"] if key == "display_name_contains"
                        else f[key] == wanted)]
            files, texts = [f for f, _ in kept], [t for _, t in kept]
    page = Page("v2", files, texts, offset, size, "files")
    return _finish_page(page, fault)


def _presigned(job, name):
    return {"size_bytes": 0, "exists": True,
            "presigned_url": "https://llamacloud-results.s3.invalid/%s/%s.%s?X-Amz-Signature=%s"
            % (job.id, name, "json" if name == "items" else "md", _hash_uuid(job.id, name))}


def parse_v2_body(job, expand):
    """The GET /api/v2/parse/{id} answer: every content key present, null
    unless asked for and the job COMPLETED."""
    body = {"job": job.job_object()}
    for key in ("markdown", "markdown_full", "text", "text_full", "items", "metadata",
                "job_metadata", "result_content_metadata", "images_content_metadata"):
        body[key] = None
    if job.status != "COMPLETED":
        return body
    pages = job.pages()
    if "markdown" in expand:
        body["markdown"] = {"pages": [
            {"page_number": n, "success": False, "error": "Page %d: layout model timed out" % n}
            if md is None else dict({"page_number": n, "success": True, "markdown": md},
                                    **{k: v for k, v in (("header", head), ("footer", foot))
                                       if v is not None})
            for n, md, _, head, foot in pages]}
    if "markdown_full" in expand:
        body["markdown_full"] = apidouble_content.join_pages(pages, 1)
    if "text" in expand:
        body["text"] = {"pages": [{"page_number": n, "text": text or ""}
                                  for n, _, text, _, _ in pages]}
    if "text_full" in expand:
        body["text_full"] = apidouble_content.join_pages(pages, 2)
    if "metadata" in expand:
        body["metadata"] = {"pages": [{"page_number": n, "confidence": 0.97,
                                       "printed_page_number": str(n)} for n, *_ in pages]}
    if "job_metadata" in expand:
        body["job_metadata"] = {"job_pages": len(pages), "credits_used": 3 * len(pages),
                                "job_is_cache_hit": False}
    stored = [e[:-len("_content_metadata")] for e in expand
              if e.endswith("_content_metadata") and e != "images_content_metadata"]
    if stored:
        body["result_content_metadata"] = {name: _presigned(job, name) for name in stored}
    if "images_content_metadata" in expand:
        body["images_content_metadata"] = {"images": [], "total_count": 0}
    return body


def _v2_answer(state, query, fault, job_id, kind, allowed, make_body):
    """One v2 job: 422 for a bad expand, 404 unless a live job of this kind,
    400 for markdown of a fast-tier job, else make_body(job, expand)."""
    expand = _expands(query, allowed)
    if query.errors:
        return json_response(422, {"detail": query.errors})
    job = state.dataset.outputs().v2_job(job_id)
    if job is None or job.kind != kind or job.status is None:
        noun = "Parse" if kind == "parse_v2" else "Extract"
        return json_response(404, {"detail": "%s job not found" % noun})
    if job.tier == "fast" and set(expand) & set(MARKDOWN_EXPANDS):
        return json_response(400, {"detail": "Markdown output is not available for jobs "
                                   "parsed with the 'fast' tier; ask for text instead"})
    return _object_response(make_body(job, expand), fault)


def handle_parse_v2(state, query, config, fault, job_id):
    return _v2_answer(state, query, fault, job_id, "parse_v2", PARSE_EXPANDS, parse_v2_body)


def extract_v2_body(job, expand):
    done = job.status == "COMPLETED"
    per_page = job.k % 3 == 1
    body = {
        "id": job.id, "created_at": timestamp(job.created_ms),
        "updated_at": timestamp(job.updated_ms), "file_input": _hash_uuid(job.file_id, "file"),
        "project_id": job.batch["project_id"], "status": job.status,
        "configuration": None, "configuration_id": job.batch["config"]["job"]["configuration_id"],
        "error_message": job.error, "extract_metadata": None,
        "extract_result": job.extract_result() if done else None,
        "metadata": {"usage": {"num_pages_extracted": 1 + job.k % 5}} if done else None,
    }
    if "configuration" in expand:
        body["configuration"] = {"data_schema": {"type": "object"},
                                 "extraction_target": "per_page" if per_page else "per_doc"}
    if "extract_metadata" in expand and done:
        body["extract_metadata"] = {"field_metadata": None, "parse_job_id": None,
                                    "parse_tier": "cost_effective"}
    return body


def handle_extract_v2(state, query, config, fault, job_id):
    return _v2_answer(state, query, fault, job_id, "extract_v2", EXTRACT_EXPANDS,
                      extract_v2_body)


def _v1_parse_lookup(state, job_id):
    """(outputs, job, index, item, status) with the current items, or None."""
    outputs = state.dataset.outputs()
    with state.lock:
        found = outputs.v1_item(job_id)
    if found is None:
        return None
    status = outputs.v1_status(*found)
    return (outputs, *found, status) if status is not None else None


def handle_parse_v1_job(state, query, config, fault, job_id):
    found = _v1_parse_lookup(state, job_id)
    if found is None:
        return json_response(404, {"detail": "Job not found"})
    item, status = found[3], found[4]
    return _object_response({"id": job_id, "status": status,
                             "error_code": "PARSE_ERROR" if status == "ERROR" else None,
                             "error_message": item.get("error_message")
                             if status == "ERROR" else None}, fault)


def _v1_result(state, fault, job_id, key, index):
    found = _v1_parse_lookup(state, job_id)
    if found is None:
        return json_response(404, {"detail": "Job not found"})
    outputs, _, position, item, status = found
    if status not in ("SUCCESS", "PARTIAL_SUCCESS"):
        return json_response(404, {"detail": "Job result not found: the job is %s" % status})
    pages = outputs.v1_pages(position, item)
    metadata = {"credits_used": 3 * len(pages), "job_credits_usage": 3 * len(pages),
                "job_pages": len(pages), "job_auto_mode_triggered_pages": 0,
                "job_is_cache_hit": False}
    return _object_response({key: apidouble_content.join_pages(pages, index),
                             "job_metadata": metadata}, fault)


def handle_parse_v1_markdown(state, query, config, fault, job_id):
    return _v1_result(state, fault, job_id, "markdown", 1)


def handle_parse_v1_text(state, query, config, fault, job_id):
    return _v1_result(state, fault, job_id, "text", 2)


ROUTES = (
    ("list_jobs", re.compile(r"^/api/v1/beta/batch-processing$"), handle_list_jobs),
    ("processing_results",
     re.compile(r"^/api/v1/beta/batch-processing/items/([^/]+)/processing-results$"),
     handle_processing_results),
    ("list_items", re.compile(r"^/api/v1/beta/batch-processing/([^/]+)/items$"),
     handle_list_items),
    ("get_job", re.compile(r"^/api/v1/beta/batch-processing/([^/]+)$"), handle_get_job),
    ("list_batches", re.compile(r"^/api/v2/batches$"), handle_list_batches),
    ("get_batch", re.compile(r"^/api/v2/batches/([^/]+)$"), handle_get_batch),
    ("directory_files", re.compile(r"^/api/v1/beta/directories/([^/]+)/files$"),
     handle_directory_files),
    ("parse_v2", re.compile(r"^/api/v2/parse/([^/]+)$"), handle_parse_v2),
    ("extract_v2", re.compile(r"^/api/v2/extract/([^/]+)$"), handle_extract_v2),
    ("parse_v1_job", re.compile(r"^/api/v1/parsing/job/([^/]+)$"), handle_parse_v1_job),
    ("parse_v1_markdown", re.compile(r"^/api/v1/parsing/job/([^/]+)/result/markdown$"),
     handle_parse_v1_markdown),
    ("parse_v1_text", re.compile(r"^/api/v1/parsing/job/([^/]+)/result/text$"),
     handle_parse_v1_text),
)


def match_route(path):
    for endpoint, pattern, handler in ROUTES:
        match = pattern.match(path)
        if match:
            args = [urllib.parse.unquote(g) for g in match.groups()]
            return endpoint, handler, args
    return "other", None, None


# --------------------------------------------------------------------------
# Faults: each kind is one function. PRE faults answer instead of the
# endpoint, PAGE faults rewrite the objects of a page, SEND faults change how
# the real answer goes over the wire.
# --------------------------------------------------------------------------

def fault_status(handler, fault):
    status = int(fault.param("status", 500))
    detail = fault.param("detail", _reason(status))
    return handler.send(json_response(status, {"detail": detail},
                                      {str(k): str(v) for k, v in
                                       fault.param("headers", {}).items()}))


def fault_reset(handler, fault):
    handler.close_connection = True
    # Linger zero turns close() into a TCP reset rather than an orderly FIN.
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
    handler.connection.close()
    return 0


def fault_empty_reply(handler, fault):
    # An orderly close with no answer at all: the client sees the end of
    # the stream where a status line should be.
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)
    return 0


def fault_redirect(handler, fault):
    location = fault.param("location", "http://127.0.0.2:1/x")
    return handler.send(json_response(302, {"detail": "Found"}, {"Location": location}))


def fault_malformed(handler, fault):
    return handler.send(Response(200, '{"items": [{"item_id": '))


def fault_not_object(handler, fault):
    return handler.send(Response(200, "[1, 2, 3]"))


def fault_items_not_array(handler, fault):
    return handler.send(Response(200, '{"items": {"a": 1}, "total_size": 1}'))


def _identity_key(obj):
    for key in ("item_id", "id", "source_directory_file_id"):
        if key in obj:
            return key
    return next(iter(obj), "id")


def _rewrite(page, index, obj):
    page.objs[index] = obj
    page.strs[index] = json.dumps(obj)


def fault_items_non_objects(page, fault):
    if page.style == "job":
        return
    strays = ("1", '"not an object"', "null", "[1, 2]", "true")
    objs, strs = [], []
    for index, (obj, text) in enumerate(zip(page.objs, page.strs)):
        if index % 3 == 1:
            objs.append(None)
            strs.append(strays[(index // 3) % len(strays)])
        objs.append(obj)
        strs.append(text)
    objs.append(None)
    strs.append("null")
    page.objs, page.strs = objs, strs


def fault_missing_required(page, fault):
    for index, obj in enumerate(page.objs):
        if obj is None:
            continue
        new = dict(obj)
        mode = index % 4
        if mode == 0:
            del new[_identity_key(new)]
        elif mode == 1:
            name = next((k for k in ("item_name", "job_type", "source_directory_file_id")
                         if k in new), _identity_key(new))
            new[name] = 123
        elif mode == 2 and "status" in new:
            new["status"] = None
        elif mode == 2:
            new["job_reference"] = "not-an-object"
        else:
            continue
        _rewrite(page, index, new)


def fault_nul_in_string(page, fault):
    if not page.objs or page.objs[0] is None:
        return
    new = dict(page.objs[0])
    if "item_name" in new:
        name = new["item_name"]
        new["item_name"] = name[:len(name) // 2] + "\u0000" + name[len(name) // 2:]
    new["error_message"] = "parse failed\u0000after the NUL"
    _rewrite(page, 0, new)


# Strings that are not Unicode, as the text between a JSON string's quotes:
# raw bytes that are not UTF-8 (a byte that never is, an overlong "/", an
# encoded surrogate, a code point above U+10FFFF, a sequence cut short) and
# unpaired surrogate escapes (high, low, high before a non-low, reversed).
NOT_UTF8 = tuple(b.decode("utf-8", "surrogateescape") for b in
                 (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"))
LONE_SURROGATES = ("\\ud800", "\\udc00", "\\ud800\\u0041", "\\udc00\\ud800")


def planted_bad_string(obj, index, bad):
    """What faults invalid_utf8 and lone_surrogate make of the object at
    `index` of a page: `bad` inside its item_name (when it has one) and its
    error_message. Returns the `raw` argument of dumps_raw."""
    raw = {"error_message": '"failed at ' + bad + ' here"'}
    if "item_name" in obj:
        raw["item_name"] = '"bad-%d-' % index + bad + '.pdf"'
    return raw


def _plant_bad_strings(page, variants):
    for index, obj in enumerate(page.objs[:len(variants)]):
        if obj is not None:
            page.strs[index] = dumps_raw(obj, planted_bad_string(obj, index, variants[index]))


def fault_invalid_utf8(page, fault):
    _plant_bad_strings(page, NOT_UTF8)


def fault_lone_surrogate(page, fault):
    _plant_bad_strings(page, LONE_SURROGATES)


# error_message values that are not a non-empty string, as JSON text (None:
# the key is left out).
ERROR_MESSAGE_KINDS = (None, "null", '""', "0", "12.50", "-1E3", "true", "false",
                       '{"code": 7, "detail": "tab\\there"}', '[1, "two", null]', "{}")


def planted_error_kind(obj, index):
    """What fault error_message_kinds makes of the object at `index` of a
    page: (the object, the `raw` argument of dumps_raw). Scalars go as raw
    text, so that "12.50" keeps its spelling; containers as values, so
    that render() lays them out."""
    obj = dict(obj)
    kind = ERROR_MESSAGE_KINDS[index]
    if kind is None:
        obj.pop("error_message", None)
        return obj, {}
    if kind[0] in "{[":
        obj["error_message"] = json.loads(kind)
        return obj, {}
    return obj, {"error_message": kind}


def fault_error_message_kinds(page, fault):
    for index, obj in enumerate(page.objs[:len(ERROR_MESSAGE_KINDS)]):
        if obj is not None:
            new, raw = planted_error_kind(obj, index)
            page.objs[index] = new
            page.strs[index] = dumps_raw(new, raw)


# What fault hostile_groups gives the first jobs as job_type and status, as
# JSON text: a NUL, a slash and a raw byte that is not UTF-8.
HOSTILE_GROUPS = ('"nul\\u0000x"', '"a/b' + b"\xff".decode("utf-8", "surrogateescape") + '"')


def fault_hostile_groups(page, fault):
    for index, obj in enumerate(page.objs[:len(HOSTILE_GROUPS)]):
        if obj is not None and "job_type" in obj:
            value = HOSTILE_GROUPS[index]
            page.strs[index] = dumps_raw(obj, {"job_type": value, "status": value})


def fault_huge_field(page, fault):
    if not page.objs or page.objs[0] is None:
        return
    size = int(fault.param("size", 10 * 1024 * 1024))
    chunk = "huge error text "
    new = dict(page.objs[0])
    new["error_message"] = (chunk * (size // len(chunk) + 1))[:size]
    _rewrite(page, 0, new)


def fault_deep_nesting(page, fault):
    if not page.strs or page.objs[0] is None:
        return
    depth = int(fault.param("depth", 5000))
    # Built as text: json.dumps would hit the recursion limit.
    page.strs[0] = page.strs[0][:-1] + ', "x_deep": ' + "[" * depth + "]" * depth + "}"


def fault_repeat_token(page, fault):
    if page.style not in ("v1", "v2"):
        return
    page.reslice(0)
    page.token = encode_token(page.prefix, len(page.strs))
    page.token_on = True


def fault_repeat_page(page, fault):
    if page.style not in ("v1", "v2"):
        return
    asked = page.offset
    page.reslice(0)
    page.token = encode_token(page.prefix, asked + len(page.strs))
    page.total = max(page.total, asked + len(page.strs) + 1)
    page.token_on = page.total_on = True


def fault_total_lies(page, fault):
    if page.style != "v1":
        return
    page.total = int(page.total * float(fault.param("factor", 3.0)))
    page.total_on = True


def fault_duplicate_ids(page, fault):
    if not page.strs or page.objs[0] is None:
        return
    at = min(2, len(page.strs))
    page.objs.insert(at, page.objs[0])
    page.strs.insert(at, page.strs[0])


def fault_duplicate_keys(page, fault):
    for index, obj in enumerate(page.objs):
        if obj is None:
            continue
        if "status" in obj:
            bogus = '"status": "%s"' % ("bogus" if obj["status"] != "bogus" else "other")
        else:
            bogus = '%s: "bogus"' % json.dumps(_identity_key(obj))
        # The true value comes later in the object, so the last one wins.
        page.strs[index] = "{" + bogus + ", " + page.strs[index][1:]


# Faults that keep a count of their own (how often they fired) take this lock
# for it: page faults run on the request threads, without the state's lock.
_FAULT_COUNT_LOCK = threading.Lock()


def _fault_count(fault, name):
    """How many times `name` was counted on this fault before, counting once."""
    with _FAULT_COUNT_LOCK:
        seen = getattr(fault, name, 0)
        setattr(fault, name, seen + 1)
        return seen


def fault_job_grows_shrinks(page, fault):
    """The job object changes length on every request: a padding field of a
    varying length, and processed_items (hence progress) cycling through
    values of different widths."""
    if page.style != "job" or not page.objs or page.objs[0] is None:
        return
    turn = _fault_count(fault, "served")
    job = dict(page.objs[0])
    total = job.get("total_items") or 0
    job["processed_items"] = (0, total // 20, total * 99 // 100, total)[turn % 4]
    job["failed_items"] = job["skipped_items"] = 0
    job["x_padding"] = "x" * (37 * (turn % 5))
    page.objs[0] = job
    page.strs[0] = json.dumps(job)


def fault_item_revision(page, fault):
    """The first item of a list page at offset 0 gets "x_revision": value
    (a string): changing `value` for one of the same length changes the
    item's content but not its length."""
    if page.style != "v1" or page.offset != 0 or not page.objs or page.objs[0] is None:
        return
    _rewrite(page, 0, dict(page.objs[0], x_revision=str(fault.param("value", "A"))))


def fault_content_revision(page, fault):
    """A document's text (markdown_full, text_full, or a v1 result's
    markdown or text) has its first character replaced by `value` (one
    character, default "~"): the same length in bytes for ASCII text, other
    bytes. Other answers are left as they are."""
    if page.style != "object" or not page.objs or not isinstance(page.objs[0], dict):
        return
    obj = dict(page.objs[0])
    value = str(fault.param("value", "~"))
    changed = False
    for key in ("markdown_full", "text_full", "markdown", "text"):
        if isinstance(obj.get(key), str) and obj[key]:
            obj[key] = value + obj[key][1:]
            changed = True
    if changed:
        _rewrite(page, 0, obj)


def fault_shrink_mid_listing(page, fault):
    """`count` items (100) are deleted from the front of the list right after
    the first page at offset 0 is served: every later page is cut from the
    shorter list, with its smaller total_size. With "every": true, every page
    at offset 0 still shows the old list (the listing never settles)."""
    if page.style != "v1":
        return
    if page.offset == 0 and (_fault_count(fault, "firsts") == 0 or fault.param("every", False)):
        return
    count = int(fault.param("count", 100))
    page.all_objs, page.all_strs = page.all_objs[count:], page.all_strs[count:]
    page.total = len(page.all_strs)
    page.reslice(page.offset)


def fault_repeat_within_page(page, fault):
    """The third element of a list page repeats the first one's id: the page
    still holds as many objects as asked for."""
    if page.style != "v1" or len(page.objs) < 3 or page.objs[0] is None:
        return
    page.objs[2] = page.objs[0]
    page.strs[2] = page.strs[0]


def fault_delay(handler, fault, response):
    time.sleep(float(fault.param("ms", 1000)) / 1000.0)
    return handler.send(response)


def fault_stall(handler, fault, response):
    # The head, and the first `after` bytes of the body, then nothing.
    after = int(fault.param("after", 0))
    handler.wfile.write(handler.head(response, len(response.body)) + response.body[:after])
    handler.wfile.flush()
    handler.close_connection = True
    # Held until `ms` pass, the double stops, or POST /__double/release.
    state = handler.server.state
    deadline = time.monotonic() + float(fault.param("ms", 60000)) / 1000.0
    with state.lock:
        release = state.stall_release
        state.stalled += 1
    try:
        while not release.is_set() and not handler.server.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            release.wait(min(left, 0.05))
    finally:
        with state.lock:
            state.stalled -= 1
    return response.status


def fault_truncate(handler, fault, response):
    handler.close_connection = True
    half = response.body[:len(response.body) // 2]
    handler.wfile.write(handler.head(response, len(response.body)) + half)
    return response.status


def fault_reset_body(handler, fault, response):
    # The head and half the body, then a TCP reset.
    half = response.body[:len(response.body) // 2]
    handler.wfile.write(handler.head(response, len(response.body)) + half)
    handler.wfile.flush()
    return fault_reset(handler, fault)


def fault_chunked_cut(handler, fault, response):
    # A chunked body that ends without its last (zero-length) chunk.
    handler.close_connection = True
    body = response.body
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                      for i in range(0, len(body), 4096))
    handler.wfile.write(handler.head(response, None) + chunks)
    return response.status


def fault_slow_body(handler, fault, response):
    # `count` chunks (default: the whole body) go out `chunk` bytes at a
    # time after a pause of `ms` each; the rest follows at once.
    chunk = max(1, int(fault.param("chunk", 64)))
    pause = float(fault.param("ms", 50)) / 1000.0
    count = fault.param("count", None)
    slow = len(response.body) if count is None else min(len(response.body), int(count) * chunk)
    handler.wfile.write(handler.head(response, len(response.body)))
    handler.wfile.flush()
    for start in range(0, slow, chunk):
        time.sleep(pause)
        handler.wfile.write(response.body[start:min(start + chunk, slow)])
        handler.wfile.flush()
    handler.wfile.write(response.body[slow:])
    return response.status


def fault_bad_gzip(handler, fault, response):
    packed = gzip.compress(response.body, compresslevel=1, mtime=0)
    # 0xff opens a deflate block of the reserved type 3: a decoder must fail.
    corrupt = packed[:10] + b"\xff" * (len(packed) - 10)
    headers = dict(response.headers, **{"Content-Encoding": "gzip"})
    return handler.send(Response(response.status, corrupt, headers), encode=False)


def fault_gzip_bomb(handler, fault, response):
    size = int(fault.param("size", 1 << 30))
    bomb = handler.server.state_gzip_bomb(size)
    headers = dict(response.headers, **{"Content-Encoding": "gzip"})
    head = handler.head(Response(200, b"", headers), bomb.length)
    handler.wfile.write(head)
    bomb.write_to(handler.wfile)
    return 200


PRE_FAULTS = {
    "status": fault_status,
    "reset": fault_reset,
    "empty_reply": fault_empty_reply,
    "redirect": fault_redirect,
    "malformed": fault_malformed,
    "not_object": fault_not_object,
    "items_not_array": fault_items_not_array,
}
PAGE_FAULTS = {
    "items_non_objects": fault_items_non_objects,
    "missing_required": fault_missing_required,
    "nul_in_string": fault_nul_in_string,
    "huge_field": fault_huge_field,
    "deep_nesting": fault_deep_nesting,
    "repeat_token": fault_repeat_token,
    "repeat_page": fault_repeat_page,
    "total_lies": fault_total_lies,
    "duplicate_ids": fault_duplicate_ids,
    "duplicate_keys": fault_duplicate_keys,
    "invalid_utf8": fault_invalid_utf8,
    "lone_surrogate": fault_lone_surrogate,
    "error_message_kinds": fault_error_message_kinds,
    "hostile_groups": fault_hostile_groups,
    "job_grows_shrinks": fault_job_grows_shrinks,
    "item_revision": fault_item_revision,
    "content_revision": fault_content_revision,
    "shrink_mid_listing": fault_shrink_mid_listing,
    "repeat_within_page": fault_repeat_within_page,
}
SEND_FAULTS = {
    "delay": fault_delay,
    "stall": fault_stall,
    "truncate": fault_truncate,
    "reset_body": fault_reset_body,
    "chunked_cut": fault_chunked_cut,
    "slow_body": fault_slow_body,
    "bad_gzip": fault_bad_gzip,
    "gzip_bomb": fault_gzip_bomb,
}
FAULT_KINDS = set(PRE_FAULTS) | set(PAGE_FAULTS) | set(SEND_FAULTS)


class GzipBomb:
    """A gzip stream of `size` spaces, written without ever holding the
    uncompressed data: a 1 MiB block is deflated once with a full flush,
    which makes the compressed block self-contained and repeatable."""

    BLOCK = 1 << 20

    def __init__(self, size):
        self.size = size
        block, rest = divmod(size, self.BLOCK)
        self.count = block
        self.segment = self._segment(self.BLOCK) if block else b""
        self.tail = self._segment(rest) if rest else b""
        crc = 0
        spaces = b" " * self.BLOCK
        for _ in range(block):
            crc = zlib.crc32(spaces, crc)
        crc = zlib.crc32(b" " * rest, crc)
        final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
        self.header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        self.trailer = final + struct.pack("<II", crc, size & 0xFFFFFFFF)
        self.length = (len(self.header) + self.count * len(self.segment) + len(self.tail)
                       + len(self.trailer))

    @staticmethod
    def _segment(length):
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return packer.compress(b" " * length) + packer.flush(zlib.Z_FULL_FLUSH)

    def write_to(self, stream):
        stream.write(self.header)
        batch = self.segment * 64
        full, left = divmod(self.count, 64)
        for _ in range(full):
            stream.write(batch)
        stream.write(self.segment * left + self.tail + self.trailer)


# --------------------------------------------------------------------------
# Control endpoints (no key needed)
# --------------------------------------------------------------------------

def control_stats(state, payload):
    return 200, state.stats()


def control_reset(state, payload):
    with state.lock:
        state.reset_stats()
    return 200, {"ok": True}


def control_get_faults(state, payload):
    with state.lock:
        return 200, [f.describe() for f in state.faults]


def control_set_faults(state, payload):
    faults = parse_faults(payload)
    with state.lock:
        state.faults = faults
    return 200, [f.describe() for f in faults]


def control_advance(state, payload):
    if not isinstance(payload, dict) or not isinstance(payload.get("job_id"), str):
        raise ValueError("expected {\"job_id\": ..., \"count\": n}")
    count = payload.get("count", 1)
    if not isinstance(count, int) or count < 0:
        raise ValueError("count must be a non-negative integer")
    result = state.advance(payload["job_id"], count)
    if result is None:
        return 404, {"detail": "Batch job not found"}
    return 200, result


def control_release(state, payload):
    """Lets every request held by a stall fault go (each then ends as the
    fault says: its connection closes after what it sent)."""
    with state.lock:
        state.stall_release.set()
        state.stall_release = threading.Event()
    return 200, {"ok": True}


CONFIG_CHECKS = {
    "latency_ms": lambda v: isinstance(v, (int, float)) and v >= 0,
    "dialect": lambda v: v in DIALECTS,
    "page_cap": lambda v: isinstance(v, int) and v >= 1,
    "gzip": lambda v: isinstance(v, bool),
    "batches_list": lambda v: isinstance(v, bool),
    "verbose": lambda v: isinstance(v, bool),
}


def control_get_config(state, payload):
    return 200, state.get_config()


def control_set_config(state, payload):
    if not isinstance(payload, dict):
        raise ValueError("expected an object")
    for key, value in payload.items():
        check = CONFIG_CHECKS.get(key)
        if check is None or not check(value):
            raise ValueError("bad config entry %r" % key)
    with state.lock:
        state.config.update(payload)
        return 200, dict(state.config)


CONTROLS = {
    ("GET", "stats"): control_stats,
    ("POST", "reset"): control_reset,
    ("GET", "faults"): control_get_faults,
    ("POST", "faults"): control_set_faults,
    ("POST", "advance"): control_advance,
    ("POST", "release"): control_release,
    ("GET", "config"): control_get_config,
    ("POST", "config"): control_set_config,
}


def parse_faults(payload):
    if not isinstance(payload, list):
        raise ValueError("faults must be a JSON list")
    try:
        return [Fault(spec) for spec in payload]
    except re.error as err:
        raise ValueError("bad path regex: %s" % err) from None


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

def _reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "apidouble"
    # Headers and body of the fault writers go out in several writes.
    disable_nagle_algorithm = True

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_OPTIONS(self):
        self.dispatch("OPTIONS")

    def log_message(self, format, *args):
        if self.server.state.config.get("verbose"):
            sys.stderr.write("apidouble: %s\n" % (format % args))

    def head(self, response, length):
        """The status line and headers; a length of None sends the body
        chunked."""
        self.end_api_request(response.status)
        lines = ["HTTP/1.1 %d %s" % (response.status, _reason(response.status)),
                 "Content-Type: application/json",
                 "Transfer-Encoding: chunked" if length is None
                 else "Content-Length: %d" % length]
        for key, value in response.headers.items():
            lines.append("%s: %s" % (key, str(value).replace("\r", "").replace("\n", "")))
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(self, response, encode=True):
        body = response.body
        if encode and self.gzip_ok and body:
            body = gzip.compress(body, compresslevel=1, mtime=0)
            response = Response(response.status, body,
                                dict(response.headers, **{"Content-Encoding": "gzip"}))
        head = self.head(response, len(body))
        self.wfile.write(head if self.command == "HEAD" else head + body)
        return response.status

    def read_body(self):
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            return self.rfile.read(int(length))
        except ValueError:
            self.close_connection = True
            return b""

    def dispatch(self, method):
        self.gzip_ok = False
        self.in_api_request = False
        try:
            split = urllib.parse.urlsplit(self.path)
            body = self.read_body()
            if split.path.startswith("/__double/"):
                self.control(method, split.path[len("/__double/"):], body)
            else:
                self.api(method, split.path, split.query)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def control(self, method, name, body):
        state = self.server.state
        function = CONTROLS.get((method, name))
        if function is None:
            known = any(n == name for _, n in CONTROLS)
            self.send(json_response(405 if known else 404,
                                    {"detail": "Method Not Allowed" if known
                                     else "Not Found"}), encode=False)
            return
        try:
            payload = json.loads(body) if body.strip() else None
            status, obj = function(state, payload)
        except ValueError as err:
            status, obj = 400, {"detail": str(err)}
        self.send(json_response(status, obj), encode=False)

    def authorized(self):
        value = self.headers.get("Authorization", "")
        scheme, _, key = value.partition(" ")
        return scheme.lower() == "bearer" and key.strip() == self.server.state.api_key

    def end_api_request(self, status):
        # Called as the headers go out, not after the body: a client that
        # has its answer must find it in the stats, and a sequential client
        # must never look like two requests in flight.
        if self.in_api_request:
            self.in_api_request = False
            self.server.state.end(status)
            self.log_message('"%s" %s', self.requestline, status)

    def api(self, method, path, raw_query):
        state = self.server.state
        endpoint, route, args = match_route(path)
        state.begin(endpoint)
        self.in_api_request = True
        try:
            self.api_answer(state, method, path, raw_query, route, args)
        finally:
            self.end_api_request(0)

    def api_answer(self, state, method, path, raw_query, route, args):
        config = state.get_config()
        if config["latency_ms"]:
            time.sleep(config["latency_ms"] / 1000.0)
        self.gzip_ok = config["gzip"] and "gzip" in self.headers.get("Accept-Encoding", "")
        if not self.authorized():
            return self.send(json_response(401, {"detail": "Invalid API key"}))
        if route is None:
            return self.send(json_response(404, NOT_FOUND))
        if method != "GET":
            return self.send(json_response(405, {"detail": "Method Not Allowed"}))
        fault = state.pick_fault(path, raw_query)
        if fault is not None and fault.kind in PRE_FAULTS:
            return PRE_FAULTS[fault.kind](self, fault)
        response = route(state, Query(raw_query), config, fault, *args)
        if fault is not None and fault.kind in SEND_FAULTS:
            return SEND_FAULTS[fault.kind](self, fault, response)
        return self.send(response)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(self, port, state, quiet):
        self.state = state
        self.quiet = quiet
        self.stopping = threading.Event()
        self.bomb_lock = threading.Lock()  # protects bombs
        self.bombs = {}
        super().__init__(("127.0.0.1", port), Handler)

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name, which can hang
        # without DNS; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def state_gzip_bomb(self, size):
        with self.bomb_lock:
            bomb = self.bombs.get(size)
            if bomb is None:
                bomb = self.bombs[size] = GzipBomb(size)
            return bomb

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)) or self.quiet:
            return
        sys.stderr.write("apidouble: error serving %s:\n%s" % (client_address,
                                                               traceback.format_exc()))


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Local double of the LlamaCloud batch API.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the port number to this file")
    parser.add_argument("--api-key", default=os.environ.get("BATCHFS_DOUBLE_KEY",
                                                            "llx-test-key"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--big-job", type=int, default=0)
    parser.add_argument("--big-job-type", choices=JOB_TYPES, default="parse",
                        help="job_type of the big job: a parse job's folder also shows "
                        "its documents (markdown/, text/)")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--results", type=int, default=50)
    parser.add_argument("--output-batch", type=int, default=0,
                        help="add a parse_v2 batch of N documents, all available")
    parser.add_argument("--output-job", type=int, default=0,
                        help="add a v1 parse job of N completed items")
    parser.add_argument("--large-kb", type=int, default=3072,
                        help="size of the few large documents")
    parser.add_argument("--dialect", choices=DIALECTS, default="both")
    parser.add_argument("--page-cap", type=int, default=250)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--no-batches-list", action="store_true")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--faults", default="[]", help="initial fault list, JSON")
    parser.add_argument("--quiet", action="store_true", help="no logging at all")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    opts = parser.parse_args(argv)
    if opts.page_cap < 1:
        parser.error("--page-cap must be >= 1")
    for name in ("jobs", "items", "big_job", "batches", "results", "output_batch",
                 "output_job", "large_kb"):
        if getattr(opts, name) < 0:
            parser.error("--%s must be >= 0" % name.replace("_", "-"))
    try:
        opts.fault_list = parse_faults(json.loads(opts.faults))
    except ValueError as err:
        parser.error("--faults: %s" % err)
    return opts


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    dataset = make_dataset(opts.seed, opts.jobs, opts.items, opts.big_job, opts.batches,
                           opts.results, opts.output_batch, opts.output_job, opts.large_kb,
                           opts.big_job_type)
    state = State(dataset, opts)
    state.faults = opts.fault_list
    server = Server(opts.port, state, opts.quiet)
    port = server.server_address[1]
    if opts.port_file:
        temporary = opts.port_file + ".tmp"
        with open(temporary, "w") as out:
            out.write("%d\n" % port)
        os.replace(temporary, opts.port_file)
    print("apidouble listening on http://127.0.0.1:%d" % port, flush=True)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    while not stop:
        time.sleep(0.05)
    server.stopping.set()
    server.socket.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
