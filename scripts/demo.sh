#!/bin/bash
# Sets up batchfs and shows it working on a Debian machine.
#
# With LLAMA_CLOUD_API_KEY (or LLAMA_PARSE_API_KEY) set, mounts the real
# LlamaCloud API; otherwise starts the bundled API double with a sample data
# set on loopback and mounts that. Then looks around with ls, cat, grep and jq
# and unmounts. With --keep the mount stays up (and the double with it) until
# Ctrl-C, for exploring by hand.
#   MOUNTPOINT=/path  where to mount (default: a fresh directory under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

keep=0
[ "${1:-}" = "--keep" ] && keep=1

scripts/install-deps.sh
if [ -d build ]; then
    meson setup --reconfigure build >/dev/null
else
    meson setup build >/dev/null
fi
meson compile -C build >/dev/null

work=$(mktemp -d /tmp/batchfs-demo.XXXXXX)
mnt=${MOUNTPOINT:-$work/mnt}
mkdir -p "$mnt"
double_pid=""

cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then
        fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
    fi
    [ -n "$double_pid" ] && kill "$double_pid" 2>/dev/null && wait "$double_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ -n "${LLAMA_CLOUD_API_KEY:-}${LLAMA_PARSE_API_KEY:-}" ]; then
    echo "mounting the LlamaCloud API (${LLAMA_CLOUD_BASE_URL:-https://api.cloud.llamaindex.ai}) on $mnt"
    build/batchfs "$mnt"
else
    echo "no LLAMA_CLOUD_API_KEY: starting the API double with sample data"
    key="llx-demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    python3 scripts/apidouble.py --port 0 --port-file "$work/port" --api-key "$key" \
        --latency-ms 5 --quiet >"$work/double.log" 2>&1 &
    double_pid=$!
    for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
    [ -s "$work/port" ] || { cat "$work/double.log"; exit 1; }
    echo "mounting http://127.0.0.1:$(cat "$work/port") on $mnt"
    LLAMA_CLOUD_API_KEY=$key build/batchfs -o "base_url=http://127.0.0.1:$(cat "$work/port")" "$mnt"
fi

show() { printf '\n$ %s\n' "$*"; eval "$@"; }
cd "$mnt"
show ls
show ls jobs
job=$(ls jobs | head -n 1)
for j in $(ls jobs); do
    if [ -n "$(ls "jobs/$j/failed")" ]; then job=$j; break; fi
done
show ls "jobs/$job"
show "jq -c '{id, status, total_items, failed_items}' jobs/$job/job.json"
show "ls jobs/$job/failed | head -n 5"
show "ls -l jobs/$job/completed | head -n 4"
show "grep -rl Timeout jobs/$job/failed/ | head -n 3"
show "jq -r .error_message jobs/$job/failed/*.json | sort | uniq -c | sort -rn | head"
show "cat jobs/*/progress"
show "cut -f3 jobs/$job/errors.tsv | sort | uniq -c | sort -rn | head -n 3"
show "ls by-status/*"
show "find jobs -name '*.json' | wc -l"
show ls batches
# What a batch produced: the first of a few batches with parsed documents.
for b in $(ls batches | head -n 5); do
    if [ -n "$(ls "batches/$b/markdown" 2>/dev/null)" ]; then
        show ls "batches/$b"
        show "ls batches/$b/markdown | head -n 3"
        show "grep -rl 'net revenue' batches/$b/markdown/ | head -n 3"
        show "wc -w batches/$b/text/*.txt | tail -n 1"
        break
    fi
done
cd "$root"
if [ $keep -eq 1 ]; then
    echo
    echo "mounted on $mnt; press Ctrl-C to unmount"
    while mountpoint -q "$mnt"; do sleep 1; done
fi
