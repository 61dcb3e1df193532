#!/usr/bin/env bash
# HTTP cache conformance: Mark Nottingham's cache-tests suite (bench/cache-tests, a copy of github
# http-tests/cache-tests, BSD-3-Clause) through a palisade proxy route with `cache = true`, and, with
# ANCHORS=nginx, through Debian's nginx with `proxy_cache` for comparison. Prints the suite's score per kind
# (required / optimal / check) and the required tests that do not pass.
# Needs node >= 20 and npm (the suite's dependencies are installed into a scratch copy).
# Usage: bench/cache-tests.sh  (PALISADE_BIN=path measures another build; ANCHORS="" skips nginx)
source "$(dirname "$0")/lib.sh"
ANCHORS=${ANCHORS-nginx}
if [ -z "${PALISADE_BIN:-}" ]; then
  (cd "$BENCH_ROOT" && cargo build --release --locked --quiet)
fi
PALISADE=${PALISADE_BIN:-$PALISADE}
suite=$WORK/cache-tests
cp -r "$BENCH_ROOT/bench/cache-tests" "$suite"
(cd "$suite" && npm install --omit=dev --no-audit --no-fund --silent >/dev/null)

# The suite's origin, on port 18090.
# `exec`, so that the PID recorded is node's own and the origin stops with the script.
(cd "$suite" && exec env npm_config_port=18090 npm_config_protocol=http npm_config_pidfile="$WORK/origin.pid" \
  node test-engine/server/server.mjs >"$WORK/origin.log" 2>&1) &
PIDS+=($!)
wait_port 18090

palisade_config <<EOF
[tenants.conformance]
hosts = ["*"]
cache = { max_size = "256 MiB" }

[[tenants.conformance.routes]]
path = "/"
proxy = "http://127.0.0.1:18090"
cache = true
EOF

mkdir -p "$WORK/nginx-cache"
nginx_config <<EOF
  proxy_cache_path $WORK/nginx-cache levels=1:2 keys_zone=edge:10m max_size=256m inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:18080;
    location / {
      proxy_cache edge;
      proxy_pass http://127.0.0.1:18090;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOF

# run NAME: the suite against whatever answers on port 18080; its results in $WORK/NAME.json.
run() {
  (cd "$suite" && npm_config_base=http://127.0.0.1:18080 npm_config_id= npm_package_config_id= \
    timeout 600 node --no-warnings test-engine/cli.mjs >"$WORK/$1.json")
  echo "$1: $(cd "$suite" && node score.mjs "$WORK/$1.json" | tail -1)"
  (cd "$suite" && node score.mjs "$WORK/$1.json" | head -1)
}

for c in palisade $ANCHORS; do
  start_server "$c"
  run "$c"
  stop "$LAST_PID"
done

echo
echo "required tests palisade does not pass:"
(cd "$suite" && node --input-type=module -e "
import fs from 'fs'
import suites from './tests/index.mjs'
import { determineTestResult, resultTypes } from './test-engine/lib/results.mjs'
const results = JSON.parse(fs.readFileSync('$WORK/palisade.json', 'utf8'))
const names = new Map(Object.entries(resultTypes).map(([k, v]) => [v, k]))
for (const s of suites) for (const t of s.tests) {
  const r = names.get(determineTestResult(suites, t.id, results))
  if ((t.kind || 'required') === 'required' && r !== 'pass') console.log('  ' + r + '\t' + t.id + '\t' + t.name)
}")
