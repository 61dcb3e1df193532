//! `palisade tenants`: create, change, show, list and remove tenants, and issue and revoke their tokens,
//! through a running server's admin API.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use percent_encoding::utf8_percent_encode;

use crate::client::{AdminArgs, SEGMENT, call, message};

/// `palisade tenants`.
#[derive(Debug, clap::Args)]
pub(crate) struct TenantsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Every tenant, with where it is defined (file or API) and its hosts.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One tenant, as JSON.
    Show { name: String },
    /// Create a tenant from a file holding the keys of a [tenants.NAME] table (TOML, or JSON if it ends in .json).
    Create {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace a tenant created through the API (its apps stay).
    Update {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a tenant created through the API, with its apps, tokens and key-value data.
    Delete { name: String },
    /// Issue a token that may read the tenant and deploy its apps; it is printed once.
    Token { name: String },
    /// Revoke one of a tenant's tokens by its id.
    Revoke { name: String, id: String },
}

pub(crate) fn run(args: TenantsArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    let tenant_path = |name: &str| format!("/v1/tenants/{}", utf8_percent_encode(name, SEGMENT));
    match args.action {
        Action::List { json } => {
            let answer = expect(call(admin, Method::GET, "/v1/tenants", Bytes::new())?, &[StatusCode::OK])?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            println!("{:<24} {:<6} {:<5} HOSTS", "TENANT", "SOURCE", "APPS");
            for t in answer["tenants"].as_array().into_iter().flatten() {
                let hosts: Vec<&str> = t["hosts"].as_array().into_iter().flatten().filter_map(|h| h.as_str()).collect();
                println!(
                    "{:<24} {:<6} {:<5} {}",
                    t["name"].as_str().unwrap_or("?"),
                    t["source"].as_str().unwrap_or("?"),
                    t["apps"].as_array().map_or(0, Vec::len),
                    hosts.join(" ")
                );
            }
        }
        Action::Show { name } => {
            let answer = expect(call(admin, Method::GET, &tenant_path(&name), Bytes::new())?, &[StatusCode::OK])?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        Action::Create { name, file } => {
            // PUT replaces: ask first, so that `create` never overwrites a tenant by mistake.
            let (status, _) = call(admin, Method::GET, &tenant_path(&name), Bytes::new())?;
            anyhow::ensure!(
                status == StatusCode::NOT_FOUND,
                "tenant {name} exists already (use `update` to change it)"
            );
            let body = document(&file)?;
            expect(call(admin, Method::PUT, &tenant_path(&name), body)?, &[StatusCode::CREATED])?;
            println!("created tenant {name}");
        }
        Action::Update { name, file } => {
            let body = document(&file)?;
            expect(call(admin, Method::PUT, &tenant_path(&name), body)?, &[StatusCode::OK, StatusCode::CREATED])?;
            println!("updated tenant {name}");
        }
        Action::Delete { name } => {
            let answer = expect(call(admin, Method::DELETE, &tenant_path(&name), Bytes::new())?, &[StatusCode::OK])?;
            println!(
                "deleted tenant {name} ({} apps, {} keys)",
                answer["apps"].as_array().map_or(0, Vec::len),
                answer["keys"]
            );
        }
        Action::Token { name } => {
            let path = format!("{}/tokens", tenant_path(&name));
            let answer = expect(call(admin, Method::POST, &path, Bytes::new())?, &[StatusCode::CREATED])?;
            eprintln!("token {} for tenant {name} (shown once; keep it secret):", answer["id"].as_str().unwrap_or("?"));
            println!("{}", answer["token"].as_str().unwrap_or("?"));
        }
        Action::Revoke { name, id } => {
            let path = format!("{}/tokens/{}", tenant_path(&name), utf8_percent_encode(&id, SEGMENT));
            expect(call(admin, Method::DELETE, &path, Bytes::new())?, &[StatusCode::OK])?;
            println!("revoked token {id} of tenant {name}");
        }
    }
    Ok(())
}

/// `palisade purge`.
#[derive(Debug, clap::Args)]
pub(crate) struct PurgeArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The tenant whose cache is purged.
    #[arg(long)]
    tenant: String,
    /// A `Surrogate-Key` tag: everything stored with it (repeatable).
    #[arg(long = "key")]
    keys: Vec<String>,
    /// A URL (`https://host/path?query`), or a path with query on every host of the tenant (repeatable).
    #[arg(long = "url")]
    urls: Vec<String>,
    /// Everything the tenant has stored.
    #[arg(long)]
    all: bool,
    /// Mark stale instead of removing (stale-while-revalidate and stale-if-error still apply).
    #[arg(long)]
    soft: bool,
}

pub(crate) fn purge(args: PurgeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.keys.is_empty() || !args.urls.is_empty() || args.all,
        "say what to purge: --key, --url or --all"
    );
    let path = format!("/v1/tenants/{}/purge", utf8_percent_encode(&args.tenant, SEGMENT));
    let body = serde_json::json!({ "keys": args.keys, "urls": args.urls, "all": args.all, "soft": args.soft });
    let answer = expect(call(&args.admin, Method::POST, &path, Bytes::from(body.to_string()))?, &[StatusCode::OK])?;
    let how = if args.soft { "marked stale" } else { "purged" };
    println!("{how} {} URLs of tenant {}", answer["purged"], args.tenant);
    Ok(())
}

/// The answer's JSON if its status is one of `wanted`; otherwise the API's error (and each problem's key).
fn expect((status, body): (StatusCode, Bytes), wanted: &[StatusCode]) -> anyhow::Result<serde_json::Value> {
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if wanted.contains(&status) {
        return Ok(answer);
    }
    let mut text = format!("{status}: {}", message(&answer, &body));
    for problem in answer["problems"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "\n  {}: {}",
            problem["key"].as_str().unwrap_or(""),
            problem["message"].as_str().unwrap_or("")
        ));
    }
    anyhow::bail!(text)
}

/// A tenant document read from `file` as JSON: TOML (the keys of a `[tenants.NAME]` table, as in the
/// configuration file) unless the name ends in `.json`.
fn document(file: &Path) -> anyhow::Result<Bytes> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "json") {
        return Ok(Bytes::from(text));
    }
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message()))?;
    Ok(Bytes::from(serde_json::to_vec(&table)?))
}
