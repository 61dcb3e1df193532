//! `palisade run app.wasm`: one component or CGI module at `/`, no config file; the palisade `wasmtime serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use palisade_config::{DEFAULT_SHUTDOWN_TIMEOUT, Limits, RouteTarget};
use palisade_kv::{KvStore, RedbStore};
use palisade_sandbox::{GuestDirs, Preopen, is_component};
use palisade_server::{Router, TenantRoutes};

use crate::{apps, serve};

/// What `palisade run` was asked to serve.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The guest: a wasi:http component or a WASI preview1 CGI program (detected from the file).
    app: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// An environment variable for the guest, `NAME=VALUE`; repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A host directory the guest may read and write, `HOST[:GUEST]` (GUEST defaults to HOST); repeatable.
    #[arg(long = "dir", value_name = "HOST[:GUEST]", value_parser = parse_dir)]
    dirs: Vec<Preopen>,
    /// Maximum linear memory per instance, e.g. "64 MiB".
    #[arg(long, value_parser = palisade_config::parse_size)]
    memory: Option<u64>,
    /// Deadline per request, e.g. "30s" (more than zero, as in the configuration).
    #[arg(long, value_parser = positive_duration)]
    timeout: Option<std::time::Duration>,
}

fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match palisade_config::parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: a deadline of zero would refuse every request")),
        d => Ok(d),
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

fn parse_dir(s: &str) -> Result<Preopen, String> {
    let (host, guest) = s.split_once(':').unwrap_or((s, s));
    let host = PathBuf::from(host);
    if !host.is_dir() {
        return Err(format!("{} is not a directory", host.display()));
    }
    Ok(Preopen { host, guest: guest.to_string(), writable: true })
}

/// Whether the file holds a component (binary or text format) rather than a core module.
fn holds_component(path: &Path) -> anyhow::Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(b"\0asm") {
        return Ok(is_component(&bytes));
    }
    Ok(String::from_utf8_lossy(&bytes).trim_start().starts_with("(component"))
}

/// Where `run` caches compiled guests: the user's cache directory, or a temporary one.
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("palisade")
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<()> {
    let target = if holds_component(&args.app)? {
        RouteTarget::Component(args.app.clone())
    } else {
        RouteTarget::Cgi(args.app.clone())
    };
    let defaults = Limits::default();
    let limits = Limits {
        memory: args.memory.unwrap_or(defaults.memory),
        timeout: args.timeout.unwrap_or(defaults.timeout),
        ..defaults
    };
    serve::block_on(async move {
        let guest_memory = crate::machine::default_guest_memory();
        let runtime = apps::new_runtime(&cache_dir(), limits.memory, limits.max_concurrency, None, guest_memory);
        let dirs = GuestDirs { cgi: args.dirs.clone(), components: args.dirs };
        // Buckets of a `palisade run` app live as long as the process (several may run at once).
        let kv: Arc<dyn KvStore> = Arc::new(RedbStore::in_memory()?);
        let sandbox = runtime.sandbox("run", limits, args.env, dirs, Some(kv));
        let apps::RouteHandler { handler, info, .. } =
            apps::handler(&runtime, &sandbox, &target).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut router = Router::default();
        router.add(&["*".to_string()], TenantRoutes::new("run", vec![("/".to_string(), handler)]));
        let server = serve::bind(&[args.listen], router, DEFAULT_SHUTDOWN_TIMEOUT).await?;
        if let Some(info) = info {
            tracing::info!("{}: {info}", args.app.display());
        }
        for addr in server.local_addrs() {
            println!("Serving {} on http://{addr}/", args.app.display());
        }
        serve::serve_until_signal(server).await
    })
}
