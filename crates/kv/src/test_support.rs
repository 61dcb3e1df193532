//! For tests (here and in the end-to-end suite): a real redis-server of the test's own on a free loopback
//! port, stopped when dropped. Needs `redis-server` on the PATH (`scripts/setup.sh` installs it).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server without persistence.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free port; panics (it is for tests) if it cannot.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0);
        RedisServer::start_on(port)
    }

    /// Starts one on `port` (to bring a stopped server back).
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::launch(port, &["--save", "", "--appendonly", "no"])
    }

    /// Starts one on `port` that keeps its data in `dir` (an append-only file synced on every write), so a
    /// server killed and started again on the same `dir` has every acknowledged write.
    pub fn start_persistent_on(port: u16, dir: &std::path::Path) -> RedisServer {
        let dir = dir.display().to_string();
        RedisServer::launch(port, &["--save", "", "--dir", &dir, "--appendonly", "yes", "--appendfsync", "always"])
    }

    #[allow(clippy::expect_used, reason = "test support: a server that cannot start fails the test")]
    fn launch(port: u16, persistence: &[&str]) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(persistence)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup.sh installs it)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
