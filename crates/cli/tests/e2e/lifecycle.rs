//! Start-up and shutdown: graceful drain on SIGTERM, the on-disk compile cache, JSON logs.

use std::time::{Duration, Instant};

use crate::harness::{Running, Site};
use crate::{HOSTS, two_tenants};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_requests_in_flight_then_exits_0() {
    let site = two_tenants();
    let mut server = site.start();
    let client = server.client(HOSTS);
    let slow = {
        let c = client.clone();
        let u = server.url("bob.localhost", "/cgi-bin/probe/sleep");
        tokio::spawn(async move {
            let r = c.get(u).send().await?;
            Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let code = tokio::task::block_in_place(|| server.terminate(Duration::from_secs(10)));
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "slept\n"), "the in-flight request completes");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(server.addr).is_err());
    assert!(server.log_contains("all connections closed"));
}

#[tokio::test]
async fn compiled_guests_are_cached_on_disk() {
    let site = Site::new();
    let component = site.guest("hello.wasm");
    site.write(
        "palisade.toml",
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[tenants.t]\nhosts = [\"*\"]\n\
             [[tenants.t.routes]]\npath = \"/\"\ncomponent = \"{component}\"\n"
        ),
    );
    let first = Running::start(&site.path("palisade.toml"));
    let files = |dir: std::path::PathBuf| walk(&dir); // compiled artifacts, without usage statistics
    let cached = files(site.path("palisade-data/cache"));
    assert!(!cached.is_empty(), "compiled artifacts appear under data_dir/cache");
    drop(first);
    let second = Running::start(&site.path("palisade.toml"));
    let r = second.client(&[]).get(format!("http://{}/", second.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(files(site.path("palisade-data/cache")), cached, "a restart reuses the cache");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.extension().is_none_or(|x| !x.to_string_lossy().ends_with("stats"))
                && !e.file_name().to_string_lossy().starts_with(".cleanup")
            {
                // The cache also keeps usage statistics beside each artifact, updated in the background
                // (`.stats`, written through a temporary `.wip-atomic-write-stats`), and its background
                // cleanup takes a `.cleanup.wip-PID` lock file while it runs.
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn json_log_format() {
    let site = two_tenants();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(site.path("palisade.toml"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let site2 = Site::new();
    site2.write("www/index.html", "x");
    site2.config("[tenants.t]\nhosts = [\"*\"]\n[[tenants.t.routes]]\npath = \"/\"\nstatic = \"www\"\n");
    let mut child = std::process::Command::new(crate::harness::BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(site2.path("palisade.toml"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let first = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with('{') && first.contains("\"level\":\"INFO\""), "{first}");
}

#[tokio::test]
async fn workers_can_be_set_and_are_checked() {
    let site = Site::new();
    let component = site.guest("hello.wasm");
    let config = |workers: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = {workers}\n\n[tenants.t]\nhosts = [\"*\"]\n\
             [[tenants.t.routes]]\npath = \"/\"\ncomponent = \"{component}\"\n"
        )
    };
    site.write("palisade.toml", config("0"));
    let (code, _, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("palisade.toml:3:11: `workers` must be between 1 and 1024"), "{err}");

    site.write("palisade.toml", config("1"));
    let server = Running::start(&site.path("palisade.toml"));
    let client = server.client(&[]);
    for _ in 0..20 {
        let r = client.get(format!("http://{}/", server.addr)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// A server without guests starts no WebAssembly engine: it runs under an address-space limit that the guest
/// pool's reservation would exceed. A guest route under the same limit fails to start, naming the route and
/// why.
#[tokio::test]
async fn a_server_without_guests_reserves_no_guest_pool() {
    const ADDRESS_KIB: u64 = 8 << 20;
    let site = Site::new();
    site.write("www/index.html", "static only\n");
    let config = site.config("[tenants.t]\nhosts = [\"*\"]\n[[tenants.t.routes]]\npath = \"/\"\nstatic = \"www\"\n");
    let server = Running::spawn_limited(
        Some(&format!("-v {ADDRESS_KIB}")),
        &["serve".as_ref(), "--config".as_ref(), config.as_os_str()],
    );
    let response = server.client(&[]).get(format!("http://{}/", server.addr)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "static only\n");
    drop(server);

    let component = site.guest("hello.wasm");
    site.config(&format!(
        "[tenants.t]\nhosts = [\"*\"]\n[[tenants.t.routes]]\npath = \"/\"\ncomponent = \"{component}\"\n"
    ));
    let line = site.line_of("component =");
    let (code, _, err) = site.run_limited(Some(&format!("-v {ADDRESS_KIB}")), &["serve", "--config", "palisade.toml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("palisade.toml:{line}")), "{err}");
    assert!(err.contains("cannot start the WebAssembly engine"), "{err}");
}
