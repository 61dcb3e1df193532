//! Binary hand-over: SIGUSR2 (through `palisade upgrade`) moves the listening sockets to a new process
//! without a failed request; requests and tunnels in flight finish on the old one, which then exits; a new
//! process that fails to start leaves the old one serving.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Running, Site};
use crate::upstream::Upstream;

/// Kills the process a pid names when dropped: the new server is the old one's child, not the test's.
struct Reaped(u32);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}

fn process_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its parent) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// The pid the file names (waiting a moment for it: it is written once the server accepts).
fn read_pid(path: &Path) -> u32 {
    let started = Instant::now();
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) => return text.trim().parse().unwrap(),
            Err(e) if started.elapsed() > Duration::from_secs(5) => panic!("{}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A site with a static file, a component and a proxied route, served with a pid file.
fn upgradable_site(upstream: &Upstream) -> Site {
    let site = Site::new();
    site.write("www/index.html", "static\n");
    let hello = site.guest("hello.wasm");
    // Its own data directory: apps deployed here must not reach other tests.
    let server = format!("listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}", site.path("data").display().to_string());
    site.config_with(
        &server,
        &format!(
            r#"
[admin]
listen = "127.0.0.1:0"

[tenants.a]
hosts = ["*"]
cache = {{ disk = "8 MiB" }}
routes = [
  {{ path = "/", static = "www" }},
  {{ path = "/hello", component = "{hello}" }},
  {{ path = "/ws", proxy = {{ upstreams = ["{up}"], timeout = "10s" }} }},
  {{ path = "/three-seconds", proxy = {{ upstreams = ["{up}"], timeout = "10s" }} }},
  {{ path = "/cached", proxy = "{up}", cache = true }},
]
"#,
            up = upstream.url()
        ),
    );
    site
}

/// `palisade serve --pid-file`, as systemd would start it (a `Type=notify` unit): its readiness messages
/// arrive on the returned socket. The binary is the site's own `palisade` (a hard link to the one built), so
/// that a test can put another file at its path.
fn serve_with_pid_file(site: &Site) -> (Running, UnixDatagram) {
    let (config, pid_file, notify) = (site.path("palisade.toml"), site.path("palisade.pid"), site.path("notify.sock"));
    install_binary(site, None);
    let systemd = UnixDatagram::bind(&notify).unwrap();
    systemd.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let args = ["serve".as_ref(), "--config".as_ref(), config.as_os_str(), "--pid-file".as_ref(), pid_file.as_os_str()];
    (Running::spawn_from(&site.path("palisade"), &args, &[("NOTIFY_SOCKET", notify.as_os_str())]), systemd)
}

/// Puts palisade (or the shell script `script`) at the site's `palisade`, by a rename as an operator would:
/// a running process keeps the file it was started from.
fn install_binary(site: &Site, script: Option<&str>) {
    let new = site.path("palisade.new");
    let _ = std::fs::remove_file(&new);
    match script {
        None => std::fs::hard_link(crate::harness::BIN, &new).unwrap(),
        Some(text) => {
            std::fs::write(&new, text).unwrap();
            std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
    }
    std::fs::rename(&new, site.path("palisade")).unwrap();
}

/// The next readiness message: `READY=1` and the pid of the process that serves.
fn ready_message(systemd: &UnixDatagram) -> String {
    let mut message = [0u8; 256];
    let n = systemd.recv(&mut message).unwrap();
    String::from_utf8_lossy(&message[..n]).into_owned()
}

/// Requests in a loop until told to stop: (answered, failures with the first reason).
fn client_loop(
    client: reqwest::Client,
    url: String,
    body: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize, Option<String>)> {
    tokio::spawn(async move {
        let (mut answered, mut failed, mut first) = (0, 0, None);
        while !stop.load(Ordering::Relaxed) {
            let outcome = match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => match r.text().await {
                    Ok(text) if text.contains(body) => Ok(()),
                    Ok(text) => Err(format!("body {text:?}")),
                    Err(e) => Err(format!("reading the body: {e:?}")),
                },
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(format!("{e:?}")),
            };
            match outcome {
                Ok(()) => answered += 1,
                Err(e) => {
                    failed += 1;
                    first.get_or_insert(e);
                }
            }
        }
        (answered, failed, first)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr2_hands_over_without_a_failed_request() {
    let upstream = Upstream::start("up");
    let site = upgradable_site(&upstream);
    let (mut old, systemd) = serve_with_pid_file(&site);
    let old_pid = old.pid();
    let pid_file = site.path("palisade.pid");
    assert_eq!(read_pid(&pid_file), old_pid);
    assert_eq!(ready_message(&systemd), format!("READY=1\nMAINPID={old_pid}\n"));

    // Four loops: kept-alive and new connections, a static file and a component.
    crate::harness::install_crypto_provider();
    let keep_alive = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let one_shot = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (file, component) = (old.url("127.0.0.1", "/"), old.url("127.0.0.1", "/hello"));
    let loops = [
        client_loop(keep_alive.clone(), file.clone(), "static", stop.clone()),
        client_loop(keep_alive.clone(), component.clone(), "hello from", stop.clone()),
        client_loop(one_shot.clone(), file, "static", stop.clone()),
        client_loop(one_shot.clone(), component, "hello from", stop.clone()),
    ];
    // A WebSocket tunnel through the proxy, open before the hand-over.
    let (mut tunnel, _) = crate::upstream::websocket(old.addr, "127.0.0.1");
    // A proxied request that takes 3 s, started before the hand-over.
    let slow = {
        let (client, url) = (one_shot.clone(), old.url("127.0.0.1", "/three-seconds"));
        tokio::spawn(async move {
            let r = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
            Ok::<_, String>((r.status().as_u16(), r.text().await.map_err(|e| format!("{e:?}"))?))
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (code, out, err) = tokio::task::block_in_place(|| {
        site.run(&["upgrade", "--pid-file", pid_file.to_str().unwrap(), "--timeout", "60s"])
    });
    assert_eq!(code, 0, "palisade upgrade: {out}{err}");
    assert!(out.contains("upgraded"), "{out}");
    let new_pid = read_pid(&pid_file);
    let _new = Reaped(new_pid);
    assert_ne!(new_pid, old_pid);
    assert!(process_alive(new_pid));
    // systemd is told which process is the service's main one now.
    assert_eq!(ready_message(&systemd), format!("READY=1\nMAINPID={new_pid}\n"));

    // The tunnel opened before still carries bytes, through the old process.
    tunnel.write_all(b"after the hand-over").unwrap();
    let mut echoed = vec![0u8; "after the hand-over".len()];
    tunnel.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, b"after the hand-over");
    drop(tunnel);

    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "three seconds later\n"), "the request in flight finished");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for (i, l) in loops.into_iter().enumerate() {
        let (answered, failed, first) = l.await.unwrap();
        assert_eq!(failed, 0, "loop {i}: {failed} failed of {}; first: {first:?}", answered + failed);
        assert!(answered > 20, "loop {i} answered only {answered}");
    }

    // The cache's disk file went to the new process, which opened it; the old one let go and deleted nothing.
    assert!(!old.log().contains("cache disk tier"), "{}", old.log());
    assert!(site.path("data/http-cache/a.redb").exists());
    // The old process drains and exits 0; the new one serves alone.
    let started = Instant::now();
    while old.alive() && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!old.alive(), "the old process did not exit after draining:\n{}", old.log());
    assert!(old.log().contains("all connections closed"), "{}", old.log());
    let r = keep_alive.get(old.url("127.0.0.1", "/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(process_alive(new_pid));
    // A later hand-over works the same from the new process.
    let (code, out, err) = tokio::task::block_in_place(|| {
        site.run(&["upgrade", "--pid-file", pid_file.to_str().unwrap(), "--timeout", "60s"])
    });
    assert_eq!(code, 0, "second upgrade: {out}{err}");
    let _newer = Reaped(read_pid(&pid_file));
    let r = keep_alive.get(old.url("127.0.0.1", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_process_that_fails_leaves_the_old_one_serving() {
    let upstream = Upstream::start("up");
    let site = upgradable_site(&upstream);
    let (mut old, _systemd) = serve_with_pid_file(&site);
    let pid_file = site.path("palisade.pid");
    let old_pid = old.pid();
    let upgrade = || {
        tokio::task::block_in_place(|| {
            site.run(&["upgrade", "--pid-file", pid_file.to_str().unwrap(), "--timeout", "60s"])
        })
    };
    // A new binary that does not start.
    install_binary(&site, Some("#!/bin/sh\necho 'this build is broken' >&2\nexit 3\n"));
    let (code, out, err) = upgrade();
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("the upgrade failed") && err.contains(&old_pid.to_string()), "{err}");
    assert!(old.log_contains("upgrade failed, still serving with this process"), "{}", old.log());
    assert!(old.log().contains("exited (exit status: 3) before it was ready"), "{}", old.log());
    assert!(old.log().contains("this build is broken"), "its own words are in the log:\n{}", old.log());
    // A good binary that cannot load the configuration it is given.
    install_binary(&site, None);
    let config = site.path("palisade.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("hello.wasm", "missing.wasm")).unwrap();
    let (code, out, err) = upgrade();
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("the upgrade failed"), "{err}");
    assert!(old.log().contains("missing.wasm"), "the new process's reason is in the log:\n{}", old.log());
    assert!(old.alive());
    assert_eq!(read_pid(&pid_file), old_pid);
    // The cache's disk file was let go for the new process, and taken back.
    assert!(!old.log().contains("cache disk tier"), "{}", old.log());
    let client = old.client(&["127.0.0.1"]);
    for path in ["/", "/hello"] {
        let r = client.get(old.url("127.0.0.1", path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Changes are accepted again (they were refused during the attempt), and a fixed binary takes over,
    // serving what was deployed.
    let wasm = std::fs::read(crate::harness::guest("hello.wasm")).unwrap();
    let deployed = client.put(old.admin_url("/v1/tenants/a/apps/greet")).body(wasm).send().await.unwrap();
    assert!(deployed.status().is_success(), "{}", deployed.text().await.unwrap());
    std::fs::write(&config, good).unwrap();
    let (code, out, err) = upgrade();
    assert_eq!(code, 0, "{out}{err}");
    let _new = Reaped(read_pid(&pid_file));
    let started = Instant::now();
    while old.alive() && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!old.alive());
    for path in ["/hello", "/greet"] {
        let r = client.get(old.url("127.0.0.1", path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} after the hand-over");
    }
}

/// Signals at awkward moments: a SIGUSR2 while the server is still loading is acted on once it serves (its
/// default action would end the process); a SIGTERM while a hand-over waits for a new process that never gets
/// ready gives the hand-over up, stops that process, and stops the server with exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn signals_during_start_up_and_during_a_hand_over() {
    let upstream = Upstream::start("up");
    let site = upgradable_site(&upstream);
    install_binary(&site, None);
    let pid_file = site.path("palisade.pid");
    let mut server = std::process::Command::new(site.path("palisade"))
        .args(["serve", "--config", site.path("palisade.toml").to_str().unwrap()])
        .args(["--pid-file", pid_file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _server_guard = Reaped(server.id());
    // Loading compiles the component: the signal comes well before the server listens.
    std::thread::sleep(Duration::from_millis(100));
    assert!(!pid_file.exists(), "the server was ready too soon for this test");
    let _ = std::process::Command::new("kill").args(["-USR2", &server.id().to_string()]).status();
    let started = Instant::now();
    let new_pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != server.id()
        {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no hand-over after a SIGUSR2 sent while starting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _new = Reaped(new_pid);
    let status = tokio::task::block_in_place(|| server.wait()).unwrap();
    assert_eq!(status.code(), Some(0), "the first process ends as a hand-over ends it");

    // The new process hands over to one that never gets ready; SIGTERM meanwhile.
    install_binary(&site, Some("#!/bin/sh\nexec sleep 29.7531\n"));
    let _ = std::process::Command::new("kill").args(["-USR2", &new_pid.to_string()]).status();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = std::process::Command::new("kill").args(["-TERM", &new_pid.to_string()]).status();
    let started = Instant::now();
    while process_alive(new_pid) {
        assert!(started.elapsed() < Duration::from_secs(10), "SIGTERM during a hand-over was not acted on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The would-be new process was stopped with it.
    let started = Instant::now();
    loop {
        let left = std::process::Command::new("pgrep").args(["-f", "^sleep 29.7531$"]).output().unwrap();
        if left.stdout.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the would-be new process was left running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
