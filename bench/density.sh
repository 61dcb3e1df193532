#!/usr/bin/env bash
# P8: N tenants, each deploying its own copy of the hello component (different file names, same bytes), for
# N = 100, 1000 and 10000 (override with COUNTS="..."). Reports start-up time (with the compile cache warm),
# idle RSS per app above a one-app server, and the latency of the first request to an app no one has asked yet.
# Usage: bench/density.sh
source "$(dirname "$0")/lib.sh"
bench_prepare
COUNTS=${COUNTS:-"1 100 1000 10000"}
guest=$BENCH_ROOT/target/guests/hello.wasm

# config N: N tenants t0..t(N-1), each with hosts ["tI.localhost"] and apps/appI.wasm at "/".
config() {
  local n=$1
  mkdir -p "$WORK/apps"
  for i in $(seq 0 $((n - 1))); do
    [ -e "$WORK/apps/app$i.wasm" ] || cp "$guest" "$WORK/apps/app$i.wasm"
  done
  for i in $(seq 0 $((n - 1))); do
    printf '[tenants.t%d]\nhosts = ["t%d.localhost"]\nmax_concurrency = 4\n[[tenants.t%d.routes]]\npath = "/"\ncomponent = "%s/apps/app%d.wasm"\n\n' \
      "$i" "$i" "$i" "$WORK" "$i"
  done | palisade_config
}

# Starts palisade and sets STARTUP_S: seconds from start to the first answered request. (Not run in a
# subshell: `start` records the server's PID for `stop` and the exit trap.)
startup() {
  local t0 t1
  t0=$(date +%s%N)
  start palisade 18080 "$PALISADE" serve --config "$WORK/palisade.toml"
  t1=$(date +%s%N)
  STARTUP_S=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }')
}

printf '%-7s %10s %12s %16s %18s\n' apps startup_s idle_RSS_MiB RSS_per_app_KiB first_request_ms
base_rss=
for n in $COUNTS; do
  config "$n"
  startup  # warms the compile cache; measured on the second start
  stop "$LAST_PID"
  startup
  s=$STARTUP_S
  # Idle means start-up's log (two lines per app) has been written: its size holds for a second (30 s at most).
  for _ in $(seq 30); do
    size=$(stat -c %s "$WORK/palisade.log")
    sleep 1
    [ "$(stat -c %s "$WORK/palisade.log")" = "$size" ] && break
  done
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$LAST_PID/status")
  [ -n "$base_rss" ] || base_rss=$rss
  cold=$((n - 1))  # the last tenant: nothing has asked it anything yet
  first=$(curl -s -o /dev/null -w '%{time_total}' -H "Host: t$cold.localhost" http://127.0.0.1:18080/)
  per_app=$(awk -v r="$rss" -v b="$base_rss" -v n="$n" 'BEGIN { if (n > 1) printf "%.0f", (r - b) / (n - 1); else print "-" }')
  printf '%-7s %10s %12s %16s %18s\n' "$n" "$s" "$(awk -v k="$rss" 'BEGIN { printf "%.0f", k / 1024 }')" \
    "$per_app" "$(awk -v t="$first" 'BEGIN { printf "%.2f", t * 1000 }')"
  stop "$LAST_PID"
done
