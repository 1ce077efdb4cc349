#!/bin/bash
# Installs the Debian packages batchfs needs to build, test and run.
# Does nothing when they are all present; uses sudo when not run as root.
set -euo pipefail

packages=(
    build-essential meson ninja-build pkg-config
    libfuse3-dev fuse3 libcurl4-openssl-dev libjansson-dev libcmocka-dev
    python3 ca-certificates curl jq attr tar findutils grep procps man-db strace
    openssl nghttp2-proxy
    clang "libclang-rt-$(clang_version=$(apt-cache policy clang 2>/dev/null |
        sed -n 's/^ *Candidate: 1:\([0-9]*\).*/\1/p'); echo "${clang_version:-14}")-dev"
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
