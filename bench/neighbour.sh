#!/usr/bin/env bash
# What attacking tenants cost their neighbour. Each scenario measures the neighbour alone, then under attack,
# ROUNDS times, and prints medians and ratios:
#   floor      the machine's own floor: the neighbour beside two busy loops at the lowest OS priority (no
#              attacker in palisade): what any background CPU work costs a neighbour on this machine;
#   one        one tenant floods 10x its max_concurrency of spinning guests (40 connections) and memory bombs;
#   ten        ten tenants each flood 4 connections of spinning guests;
#   refused    one tenant's slots all held by sleeping guests while 100 connections send it more: all but those
#              few are refused with 503, once 64 wait (max_queue) at once, the others after queue_timeout; what a
#              flood of refusals costs the neighbour (the summary gives the refusals a second);
#   unserved   its anchor: the same 100 connections sending a host palisade does not serve (404 at once), so a
#              flood of requests that run nothing at all;
#   static     the neighbour's static file, under `one`'s attack;
#   proxy      the neighbour's reverse-proxy route (to an nginx upstream), under `one`'s attack;
#   static-floor, proxy-floor
#              the machine's floor for those two routes: `floor`'s two busy loops instead of the attack. The
#              summary then also gives the attacked p99 over the floor's: what the attack costs beyond what
#              any background work on these cores costs;
#   static-spinners, static-bombs (only when named in SCENARIOS)
#              the static file under each half of `one`'s attack alone: what each part costs;
# then, once each:
#   alone      the attacker alone (no neighbour traffic): spinning guests finished per second, against what the
#              machine's cores allow (cores / cpu_time): is the scheduler work-conserving?
#   memory     20 tenants (memory = 64 MiB, max_concurrency = 16) all flooding memory bombs under
#              max_guest_memory = 512 MiB: the server's peak RSS, and the neighbour's answers meanwhile.
# Usage: bench/neighbour.sh  (DURATION=5s ROUNDS=3 by default; SCENARIOS="floor one ..." picks some;
# PALISADE_BIN=path measures another build; RATE=5000 measures the neighbour at that fixed rate, open loop;
# ATTACK_NICE=19 runs the attack's load generators at that nice value: on a real edge the attacker's clients
# are other machines, while here they share the two cores with the neighbour's)
source "$(dirname "$0")/lib.sh"
bench_prepare
PALISADE=${PALISADE_BIN:-$PALISADE}
SCENARIOS=${SCENARIOS:-floor one ten refused unserved static static-floor proxy proxy-floor alone memory}
probe=$BENCH_ROOT/target/guests/probe-component.wasm
hello=$BENCH_ROOT/target/guests/hello.wasm
secs=${DURATION%s}
mkdir -p "$WORK/www/up"
head -c 1024 /dev/urandom >"$WORK/www/1k.bin"
cp "$WORK/www/1k.bin" "$WORK/www/up/1k.bin"  # the proxy route passes its path on as it is

# evil_tenant NAME [KEYS]: a tenant running the probe component, limited as a hosting plan would.
evil_tenant() {
  cat <<EOF
[tenants.$1]
hosts = ["$1.localhost"]
memory = "16 MiB"
timeout = "2s"
cpu_time = "200ms"
max_concurrency = 4
${2:-}
[[tenants.$1.routes]]
path = "/"
component = "$probe"

EOF
}

# The neighbour: hello at /, a static file under /files, a proxy to the upstream under /up.
good_tenant() {
  cat <<EOF
[tenants.good]
hosts = ["good.localhost"]

[[tenants.good.routes]]
path = "/files"
static = "$WORK/www"

[[tenants.good.routes]]
path = "/up"
proxy = "http://127.0.0.1:18090"

[[tenants.good.routes]]
path = "/"
component = "$hello"

[admin]
listen = "127.0.0.1:18901"
EOF
}

# flood SECONDS CONNS PATH HOST...: wrk floods on each host at once, for SECONDS.
flood() {
  local s=$1 c=$2 path=$3 host pids=()
  shift 3
  for host in "$@"; do
    nice -n "${ATTACK_NICE:-0}" wrk -t1 -c"$c" -d"${s}s" -H "Host: $host" "http://127.0.0.1:18080$path" >/dev/null 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
}

# Attacks, each lasting DURATION + 2 s.
attack_spinners() { flood $((secs + 2)) 40 /loop evil.localhost; }
attack_bombs() { flood $((secs + 2)) 8 /membomb evil.localhost; }
attack_one() {
  attack_spinners &
  attack_bombs &
  wait
}
attack_refused() { flood $((secs + 2)) 100 /sleep evil.localhost; }
attack_unserved() { flood $((secs + 2)) 100 / nobody.localhost; }
attack_ten() { flood $((secs + 2)) 4 /loop $(for i in $(seq 0 9); do echo "evil$i.localhost"; done); }
attack_floor() {
  local i
  for i in 1 2; do timeout $((secs + 2)) chrt --idle 0 sh -c 'while :; do :; done' & done
  wait
}

declare -A rps p50 p99
# neighbour_load URL: the neighbour's load, printing `req/s p50 p99`: wrk's closed loop over 4 connections, or
# with RATE set, palisade-loadgen's open loop at RATE req/s (latency from each request's due time, so a stall
# counts for every request it held back, and calm and attacked runs see the same load).
neighbour_load() {
  if [ -z "${RATE:-}" ]; then
    load 4 "$1" good.localhost
    return
  fi
  local out
  out=$(open_loop "$RATE" "$1" --connections 4 --host good.localhost)
  awk '{ printf "%.0f %.0f %.0f\n", $1, $2, $4 }' <<<"$out"
}

# rounds SCENARIO URL ATTACK: the neighbour's calm and attacked rounds.
rounds() {
  local name=$1 url=$2 attack=$3 round r a b attacker
  load 4 "$url" good.localhost >/dev/null  # warm-up
  for round in $(seq "$ROUNDS"); do
    read -r r a b < <(neighbour_load "$url")
    rps[$name-calm]+="$r " p50[$name-calm]+="$a " p99[$name-calm]+="$b "
    echo "$name, round $round: calm: $r req/s, p50 $a us, p99 $b us" >&2
    $attack &
    attacker=$!
    sleep 1
    read -r r a b < <(neighbour_load "$url")
    rps[$name-attack]+="$r " p50[$name-attack]+="$a " p99[$name-attack]+="$b "
    echo "$name, round $round: attacked: $r req/s, p50 $a us, p99 $b us" >&2
    wait "$attacker"
  done
}

# evil_refusals: requests refused to the tenant `evil` for want of a slot so far (from /metrics).
evil_refusals() {
  curl -s http://127.0.0.1:18901/metrics | awk '
    /^palisade_limits_total\{/ && /tenant="evil"/ && /kind="max_concurrency"/ { n += $2 }
    END { printf "%d\n", n }'
}

# serve: (re)starts palisade on $WORK/palisade.toml.
server=
serve() {
  [ -n "$server" ] && stop "$server"
  RUST_LOG=${PALISADE_LOG:-warn} start palisade 18080 "$PALISADE" serve --config "$WORK/palisade.toml"
  server=$LAST_PID
}

wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }

if wants static || wants static-floor || wants static-spinners || wants static-bombs || wants proxy || wants proxy-floor; then
  nginx_config upstream 1 <<EOF
  server { listen 127.0.0.1:18090; root $WORK/www; }
EOF
  start upstream 18090 nginx -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log"
fi

{ evil_tenant evil; for i in $(seq 0 9); do evil_tenant "evil$i"; done; good_tenant; } | palisade_config
serve
wants floor && rounds floor http://127.0.0.1:18080/ attack_floor
wants one && rounds one http://127.0.0.1:18080/ attack_one
wants ten && rounds ten http://127.0.0.1:18080/ attack_ten
wants unserved && rounds unserved http://127.0.0.1:18080/ attack_unserved
if wants refused; then
  refused_before=$(evil_refusals)
  rounds refused http://127.0.0.1:18080/ attack_refused
  refused_rate=$(awk -v n=$(($(evil_refusals) - refused_before)) -v s=$((ROUNDS * (secs + 2))) 'BEGIN { printf "%.0f", n / s }')
fi
wants static && rounds static http://127.0.0.1:18080/files/1k.bin attack_one
wants static-floor && rounds static-floor http://127.0.0.1:18080/files/1k.bin attack_floor
wants static-spinners && rounds static-spinners http://127.0.0.1:18080/files/1k.bin attack_spinners
wants static-bombs && rounds static-bombs http://127.0.0.1:18080/files/1k.bin attack_bombs
wants proxy && rounds proxy http://127.0.0.1:18080/up/1k.bin attack_one
wants proxy-floor && rounds proxy-floor http://127.0.0.1:18080/up/1k.bin attack_floor
limits=$(grep -c 'limit reached' "$WORK/palisade.log" || true)

printf '\n%-24s %10s %9s %9s\n' neighbour req/s p50_us p99_us
for s in $SCENARIOS; do
  [ -n "${rps[$s-calm]:-}" ] || continue
  for k in calm attack; do
    printf '%-24s %10s %9s %9s\n' "$s-$k" "$(median ${rps[$s-$k]})" "$(median ${p50[$s-$k]})" "$(median ${p99[$s-$k]})"
  done
  echo "$s: attacked / calm: req/s $(ratio "$(median ${rps[$s-attack]})" "$(median ${rps[$s-calm]})"), p50 $(ratio "$(median ${p50[$s-attack]})" "$(median ${p50[$s-calm]})"), p99 $(ratio "$(median ${p99[$s-attack]})" "$(median ${p99[$s-calm]})")"
done
for s in static proxy; do
  [ -n "${p99[$s-attack]:-}" ] && [ -n "${p99[$s-floor-attack]:-}" ] || continue
  echo "$s: attacked p99 / the floor's (two busy loops): $(ratio "$(median ${p99[$s-attack]})" "$(median ${p99[$s-floor-attack]})")"
done
[ -n "${refused_rate:-}" ] && echo "refused: the attacker got $refused_rate refusals (503) a second"
[ -n "${rps[one-calm]:-}" ] && echo "server peak RSS: $((($(peak_rss_kib "$server") + 1023) / 1024)) MiB; limits fired: $limits"
# A neighbour's short guests belong on the connection workers: any moved to the background lane waited there
# behind the attackers' (the stalls of hundreds of milliseconds that a short guest preempted across two ticks
# once caused).
curl -s http://127.0.0.1:18901/metrics | awk -F'[ ]' '
  /^palisade_guest_demotions_total\{tenant="good"\}/ { moved = $2 }
  /^palisade_guest_wait_seconds_total\{tenant="good"\}/ { waited = $2 }
  END { printf "the neighbour'"'"'s guests moved to the background lane: %d, waiting %.3f s in all\n", moved, waited }'

if wants alone; then
  # Spinning guests stop at cpu_time (200 ms), each logging it: the cores allow at most cores / 0.2 s of them a
  # second. (The attacker's other requests wait in line and get 503: its max_concurrency is 4.)
  stopped() { grep -c 'limit="cpu_time"' "$WORK/palisade.log" || true; }
  before=$(stopped) cpu_before=$(cpu_ms "$server")
  flood "$secs" 40 /loop evil.localhost
  done_rate=$(awk -v n=$(($(stopped) - before)) -v s="$secs" 'BEGIN { printf "%.2f", n / s }')
  used=$(awk -v c=$(($(cpu_ms "$server") - cpu_before)) -v s="$secs" 'BEGIN { printf "%.2f", c / 1000 / s }')
  cores=$(nproc)
  echo "attacker alone: $done_rate spinning guests finished/s; the cores allow $((cores * 5)); work done: $(ratio "$done_rate" $((cores * 5))); the server used $used of $cores cores"
fi

if wants memory; then
  {
    for i in $(seq 0 19); do
      cat <<EOF
[tenants.bomb$i]
hosts = ["bomb$i.localhost"]
memory = "64 MiB"
max_concurrency = 16
timeout = "2s"
[[tenants.bomb$i.routes]]
path = "/"
component = "$probe"

EOF
    done
    good_tenant
  } | palisade_config 'max_guest_memory = "512 MiB"'
  serve
  before=$(peak_rss_kib "$server")
  flood $((secs + 2)) 16 /membomb $(for i in $(seq 0 19); do echo "bomb$i.localhost"; done) &
  bombs=$!
  sleep 1
  out=$(wrk -t1 -c4 -d"$DURATION" --latency -H 'Host: good.localhost' http://127.0.0.1:18080/)
  wait "$bombs"
  kill -0 "$server" || { echo "the server died under the memory flood" >&2; exit 1; }
  echo "memory flood: peak RSS $((before / 1024)) MiB before, $(($(peak_rss_kib "$server") / 1024)) MiB during;" \
    "neighbour: $(awk '/Requests\/sec:/ { r = $2 } $1 == "99%" { p = $2 } /Non-2xx/ { bad = $5 } END { printf "%s req/s, p99 %s, non-2xx %d", r, p, bad }' <<<"$out");" \
    "budget refusals logged: $(grep -c 'max_guest_memory' "$WORK/palisade.log" || true)"
fi
