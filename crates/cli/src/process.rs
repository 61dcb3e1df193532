//! Process conventions: the pid file, systemd's readiness protocol, and `palisade upgrade`.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use rustix::process::{Pid, Signal};

/// Where this process writes its pid, if asked to.
#[derive(Debug, Clone, Default)]
pub(crate) struct PidFile(Option<PathBuf>);

impl PidFile {
    pub(crate) fn new(path: Option<PathBuf>) -> PidFile {
        PidFile(path)
    }

    /// Writes this process's pid (replacing the file whole, so a reader never sees half of it).
    pub(crate) fn write(&self) {
        let Some(path) = &self.0 else { return };
        let temporary = path.with_extension("tmp");
        let written = std::fs::write(&temporary, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), "pid file not written: {e}");
        }
    }

    /// Removes the file if it still names this process (after a hand-over it names the new one).
    pub(crate) fn remove(&self) {
        let Some(path) = &self.0 else { return };
        if read_pid(path).is_ok_and(|pid| pid == std::process::id()) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Tells systemd (a `Type=notify` unit) how the service is, if it started this process: `READY=1` with
/// `MAINPID`, so that after a hand-over systemd follows the new process (the unit needs `NotifyAccess=all`),
/// or `STOPPING=1`. Nothing happens outside systemd.
pub(crate) fn notify_systemd(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let socket = socket.to_string_lossy().into_owned();
    let sent = (|| {
        let addr = match socket.strip_prefix('@') {
            Some(name) => UnixAddr::from_abstract_name(name.as_bytes())?,
            None => UnixAddr::from_pathname(&socket)?,
        };
        UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)
    })();
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd at {socket}: {e}");
    }
}

/// The message that says this process serves.
pub(crate) fn ready_message() -> String {
    format!("READY=1\nMAINPID={}\n", std::process::id())
}

/// Sends `signal` to process `pid`, if it still runs.
pub(crate) fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// What `palisade upgrade` was asked.
#[derive(Debug, clap::Args)]
pub(crate) struct UpgradeArgs {
    /// The running server's pid file (`palisade serve --pid-file`).
    #[arg(long)]
    pid_file: PathBuf,
    /// How long to wait for the new process to take over, e.g. "90s".
    #[arg(long, default_value = "90s", value_parser = palisade_config::parse_duration)]
    timeout: Duration,
}

/// Sends SIGUSR2 to the server the pid file names and waits until the file names the process that took over
/// (success), or is written again by the same process (the new binary failed; the old one still serves).
pub(crate) fn upgrade(args: UpgradeArgs) -> anyhow::Result<()> {
    let old = read_pid(&args.pid_file)?;
    let before = modified(&args.pid_file);
    let pid = Pid::from_raw(i32::try_from(old)?).context("the pid file names pid 0")?;
    rustix::process::kill_process(pid, Signal::USR2)
        .with_context(|| format!("signalling pid {old} (from {})", args.pid_file.display()))?;
    println!("asked pid {old} to hand over to the binary at its path");
    let started = Instant::now();
    while started.elapsed() < args.timeout {
        std::thread::sleep(Duration::from_millis(100));
        match read_pid(&args.pid_file) {
            Ok(new) if new != old => {
                println!("upgraded: pid {new} serves; pid {old} finishes its requests and exits");
                return Ok(());
            }
            Ok(_) if modified(&args.pid_file) != before => {
                anyhow::bail!("the upgrade failed: pid {old} still serves (its log says why)")
            }
            _ => {}
        }
        if rustix::process::test_kill_process(pid).is_err() {
            anyhow::bail!("pid {old} exited without handing over (its log says why)");
        }
    }
    anyhow::bail!("no new process took over within {:?}; pid {old} still serves (its log says why)", args.timeout)
}

fn read_pid(path: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim().parse().with_context(|| format!("{} does not hold a pid", path.display()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
