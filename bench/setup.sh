#!/usr/bin/env bash
# Installs the benchmark anchors and load generators, idempotently: nginx, Varnish, Caddy, wrk, ab and valgrind from
# Debian, and with `cargo install`, cached in ~/.cache/palisade-bench: wasmtime-cli 48.0.8 (the release palisade
# embeds) and oha with HTTP/3 (the load generator for bench/http3.sh).
set -euo pipefail
WASMTIME_VERSION=48.0.8
OHA_VERSION=1.16.0
CACHE=${BENCH_CACHE:-$HOME/.cache/palisade-bench}
say() { echo "bench-setup: $*" >&2; }
pkgs=(nginx-light varnish caddy wrk curl valgrind apache2-utils)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts nginx, Varnish and Caddy as services on install; the benchmarks run their own instances on other ports.
for service in nginx varnish varnishncsa caddy; do systemctl disable --now "$service" >/dev/null 2>&1 || true; done
if ! "$CACHE/bin/wasmtime" --version 2>/dev/null | grep -q "$WASMTIME_VERSION"; then
  say "cargo install wasmtime-cli $WASMTIME_VERSION (about ten minutes)"
  cargo install --locked --quiet wasmtime-cli --version "$WASMTIME_VERSION" --root "$CACHE"
fi
if ! "$CACHE/bin/oha" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
  say "cargo install oha $OHA_VERSION with HTTP/3 (a few minutes)"
  cargo install --locked --quiet oha --version "$OHA_VERSION" --features http3 --root "$CACHE"
fi
say "ready: $("$CACHE/bin/wasmtime" --version), $(nginx -v 2>&1), $(varnishd -V 2>&1 | head -1), caddy $(caddy version), $("$CACHE/bin/oha" --version), wrk"
