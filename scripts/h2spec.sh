#!/usr/bin/env bash
# Runs the h2spec HTTP/2 conformance suite (github summerwind/h2spec) against palisade's h2c listener (prior
# knowledge) and its TLS listener (ALPN h2) on loopback, and prints each run's summary and failures. Its
# requests go to a component that reads the whole request body before it answers (the probe's /echo): a
# route that answers at once (a static file) may finish the stream before the malformed frames a test sends
# after the request head arrive, which RFC 9113 section 8.1 allows but h2spec counts as a failure. h2spec is not packaged by Debian: give its binary as H2SPEC=/path/to/h2spec (build it
# with `go build` from its sources). Builds palisade (release); records go to docs/http-differential.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
h2spec=${H2SPEC:?set H2SPEC to the h2spec binary}
(cd "$root" && cargo build --release --locked --quiet)
[ -s "$root/target/guests/probe-component.wasm" ] || "$root/scripts/build-guests.sh" >/dev/null

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/www" && echo ok >"$work/www/index.html"
"$root/scripts/make-cert.sh" "$work/certs" h2spec "DNS:localhost,IP:127.0.0.1" >/dev/null
cat >"$work/palisade.toml" <<TOML
[server]
listen = ["127.0.0.1:18191"]
tls_listen = ["127.0.0.1:18192"]
data_dir = "$work/data"

[tenants.any]
hosts = ["*"]
tls = { cert = "$work/certs/h2spec.pem", key = "$work/certs/h2spec.key" }

[[tenants.any.routes]]
path = "/"
static = "$work/www"

[[tenants.any.routes]]
path = "/echo"
component = "$root/target/guests/probe-component.wasm"
TOML
"$root/target/release/palisade" serve --config "$work/palisade.toml" >"$work/palisade.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fsS -o /dev/null http://127.0.0.1:18191/ 2>/dev/null && break
  sleep 0.1
done

status=0
for listener in "h2c -p 18191" "tls -p 18192 -t -k"; do
  read -r name args <<<"$listener"
  echo "== h2spec, $name listener"
  # shellcheck disable=SC2086 # the arguments are words
  "$h2spec" -h 127.0.0.1 $args -P /echo -o 5 -j "$work/$name.xml" >"$work/$name.txt" 2>&1 || status=1
  if grep -q '^Failures:' "$work/$name.txt"; then sed -n '/^Failures:/,$p' "$work/$name.txt"; else tail -n 1 "$work/$name.txt"; fi
done
exit "$status"
