#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: exact and repeatable where req/s and
# CPU time move by 20 % between runs on these machines, so it shows what a change to the request path costs
# or saves. Four paths: palisade's HTTP stack answering "hello" with no file or guest (the server crate's
# `hello` example), a 1 KiB static file, a 1 KiB file through a proxy route to a local nginx, and the same
# through a proxy route with `cache = true`, every counted request a hit. Each server
# runs under callgrind; after a warm-up the counters are zeroed, `ab` sends REQUESTS keep-alive requests over 8
# connections, and the counters are read. Kernel work (the system calls) is not counted.
# Usage: bench/instructions.sh  (REQUESTS=5000 by default)
source "$(dirname "$0")/lib.sh"
bench_prepare
REQUESTS=${REQUESTS:-5000}
mkdir -p "$WORK/www" "$WORK/upstream/proxy" "$WORK/upstream/cached"
head -c 1024 /dev/urandom >"$WORK/www/1k.bin"
cp "$WORK/www/1k.bin" "$WORK/upstream/proxy/1k.bin"
cp "$WORK/www/1k.bin" "$WORK/upstream/cached/1k.bin"

# The proxy route forwards its path whole: the upstream serves /proxy/1k.bin.
nginx_config upstream 1 <<EOF
  server {
    listen 127.0.0.1:18090;
    root $WORK/upstream;
    location /cached/ { add_header Cache-Control "max-age=3600"; }
  }
EOF
start upstream 18090 nginx -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log"

# count NAME URL COMMAND...: prints the instructions per request COMMAND (a server on port 18080) spends on URL.
count() {
  printf '%-8s %8s instructions per request\n' "$1" "$(instructions_per_request "$@")"
}

# No guest here, so no guest pool either (valgrind could not reserve its address space).
palisade_config <<EOF
[tenants.bench]
hosts = ["*"]

[[tenants.bench.routes]]
path = "/www"
static = "$WORK/www"

[[tenants.bench.routes]]
path = "/proxy"
proxy = "http://127.0.0.1:18090"

[[tenants.bench.routes]]
path = "/cached"
proxy = "http://127.0.0.1:18090"
cache = true
EOF

count stack http://127.0.0.1:18080/ "$BENCH_ROOT/target/release/examples/hello" 127.0.0.1:18080
RUST_LOG=warn count static http://127.0.0.1:18080/www/1k.bin "$PALISADE" serve --config "$WORK/palisade.toml"
RUST_LOG=warn count proxy http://127.0.0.1:18080/proxy/1k.bin "$PALISADE" serve --config "$WORK/palisade.toml"
RUST_LOG=warn count cache http://127.0.0.1:18080/cached/1k.bin "$PALISADE" serve --config "$WORK/palisade.toml"
