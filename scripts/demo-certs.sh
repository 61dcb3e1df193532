#!/usr/bin/env bash
# Makes the demo's certificates, once: a local CA (examples/demo/certs/ca.pem, for curl --cacert) and a
# certificate for each HTTPS tenant of the demo. Real sites use their own certificates or `acme = { ... }`.
set -euo pipefail
dir=$(cd "$(dirname "$0")/.." && pwd)/examples/demo/certs
mkdir -p "$dir"
cd "$dir"
[ -s ca.pem ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
  -out ca.pem -days 3650 -subj "/CN=palisade demo CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
for site in alice:DNS:alice.localhost bob:DNS:bob.localhost,IP:127.0.0.1; do
  tenant=${site%%:*} names=${site#*:}
  [ -s "$tenant.pem" ] && continue
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$tenant.key" -out "$tenant.csr" \
    -subj "/CN=$tenant.localhost" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$names" >"$tenant.ext"
  openssl x509 -req -in "$tenant.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -extfile "$tenant.ext" \
    -out "$tenant.pem" 2>/dev/null
  rm -f "$tenant.csr" "$tenant.ext"
done
