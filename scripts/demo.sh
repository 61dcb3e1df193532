#!/usr/bin/env bash
# The demo, from a fresh Debian 12 machine: installs what is needed, builds palisade and the demo's C guests,
# makes the demo's certificates and admin token, and serves three tenants (alice, bob and carol) on 127.0.0.1:8080
# and, for alice and bob, HTTPS on 127.0.0.1:8443, with the admin API and web console on 127.0.0.1:9901, until
# Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-guests.sh
scripts/demo-certs.sh
# The admin token (the console's sign-in), made once.
token=examples/demo/admin.token
[ -s "$token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token"
cargo build --release --locked
config=examples/demo/palisade.toml
./target/release/palisade check --config "$config"
cat <<'TRY'

Try these in another terminal (Ctrl-C here stops the server gracefully):
  curl -H 'Host: alice.localhost' http://127.0.0.1:8080/                      # alice's static site
  curl -H 'Host: alice.localhost' http://127.0.0.1:8080/app/hi?there          # a wasi:http component (C)
  curl -H 'Host: alice.localhost' http://127.0.0.1:8080/cgi-bin/echo/x?q=1    # a C CGI program; counts visits in alice's /data
  curl -H 'Host: bob.localhost' -d 'hello bob' http://127.0.0.1:8080/cgi-bin/echo   # bob's copy: its own /data, its own env
  curl -H 'Host: alice.localhost' http://127.0.0.1:8080/visits                # wasi:keyvalue counter; bob's /visits is his own
  curl --http2-prior-knowledge -H 'Host: bob.localhost' http://127.0.0.1:8080/hello # HTTP/2 without TLS
  curl -H 'Host: carol.localhost' -d 'hi' http://127.0.0.1:8080/py/x?y=1     # a component written in Python
  curl -H 'Host: carol.localhost' http://127.0.0.1:8080/js/hello             # a component written in JavaScript
  curl -H 'Host: nobody.localhost' http://127.0.0.1:8080/                     # no such tenant: 404
  curl --cacert examples/demo/certs/ca.pem https://alice.localhost:8443/app/hi   # HTTPS (HTTP/2), alice's certificate
  curl --cacert examples/demo/certs/ca.pem -I https://bob.localhost:8443/        # bob's certificate, chosen by SNI

The web console: http://127.0.0.1:9901/ (sign in with the token in examples/demo/admin.token)

TRY
unset RUST_BACKTRACE
exec ./target/release/palisade serve --config "$config"
