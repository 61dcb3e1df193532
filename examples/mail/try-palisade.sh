#!/usr/bin/env bash
# The same mail.c and the same two exploits as native-leak.sh, now against palisade: alice and bob are
# tenants, each running mail.c compiled to WebAssembly over their own data directory. Bob's secret stays out
# of reach. Builds palisade and the guests first if needed (run scripts/setup.sh once on a fresh machine).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
scripts/build-guests.sh
cargo build --release --locked --quiet
log=$(mktemp)
unset RUST_BACKTRACE
./target/release/palisade serve --config examples/mail/palisade.toml 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
addr=$(grep -o 'listening on http://[^ ]*' "$log" | head -n1 | sed 's#.*http://##')
[ -n "$addr" ] || { cat "$log"; exit 1; }

leaked=0
ask() {  # ask USER QUERY: one request to USER's mail route, as USER's host
  echo "\$ curl -H 'Host: $1.localhost' 'http://$addr/mail?$2'"
  out=$(curl -sS -H "Host: $1.localhost" "http://$addr/mail?$2" | tr '\0' '.')
  echo "$out"
}
verdict() {
  if grep -q SECRET-BOB <<<"$out"; then echo "==> LEAKED"; leaked=$((leaked + 1)); else echo "==> no leak"; fi
  echo
}

echo "### Both users read their own mail"
ask alice 'action=list'; echo
ask bob 'action=list'; echo

echo "### Bug 1: alice's long name overwrites her mailbox path with bob's"
fill=AAAAAAAAAAAAAAAA
for path in /data/bob.mbox /data/../bob/bob.mbox "$here/tenants/bob/bob.mbox"; do
  ask alice "action=list&name=$fill$path"; verdict
done

echo "### Bug 2: bob reads his secret message, then alice over-reads her short one"
ask bob 'action=show&n=1'; echo
ask alice 'action=show&n=1&len=400'; verdict

echo "### palisade's log says what happened (bob's secret is not in it either)"
grep -E 'tenant=alice' "$log" | tail -n 5
if grep -q SECRET-BOB "$log"; then echo "==> bob's secret is in the log"; leaked=$((leaked + 1)); fi
echo
echo "$leaked leaks under palisade: alice's sandbox sees only her own /data, and every request starts from a"
echo "fresh instance, so no earlier request's memory exists."
[ "$leaked" -eq 0 ]
