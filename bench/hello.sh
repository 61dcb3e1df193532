#!/usr/bin/env bash
# P1, P2, P3: the same C hello wasi:http component on palisade (a fresh instance per request) and on
# `wasmtime serve` (default, tuned pooling, and instance reuse), plus palisade's HTTP stack with no WebAssembly
# (the physical limit). 32 connections, then 1 connection; ROUNDS rounds, contenders alternating, one server at
# a time; prints medians and ratios. Usage: bench/hello.sh  (DURATION=5s ROUNDS=3 by default)
# wasmtime serve writes no access log, so palisade runs without its own (RUST_LOG=warn); PALISADE_LOG=info
# measures with it.
source "$(dirname "$0")/lib.sh"
bench_prepare
guest=$BENCH_ROOT/target/guests/hello.wasm
palisade_config <<EOF
[tenants.bench]
hosts = ["*"]
max_concurrency = 1000

[[tenants.bench.routes]]
path = "/"
component = "$guest"
EOF

# The flags that make wasmtime serve fast (fresh instance per request), from the performance notes.
tuned=(-O pooling-allocator=y -O pooling-memory-keep-resident=4194304 -O pooling-table-keep-resident=65536
  -O pooling-async-stack-keep-resident=2097152 -O pooling-decommit-batch-size=64 -O pooling-pagemap-scan=y
  -O pooling-total-memories=1000 -O pooling-total-core-instances=1000 -O pooling-total-component-instances=1000
  -O pooling-total-tables=1000 -O pooling-total-stacks=1000 -O pooling-max-memory-size=67108864)

contenders=(hyper-hello palisade serve-default serve-tuned serve-reuse)
run_contender() {  # NAME -> starts it on port 18080
  case $1 in
    hyper-hello) start "$1" 18080 "$BENCH_ROOT/target/release/examples/hello" 127.0.0.1:18080 ;;
    palisade) start_server palisade ;;
    serve-default) start "$1" 18080 "$WASMTIME" serve --addr 127.0.0.1:18080 "$guest" ;;
    serve-tuned) start "$1" 18080 "$WASMTIME" serve "${tuned[@]}" --addr 127.0.0.1:18080 "$guest" ;;
    serve-reuse) start "$1" 18080 "$WASMTIME" serve "${tuned[@]}" --max-instance-reuse-count 1000 \
      --addr 127.0.0.1:18080 "$guest" ;;
  esac
}

declare -A rps p50 p99 lat50 lat99 rss
for round in $(seq "$ROUNDS"); do
  for c in "${contenders[@]}"; do
    run_contender "$c"
    load 32 http://127.0.0.1:18080/ >/dev/null  # warm-up
    read -r r a b < <(load 32 http://127.0.0.1:18080/)
    read -r _ l50 l99 < <(load 1 http://127.0.0.1:18080/)
    rps[$c]+="$r " p50[$c]+="$a " p99[$c]+="$b " lat50[$c]+="$l50 " lat99[$c]+="$l99 "
    rss[$c]+="$(peak_rss_kib "$LAST_PID") "
    stop "$LAST_PID"
    echo "round $round: $c $r req/s (p50 ${a} us, p99 ${b} us); 1 connection p50 ${l50} us, p99 ${l99} us" >&2
  done
done

m() { median ${1}; }
base=$(m "${rps[palisade]}")
printf '\n%-14s %10s %9s %9s %12s %12s %10s %16s\n' contender req/s p50_us p99_us 1conn_p50_us 1conn_p99_us rss_MiB "palisade/this"
for c in "${contenders[@]}"; do
  r=$(m "${rps[$c]}")
  printf '%-14s %10s %9s %9s %12s %12s %10s %16s\n' "$c" "$r" "$(m "${p50[$c]}")" "$(m "${p99[$c]}")" \
    "$(m "${lat50[$c]}")" "$(m "${lat99[$c]}")" "$(awk -v k="$(m "${rss[$c]}")" 'BEGIN { printf "%.0f", k / 1024 }')" \
    "$(ratio "$base" "$r")"
done
echo
echo "P2: palisade component hello = $(awk -v a="$base" -v b="$(m "${rps[hyper-hello]}")" 'BEGIN { printf "%.0f", 100 * a / b }') % of the non-Wasm hello"
echo "P3: 1-connection p50 palisade / non-Wasm hello = $(ratio "$(m "${lat50[palisade]}")" "$(m "${lat50[hyper-hello]}")")"
