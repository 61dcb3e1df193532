#!/usr/bin/env bash
# P6: reverse proxy to a local upstream, palisade vs nginx `proxy_pass` with upstream keep-alive. The upstream is
# one nginx worker answering a 1 KiB file (the same for all); each proxy adds the usual forwarding headers.
# A third contender, `floor`, is the least a hyper proxy does (crates/proxy/examples/bare_proxy.rs), with as
# many workers as palisade.
# 32 connections; ROUNDS rounds, proxies alternating, one at a time; prints medians and ratios.
# Two measures per round:
# - saturation: wrk, a closed loop (each connection sends when its last answer arrives), so each proxy is
#   measured at the rate it reaches;
# - equal load: palisade-loadgen (bench/loadgen), an open loop at each rate of RATES, the same for every
#   proxy, with latency counted from each request's due time.
# FLOOR_SPIN_NS=N makes the floor spin N ns of CPU per request: a calibration, to see what that much extra
# work per request does to the latency.
# PIN=1 (see lib.sh) runs each proxy with one worker on a core of its own, the upstream and the load generators
# on the other: on a 2-core machine, the measure of a proxy that is not preempted by its clients.
# Usage: bench/proxy.sh  (DURATION=5s ROUNDS=3 RATES="10000 20000" by default; RATES="" skips equal load)
source "$(dirname "$0")/lib.sh"
RATES=${RATES-10000 20000}
bench_prepare
(cd "$BENCH_ROOT" && cargo build --release --locked --quiet --example bare_proxy -p palisade-proxy)
mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/1k.bin"

# The upstream: its own nginx on port 18090, one worker.
nginx_config upstream 1 <<EOF
  server { listen 127.0.0.1:18090; root $WORK/www; }
EOF
start upstream 18090 "${LOAD_ON[@]}" nginx -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log"

palisade_config <<EOF
[tenants.bench]
hosts = ["*"]

[[tenants.bench.routes]]
path = "/"
proxy = "http://127.0.0.1:18090"
EOF

nginx_config <<EOF
  upstream backend {
    server 127.0.0.1:18090;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:18080;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
EOF

contenders=(palisade nginx floor)
declare -A rps p50 p99 cpu at_rate
for round in $(seq "$ROUNDS"); do
  for c in "${contenders[@]}"; do
    if [ "$c" = floor ]; then
      start floor 18080 "${SERVER_ON[@]}" "$BENCH_ROOT/target/release/examples/bare_proxy" 127.0.0.1:18080 \
        127.0.0.1:18090 ${PALISADE_WORKERS:+"$PALISADE_WORKERS"}
    else
      start_server "$c"
    fi
    load 32 "http://127.0.0.1:18080/1k.bin" >/dev/null  # warm-up
    read -r r a b u < <(measure "$LAST_PID" 32 "http://127.0.0.1:18080/1k.bin")
    rps[$c]+="$r " p50[$c]+="$a " p99[$c]+="$b " cpu[$c]+="$u "
    echo "round $round: $c $r req/s (p50 ${a} us, p99 ${b} us, proxy CPU ${u} us per request)" >&2
    at_rates "$round" "$c" http://127.0.0.1:18080/1k.bin
    stop "$LAST_PID"
  done
done

printf '\n%-10s %10s %9s %9s %9s\n' proxy req/s p50_us p99_us cpu_us
for c in "${contenders[@]}"; do
  printf '%-10s %10s %9s %9s %9s\n' "$c" "$(median ${rps[$c]})" "$(median ${p50[$c]})" "$(median ${p99[$c]})" \
    "$(median ${cpu[$c]})"
done
echo "P6: palisade/nginx req/s = $(ratio "$(median ${rps[palisade]})" "$(median ${rps[nginx]})"), p99 = $(ratio "$(median ${p99[palisade]})" "$(median ${p99[nginx]})"), proxy CPU per request = $(ratio "$(median ${cpu[palisade]})" "$(median ${cpu[nginx]})")"
echo "floor/nginx req/s = $(ratio "$(median ${rps[floor]})" "$(median ${rps[nginx]})"), palisade/floor = $(ratio "$(median ${rps[palisade]})" "$(median ${rps[floor]})")"
for rate in $RATES; do
  printf '\nat %s req/s, p99 (us):' "$rate"
  for c in "${contenders[@]}"; do printf ' %s %s' "$c" "$(median ${at_rate[$c $rate]})"; done
  echo
  echo "palisade/nginx p99 at $rate req/s = $(ratio "$(median ${at_rate[palisade $rate]})" "$(median ${at_rate[nginx $rate]})")"
done
