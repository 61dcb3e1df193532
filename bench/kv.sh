#!/usr/bin/env bash
# KV: key-value operations through a component (the kv-probe guest, a fresh instance per request), on the
# embedded redb store and on Redis (a redis-server started here, no persistence). Each store: a `get` of one
# small key, a `set` of a 64-byte value to one of 1,000 keys, and an atomic `incr` of one counter (every request
# contends on it). 32 connections; ROUNDS rounds, stores alternating; prints medians and the Redis/redb ratio.
# Usage: bench/kv.sh  (DURATION=5s ROUNDS=3 by default)
source "$(dirname "$0")/lib.sh"
bench_prepare
command -v redis-server >/dev/null || "$BENCH_ROOT/scripts/setup.sh"
cp "$BENCH_ROOT/target/guests/kv-probe.wasm" "$WORK/"

# store_config redb|redis: palisade's config with the probe at / and the store's [kv] section.
store_config() {
  local kv="backend = \"redb\"
path = \"$WORK/kv.redb\""
  [ "$1" = redis ] && kv='backend = "redis://127.0.0.1:18079/0"'
  palisade_config <<EOF
[kv]
$kv

[tenants.bench]
hosts = ["*"]

[[tenants.bench.routes]]
path = "/"
component = "$WORK/kv-probe.wasm"
EOF
}

redis-server --port 18079 --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p 18079 ping >/dev/null 2>&1 && break; sleep 0.1; done

# A wrk script sending the set to one of 1,000 keys, in turn.
cat >"$WORK/set.lua" <<'LUA'
local n = 0
request = function()
  n = (n + 1) % 1000
  return wrk.format("GET", "/?op=set&key=k" .. n .. "&value=" .. string.rep("v", 64))
end
LUA

stores=(redb redis)
ops=(get set incr)
declare -A rps p99
for round in $(seq "$ROUNDS"); do
  for s in "${stores[@]}"; do
    store_config "$s"
    start_server palisade
    curl -s -o /dev/null "http://127.0.0.1:18080/?op=set&key=small&value=hello"
    for op in "${ops[@]}"; do
      case $op in
        get) url="http://127.0.0.1:18080/?op=get&key=small"; extra=() ;;
        set) url="http://127.0.0.1:18080/"; extra=(-s "$WORK/set.lua") ;;
        incr) url="http://127.0.0.1:18080/?op=incr&key=counter"; extra=() ;;
      esac
      out=$(load 32 "$url" "" "${extra[@]}")
      read -r r _ q <<<"$out"
      rps[$s $op]+="$r " p99[$s $op]+="$q "
      echo "round $round: $s $op $r req/s (p99 $q us)" >&2
    done
    stop "$LAST_PID"
  done
done

printf '\n%-6s %-5s %10s %9s\n' store op req/s p99_us
for op in "${ops[@]}"; do
  for s in "${stores[@]}"; do
    printf '%-6s %-5s %10s %9s\n' "$s" "$op" "$(median ${rps[$s $op]})" "$(median ${p99[$s $op]})"
  done
  echo "KV $op: redis/redb req/s = $(ratio "$(median ${rps[redis $op]})" "$(median ${rps[redb $op]})")"
done
