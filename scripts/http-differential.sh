#!/usr/bin/env bash
# Sends every request of the differential HTTP/1.1 corpus (tests/http-corpus/requests.tsv) to palisade, nginx
# and h2o, each serving the same directory on loopback, and prints a Markdown table of their answers, marking
# the rows where palisade differs from either. Installs nginx-light and h2o (Debian) idempotently and builds
# palisade (release). The palisade column must equal the corpus's `expected` column (the e2e tests assert it);
# docs/http-differential.md explains each difference.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
missing=()
for p in nginx-light h2o; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts both as services on install; this script runs its own instances.
  systemctl disable --now nginx h2o >/dev/null 2>&1 || true
fi
(cd "$root" && cargo build --release --locked --quiet)

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/www" && echo ok >"$work/www/index.html"

cat >"$work/palisade.toml" <<TOML
[server]
listen = ["127.0.0.1:18181"]
data_dir = "$work/data"

[tenants.any]
hosts = ["*"]

[[tenants.any.routes]]
path = "/"
static = "$work/www"
TOML
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
user $(id -un);
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  server { listen 127.0.0.1:18182 default_server; root $work/www; }
}
NGINX
cat >"$work/h2o.conf" <<H2O
listen:
  host: 127.0.0.1
  port: 18183
user: $(id -un)
pid-file: $work/h2o.pid
error-log: $work/h2o-error.log
hosts:
  default:
    paths:
      /:
        file.dir: $work/www
H2O

"$root/target/release/palisade" serve --config "$work/palisade.toml" >"$work/palisade.log" 2>&1 &
pids+=($!)
nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" &
pids+=($!)
h2o -c "$work/h2o.conf" >"$work/h2o.log" 2>&1 &
pids+=($!)
for port in 18181 18182 18183; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

python3 - "$root/tests/http-corpus/requests.tsv" <<'PY'
import re, socket, sys, time

def decode(text):
    text = (text.replace("LONG_URI", "a" * 9000)
                .replace("MANY_HEADERS", "\\r\\n".join(f"X-H{i}: v" for i in range(150)))
                .replace("HUGE_VALUE", "h" * (70 << 10)))
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "\\":
            c = text[i + 1]
            if c == "x":
                out.append(int(text[i + 2:i + 4], 16)); i += 4; continue
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[c]; i += 2
        else:
            out += text[i].encode(); i += 1
    return bytes(out)

def answer(port, request):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.3)
    try:
        s.sendall(request)
    except OSError:
        pass
    data, start = b"", time.time()
    while time.time() - start < 3:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    codes = [m.decode() for m in re.findall(rb"(?m)^HTTP/1\.[01] (\d{3})", data) if not m.startswith(b"1")]
    return ",".join(codes) or "-"

rows, differ = [], 0
for line in open(sys.argv[1], encoding="utf-8"):
    if line.startswith("#") or not line.strip():
        continue
    case, expected, raw = line.rstrip("\n").split("\t", 2)
    request = decode(raw)
    got = [answer(port, request) for port in (18181, 18182, 18183)]
    mark = "" if got[0] == got[1] == got[2] else "≠"
    differ += bool(mark)
    if got[0] != expected:
        mark += " (palisade differs from the corpus!)"
    rows.append(f"| `{case}` | {got[0]} | {got[1]} | {got[2]} | {mark} |")
print("| request | palisade | nginx | h2o | |")
print("|---|---|---|---|---|")
print("\n".join(rows))
print(f"\n{len(rows)} requests; the three servers disagree on {differ}.")
PY
