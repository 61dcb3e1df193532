#!/usr/bin/env bash
# Installs everything palisade's demo and tests need on Debian 12 (as root, with Rust installed), idempotently:
# Debian packages for building and testing (pebble: a real ACME server for the certificate tests; redis-server:
# the shared key-value store, started by the tests themselves, and redis-sentinel for their failovers; chromium
# and chromium-driver: the browser the console's tests drive), then the C -> WebAssembly guest toolchain
# (scripts/guest-setup.sh), then aioquic for the HTTP/3 tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pkgs=(curl ca-certificates build-essential pkg-config pebble redis-server redis-sentinel chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
"$root/scripts/guest-setup.sh"
# HTTP/3 tests: aioquic (PyPI), a QUIC and HTTP/3 client written apart from palisade, in its own virtualenv.
h3=$HOME/.cache/palisade-test/h3
if ! "$h3/bin/python" -c "import aioquic; assert aioquic.__version__ == '1.7.2'" 2>/dev/null; then
  echo "setup: pip install aioquic into $h3" >&2
  rm -rf "$h3" && python3 -m venv "$h3"
  "$h3/bin/pip" install --quiet --disable-pip-version-check "aioquic==1.7.2"
fi
