#!/usr/bin/env bash
# Runs slowhttptest (Debian package) against a local palisade with its default [server] limits: slowloris
# (slow headers), slow body (R-U-Dead-Yet) against a CGI program that reads the body, and slow read against a
# 16 MiB file. While each attack runs, a well-behaved client makes a request every 200 ms; the script prints
# slowhttptest's verdict and how many of the good requests failed, and fails if any did. About two minutes.
#   scripts/slowhttp.sh            (LENGTH=30 seconds per attack, CONNECTIONS=1000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
length=${LENGTH:-30}
connections=${CONNECTIONS:-1000}
port=${PORT:-18280}
dpkg -s slowhttptest >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slowhttptest >/dev/null
}
"$root/scripts/build-guests.sh" >/dev/null
(cd "$root" && cargo build --release --locked --quiet)

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/www" && echo calm >"$work/www/index.html" && head -c $((16 << 20)) /dev/zero >"$work/www/big.bin"
cp "$root/examples/demo/apps/echo-cgi.wasm" "$work/echo.wasm"
cat >"$work/palisade.toml" <<TOML
[server]
listen = ["127.0.0.1:$port"]
data_dir = "$work/data"

[tenants.target]
hosts = ["*"]
data = "$work/www"

[[tenants.target.routes]]
path = "/"
static = "$work/www"

[[tenants.target.routes]]
path = "/cgi-bin/echo"
cgi = "$work/echo.wasm"
TOML
"$root/target/release/palisade" serve --config "$work/palisade.toml" >"$work/palisade.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

failed_total=0
attack() {
  local name=$1
  shift
  # The well-behaved client, in the background for the attack's duration.
  (
    ok=0 bad=0 fds=0
    end=$((SECONDS + length))
    while ((SECONDS < end)); do
      if [ "$(curl -s -m 5 "http://127.0.0.1:$port/")" = calm ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
      n=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
      ((n > fds)) && fds=$n
      sleep 0.2
    done
    echo "$ok $bad $fds" >"$work/probe-$name"
  ) &
  local probe=$!
  local verdict
  verdict=$(slowhttptest "$@" -c "$connections" -r 200 -l "$length" -p 3 2>&1 | tr '\r' '\n' |
    sed 's/\x1b\[[0-9;]*m//g' | grep -iE "^(closed|pending|connected|service available|exit status)" | tail -5 | tr -s ' \t' ' ' | paste -sd "," -)
  wait "$probe"
  read -r ok bad fds <"$work/probe-$name"
  local now
  now=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  failed_total=$((failed_total + bad))
  printf '%-11s slowhttptest at the end: %s\n            palisade: at most %s open descriptors during the attack, %s after it;' \
    "$name" "$verdict" "$fds" "$now"
  printf ' well-behaved client: %s ok, %s failed\n' "$ok" "$bad"
}

attack slowloris -H -i 5 -u "http://127.0.0.1:$port/"
attack slow-body -B -i 5 -s 65536 -u "http://127.0.0.1:$port/cgi-bin/echo"
attack slow-read -X -w 1 -y 2 -n 5 -z 1 -k 4 -u "http://127.0.0.1:$port/big.bin"
kill -0 "$pid" || { echo "palisade died" >&2; exit 1; }
echo "palisade peak RSS: $(awk '/^VmHWM:/ {print int($2 / 1024)}' "/proc/$pid/status") MiB"
((failed_total == 0)) || { echo "$failed_total well-behaved requests failed" >&2; exit 1; }
