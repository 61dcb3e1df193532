//! The `palisade` binary: command-line flags, logging and wiring. Everything else lives in library crates.

mod admin;
mod apps;
mod check;
mod client;
mod cluster;
mod handover;
mod https;
mod kv;
mod logging;
mod machine;
mod preflight;
mod process;
mod run;
mod serve;
mod site;
mod tenant_client;
mod tenants;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Every request allocates and frees many small objects on its worker thread (a store, WASI context,
/// resource tables, headers); mimalloc's thread-local free lists serve that pattern better than glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A memory-safe, multi-tenant edge server: static files, wasi:http components and CGI programs compiled to
/// WebAssembly, each request in a fresh sandbox.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about, long_about = None)]
struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the sites in a configuration file until SIGINT or SIGTERM; on SIGUSR2, hand the listening
    /// sockets over to the binary at this process's path (a new version) and exit once drained.
    Serve {
        /// The configuration file; relative paths inside it are relative to its directory.
        #[arg(long, short, default_value = "palisade.toml")]
        config: PathBuf,
        /// Write the process id here once serving (and remove it at exit); after a hand-over it names the new
        /// process.
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Upgrade a running server in place: signal the process a pid file names to hand over to the binary at its
    /// path, and wait until the new process serves.
    Upgrade(process::UpgradeArgs),
    /// Serve one component or CGI program at `/` on every host, with no configuration file.
    Run(run::RunArgs),
    /// Validate a configuration file and the guests it names, and print what it would serve.
    Check {
        /// The configuration file to check.
        #[arg(long, short, default_value = "palisade.toml")]
        config: PathBuf,
    },
    /// Read or change a tenant's key-value bucket in the configured store (stop the server first when the
    /// store is the embedded file: one process at a time opens it).
    Kv(kv::KvArgs),
    /// Upload a component or CGI module to a running server's admin API as a tenant's app (validated and
    /// swapped in atomically).
    Deploy(client::DeployArgs),
    /// List a running server's tenants, routes and deployed apps through its admin API.
    Apps(client::AppsArgs),
    /// Create, change, list and remove tenants, and issue their tokens, through a running server's admin API.
    Tenants(tenant_client::TenantsArgs),
    /// Purge a tenant's HTTP cache by Surrogate-Key tag, by URL, or all of it, through a running server's admin API.
    Purge(tenant_client::PurgeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    palisade_tls::install_crypto_provider();
    let log = logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve { config, pid_file } => serve::run(&config, process::PidFile::new(pid_file)),
        Command::Upgrade(args) => process::upgrade(args),
        Command::Check { config } => check::run(&config),
        Command::Run(args) => run::run(args),
        Command::Kv(args) => kv::run(args),
        Command::Deploy(args) => client::deploy(args),
        Command::Apps(args) => client::apps(args),
        Command::Tenants(args) => tenant_client::run(args),
        Command::Purge(args) => tenant_client::purge(args),
    };
    drop(log); // flushes the log before the final error line, so they come out in order
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
