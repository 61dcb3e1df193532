#!/usr/bin/env bash
# Tenants as data: how long a tenant created through the admin API takes to be served, on the node that took
# the call and on another node of a cluster (two palisade nodes sharing a redis-server, all on loopback).
# For each of COUNT tenants (default 100): PUT /v1/tenants/tI on node A, then ask each node for a page of tI's
# host until it answers as tI (404 "no route matches this path", where an unknown host gets "no site is
# configured for this host"). Reports the median and the slowest, from the start of the PUT.
# Usage: bench/tenants.sh
source "$(dirname "$0")/lib.sh"
bench_prepare
COUNT=${COUNT:-100}

redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p 16379 ping >/dev/null 2>&1 && break; sleep 0.1; done
for node in a b; do
  port=$([ $node = a ] && echo 18080 || echo 18081)
  admin=$([ $node = a ] && echo 19901 || echo 19902)
  cat >"$WORK/$node.toml" <<TOML
[server]
listen = ["127.0.0.1:$port"]
data_dir = "$WORK/data-$node"
[admin]
listen = "127.0.0.1:$admin"
[cluster]
redis = "redis://127.0.0.1:16379/0"
TOML
  RUST_LOG=warn start "palisade-$node" "$port" "$PALISADE" serve --config "$WORK/$node.toml"
done

python3 - "$COUNT" <<'PY'
import http.client, json, statistics, sys, time
count = int(sys.argv[1])
admin = http.client.HTTPConnection("127.0.0.1", 19901)
nodes = {"A": http.client.HTTPConnection("127.0.0.1", 18080), "B": http.client.HTTPConnection("127.0.0.1", 18081)}

def served(conn, host):
    conn.request("GET", "/", headers={"Host": host})
    r = conn.getresponse()
    return b"no route" in r.read()

seen = {"A": [], "B": []}
for i in range(count):
    name = f"bench{i}"
    host = f"{name}.localhost"
    start = time.perf_counter()
    admin.request("PUT", f"/v1/tenants/{name}", body=json.dumps({"hosts": [host]}))
    r = admin.getresponse()
    r.read()
    assert r.status == 201, r.status
    waiting = dict(nodes)
    while waiting:
        for label, conn in list(waiting.items()):
            if served(conn, host):
                seen[label].append((time.perf_counter() - start) * 1000)
                del waiting[label]
        if time.perf_counter() - start > 10:
            sys.exit(f"tenant {name} not served within 10 s by {', '.join(waiting)}")
for label, times in seen.items():
    print(f"node {label}: first request answered as the tenant {statistics.median(times):.2f} ms after the PUT began "
          f"(median of {count}), slowest {max(times):.2f} ms")
PY
