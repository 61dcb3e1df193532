#!/usr/bin/env bash
# What an attacking tenant costs its neighbour: the neighbour's hello component is measured alone, then while
# another tenant floods the server with 10x its max_concurrency of spinning guests and memory bombs. ROUNDS
# rounds; prints the neighbour's medians and the attack/no-attack ratios.
# Usage: bench/neighbour.sh  (DURATION=5s ROUNDS=3 by default)
source "$(dirname "$0")/lib.sh"
bench_prepare
probe=$BENCH_ROOT/target/guests/probe-component.wasm
hello=$BENCH_ROOT/target/guests/hello.wasm
palisade_config <<EOF
[tenants.evil]
hosts = ["evil.localhost"]
memory = "16 MiB"
timeout = "2s"
cpu_time = "200ms"
max_concurrency = 4

[[tenants.evil.routes]]
path = "/"
component = "$probe"

[tenants.good]
hosts = ["good.localhost"]

[[tenants.good.routes]]
path = "/"
component = "$hello"
EOF
start palisade 18080 "$PALISADE" serve --config "$WORK/palisade.toml"
server=$LAST_PID
load 4 http://127.0.0.1:18080/ good.localhost >/dev/null  # warm-up

attack() {  # floods for DURATION + 2 s: 40 connections of spinning guests, 8 of memory bombs
  local secs=$((${DURATION%s} + 2))
  wrk -t1 -c40 -d${secs}s -H 'Host: evil.localhost' http://127.0.0.1:18080/loop >/dev/null 2>&1 &
  wrk -t1 -c8 -d${secs}s -H 'Host: evil.localhost' http://127.0.0.1:18080/membomb >/dev/null 2>&1 &
  wait
}

declare -A rps p50 p99
for round in $(seq "$ROUNDS"); do
  read -r r a b < <(load 4 http://127.0.0.1:18080/ good.localhost)
  rps[calm]+="$r " p50[calm]+="$a " p99[calm]+="$b "
  echo "round $round: no attack: $r req/s, p50 $a us, p99 $b us" >&2
  attack &
  attacker=$!
  sleep 1
  read -r r a b < <(load 4 http://127.0.0.1:18080/ good.localhost)
  rps[attack]+="$r " p50[attack]+="$a " p99[attack]+="$b "
  echo "round $round: under attack: $r req/s, p50 $a us, p99 $b us" >&2
  wait "$attacker"
done

printf '\n%-12s %10s %9s %9s\n' neighbour req/s p50_us p99_us
for k in calm attack; do
  printf '%-12s %10s %9s %9s\n' "$k" "$(median ${rps[$k]})" "$(median ${p50[$k]})" "$(median ${p99[$k]})"
done
echo "under attack / no attack: req/s $(ratio "$(median ${rps[attack]})" "$(median ${rps[calm]})"), p50 $(ratio "$(median ${p50[attack]})" "$(median ${p50[calm]})"), p99 $(ratio "$(median ${p99[attack]})" "$(median ${p99[calm]})")"
echo "server peak RSS: $(awk -v k="$(peak_rss_kib "$server")" 'BEGIN { printf "%.0f", k / 1024 }') MiB; limits fired: $(grep -c 'limit reached' "$WORK/palisade.log")"
