//! Binary hand-over (SIGUSR2): the running process starts the binary at its path, hands it its listening
//! sockets, and stops accepting once the new process says it serves.
//!
//! The two talk over a Unix socket in a directory of its own (mode 0700, random name, under the temporary
//! directory) whose path the old process gives the new one in [`UPGRADE_ENV`]: other users cannot reach it
//! (an abstract socket's name would be listed in `/proc/net/unix` for anyone to connect to), and the old
//! process accepts only its own child there (checked with `SO_PEERCRED`). One message
//! carries the sockets (`SCM_RIGHTS`) with a label each (`http 0.0.0.0:80`: its role and the address the
//! configuration gives, so a port-0 test address matches too); the new process answers `ready` once its
//! workers accept on them. Both processes hold the same sockets meanwhile, so a connection waiting in a listen
//! queue is taken by one or the other, never refused. Why descriptors and not `SO_REUSEPORT`: with two
//! listeners in a reuseport group, the connections waiting in the queue of the one that closes are reset.

use std::io::{IoSlice, IoSliceMut, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

/// The environment variable naming the socket a new process gets its listeners from.
pub(crate) const UPGRADE_ENV: &str = "PALISADE_UPGRADE_SOCKET";

/// Most sockets handed over in one message.
const MAX_SOCKETS: usize = 64;

/// What the new process says once it accepts on the sockets it was given.
const READY: &[u8] = b"ready\n";

/// This process's listening sockets, each with its label, kept to hand over.
#[derive(Default)]
pub(crate) struct Listening {
    /// Handed over by the process this one replaces, not yet claimed.
    inherited: Vec<(String, TcpListener)>,
    /// Every socket this process listens on, as it will hand them over.
    kept: Vec<(String, TcpListener)>,
}

impl Listening {
    /// The socket for `role` on the configured `addr`: the one handed over with that label, or a new one.
    pub(crate) fn take_or_bind(&mut self, role: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let label = format!("{role} {addr}");
        let socket = match self.inherited.iter().position(|(l, _)| *l == label) {
            Some(at) => self.inherited.remove(at).1,
            None => palisade_server::bind_listener(addr)?,
        };
        self.kept.push((label, socket.try_clone()?));
        Ok(socket)
    }

    /// Every socket this process listens on, with its label, to hand over.
    pub(crate) fn to_hand_over(&self) -> std::io::Result<Vec<(String, TcpListener)>> {
        self.kept.iter().map(|(label, socket)| Ok((label.clone(), socket.try_clone()?))).collect()
    }

    /// Closes what was handed over and is no longer configured (its listen queue goes with it).
    pub(crate) fn close_unclaimed(&mut self) {
        for (label, _) in self.inherited.drain(..) {
            tracing::info!("closing the handed-over listener {label}: the configuration no longer names it");
        }
    }
}

/// The process this one replaces, waiting to hear that this one serves.
pub(crate) struct Predecessor {
    stream: UnixStream,
}

impl Predecessor {
    /// If this process was started by a hand-over, connects to the process it replaces and takes its sockets.
    pub(crate) fn connect(listening: &mut Listening) -> anyhow::Result<Option<Predecessor>> {
        let Some(name) = std::env::var_os(UPGRADE_ENV) else { return Ok(None) };
        let path = PathBuf::from(name);
        let stream = UnixStream::connect(&path)
            .with_context(|| format!("connecting to the process handing over ({UPGRADE_ENV}={})", path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        listening.inherited = receive(&stream).context("receiving the listening sockets (none came within 10 s)")?;
        tracing::info!(sockets = listening.inherited.len(), "took over the previous process's listening sockets");
        Ok(Some(Predecessor { stream }))
    }

    /// Tells the previous process that this one serves: it stops accepting and drains.
    pub(crate) fn ready(mut self) {
        if let Err(e) = self.stream.write_all(READY) {
            tracing::warn!("cannot tell the previous process that this one serves: {e}");
        }
    }
}

/// Starts the binary at this process's path on the same arguments and hands it `sockets`; returns its pid once
/// it serves, or an error (the new process stopped) if it exits, stops answering, is not ready within
/// `ready_within`, or `cancel` is set. Blocks: call on a blocking thread.
pub(crate) fn hand_over(
    binary: &Binary,
    sockets: Vec<(String, TcpListener)>,
    ready_within: Duration,
    cancel: &AtomicBool,
) -> anyhow::Result<u32> {
    let place = Private::new()?;
    let path = place.dir.join("socket");
    let listener = UnixListener::bind(&path).context("binding the hand-over socket")?;
    listener.set_nonblocking(true)?;
    let mut child = Command::new(&binary.path)
        .args(&binary.args)
        .env(UPGRADE_ENV, &path)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.path.display()))?;
    let pid = child.id();
    tracing::info!(pid, "started {} to hand over to", binary.path.display());
    let deadline = Waiting { deadline: Instant::now() + ready_within, cancel };
    match exchange(&listener, &mut child, &sockets, &deadline) {
        Ok(()) => Ok(pid),
        Err(e) => {
            // Whatever it started goes; the sockets it held are this process's still.
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// A directory of this process's own (0700) for the hand-over socket, removed when dropped.
struct Private {
    dir: PathBuf,
}

impl Private {
    fn new() -> anyhow::Result<Private> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness for the hand-over socket: {e}"))?;
        let dir = std::env::temp_dir().join(format!("palisade-upgrade-{}-{}", std::process::id(), hex(&random)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {} for the hand-over socket", dir.display()))?;
        Ok(Private { dir })
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Until when the old process waits for the new one, unless told to give up.
struct Waiting<'a> {
    deadline: Instant,
    cancel: &'a AtomicBool,
}

/// The old process's side: accept the child, send it the sockets, wait for its word.
fn exchange(
    listener: &UnixListener,
    child: &mut Child,
    sockets: &[(String, TcpListener)],
    until: &Waiting<'_>,
) -> anyhow::Result<()> {
    let mut refused = 0u64;
    let mut stream = 'found: loop {
        // Everything waiting is looked at before the next pause.
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let peer = rustix::net::sockopt::socket_peercred(&stream).context("the connecting process")?;
                    if u32::try_from(peer.pid.as_raw_nonzero().get()).ok() == Some(child.id()) {
                        break 'found stream;
                    }
                    if refused == 0 {
                        tracing::warn!(
                            pid = peer.pid.as_raw_nonzero().get(),
                            "refused a hand-over connection from another process"
                        );
                    }
                    refused += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("accepting the new process"),
            }
        }
        waiting(child, until)?;
        std::thread::sleep(Duration::from_millis(20));
    };
    stream.set_nonblocking(false)?;
    send(&stream, sockets)?;
    // Loading and compiling may take a while: look at the child between short waits for its word.
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut said = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                // It may be exiting: its status says more than the closed socket.
                std::thread::sleep(Duration::from_millis(200));
                waiting(child, until)?;
                anyhow::bail!("the new process closed the hand-over socket before it was ready");
            }
            Ok(n) => {
                said.extend_from_slice(&buf[..n]);
                if said.starts_with(READY) {
                    return Ok(());
                }
                if said.len() >= READY.len() {
                    anyhow::bail!("the new process said {:?} instead of ready", String::from_utf8_lossy(&said));
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("waiting for the new process"),
        }
        waiting(child, until)?;
    }
}

/// Fails if the child has exited, the deadline has passed, or the wait was given up.
fn waiting(child: &mut Child, until: &Waiting<'_>) -> anyhow::Result<()> {
    if let Some(status) = child.try_wait()? {
        anyhow::bail!("the new process exited ({status}) before it was ready");
    }
    if until.cancel.load(Ordering::Relaxed) {
        anyhow::bail!("given up: this process is stopping");
    }
    if Instant::now() >= until.deadline {
        anyhow::bail!("the new process was not ready in time");
    }
    Ok(())
}

/// Sends the labels (one per line) with the sockets, in one message.
fn send(stream: &UnixStream, sockets: &[(String, TcpListener)]) -> anyhow::Result<()> {
    anyhow::ensure!(
        sockets.len() <= MAX_SOCKETS,
        "{} listening sockets; at most {MAX_SOCKETS} are handed over",
        sockets.len()
    );
    let labels: String = sockets.iter().map(|(label, _)| format!("{label}\n")).collect();
    let fds: Vec<_> = sockets.iter().map(|(_, socket)| socket.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    anyhow::ensure!(control.push(SendAncillaryMessage::ScmRights(&fds)), "the sockets do not fit one message");
    let sent = rustix::net::sendmsg(stream, &[IoSlice::new(labels.as_bytes())], &mut control, SendFlags::empty())?;
    anyhow::ensure!(sent == labels.len(), "sent {sent} of {} bytes of labels", labels.len());
    Ok(())
}

/// Receives what [`send`] sent: each label with its socket.
fn receive(stream: &UnixStream) -> anyhow::Result<Vec<(String, TcpListener)>> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut text = vec![0u8; 64 * 1024];
    let received =
        rustix::net::recvmsg(stream, &mut [IoSliceMut::new(&mut text)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let text = std::str::from_utf8(&text[..received.bytes]).context("the labels are not text")?;
    let labels: Vec<&str> = text.lines().collect();
    anyhow::ensure!(labels.len() == fds.len(), "{} labels for {} sockets", labels.len(), fds.len());
    Ok(labels.into_iter().map(String::from).zip(fds.into_iter().map(TcpListener::from)).collect())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The binary a hand-over starts: this process's own path and arguments, read at start-up (once the file is
/// replaced, `/proc/self/exe` names the old one, deleted).
#[derive(Clone)]
pub(crate) struct Binary {
    path: PathBuf,
    args: Vec<std::ffi::OsString>,
}

impl Binary {
    /// This process's binary and arguments.
    pub(crate) fn this() -> anyhow::Result<Binary> {
        let path = std::env::current_exe().context("this process's binary")?;
        Ok(Binary { path, args: std::env::args_os().skip(1).collect() })
    }
}
