#!/usr/bin/env bash
# TLS: handshakes and HTTPS requests, palisade (rustls, aws-lc-rs) vs nginx (OpenSSL) with 2 workers, the same
# ECDSA P-256 certificate, session cache and tickets on. Per contender and round:
#   full     new connections/s, each a TLS 1.3 full handshake (X25519, ECDSA) and one HEAD request; 32 clients
#   resumed  the same with every handshake resumed (session tickets)
#   us/hs    server CPU microseconds per full handshake (user + system, all threads or worker processes):
#            the client shares the 2 cores, so this says what a handshake costs the server itself
#   https    HTTPS 1 KiB static file req/s over keep-alive connections (wrk, 32 connections)
# ROUNDS rounds, servers alternating, one at a time; prints medians and palisade/nginx ratios.
# Usage: bench/tls.sh  (DURATION=5s ROUNDS=3 by default)
source "$(dirname "$0")/lib.sh"
bench_prepare
(cd "$BENCH_ROOT" && cargo build --release --locked --quiet --example handshakes -p palisade-tls)
HANDSHAKES=$BENCH_ROOT/target/release/examples/handshakes
secs=${DURATION%s}

cd "$WORK"
https_site 'tls_listen = ["127.0.0.1:18443"]'

nginx_config <<NGINX
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  ssl_session_tickets on;
  server {
    listen 127.0.0.1:18080;
    listen 127.0.0.1:18443 ssl http2;
    ssl_certificate $WORK/site.pem;
    ssl_certificate_key $WORK/site.key;
    root $WORK/www;
  }
NGINX

contenders=(palisade nginx)
declare -A result
for round in $(seq "$ROUNDS"); do
  for c in "${contenders[@]}"; do
    start_server "$c"
    "$HANDSHAKES" 127.0.0.1:18443 bench.test ca.pem 32 1 full /1k.bin >/dev/null # warm-up
    cpu_before=$(cpu_ms "$LAST_PID")
    full=$("$HANDSHAKES" 127.0.0.1:18443 bench.test ca.pem 32 "$secs" full /1k.bin)
    cpu=$(($(cpu_ms "$LAST_PID") - cpu_before))
    us_per=$(awk -v c="$cpu" -v n="$full" -v s="$secs" 'BEGIN { printf "%.0f", c * 1000 / (n * s) }')
    resumed=$("$HANDSHAKES" 127.0.0.1:18443 bench.test ca.pem 32 "$secs" resume /1k.bin)
    read -r https _ p99 < <(load 32 "https://127.0.0.1:18443/1k.bin")
    result[$c full]+="$full " result[$c resumed]+="$resumed " result[$c https]+="$https " result[$c p99]+="$p99 "
    result[$c us]+="$us_per "
    echo "round $round: $c full $full/s ($us_per us server CPU each), resumed $resumed/s, https $https req/s (p99 $p99 us)" >&2
    stop "$LAST_PID"
  done
done

printf '\n%-10s %10s %8s %10s %12s %10s\n' server full/s us/hs resumed/s https_req/s p99_us
for c in "${contenders[@]}"; do
  printf '%-10s %10s %8s %10s %12s %10s\n' "$c" "$(median ${result[$c full]})" "$(median ${result[$c us]})" \
    "$(median ${result[$c resumed]})" "$(median ${result[$c https]})" "$(median ${result[$c p99]})"
done
echo "TLS server CPU per full handshake: nginx/palisade = $(ratio "$(median ${result[nginx us]})" "$(median ${result[palisade us]})") (handshakes per CPU-second, palisade over nginx)"
for m in full resumed https p99; do
  echo "TLS $m: palisade/nginx = $(ratio "$(median ${result[palisade $m]})" "$(median ${result[nginx $m]})")"
done
