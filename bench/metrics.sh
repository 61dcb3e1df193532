#!/usr/bin/env bash
# What request metrics cost: the same 1 KiB static file served by palisade without and with an `[admin]`
# section (with it, every request is counted by tenant, route and status, with its duration and bytes, for
# /metrics and the console). Two measures:
# - instructions per request, counted by valgrind's callgrind (exact and repeatable: the 2 % target is smaller
#   than the 20 % that req/s moves between runs on these machines), REQUESTS keep-alive requests from `ab`;
# - req/s and server CPU per request with wrk, 32 connections, ROUNDS rounds, the two alternating.
# Usage: bench/metrics.sh  (REQUESTS=20000 DURATION=5s ROUNDS=5 by default)
source "$(dirname "$0")/lib.sh"
bench_prepare
REQUESTS=${REQUESTS:-20000}
ROUNDS=${ROUNDS:-5}
static_site
cp "$WORK/palisade.toml" "$WORK/bare.toml"
printf '\n[admin]\nlisten = "127.0.0.1:18081"\n' >>"$WORK/palisade.toml"
mv "$WORK/palisade.toml" "$WORK/admin.toml"
URL=http://127.0.0.1:18080/1k.bin

declare -A insn rps cpu
for c in bare admin; do
  insn[$c]=$(RUST_LOG=warn instructions_per_request "$c" "$URL" "$PALISADE" serve --config "$WORK/$c.toml")
  echo "$c: ${insn[$c]} instructions per request" >&2
done

for round in $(seq "$ROUNDS"); do
  for c in bare admin; do
    RUST_LOG=warn start "$c" 18080 "${SERVER_ON[@]}" "$PALISADE" serve --config "$WORK/$c.toml"
    load 32 "$URL" >/dev/null # warm-up
    read -r r _ _ u < <(measure "$LAST_PID" 32 "$URL")
    rps[$c]+="$r " cpu[$c]+="$u "
    echo "round $round: $c $r req/s (server CPU $u us per request)" >&2
    stop "$LAST_PID"
  done
done

printf '\n%-8s %14s %10s %9s\n' config instructions req/s cpu_us
for c in bare admin; do
  printf '%-8s %14s %10s %9s\n' "$c" "${insn[$c]}" "$(median ${rps[$c]})" "$(median ${cpu[$c]})"
done
echo "metrics cost: instructions per request $(ratio "${insn[admin]}" "${insn[bare]}")x," \
  "req/s $(ratio "$(median ${rps[admin]})" "$(median ${rps[bare]})")x," \
  "server CPU per request $(ratio "$(median ${cpu[admin]})" "$(median ${cpu[bare]})")x (admin / bare)"
