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
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = {:?}\nshutdown_timeout = \"5s\"\n\n{tenants}",
            cache.display().to_string()
        );
        self.write("palisade.toml", text)
    }

    /// 1-based line of the first line of `palisade.toml` containing `needle`.
    pub fn line_of(&self, needle: &str) -> usize {
        let text = std::fs::read_to_string(self.path("palisade.toml")).expect("config");
        text.lines().position(|l| l.contains(needle)).expect("needle in config") + 1
    }

    /// Runs `palisade ARGS...` to completion, returning (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN).args(args).current_dir(self.dir.path()).output().expect("run palisade");
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
        let mut child = Command::new(BIN)
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
                    let addr = line[i + "listening on http://".len()..].trim().to_string();
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
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        for h in hosts {
            b = b.resolve(h, self.addr);
        }
        b
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

/// Status line of a raw HTTP/1.1 response, e.g. `HTTP/1.1 404 Not Found`.
pub fn status_line(raw: &str) -> &str {
    raw.lines().next().unwrap_or("")
}
