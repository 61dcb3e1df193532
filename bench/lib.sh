# Shared helpers for the benchmark scripts (sourced, not run). Every server runs on loopback, every load run is
# bounded in time, and every process started here is stopped on exit.
set -euo pipefail
BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/palisade-bench}
WASMTIME=$BENCH_CACHE/bin/wasmtime
PALISADE=$BENCH_ROOT/target/release/palisade
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
# Production leaves it unset; with it, every error value captures a backtrace (see the notes on wasmtime serve).
unset RUST_BACKTRACE
# PIN=1 gives the server measured a core of its own, as on a machine whose clients are elsewhere: it runs on
# CPU 1, the load generators (and an upstream, where a script has one) on CPU 0, so that neither preempts the
# other. One worker each then (palisade sees one CPU; nginx is given one). Without PIN the kernel places
# everything on both cores. Honoured by the scripts whose contenders all start through `start_server` or
# SERVER_ON: proxy.sh and static.sh.
if [ "${PIN:-}" = 1 ]; then
  SERVER_ON=(taskset -c 1) LOAD_ON=(taskset -c 0) NGINX_WORKERS=1
else
  SERVER_ON=() LOAD_ON=()
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Builds palisade (release), the guests and the open-loop load generator (palisade-loadgen), and installs the
# anchors.
bench_prepare() {
  "$BENCH_ROOT/bench/setup.sh"
  "$BENCH_ROOT/scripts/build-guests.sh"
  (cd "$BENCH_ROOT" && cargo build --release --locked --quiet &&
    cargo build --release --locked --quiet --example hello -p palisade-server &&
    cargo build --release --locked --quiet -p palisade-loadgen)
}

# palisade_config [SERVER_KEYS]: writes $WORK/palisade.toml, palisade's [server] section for the benchmarks (port
# 18080, state under $WORK, `workers = $PALISADE_WORKERS` if that is set, then SERVER_KEYS if given) followed by
# standard input (the tenants).
palisade_config() {
  local workers=${PALISADE_WORKERS:+workers = $PALISADE_WORKERS}
  { printf '[server]\nlisten = ["127.0.0.1:18080"]\ndata_dir = "%s"\n%s\n%s\n\n' "$WORK/palisade-data" "$workers" "${1:-}"
    cat; } >"$WORK/palisade.toml"
}

# https_site SERVER_KEYS: a certificate for bench.test ($WORK/site.pem, site.key, from scripts/make-cert.sh), a
# 1 KiB file ($WORK/www/1k.bin), and palisade's config serving it to any host over HTTPS on 127.0.0.1:18443,
# with SERVER_KEYS added to [server] (`tls_listen` and, say, `http3`).
https_site() {
  "$BENCH_ROOT/scripts/make-cert.sh" "$WORK" site DNS:bench.test
  mkdir -p "$WORK/www" && head -c 1024 /dev/urandom >"$WORK/www/1k.bin"
  palisade_config "$1" <<TOML
[tenants.bench]
hosts = ["*"]
tls = { cert = "$WORK/site.pem", key = "$WORK/site.key" }

[[tenants.bench.routes]]
path = "/"
static = "$WORK/www"
TOML
}

# static_site [SERVER_KEYS]: a 1 KiB file ($WORK/www/1k.bin), served by palisade (its config, with SERVER_KEYS
# added to [server]) and by nginx ($WORK/nginx.conf) to any host on 127.0.0.1:18080.
static_site() {
  mkdir -p "$WORK/www" && head -c 1024 /dev/urandom >"$WORK/www/1k.bin"
  palisade_config "${1:-}" <<TOML
[tenants.bench]
hosts = ["*"]

[[tenants.bench.routes]]
path = "/"
static = "$WORK/www"
TOML
  nginx_config <<NGINX
  server {
    listen 127.0.0.1:18080;
    root $WORK/www;
  }
NGINX
}

# nginx_config [NAME [WORKERS]]: writes $WORK/NAME.conf (default nginx.conf), nginx at its best for files:
# WORKERS workers (default $NGINX_WORKERS, or 2), keep-alive, sendfile, open_file_cache, no access log; standard
# input goes inside its http block (the server blocks, TLS settings).
nginx_config() {
  local name=${1:-nginx} workers=${2:-${NGINX_WORKERS:-2}} inside
  inside=$(cat)
  cat >"$WORK/$name.conf" <<NGINX
worker_processes $workers;
user $(id -un);  # the files live in a private temporary directory
daemon off;
pid $WORK/$name.pid;
error_log $WORK/$name-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 100000;
  open_file_cache max=1000 inactive=60s;
  open_file_cache_valid 60s;
$inside
}
NGINX
}

# start_server palisade|nginx: starts palisade on $WORK/palisade.toml or nginx on $WORK/nginx.conf
# (both answer on port 18080), on SERVER_ON's core if PIN is set. nginx runs with `access_log off`, so
# palisade runs without its access log too (RUST_LOG=warn; set PALISADE_LOG=info to measure with it).
start_server() {
  case $1 in
    palisade) RUST_LOG=${PALISADE_LOG:-warn} start "$1" 18080 "${SERVER_ON[@]}" "$PALISADE" serve \
      --config "$WORK/palisade.toml" ;;
    nginx) start "$1" 18080 "${SERVER_ON[@]}" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" ;;
  esac
}

# Waits until something answers HTTP on 127.0.0.1:PORT (at most 120 s: large guests compile at start-up).
wait_port() {
  for _ in $(seq 1200); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "nothing answered on port $1" >&2
  return 1
}

# start NAME PORT COMMAND...: runs COMMAND in the background (its log in $WORK/NAME.log) and waits for PORT.
start() {
  local name=$1 port=$2
  shift 2
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
  wait_port "$port"
}

# stop PID: stops one server started with `start`.
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# cpu_ms PID: CPU time (user + system, ms) used so far by the process and its child processes (nginx's workers).
cpu_ms() {
  local pids=("$1") ticks=0 p
  mapfile -t -O 1 pids < <(pgrep -P "$1" || true)
  for p in "${pids[@]}"; do
    ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $((ticks * 1000 / $(getconf CLK_TCK)))
}

# peak_rss_kib PID: the process's peak resident memory so far.
peak_rss_kib() {
  awk '/^VmHWM:/ {print $2}' "/proc/$1/status"
}

# load CONNECTIONS URL [HOST [WRK_ARGS...]]: one bounded wrk run (on LOAD_ON's core if PIN is set); prints
# "req/s p50_us p99_us" (fails on any non-2xx answer).
load() {
  local conns=$1 url=$2 host=${3:-}
  local args=(-t1 -c"$conns" -d"$DURATION" --latency "${@:4}")
  [ -n "$host" ] && args+=(-H "Host: $host")
  "${LOAD_ON[@]}" wrk "${args[@]}" "$url" | awk '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1000000; return v }
    /Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    /Non-2xx or 3xx responses:/ { bad = $5 }
    END { if (bad > 0) { print "non-2xx responses: " bad > "/dev/stderr"; exit 1 } printf "%.0f %.0f %.0f\n", rps, p50, p99 }'
}

# open_loop RATE URL [LOADGEN_ARGS...]: one palisade-loadgen run at RATE req/s for DURATION (on LOAD_ON's core
# if PIN is set); prints its line, `answered_per_second p50 p90 p99 p99.9 max late_percent` (latencies in µs).
open_loop() {
  "${LOAD_ON[@]}" "$BENCH_ROOT/target/release/palisade-loadgen" --rate "$1" --seconds "${DURATION%s}" "${@:3}" "$2"
}

# at_rates ROUND CONTENDER URL: an open-loop run at each rate of RATES; appends each p99 to the caller's
# `at_rate[CONTENDER RATE]` (an associative array) and reports the run. A failed run stops the script.
at_rates() {
  local rate out a b late
  for rate in $RATES; do
    out=$(open_loop "$rate" "$3")
    read -r _ a _ b _ _ late <<<"$out"
    at_rate[$2 $rate]+="$b "
    echo "round $1: $2 at $rate req/s: p50 ${a} us, p99 ${b} us (${late} % sent late)" >&2
  done
}

# measure PID CONNECTIONS URL: `load`, plus the CPU time the server PID (and its child processes) spent per
# request, in µs: prints "req/s p50_us p99_us cpu_us". The CPU figure is steadier than the rate on a machine
# whose load generator shares the cores: it says what each request costs the server, whoever won the cores.
measure() {
  local before after r a b
  before=$(cpu_ms "$1")
  read -r r a b < <(load "$2" "$3")
  after=$(cpu_ms "$1")
  echo "$r $a $b $(awk -v c=$((after - before)) -v r="$r" -v s="${DURATION%s}" \
    'BEGIN { printf "%.1f", (r > 0) ? c * 1000 / (r * s) : 0 }')"
}

# instructions_per_request NAME URL COMMAND...: runs COMMAND (a server on port 18080) under valgrind's
# callgrind; after 500 warm-up requests the counters are zeroed, `ab` sends REQUESTS keep-alive requests to URL
# over 8 connections, and the user-space instructions per request are printed (fails on a failed request).
instructions_per_request() {
  local name=$1 url=$2
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.cg" "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port 18080
  ab -q -k -n 500 -c 8 "$url" >/dev/null
  callgrind_control --zero "$pid" >/dev/null
  ab -q -k -n "$REQUESTS" -c 8 "$url" >"$WORK/$name.ab"
  callgrind_control --dump "$pid" >/dev/null
  stop "$pid"
  if ! grep -q '^Failed requests: *0$' "$WORK/$name.ab" || grep -q '^Non-2xx' "$WORK/$name.ab"; then
    echo "$name: some requests failed" >&2
    return 1
  fi
  awk -v n="$REQUESTS" '/^totals:/ { printf "%.0f\n", $2 / n }' "$WORK/$name.cg.1"
}

# median of the numbers given as arguments.
median() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B: A / B with two decimals.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'
}
