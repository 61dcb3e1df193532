#!/usr/bin/env bash
# P4: a CGI hello program, each request in a fresh instance inside palisade, against the classic CGI model of
# one process per request: `wasmtime run` of the same module, precompiled (its fastest form), exec'd per
# request with the CGI environment. Both sequential (one request at a time) and, for palisade, 32 connections.
# Usage: bench/cgi.sh  (DURATION=5s ROUNDS=3 by default)
source "$(dirname "$0")/lib.sh"
bench_prepare
guest=$BENCH_ROOT/target/guests/hello-cgi.wasm
"$WASMTIME" compile "$guest" -o "$WORK/hello-cgi.cwasm"
palisade_config <<TOML
[tenants.bench]
hosts = ["*"]

[[tenants.bench.routes]]
path = "/"
cgi = "$guest"
TOML

# One CGI request the classic way: a new process with the meta-variables in its environment.
process_per_request() {
  local n=$1 start end
  start=$(date +%s%N)
  for _ in $(seq "$n"); do
    REQUEST_METHOD=GET QUERY_STRING= SCRIPT_NAME= PATH_INFO=/ SERVER_PROTOCOL=HTTP/1.1 GATEWAY_INTERFACE=CGI/1.1 \
      "$WASMTIME" run --allow-precompiled "$WORK/hello-cgi.cwasm" >/dev/null
  done
  end=$(date +%s%N)
  awk -v n="$n" -v ns=$((end - start)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }'
}

declare -a seq_p seq_w par_p
for round in $(seq "$ROUNDS"); do
  start palisade 18080 "$PALISADE" serve --config "$WORK/palisade.toml"
  load 1 http://127.0.0.1:18080/ >/dev/null
  read -r r1 _ _ < <(load 1 http://127.0.0.1:18080/)
  read -r r32 _ _ < <(load 32 http://127.0.0.1:18080/)
  stop "$LAST_PID"
  w=$(process_per_request 200)
  seq_p+=("$r1") par_p+=("$r32") seq_w+=("$w")
  echo "round $round: palisade $r1 req/s sequential, $r32 req/s at 32 connections; wasmtime run per request $w req/s" >&2
done
p=$(median "${seq_p[@]}") w=$(median "${seq_w[@]}") p32=$(median "${par_p[@]}")
echo
echo "palisade CGI, sequential:          $p req/s"
echo "palisade CGI, 32 connections:      $p32 req/s"
echo "wasmtime run per request (cwasm):  $w req/s"
echo "P4: palisade / process-per-request = $(ratio "$p" "$w") sequential, $(ratio "$p32" "$w") with 32 connections"
