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
        RedisServer::start_on(free_port())
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

/// A master, its replica and three Sentinels monitoring them, each a redis-server of the test's own on a free
/// loopback port, stopped (and their files removed) when dropped. For failover tests: write, wait for the
/// replica ([`SentinelSet::sync_replica`]), [`SentinelSet::kill_master`], and the Sentinels promote the
/// replica within a few seconds.
pub struct SentinelSet {
    master: Option<RedisServer>,
    master_port: u16,
    replica: RedisServer,
    sentinels: Vec<(Child, u16)>,
    dir: std::path::PathBuf,
}

/// The name the Sentinels monitor the master under.
pub const SENTINEL_MASTER_NAME: &str = "palisade-test";

/// How long starting the set, and each wait on it, may take before the test fails: Sentinels learn of the
/// replica from the master's `INFO`, which they read every 10 seconds.
const SENTINEL_SET_TIMEOUT: Duration = Duration::from_secs(30);

impl SentinelSet {
    /// Starts the master, the replica and the Sentinels, and waits until every Sentinel sees the master, the
    /// replica and the two other Sentinels (so that a failover can be agreed on); panics if that takes more
    /// than 30 seconds.
    #[allow(clippy::expect_used, reason = "test support: a set that cannot start fails the test")]
    pub fn start() -> SentinelSet {
        let master_port = free_port();
        // Every server's files (the replica's copy of the master's data, the Sentinels' rewritten
        // configurations) go here, not in the test's working directory.
        let dir = std::env::temp_dir().join(format!("palisade-sentinels-{}-{master_port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the servers' files");
        let dir_arg = dir.display().to_string();
        let master = RedisServer::launch(master_port, &["--save", "", "--appendonly", "no", "--dir", &dir_arg]);
        let replica_port = free_port();
        let master_port_arg = master_port.to_string();
        let replica = RedisServer::launch(
            replica_port,
            &["--save", "", "--appendonly", "no", "--dir", &dir_arg, "--replicaof", "127.0.0.1", &master_port_arg],
        );
        let sentinels = (0..3)
            .map(|_| {
                let port = free_port();
                let config = dir.join(format!("sentinel-{port}.conf"));
                let text = format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 5000\n\
                     sentinel parallel-syncs {name} 1\n",
                    dir = dir.display(),
                    name = SENTINEL_MASTER_NAME,
                );
                std::fs::write(&config, text).expect("a Sentinel's configuration");
                let child = Command::new("redis-server")
                    .arg(&config)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server --sentinel (scripts/setup.sh installs it)");
                (child, port)
            })
            .collect();
        let set = SentinelSet { master: Some(master), master_port, replica, sentinels, dir };
        set.wait_until_ready();
        set
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/palisade-test`.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self.sentinels.iter().map(|(_, port)| format!("127.0.0.1:{port}")).collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER_NAME}", sentinels.join(","))
    }

    /// The first master's port.
    pub fn master_port(&self) -> u16 {
        self.master_port
    }

    /// The replica's port (the master's after a failover).
    pub fn replica_port(&self) -> u16 {
        self.replica.port()
    }

    /// Waits until the replica has every write the master acknowledged so far (one more write, then
    /// `WAIT 1 1000` on the same connection: replication is in order); panics if it does not within 10 s.
    #[allow(clippy::expect_used, reason = "test support: a replica that lags fails the test")]
    pub fn sync_replica(&self) {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", self.master_port)).expect("master URL");
        let mut connection = client.get_connection().expect("a connection to the master");
        let started = Instant::now();
        loop {
            let _: () = redis::cmd("SET").arg("palisade-test:sync").arg(1).query(&mut connection).expect("SET");
            let replicas: i64 = redis::cmd("WAIT").arg(1).arg(1000).query(&mut connection).expect("WAIT");
            if replicas >= 1 {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the replica did not catch up");
        }
    }

    /// Kills the master (SIGKILL: no goodbye to the replica or the Sentinels).
    pub fn kill_master(&mut self) {
        drop(self.master.take());
    }

    /// Asks a Sentinel to promote the replica now, the master staying up (it becomes the new master's
    /// replica); panics if no Sentinel accepts within 30 seconds.
    pub fn fail_over(&self) {
        self.wait_for_one("a Sentinel to start a failover", |sentinel| {
            redis::cmd("SENTINEL").arg("failover").arg(SENTINEL_MASTER_NAME).query::<()>(sentinel).ok()
        });
    }

    /// Waits until the Sentinels have promoted the replica (every one of them names it as the master);
    /// panics if they have not within 30 seconds.
    pub fn wait_for_promotion(&self) {
        let replica = self.replica.port().to_string();
        self.wait("the replica's promotion", |sentinel| {
            let address: Vec<String> =
                redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(SENTINEL_MASTER_NAME).query(sentinel).ok()?;
            (address.get(1) == Some(&replica)).then_some(())
        });
    }

    /// Until every Sentinel knows of the master, its replica and the two other Sentinels.
    fn wait_until_ready(&self) {
        self.wait("the Sentinels to see the master, the replica and each other", |sentinel| {
            let master: std::collections::HashMap<String, String> =
                redis::cmd("SENTINEL").arg("master").arg(SENTINEL_MASTER_NAME).query(sentinel).ok()?;
            let replicas: Vec<std::collections::HashMap<String, String>> =
                redis::cmd("SENTINEL").arg("replicas").arg(SENTINEL_MASTER_NAME).query(sentinel).ok()?;
            let replica_up = replicas.iter().any(|r| {
                r.get("flags").is_some_and(|f| f == "slave") && r.get("master-link-status").is_some_and(|s| s == "ok")
            });
            let sentinels_known = master.get("num-other-sentinels").is_some_and(|n| n == "2");
            (master.get("flags").is_some_and(|f| f == "master") && replica_up && sentinels_known).then_some(())
        });
    }

    /// Asks the Sentinels in turn `ready` (a fresh connection each time) until one says yes.
    fn wait_for_one(&self, what: &str, ready: impl Fn(&mut redis::Connection) -> Option<()>) {
        let started = Instant::now();
        for (_, port) in self.sentinels.iter().cycle() {
            let answer = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
                .ok()
                .and_then(|mut sentinel| ready(&mut sentinel));
            if answer.is_some() {
                return;
            }
            assert!(started.elapsed() < SENTINEL_SET_TIMEOUT, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks every Sentinel `ready` (a fresh connection each time) until each says yes.
    fn wait(&self, what: &str, ready: impl Fn(&mut redis::Connection) -> Option<()>) {
        let started = Instant::now();
        for (_, port) in &self.sentinels {
            loop {
                let answer = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
                    .ok()
                    .and_then(|mut sentinel| ready(&mut sentinel));
                if answer.is_some() {
                    break;
                }
                assert!(
                    started.elapsed() < SENTINEL_SET_TIMEOUT,
                    "timed out waiting for {what}; Sentinel {port} sees {}",
                    sentinel_view(*port)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for (sentinel, _) in &mut self.sentinels {
            let _ = sentinel.kill();
            let _ = sentinel.wait();
        }
        // The servers stop as their fields drop.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the Sentinel on `port` knows of the master and its replicas, for a test's failure message.
fn sentinel_view(port: u16) -> String {
    let view = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut sentinel| {
            let master: redis::Value =
                redis::cmd("SENTINEL").arg("master").arg(SENTINEL_MASTER_NAME).query(&mut sentinel)?;
            let replicas: redis::Value =
                redis::cmd("SENTINEL").arg("replicas").arg(SENTINEL_MASTER_NAME).query(&mut sentinel)?;
            Ok(format!("master {master:?}; replicas {replicas:?}"))
        });
    view.unwrap_or_else(|e| format!("nothing: {e}"))
}

/// A loopback port free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}
