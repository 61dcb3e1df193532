#!/usr/bin/env bash
# Fuzzes every parser palisade owns with cargo-fuzz (libFuzzer, nightly toolchain), SECONDS_PER_TARGET (60)
# each: config, cgi_response, request_head, static_path, certificate. Seeds are in fuzz/seeds/; the growing
# corpus stays in fuzz/corpus/ (not committed). A crash leaves its input in fuzz/artifacts/TARGET/ and fails
# the script: turn it into a regression test beside the parser, then fix it.
#   scripts/fuzz.sh                 # every target
#   scripts/fuzz.sh request_head    # one target
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${SECONDS_PER_TARGET:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
targets=("$@")
((${#targets[@]})) || targets=(config cgi_response request_head static_path certificate)
cd "$root/fuzz"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${seconds}s" >&2
  log=$(mktemp)
  if ! cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $t failed (a crash leaves its input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  grep -E "^Done [0-9]+ runs" "$log" | sed "s/^/fuzz: $t: /" >&2 || true
  rm -f "$log"
done
echo "fuzz: no crash in ${#targets[@]} target(s), ${seconds}s each" >&2
