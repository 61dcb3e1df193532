#!/usr/bin/env bash
# P5: a 1 KiB and a 1 MiB static file from palisade and from nginx (2 workers, keep-alive, sendfile,
# open_file_cache: nginx at its best for this). 32 connections; ROUNDS rounds, servers alternating, one at a
# time; prints medians and ratios. Usage: bench/static.sh  (DURATION=5s ROUNDS=3 by default)
source "$(dirname "$0")/lib.sh"
bench_prepare
static_site
head -c $((1 << 20)) /dev/urandom >"$WORK/www/1m.bin"

contenders=(palisade nginx)
declare -A rps p50 p99 cpu
for round in $(seq "$ROUNDS"); do
  for c in "${contenders[@]}"; do
    start_server "$c"
    for f in 1k.bin 1m.bin; do
      load 32 "http://127.0.0.1:18080/$f" >/dev/null  # warm-up
      read -r r a b u < <(measure "$LAST_PID" 32 "http://127.0.0.1:18080/$f")
      rps[$c $f]+="$r " p50[$c $f]+="$a " p99[$c $f]+="$b " cpu[$c $f]+="$u "
      echo "round $round: $c $f $r req/s (p50 ${a} us, p99 ${b} us, server CPU ${u} us per request)" >&2
    done
    stop "$LAST_PID"
  done
done

printf '\n%-10s %-7s %10s %9s %9s %9s\n' server file req/s p50_us p99_us cpu_us
for f in 1k.bin 1m.bin; do
  for c in "${contenders[@]}"; do
    printf '%-10s %-7s %10s %9s %9s %9s\n' "$c" "$f" "$(median ${rps[$c $f]})" "$(median ${p50[$c $f]})" \
      "$(median ${p99[$c $f]})" "$(median ${cpu[$c $f]})"
  done
  echo "P5 $f: palisade/nginx req/s = $(ratio "$(median ${rps[palisade $f]})" "$(median ${rps[nginx $f]})"), p99 = $(ratio "$(median ${p99[palisade $f]})" "$(median ${p99[nginx $f]})"), server CPU per request = $(ratio "$(median ${cpu[palisade $f]})" "$(median ${cpu[nginx $f]})")"
done
