#!/usr/bin/env bash
# P8: many apps on one server. Two modes (MODES="copies distinct" by default):
#  - copies: N tenants, each serving its own copy of the hello component from the configuration file
#    (different file names, same bytes: prepared once, shared);
#  - distinct: N tenants, each with a deployed app of its own bytes (the hello component with a custom section
#    naming the app), as a hosting provider's customers deploy them. Deployed apps load at their first request.
# For N in COUNTS (default "1 100 1000 10000"): start-up time (the compile cache warm for what gets asked), idle
# RSS per app above a one-app server, and the latency of the first request to an app nothing has asked in this
# process (distinct: compiled once before, by an earlier process, so its code comes from the cache on disk).
# Usage: bench/density.sh
source "$(dirname "$0")/lib.sh"
bench_prepare
COUNTS=${COUNTS:-"1 100 1000 10000"}
MODES=${MODES:-"copies distinct"}
guest=$BENCH_ROOT/target/guests/hello.wasm

# copies N: N tenants t0..t(N-1), each with hosts ["tI.localhost"] and apps/appI.wasm at "/".
copies() {
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

# distinct N: N tenants t0..t(N-1) with no routes of their own, each with a deployed app "app" at "/" whose
# bytes are its own. The apps are written into the registry's directory as a deploy leaves them (a record and
# its bytes per app): deploying 10,000 apps one by one through the API would compile each, minutes of set-up
# for what is measured after a restart anyway.
distinct() {
  local n=$1
  rm -rf "$WORK/palisade-data/apps"
  python3 - "$guest" "$WORK/palisade-data/apps" "$n" <<'PY'
import hashlib, json, os, sys, time
source, root, n = open(sys.argv[1], 'rb').read(), sys.argv[2], int(sys.argv[3])
def leb(v):
    out = bytearray()
    while True:
        b, v = v & 0x7f, v >> 7
        out.append(b | 0x80 if v else b)
        if not v:
            return bytes(out)
name = b"palisade-bench"
for i in range(n):
    body = leb(len(name)) + name + f"app {i}".encode()
    wasm = source + b"\x00" + leb(len(body)) + body  # a custom section: other bytes, the same program
    sha = hashlib.sha256(wasm).hexdigest()
    tenant = os.path.join(root, f"t{i}")
    os.makedirs(tenant, exist_ok=True)
    open(os.path.join(tenant, f"app.{sha}.wasm"), "wb").write(wasm)
    record = {"tenant": f"t{i}", "name": "app", "route": "/", "sha256": sha, "size": len(wasm),
              "version": i + 1, "deployed_at": int(time.time())}
    open(os.path.join(tenant, "app.json"), "w").write(json.dumps(record))
PY
  for i in $(seq 0 $((n - 1))); do
    printf '[tenants.t%d]\nhosts = ["t%d.localhost"]\nmax_concurrency = 4\n\n' "$i" "$i"
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

# Waits until start-up's log has been written: its size holds for a second (30 s at most).
wait_idle() {
  for _ in $(seq 30); do
    size=$(stat -c %s "$WORK/palisade.log")
    sleep 1
    [ "$(stat -c %s "$WORK/palisade.log")" = "$size" ] && break
  done
}

ms() { awk -v t="$1" 'BEGIN { printf "%.2f", t * 1000 }'; }

printf '%-9s %-7s %10s %12s %16s %18s %14s\n' mode apps startup_s idle_RSS_MiB RSS_per_app_KiB first_request_ms loaded_RSS_MiB
for mode in $MODES; do
  base_rss=
  for n in $COUNTS; do
    rm -rf "$WORK/palisade-data/apps"
    "$mode" "$n"
    cold=$((n - 1))  # the last tenant: this process has not asked it anything yet
    startup
    # Warms the compile cache for the app measured (copies: every app, compiled at start-up).
    curl -s -o /dev/null -H "Host: t$cold.localhost" http://127.0.0.1:18080/
    stop "$LAST_PID"
    startup
    s=$STARTUP_S
    wait_idle
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$LAST_PID/status")
    [ -n "$base_rss" ] || base_rss=$rss
    first=$(curl -s -o /dev/null -w '%{time_total}' -H "Host: t$cold.localhost" http://127.0.0.1:18080/)
    loaded=$(awk '/^VmRSS:/ {print $2}' "/proc/$LAST_PID/status")
    per_app=$(awk -v r="$rss" -v b="$base_rss" -v n="$n" 'BEGIN { if (n > 1) printf "%.0f", (r - b) / (n - 1); else print "-" }')
    printf '%-9s %-7s %10s %12s %16s %18s %14s\n' "$mode" "$n" "$s" "$(awk -v k="$rss" 'BEGIN { printf "%.0f", k / 1024 }')" \
      "$per_app" "$(ms "$first")" "$(awk -v k="$loaded" 'BEGIN { printf "%.0f", k / 1024 }')"
    stop "$LAST_PID"
  done
done
