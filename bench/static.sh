#!/usr/bin/env bash
# P5: a 1 KiB and a 1 MiB static file from palisade and from nginx (2 workers, keep-alive, sendfile,
# open_file_cache: nginx at its best for this). 32 connections; ROUNDS rounds, servers alternating, one at a
# time; prints medians and ratios. Usage: bench/static.sh  (DURATION=5s ROUNDS=3 by default)
source "$(dirname "$0")/lib.sh"
bench_prepare
mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/1k.bin"
head -c $((1 << 20)) /dev/urandom >"$WORK/www/1m.bin"

palisade_config <<EOF
[tenants.bench]
hosts = ["*"]

[[tenants.bench.routes]]
path = "/"
static = "$WORK/www"
EOF

cat >"$WORK/nginx.conf" <<EOF
worker_processes 2;
user $(id -un);  # the files live in a private temporary directory
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 100000;
  open_file_cache max=1000 inactive=60s;
  open_file_cache_valid 60s;
  server {
    listen 127.0.0.1:18080;
    root $WORK/www;
  }
}
EOF

contenders=(palisade nginx)
run_contender() {
  case $1 in
    palisade) start "$1" 18080 "$PALISADE" serve --config "$WORK/palisade.toml" ;;
    nginx) start "$1" 18080 nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" ;;
  esac
}

declare -A rps p50 p99
for round in $(seq "$ROUNDS"); do
  for c in "${contenders[@]}"; do
    run_contender "$c"
    for f in 1k.bin 1m.bin; do
      load 32 "http://127.0.0.1:18080/$f" >/dev/null  # warm-up
      read -r r a b < <(load 32 "http://127.0.0.1:18080/$f")
      rps[$c $f]+="$r " p50[$c $f]+="$a " p99[$c $f]+="$b "
      echo "round $round: $c $f $r req/s (p50 ${a} us, p99 ${b} us)" >&2
    done
    stop "$LAST_PID"
  done
done

printf '\n%-10s %-7s %10s %9s %9s\n' server file req/s p50_us p99_us
for f in 1k.bin 1m.bin; do
  for c in "${contenders[@]}"; do
    printf '%-10s %-7s %10s %9s %9s\n' "$c" "$f" "$(median ${rps[$c $f]})" "$(median ${p50[$c $f]})" "$(median ${p99[$c $f]})"
  done
  echo "P5 $f: palisade/nginx req/s = $(ratio "$(median ${rps[palisade $f]})" "$(median ${rps[nginx $f]})"), p99 = $(ratio "$(median ${p99[palisade $f]})" "$(median ${p99[nginx $f]})")"
done
