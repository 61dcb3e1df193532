#!/usr/bin/env bash
# Makes the demo's certificates, once: a local CA (examples/demo/certs/ca.pem, for curl --cacert) and a
# certificate for each HTTPS tenant of the demo. Real sites use their own certificates or `acme = { ... }`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/examples/demo/certs
[ -s "$dir/alice.pem" ] || "$root/scripts/make-cert.sh" "$dir" alice DNS:alice.localhost
[ -s "$dir/bob.pem" ] || "$root/scripts/make-cert.sh" "$dir" bob DNS:bob.localhost,IP:127.0.0.1
