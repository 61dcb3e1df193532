//! `[admin]` and `[cluster]`: how the server is operated, as opposed to what it serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::Location;
use crate::model::KvBackend;
use crate::validate::Checker;

/// How often a cluster node compares its apps with Redis even when no change was announced.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(5);

/// `[admin]`: the operators' listener (API, metrics, health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the admin API listens.
    pub listen: SocketAddr,
    /// A file holding the bearer token (trimmed); `PALISADE_ADMIN_TOKEN` is used when there is none.
    pub token_file: Option<PathBuf>,
    /// `tls = { cert, key }`: the admin listener speaks HTTPS with this certificate (PEM files, absolute).
    pub tls: Option<AdminTls>,
    /// `acme_ca`: a PEM root certificate to trust for the ACME directories of tenants created through the API
    /// (a private CA; they may not name files themselves), absolute. Unset: the public web roots.
    pub acme_ca: Option<PathBuf>,
    /// Where `[admin]` is written, for messages about it.
    pub location: Location,
}

/// The admin listener's certificate: PEM chain (leaf first) and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// `[cluster]`: nodes sharing apps (and key-value data) through Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://host:port/db`, or `redis+sentinel://host:port,host:port,.../master[/db]` for the master a set
    /// of Sentinels monitors (followed across failovers).
    pub redis: String,
    /// How often to reconcile with Redis when no change was announced.
    pub reconcile_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    listen: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    tls: Option<Spanned<crate::raw::RawTls>>,
    acme_ca: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    redis: Option<Spanned<String>>,
    reconcile_interval: Option<Spanned<String>>,
}

pub(crate) fn admin(c: &mut Checker<'_>, raw: Spanned<RawAdmin>) -> Option<AdminConfig> {
    let location = c.location(&raw.span());
    let span = raw.span();
    let raw = raw.into_inner();
    let Some(listen) = raw.listen else {
        c.error(&span, "`[admin]` needs `listen`, like listen = \"127.0.0.1:9901\"");
        return None;
    };
    let Ok(addr) = listen.get_ref().parse::<SocketAddr>() else {
        c.error(&listen.span(), format!("`listen`: {:?} is not an IP:port address", listen.get_ref()));
        return None;
    };
    let token_file = match &raw.token_file {
        Some(f) => Some(c.existing("token_file", f, false)?),
        None => None,
    };
    let tls = match raw.tls {
        None => None,
        Some(tls) => {
            let span = tls.span();
            let tls = tls.into_inner();
            let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
                c.error(&span, "`[admin] tls` needs both `cert` and `key`, like tls = { cert = \"admin.pem\", key = \"admin.key\" }");
                return None;
            };
            Some(AdminTls { cert: c.existing("cert", cert, false)?, key: c.existing("key", key, false)? })
        }
    };
    let acme_ca = match &raw.acme_ca {
        Some(f) => Some(c.existing("acme_ca", f, false)?),
        None => None,
    };
    Some(AdminConfig { listen: addr, token_file, tls, acme_ca, location })
}

pub(crate) fn cluster(c: &mut Checker<'_>, raw: Spanned<RawCluster>) -> Option<ClusterConfig> {
    let span = raw.span();
    let raw = raw.into_inner();
    let Some(redis) = raw.redis else {
        c.error(&span, "`[cluster]` needs `redis`, like redis = \"redis://127.0.0.1:6379/0\"");
        return None;
    };
    if let Err(problem) = crate::redis_url::check(redis.get_ref()) {
        c.error(&redis.span(), format!("`redis`: {problem}"));
        return None;
    }
    let reconcile_interval = match &raw.reconcile_interval {
        Some(d) => match crate::parse_duration(d.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                c.error(&d.span(), format!("`reconcile_interval`: {:?} is not a duration like \"5s\"", d.get_ref()));
                DEFAULT_RECONCILE_INTERVAL
            }
        },
        None => DEFAULT_RECONCILE_INTERVAL,
    };
    Some(ClusterConfig { redis: redis.into_inner(), reconcile_interval })
}

/// The key-value backend once `[cluster]` is known: a cluster's nodes share Redis unless `[kv]` says
/// otherwise, and a cluster cannot keep data in one node's embedded file.
pub(crate) fn cluster_kv(
    c: &mut Checker<'_>,
    kv: KvBackend,
    kv_written: Option<&std::ops::Range<usize>>,
    cluster: Option<&ClusterConfig>,
) -> KvBackend {
    match (cluster, kv_written, kv) {
        (Some(cluster), None, _) => KvBackend::Redis(cluster.redis.clone()),
        (Some(_), Some(span), KvBackend::Redb(_)) => {
            c.error(span, "`[kv]` is the embedded redb file, which one node alone can open; a `[cluster]` shares its key-value data through Redis (remove `[kv]`, or set `backend` to a redis:// or redis+sentinel:// URL)");
            KvBackend::Redb(PathBuf::new())
        }
        (_, _, kv) => kv,
    }
}
