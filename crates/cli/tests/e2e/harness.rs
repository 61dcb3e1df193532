//! Starts the real `palisade` binary on an ephemeral loopback port with a generated site, and talks to it.
//!
//! A [`Site`] is a temporary directory holding a `palisade.toml` and whatever files the test writes; guests
//! come from `target/guests` (built by `scripts/build-guests.sh`). [`Site::start`] spawns the binary, reads the
//! bound address from its `listening on http://…` log line, and returns a [`Running`] server that is killed on
//! drop; if the test failed, the server's log is printed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// The workspace's `target` directory.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// A test guest by file name, e.g. `guest("probe-cgi.wasm")`.
pub fn guest(name: &str) -> PathBuf {
    let p = target_dir().join("guests").join(name);
    assert!(p.exists(), "{} is missing: run scripts/build-guests.sh (the test command does)", p.display());
    p
}

/// A site under construction: a temporary directory with a config file and content.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        Site { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating directories), returning its path.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, contents).expect("write");
        p
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    /// Copies a built test guest into the site as `apps/NAME`.
    pub fn guest(&self, name: &str) -> String {
        self.mkdir("apps");
        std::fs::copy(guest(name), self.path(&format!("apps/{name}"))).expect("copy guest");
        format!("apps/{name}")
    }

    /// Writes `palisade.toml`: a `[server]` section on port 0 with a shared compile cache, then `tenants`.
    pub fn config(&self, tenants: &str) -> PathBuf {
        let cache = target_dir().join("e2e-data");
        self.config_with(&format!("listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}", cache.display().to_string()), tenants)
    }

    /// Writes `palisade.toml` with `server` as the `[server]` section's keys (plus a short shutdown timeout),
    /// the site's own key-value file (the data_dir, with the compile cache, is shared by every test), then
    /// `tenants`.
    pub fn config_with(&self, server: &str, tenants: &str) -> PathBuf {
        let kv = if tenants.contains("[kv]") {
            String::new()
        } else {
            format!("[kv]\npath = {:?}\n\n", self.path("kv.redb").display().to_string())
        };
        self.write("palisade.toml", format!("[server]\n{server}\nshutdown_timeout = \"5s\"\n\n{kv}{tenants}"))
    }

    /// 1-based line of the first line of `palisade.toml` containing `needle`, not counting the lines naming
    /// the site's own (randomly named) directory, which could contain any short needle.
    pub fn line_of(&self, needle: &str) -> usize {
        let text = std::fs::read_to_string(self.path("palisade.toml")).expect("config");
        let own = self.dir.path().display().to_string();
        text.lines().position(|l| l.contains(needle) && !l.contains(&own)).expect("needle in config") + 1
    }

    /// Runs `palisade ARGS...` to completion, returning (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_limited(None, args)
    }

    /// [`Site::run`], under `ulimit ULIMIT_ARGS` if given (`-v KIB` limits the address space).
    pub fn run_limited(&self, ulimit_args: Option<&str>, args: &[&str]) -> (i32, String, String) {
        let out = palisade(ulimit_args).args(args).current_dir(self.dir.path()).output().expect("run palisade");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `palisade serve` on the site's config and waits until it listens.
    pub fn start(&self) -> Running {
        Running::start(&self.path("palisade.toml"))
    }
}

/// The command that runs palisade, under the shell's `ulimit` with `ulimit_args` if given (`-v KIB`).
fn palisade(ulimit_args: Option<&str>) -> Command {
    match ulimit_args {
        None => Command::new(BIN),
        Some(args) => {
            let mut shell = Command::new("sh");
            shell.arg("-c").arg(format!("ulimit {args} && exec \"$0\" \"$@\"")).arg(BIN);
            shell
        }
    }
}

/// A running server; killed when dropped.
pub struct Running {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Running {
    pub fn start(config: &Path) -> Running {
        Running::spawn(&["serve".as_ref(), "--config".as_ref(), config.as_os_str()])
    }

    /// Runs `palisade ARGS...` (a command that serves) and waits until it listens.
    pub fn spawn(args: &[&std::ffi::OsStr]) -> Running {
        Running::spawn_limited(None, args)
    }

    /// [`Running::spawn`], under `ulimit ULIMIT_ARGS` if given (`-v KIB` limits the address space).
    pub fn spawn_limited(ulimit_args: Option<&str>, args: &[&std::ffi::OsStr]) -> Running {
        Running::spawn_with(palisade(ulimit_args), args)
    }

    /// [`Running::spawn`] of the binary at `binary` (a copy of palisade's), with `env` added to its environment.
    pub fn spawn_from(binary: &Path, args: &[&std::ffi::OsStr], env: &[(&str, &std::ffi::OsStr)]) -> Running {
        let mut command = Command::new(binary);
        command.envs(env.iter().copied());
        Running::spawn_with(command, args)
    }

    fn spawn_with(mut command: Command, args: &[&std::ffi::OsStr]) -> Running {
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn palisade");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on http://".len()..];
                    let addr = rest.split(|c: char| c == '"' || c.is_whitespace()).next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                let mut l = sink.lock().unwrap_or_else(|p| p.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        // Generous: large guests (a Python interpreter is 18 MB of wasm) compile at first start on a busy machine.
        let addr = match rx.recv_timeout(Duration::from_secs(240)) {
            Ok(a) => a.parse().expect("address in log line"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("palisade did not start:\n{}", log.lock().unwrap_or_else(|p| p.into_inner()));
            }
        };
        Running { child, addr, log }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS value")
    }

    /// Whether the server process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `http://ADDR/PATH` (or `https://` when it speaks TLS) on the admin listener, as its start-up log line
    /// says.
    pub fn admin_url(&self, path: &str) -> String {
        let log = self.log();
        let base = log
            .split("admin API on ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| c == '"' || c.is_whitespace()).next())
            .expect("the admin listener's start-up line");
        format!("{base}{path}")
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (at most 5 s) until the log contains `needle`; returns whether it did.
    pub fn log_contains(&self, needle: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits (at most 5 s) until the log contains `needle` at least `count` times; returns how often it does.
    pub fn log_count(&self, needle: &str, count: usize) -> usize {
        let start = Instant::now();
        loop {
            let seen = self.log().matches(needle).count();
            if seen >= count || start.elapsed() > Duration::from_secs(5) {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An HTTP/1.1 client that resolves every given host name to this server.
    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        self.client_builder(hosts).build().expect("client")
    }

    /// A client that speaks HTTP/2 without TLS from the first byte (h2c prior knowledge).
    pub fn h2c_client(&self, hosts: &[&str]) -> reqwest::Client {
        self.client_builder(hosts).http2_prior_knowledge().build().expect("client")
    }

    fn client_builder(&self, hosts: &[&str]) -> reqwest::ClientBuilder {
        // reqwest is built with rustls (for the HTTPS tests) and needs a provider even for plain HTTP.
        install_crypto_provider();
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        for h in hosts {
            b = b.resolve(h, self.addr);
        }
        b
    }

    /// The first HTTPS address, from the `listening on https://` log line.
    pub fn tls_addr(&self) -> SocketAddr {
        const NEEDLE: &str = "listening on https://";
        assert!(self.log_contains(NEEDLE), "no HTTPS listener");
        let log = self.log();
        let at = log.find(NEEDLE).unwrap() + NEEDLE.len();
        log[at..].split_whitespace().next().unwrap().parse().unwrap()
    }

    /// An HTTPS client trusting `ca_pem` that resolves every given host name to the HTTPS listener, with
    /// no connection reuse (each request is a new handshake).
    pub fn https_client(&self, hosts: &[&str], ca_pem: &str) -> reqwest::Client {
        install_crypto_provider();
        let tls = self.tls_addr();
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .pool_max_idle_per_host(0);
        for h in hosts {
            b = b.resolve(h, tls);
        }
        b.build().expect("client")
    }

    /// `https://HOST:PORT/PATH` for this server's HTTPS listener.
    pub fn https_url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.tls_addr().port())
    }

    /// `http://HOST:PORT/PATH` for this server.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }

    /// Sends raw bytes and returns everything the server answers until it closes (or 10 s pass).
    pub fn raw(&self, request: &str) -> String {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(request.as_bytes()).expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, ...) to the server.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit code.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- palisade log ----\n{}", self.log());
        }
    }
}

/// Reads until the server closes (or `limit` passes); returns what arrived and whether it closed.
pub fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (out, true), // reset
        }
    }
    (out, false)
}

/// Makes aws-lc-rs the process's rustls provider (clients built without one use it).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A certificate authority for tests, issuing leaf certificates for any names.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM, for clients to trust.
    pub pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(rcgen::DnType::CommonName, "palisade test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { issuer: rcgen::Issuer::new(params, key), pem }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses): (chain PEM, key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        self.leaf_until(names, None)
    }

    /// [`TestCa::leaf`], valid until `not_after` when given (e.g. in the past).
    pub fn leaf_until(&self, names: &[&str], not_after: Option<(i32, u8, u8)>) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        if let Some((y, m, d)) = not_after {
            params.not_before = rcgen::date_time_ymd(y - 1, m, d);
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Status line of a raw HTTP/1.1 response, e.g. `HTTP/1.1 404 Not Found`.
pub fn status_line(raw: &str) -> &str {
    raw.lines().next().unwrap_or("")
}
