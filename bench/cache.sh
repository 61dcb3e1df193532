#!/usr/bin/env bash
# P9: cache hits. A 1 KiB response that may be cached for an hour (`Cache-Control: max-age=3600`), from an nginx
# origin on port 18090, through three caching proxies on port 18080 in turn: palisade (a proxy route with
# `cache = true`), nginx `proxy_cache` (its cache directory on tmpfs), and Varnish (`-s malloc`). Each is
# warmed (the first request stores the response), then measured with wrk over 32 connections: every request is
# a hit. ROUNDS rounds, contenders alternating, one at a time; prints medians and ratios, and the cache's CPU
# per request (the steadier figure while the load generator shares the cores).
# Then, at equal load, palisade-loadgen (bench/loadgen, as bench/proxy.sh uses it): an open loop at each rate of
# RATES, the same for every cache, latency counted from each request's due time; its p99 says what a cache's tail
# is when none is pushed past what it can serve.
# PIN=1 (see lib.sh) gives the cache a core of its own, the origin and the load generators the other.
# Usage: bench/cache.sh  (DURATION=5s ROUNDS=3 RATES="20000 40000" by default; RATES="" skips equal load)
source "$(dirname "$0")/lib.sh"
RATES=${RATES-20000 40000}
bench_prepare
mkdir -p "$WORK/www" "$WORK/nginx-cache"
head -c 1024 /dev/urandom >"$WORK/www/1k.bin"
url=http://127.0.0.1:18080/1k.bin

# The origin: its own nginx on port 18090, one worker, saying the file may be cached for an hour.
nginx_config origin 1 <<EOF
  server { listen 127.0.0.1:18090; root $WORK/www; add_header Cache-Control "max-age=3600"; }
EOF
start origin 18090 "${LOAD_ON[@]}" nginx -c "$WORK/origin.conf" -e "$WORK/origin-error.log"

palisade_config <<EOF
[tenants.bench]
hosts = ["*"]
cache = { max_size = "64 MiB" }

[[tenants.bench.routes]]
path = "/"
proxy = "http://127.0.0.1:18090"
cache = true
EOF

nginx_config <<EOF
  proxy_cache_path $WORK/nginx-cache levels=1:2 keys_zone=edge:10m max_size=64m inactive=1h use_temp_path=off;
  upstream origin {
    server 127.0.0.1:18090;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:18080;
    location / {
      proxy_cache edge;
      proxy_cache_lock on;
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      add_header Cache-Status \$upstream_cache_status;
    }
  }
EOF

cat >"$WORK/varnish.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "18090"; }
EOF

# Varnish's workers: as many threads as it likes (its defaults), its cache in memory, its state under WORK.
start_varnish() {
  start varnish 18080 "${SERVER_ON[@]}" varnishd -F -j none -a 127.0.0.1:18080 -f "$WORK/varnish.vcl" -s malloc,64m \
    -n "$WORK/varnish" -p thread_pool_min=16
}

contenders=(palisade nginx varnish)
declare -A rps p50 p99 cpu at_rate
for round in $(seq "$ROUNDS"); do
  for c in "${contenders[@]}"; do
    if [ "$c" = varnish ]; then start_varnish; else start_server "$c"; fi
    # Stored by the first request; every one after it is a hit (checked on the contender's own header).
    curl -s -o /dev/null "$url"
    status=$(curl -s -o /dev/null -D - "$url" | tr -d '\r' | awk -F': ' 'tolower($1) ~ /^(cache-status|age|x-varnish)$/ {print $1 ": " $2}')
    echo "round $round: $c second request: $(echo "$status" | tr '\n' ' ')" >&2
    load 32 "$url" >/dev/null  # warm-up
    read -r r a b u < <(measure "$LAST_PID" 32 "$url")
    rps[$c]+="$r " p50[$c]+="$a " p99[$c]+="$b " cpu[$c]+="$u "
    echo "round $round: $c $r req/s (p50 ${a} us, p99 ${b} us, CPU ${u} us per request)" >&2
    at_rates "$round" "$c" "$url"
    stop "$LAST_PID"
  done
done

printf '\n%-10s %10s %9s %9s %9s\n' cache req/s p50_us p99_us cpu_us
for c in "${contenders[@]}"; do
  printf '%-10s %10s %9s %9s %9s\n' "$c" "$(median ${rps[$c]})" "$(median ${p50[$c]})" "$(median ${p99[$c]})" \
    "$(median ${cpu[$c]})"
done
for anchor in nginx varnish; do
  echo "P9: palisade/$anchor hits req/s = $(ratio "$(median ${rps[palisade]})" "$(median ${rps[$anchor]})"), p99 = $(ratio "$(median ${p99[palisade]})" "$(median ${p99[$anchor]})"), CPU per request = $(ratio "$(median ${cpu[palisade]})" "$(median ${cpu[$anchor]})")"
done
for rate in $RATES; do
  printf '\nat %s req/s, p99 (us):' "$rate"
  for c in "${contenders[@]}"; do printf ' %s %s' "$c" "$(median ${at_rate[$c $rate]})"; done
  echo
  for anchor in nginx varnish; do
    echo "palisade/$anchor p99 at $rate req/s = $(ratio "$(median ${at_rate[palisade $rate]})" "$(median ${at_rate[$anchor $rate]})")"
  done
done
