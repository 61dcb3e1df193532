#!/usr/bin/env bash
# Installs the benchmark anchors and load generators, idempotently: nginx, Varnish, wrk, ab and valgrind from Debian, and
# wasmtime-cli 48.0.8 (the release palisade embeds) with `cargo install`, cached in ~/.cache/palisade-bench.
set -euo pipefail
WASMTIME_VERSION=48.0.8
CACHE=${BENCH_CACHE:-$HOME/.cache/palisade-bench}
say() { echo "bench-setup: $*" >&2; }
pkgs=(nginx-light varnish wrk curl valgrind apache2-utils)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts nginx and Varnish as services on install; the benchmarks run their own instances on other ports.
for service in nginx varnish varnishncsa; do systemctl disable --now "$service" >/dev/null 2>&1 || true; done
if ! "$CACHE/bin/wasmtime" --version 2>/dev/null | grep -q "$WASMTIME_VERSION"; then
  say "cargo install wasmtime-cli $WASMTIME_VERSION (about ten minutes)"
  cargo install --locked --quiet wasmtime-cli --version "$WASMTIME_VERSION" --root "$CACHE"
fi
say "ready: $("$CACHE/bin/wasmtime" --version), $(nginx -v 2>&1), $(varnishd -V 2>&1 | head -1), wrk"
