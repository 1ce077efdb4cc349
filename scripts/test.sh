#!/bin/bash
# Sets up and runs every batchfs test on a Debian machine:
#   1. installs the Debian packages (scripts/install-deps.sh);
#   2. builds with warnings as errors and runs the unit and mount tests;
#   3. rebuilds under AddressSanitizer + UndefinedBehaviorSanitizer and runs
#      them all again (the mounted driver fails a test on any report);
#   4. rebuilds under ThreadSanitizer and runs the concurrency tests;
#   5. builds the libFuzzer targets with clang and fuzzes each briefly.
# Mount tests need /dev/fuse and permission to mount (root, or fusermount3).
# Options: --quick runs step 2 only.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

scripts/install-deps.sh

setup() { # setup DIR MESON-OPTIONS...
    local dir=$1
    shift
    if [ -d "$dir" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
}

step() { printf '\n=== %s\n' "$*"; }

step "build and test (warnings are errors)"
setup build -Dwerror=true
meson compile -C build
meson test -C build --print-errorlogs --num-processes 2
[ $quick -eq 1 ] && exit 0

step "AddressSanitizer + UndefinedBehaviorSanitizer"
setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug
meson compile -C build-asan
meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3

step "ThreadSanitizer (unit tests and the concurrency test)"
CC=clang setup build-tsan -Dwerror=true -Db_sanitize=thread -Db_lundef=false \
    -Dbuildtype=debug
meson compile -C build-tsan
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    meson test -C build-tsan --print-errorlogs --num-processes 2 --timeout-multiplier 4 \
    --suite unit --suite concurrency

step "libFuzzer targets, a short run each"
CC=clang setup build-fuzz -Dfuzz=true -Dtests=disabled -Dbuildtype=debug
meson compile -C build-fuzz
scripts/fuzz.sh build-fuzz 30
echo
echo "all tests passed"
