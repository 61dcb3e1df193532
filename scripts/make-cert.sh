#!/usr/bin/env bash
# Makes a certificate from a local CA with openssl, for the demo, the TLS audit and the benchmarks:
#   scripts/make-cert.sh DIR NAME SANS [ec|rsa]
# creates DIR/ca.pem and DIR/ca.key once (a CA valid ten years), then DIR/NAME.pem (leaf, then the CA: a chain)
# and DIR/NAME.key for the subject alternative names SANS (e.g. "DNS:a.test,IP:127.0.0.1"), valid a year,
# with a CRL distribution point as public CAs issue them. Keys are ECDSA P-256 unless `rsa` (2048 bits).
set -euo pipefail
dir=$1 name=$2 sans=$3 kind=${4:-ec}
case $kind in
  ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) usage=digitalSignature ;;
  rsa) newkey=(-newkey rsa:2048) usage=digitalSignature,keyEncipherment ;;
  *) echo "make-cert.sh: key kind must be ec or rsa" >&2; exit 2 ;;
esac
mkdir -p "$dir"
cd "$dir"
[ -s ca.pem ] || openssl req -x509 "${newkey[@]}" -nodes -keyout ca.key -out ca.pem -days 3650 \
  -subj "/CN=palisade local CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${newkey[@]}" -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=${sans#*:}" 2>/dev/null
printf '%s\n' "subjectAltName=$sans" "basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" \
  "keyUsage=critical,$usage" "crlDistributionPoints=URI:http://ca.palisade.test/crl" >"$name.ext"
openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -extfile "$name.ext" \
  -out "$name.leaf" 2>/dev/null
cat "$name.leaf" ca.pem >"$name.pem"
rm -f "$name.csr" "$name.ext" "$name.leaf"
