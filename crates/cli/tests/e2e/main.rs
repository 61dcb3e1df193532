//! End-to-end tests: the real `palisade` binary, real C guests compiled to WebAssembly, real HTTP clients.
//!
//! Modules, one concern each:
//! - `harness`: start the binary on an ephemeral port, clients, raw sockets.
//! - `handlers`: each route kind answers (static, component, CGI), over HTTP/1.1 and h2c.
//! - `routing`: host → tenant, longest prefix → route, unknown host/path, missing Host.
//! - `cgi`: CGI/1.1 meta-variables, body, Status/Location, malformed output, /data isolation.
//! - `static_files`: conditional and range requests, HEAD, index.html, traversal attempts.
//! - `hostile`: traps, endless loops, memory bombs, concurrency limits, and the server still answering.
//! - `limits`: every per-tenant limit (memory, total memory, CPU time, bodies, stderr) and every trap kind.
//! - `neighbours`: a flood of hostile requests while a neighbour tenant keeps getting correct answers.
//! - `fairness`: tenants kept apart in time: a neighbour's latency while another spins, CPU shares by weight,
//!   the bounded line for instance slots, and the server's guest memory budget under a many-tenant flood.
//! - `mail`: the overflowing C mail program's two exploits, which leak natively, leak nothing here.
//! - `corpus`: the differential HTTP/1.1 corpus (`tests/http-corpus/`), palisade's recorded answer to each.
//! - `check`: `palisade check` on good and broken configurations.
//! - `byoc`: bring your own guest: Python and JavaScript components, `palisade run`, missing-import errors,
//!   per-app import/export summaries.
//! - `lifecycle`: graceful shutdown and the compile cache.
//! - `tls`: HTTPS: certificates by SNI, ALPN, 421, HSTS and redirects, resumption, reload, broken certificates.
//! - `traffic`: hostile traffic: slow heads, bodies and readers, connection floods, oversized heads, and
//!   HTTP/2 attacks (rapid reset, CONTINUATION flood, HPACK bomb, PING/SETTINGS floods, window overflow).
//! - `http3`: HTTP/3 through aioquic's client: every route kind (files of every size by digest, a component
//!   and a CGI program with bodies, proxied and cached routes), a hundred streams on one connection, tenants
//!   by SNI and 421, `Alt-Svc` on HTTPS, garbage datagrams, the connection limits, requests in flight across
//!   a shutdown.
//! - `acme`: certificates obtained and renewed from a real ACME server (pebble), both challenge types.
//! - `proxy`: the reverse proxy: balancing, ejection and recovery, forwarding headers, streaming, upgrades,
//!   502/504, h2c upstreams, and the request-smuggling corpus with nothing reaching the upstream.
//! - `upstream`: the upstream servers those tests proxy to.
//! - `cache`: the HTTP cache in front of a counting origin: freshness, Vary, revalidation, collapsing,
//!   stale-if-error, invalidation, edge-only fields, tenants apart and the size bound.
//! - `tenants`: tenants as data: created, replaced and removed through the admin API, tenant-scoped tokens,
//!   persistence, a reload that would clash, a removed tenant's apps and data gone.
//! - `console`: the web console: session cookies, CSRF and cross-site refusals, then the console driven in
//!   headless Chromium (`browser`: ChromeDriver and a WebDriver client).
//! - `upgrade`: binary hand-over on SIGUSR2 (`palisade upgrade`): client loops see no failure, a request and a
//!   tunnel in flight finish on the old process, which exits; a new process that fails leaves the old serving.
//! - `kv`: wasi:keyvalue: tenants' buckets apart, quotas, exact counters, writes surviving kill -9, two nodes
//!   sharing a real redis-server through its outage.

#![allow(unreachable_pub, reason = "a test binary has no public API; `pub` only crosses its modules")]
#![allow(clippy::unwrap_used, reason = "test helpers panic on purpose: a failed step is a failed test")]

mod browser;
mod harness;

mod acme;
mod byoc;
mod cache;
mod cgi;
mod check;
mod console;
mod corpus;
mod fairness;
mod handlers;
mod hostile;
mod http3;
mod kv;
mod lifecycle;
mod limits;
mod mail;
mod neighbours;
mod operate;
mod proxy;
mod routing;
mod static_files;
mod tenants;
mod tls;
mod traffic;
mod upgrade;
mod upstream;

use harness::Site;

/// Two tenants with every route kind, used by most tests.
///
/// alice: `/` static, `/app` probe component, `/app/admin` static, `/cgi-bin/probe` probe CGI, data dir, env.
/// bob: `/` static, `/cgi-bin/probe` probe CGI, its own data dir holding `secret.txt`.
pub fn two_tenants() -> Site {
    let site = Site::new();
    site.write("www/alice/index.html", "<h1>alice</h1>\n");
    site.write("www/alice/style.css", "body { color: red }\n");
    site.write("www/admin/index.html", "admin area\n");
    site.write("www/bob/index.html", "<h1>bob</h1>\n");
    site.mkdir("tenants/alice");
    site.write("tenants/bob/secret.txt", "bob's secret\n");
    let component = site.guest("probe-component.wasm");
    let cgi = site.guest("probe-cgi.wasm");
    site.config(&format!(
        r#"
[tenants.alice]
hosts = ["alice.localhost"]
memory = "16 MiB"
timeout = "1s"
max_concurrency = 8
data = "tenants/alice"
env = {{ GREETING = "hi-alice" }}

[[tenants.alice.routes]]
path = "/"
static = "www/alice"

[[tenants.alice.routes]]
path = "/app"
component = "{component}"

[[tenants.alice.routes]]
path = "/app/admin"
static = "www/admin"

[[tenants.alice.routes]]
path = "/cgi-bin/probe"
cgi = "{cgi}"

[tenants.bob]
hosts = ["bob.localhost"]
data = "tenants/bob"
env = {{ GREETING = "hi-bob" }}

[[tenants.bob.routes]]
path = "/"
static = "www/bob"

[[tenants.bob.routes]]
path = "/cgi-bin/probe"
cgi = "{cgi}"
"#
    ));
    site
}

/// The host names `two_tenants` answers for.
pub const HOSTS: &[&str] = &["alice.localhost", "bob.localhost"];
