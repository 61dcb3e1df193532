//! `palisade kv get|set|delete|list`: a tenant's buckets, read and changed by an operator, in the store the
//! configuration names. The quota does not apply to operators (their writes still count towards it).

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use palisade_config::Config;
use palisade_kv::{Quota, Scope};

use crate::{apps, serve};

/// Which bucket, and what to do with it.
#[derive(Debug, Args)]
pub(crate) struct KvArgs {
    /// The configuration file naming the store (`[kv]`).
    #[arg(long, short, default_value = "palisade.toml", global = true)]
    config: PathBuf,
    /// The tenant whose bucket it is (before or after the operation, as you like).
    #[arg(long, global = true)]
    tenant: Option<String>,
    /// The bucket.
    #[arg(long, default_value = "default", global = true)]
    bucket: String,
    #[command(subcommand)]
    op: KvOp,
}

#[derive(Debug, Subcommand)]
enum KvOp {
    /// Print a key's value (raw bytes, as stored).
    Get {
        /// The key.
        key: String,
    },
    /// Store a value.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Print every key of the bucket, one per line, and the tenant's usage.
    List,
}

pub(crate) fn run(args: KvArgs) -> anyhow::Result<()> {
    // Optional only to clap, which cannot require an argument that may come after the subcommand.
    let Some(tenant) = args.tenant.clone() else {
        anyhow::bail!("--tenant is required: whose bucket it is");
    };
    let config = Config::load(&args.config)?;
    if !config.tenants.iter().any(|t| t.name == tenant) {
        anyhow::bail!("{}: no tenant {tenant:?}", args.config.display());
    }
    serve::block_on(operate(config, &tenant, args))
}

async fn operate(config: Config, tenant: &str, args: KvArgs) -> anyhow::Result<()> {
    let (store, _) = apps::kv_store(&config, None)?;
    let scope = Scope::new(tenant, &args.bucket)?;
    let mut out = std::io::stdout().lock();
    match args.op {
        KvOp::Get { key } => match store.get(&scope, &key).await? {
            Some(value) => out.write_all(&value)?,
            None => anyhow::bail!("{:?} is not in bucket {:?} of tenant {}", key, args.bucket, tenant),
        },
        KvOp::Set { key, value } => store.set(&scope, &key, value.as_bytes(), &Quota::UNLIMITED).await?,
        KvOp::Delete { key } => store.delete(&scope, &key).await?,
        KvOp::List => {
            let mut cursor = 0;
            loop {
                let page = store.list_keys(&scope, cursor).await?;
                for key in &page.keys {
                    writeln!(out, "{key}")?;
                }
                match page.cursor {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
            let usage = store.usage(tenant).await?;
            eprintln!("tenant {tenant}: {} keys, {} bytes in all its buckets", usage.keys, usage.bytes);
        }
    }
    Ok(())
}
