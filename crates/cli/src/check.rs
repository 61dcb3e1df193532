//! `palisade check`: validate the configuration and every guest, then print what would be served.

use std::fmt::Write as _;
use std::path::Path;

use palisade_config::Config;

use crate::apps;

pub(crate) fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let runtime = apps::runtime(&config)?;
    let loaded = match apps::build_router(&config, &runtime) {
        Ok((_, loaded)) => loaded,
        Err(errors) => anyhow::bail!("{}", apps::describe(&errors)),
    };
    print!("{}", summary(&config, &loaded));
    Ok(())
}

/// A human-readable summary of listeners, tenants, routes, and what each guest imports and exports.
fn summary(config: &Config, loaded: &[apps::LoadedRoute]) -> String {
    let mut out = String::new();
    let listen: Vec<String> = config.server.listen.iter().map(|a| format!("http://{a}")).collect();
    let _ = writeln!(out, "{}: ok", config.file.display());
    let _ = writeln!(out, "listen: {}", listen.join(", "));
    let _ = writeln!(out, "data_dir: {}", config.server.data_dir.display());
    for t in &config.tenants {
        let hosts: Vec<String> = t.hosts.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "tenant {} (hosts: {}; memory {} (total {}), timeout {}, cpu_time {}, max_concurrency {}{})",
            t.name,
            hosts.join(", "),
            human_size(t.limits.memory),
            human_size(t.limits.max_total_memory),
            humantime_short(t.limits.timeout),
            humantime_short(t.limits.cpu_time),
            t.limits.max_concurrency,
            t.data.as_ref().map(|d| format!(", data {}", d.display())).unwrap_or_default(),
        );
        let width = t.routes.iter().map(|r| r.path.len()).max().unwrap_or(0);
        for r in &t.routes {
            let _ = writeln!(out, "  {:width$}  {:9}  {}", r.path, r.target.kind(), r.target.path().display());
            let info = loaded.iter().find(|l| l.tenant == t.name && l.path == r.path).and_then(|l| l.info.as_ref());
            if let Some(info) = info {
                let _ = writeln!(out, "  {:width$}  {info}", "");
            }
        }
    }
    out
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn humantime_short(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}
