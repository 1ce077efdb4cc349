#!/bin/bash
# Runs each libFuzzer target for SECONDS (default 300) from its seed corpus.
#   scripts/fuzz.sh [BUILD-DIR [SECONDS]]
# BUILD-DIR must be configured with CC=clang -Dfuzz=true; when it does not
# exist it is set up. New inputs go to a scratch corpus, never into the repo;
# a crash leaves its input in BUILD-DIR/fuzz-artifacts/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${2:-300}

if [ ! -d "$build" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Dtests=disabled -Dbuildtype=debug >/dev/null
fi
meson compile -C "$build" >/dev/null
mkdir -p "$build/fuzz-artifacts"
for target in names jsontext page produced; do
    scratch=$(mktemp -d)
    echo "fuzzing $target for ${seconds}s"
    if ! "$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$target-" \
        "$scratch" "tests/fuzz/corpus/$target" 2>"$build/fuzz-$target.log"; then
        tail -n 40 "$build/fuzz-$target.log"
        rm -rf "$scratch"
        exit 1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/fuzz-$target.log" || true
    rm -rf "$scratch"
done
