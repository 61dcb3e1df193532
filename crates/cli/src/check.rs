//! `palisade check`: validate the configuration and every guest, then print what would be served.

use std::fmt::Write as _;
use std::path::Path;

use palisade_config::Config;

use crate::apps;
use crate::https::{Https, SiteReport};

pub(crate) fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    crate::preflight::check(&config)?;
    let runtime = apps::runtime(&config);
    let loaded = match apps::build_router(&config, &runtime, None) {
        Ok((_, loaded)) => loaded,
        Err(errors) => anyhow::bail!("{}", apps::describe(&errors)),
    };
    let certificates = Https::load(&config)?.map(|(_, reports)| reports).unwrap_or_default();
    print!("{}", summary(&config, &loaded, &certificates));
    Ok(())
}

/// A human-readable summary of listeners, tenants, routes, certificates, and what each guest imports and
/// exports.
fn summary(config: &Config, loaded: &[apps::LoadedRoute], certificates: &[SiteReport]) -> String {
    let mut out = String::new();
    let listen: Vec<String> = config.server.listen.iter().map(|a| format!("http://{a}")).collect();
    let tls_listen: Vec<String> = config.server.tls_listen.iter().map(|a| format!("https://{a}")).collect();
    let _ = writeln!(out, "{}: ok", config.file.display());
    let _ = writeln!(out, "listen: {}", listen.join(", "));
    if !tls_listen.is_empty() {
        let _ = writeln!(out, "tls_listen: {}", tls_listen.join(", "));
    }
    let _ = writeln!(out, "data_dir: {}", config.server.data_dir.display());
    for t in &config.tenants {
        let hosts: Vec<String> = t.hosts.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "tenant {} (hosts: {}; memory {} (total {}), timeout {}, cpu_time {}, max_concurrency {}{})",
            t.name,
            hosts.join(", "),
            palisade_config::format_size(t.limits.memory),
            palisade_config::format_size(t.limits.max_total_memory),
            humantime_short(t.limits.timeout),
            humantime_short(t.limits.cpu_time),
            t.limits.max_concurrency,
            t.data.as_ref().map(|d| format!(", data {}", d.display())).unwrap_or_default(),
        );
        if let Some(report) = certificates.iter().find(|r| r.tenant == t.name) {
            let _ = writeln!(out, "  {}", certificate_line(t, report.cert.as_ref()));
        }
        let width = t.routes.iter().map(|r| r.path.len()).max().unwrap_or(0);
        for r in &t.routes {
            let _ = writeln!(out, "  {:width$}  {:9}  {}", r.path, r.target.kind(), r.target);
            let info = loaded.iter().find(|l| l.tenant == t.name && l.path == r.path).and_then(|l| l.info.as_ref());
            if let Some(info) = info {
                let _ = writeln!(out, "  {:width$}  {info}", "");
            }
        }
    }
    out
}

/// `certificate for a, b: valid until ... (N days)`, with a warning when it expires soon.
fn certificate_line(tenant: &palisade_config::Tenant, cert: Option<&palisade_tls::LoadedCert>) -> String {
    let source = match &tenant.tls {
        Some(palisade_config::TlsSource::Acme(acme)) => format!("acme ({})", acme.directory),
        _ => "tls".to_string(),
    };
    let Some(cert) = cert else {
        return format!("{source}: no certificate yet (obtained when serving)");
    };
    let until = humantime::format_rfc3339_seconds(cert.not_after);
    let days = cert.remaining().as_secs() / 86400;
    let warning = if cert.remaining().is_zero() {
        "; warning: EXPIRED"
    } else if cert.remaining() < palisade_tls::EXPIRY_WARNING {
        "; warning: expires in less than 30 days"
    } else {
        ""
    };
    format!("{source}: certificate for {}, valid until {until} ({days} days){warning}", cert.names.join(", "))
}

fn humantime_short(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}
