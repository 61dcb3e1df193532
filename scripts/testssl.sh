#!/usr/bin/env bash
# Audits palisade's TLS with testssl.sh (Debian package): starts a release build on 127.0.0.1 with a certificate
# from a throwaway local CA, runs the full testssl.sh scan against it, prints every finding of severity LOW or
# above, and fails if any is HIGH or CRITICAL. Installs testssl.sh and openssl idempotently. Takes a few minutes.
#   scripts/testssl.sh            # ECDSA P-256 certificate
#   KEY=rsa scripts/testssl.sh    # RSA 2048 certificate
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-18443}
key_type=${KEY:-ec}  # ec or rsa
missing=()
for p in testssl.sh openssl; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
(cd "$root" && cargo build --release --locked --quiet)

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

# A local CA and a leaf for palisade.test, so the scan can check the chain of trust (--add-ca).
"$root/scripts/make-cert.sh" "$work" site DNS:palisade.test "$key_type"
mkdir www && echo "audit" >www/index.html
cat >palisade.toml <<TOML
[server]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:$port"]
data_dir = "data"

[tenants.audit]
hosts = ["palisade.test"]
tls = { cert = "site.pem", key = "site.key" }
hsts = true

[[tenants.audit.routes]]
path = "/"
static = "www"
TOML
"$root/target/release/palisade" serve -c palisade.toml >palisade.log 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "listening on https" palisade.log && break; sleep 0.1; done

# Debian installs the script as `testssl`.
testssl --quiet --color 0 --warnings off --add-ca "$work/ca.pem" --ip 127.0.0.1 \
  --jsonfile "$work/findings.json" --severity LOW "https://palisade.test:$port/" >testssl.out 2>&1 || true
[ -s findings.json ] || { tail -40 testssl.out; echo "testssl produced no findings file" >&2; exit 1; }
python3 - "$work/findings.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
rank = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
shown = [f for f in findings if f.get("severity") in rank]
for f in sorted(shown, key=lambda f: -rank[f["severity"]]):
    print(f"{f['severity']:8} {f['id']}: {f['finding']}")
bad = [f for f in shown if rank[f["severity"]] >= 3]
print(f"\n{len(shown)} findings of severity LOW or above; {len(bad)} HIGH or CRITICAL")
sys.exit(1 if bad else 0)
PY
