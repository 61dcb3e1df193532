//! Configuration → HTTPS: a site per tenant with a certificate, loaded from files or managed by ACME.
//!
//! The file's tenants get their sites at start-up. Tenants created through the API come and go while the
//! server runs: [`Https::set_tenant`] adds, changes or drops a tenant's site (a certificate given as PEM, or
//! an ACME renewal), and
//! [`Https::forget_tenant`] removes them with the stored certificate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use palisade_acme::{AcmeSite, Answer, AnswerBoard};
use palisade_config::{AcmeConfig, Config, Tenant, TlsSource};
use palisade_tls::{CertError, CertFiles, Challenges, LoadedCert, Sites, TlsTerminator};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// How often certificate files are checked for changes.
const FILE_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// HTTPS, ready to be served and kept fresh.
pub(crate) struct Https {
    pub(crate) terminator: Arc<TlsTerminator>,
    pub(crate) challenges: Arc<Challenges>,
    sites: Arc<Sites>,
    /// `data_dir/acme`: a directory per ACME tenant (account, certificate, key).
    acme_dir: PathBuf,
    /// `[admin] acme_ca`, trusted for API tenants' ACME directories.
    api_acme_ca: Option<PathBuf>,
    /// What the file's tenants need started once the server runs.
    startup: Mutex<Option<Startup>>,
    /// The API tenants with a site: their running ACME renewal (`None`: a certificate given as PEM), to stop
    /// or restart when a tenant goes or changes.
    api_sites: Mutex<HashMap<String, Option<Renewal>>>,
    /// In a cluster, where ACME orders also post their challenge answers.
    board: std::sync::OnceLock<Arc<dyn AnswerBoard>>,
}

struct Startup {
    files: CertFiles,
    acme: Vec<(AcmeSite, Option<LoadedCert>)>,
}

/// An API tenant's ACME renewal and what it was started for.
struct Renewal {
    config: AcmeConfig,
    hosts: Vec<String>,
    task: AbortHandle,
}

/// What each tenant's certificate is, for `palisade check`.
pub(crate) struct SiteReport {
    pub(crate) tenant: String,
    pub(crate) cert: Option<LoadedCert>,
}

impl Https {
    /// Loads every certificate file (any failure stops start-up, naming the file) and every stored ACME
    /// certificate. `None` when no tenant has a certificate and there is no HTTPS listener for API tenants'.
    pub(crate) fn load(config: &Config) -> anyhow::Result<Option<(Https, Vec<SiteReport>)>> {
        let tenants: Vec<_> =
            config.tenants.iter().filter_map(|t| Some((t, t.tls.as_ref()?, t.host_names()))).collect();
        if tenants.is_empty() && (config.server.tls_listen.is_empty() || config.admin.is_none()) {
            return Ok(None);
        }
        let sites = Arc::new(Sites::default());
        let ids = sites.add_all(tenants.iter().map(|(t, _, hosts)| (t.name.as_str(), hosts.as_slice())));
        let challenges = Arc::new(Challenges::default());
        let acme_dir = config.server.data_dir.join("acme");
        let mut files = CertFiles::default();
        let mut acme = Vec::new();
        let mut reports = Vec::new();
        for ((tenant, source, hosts), site) in tenants.into_iter().zip(ids) {
            let cert = match source {
                TlsSource::Files { cert, key, location } => Some(
                    files
                        .add(site, cert, key, &hosts)
                        .with_context(|| format!("{location}: tenant {}", tenant.name))?,
                ),
                TlsSource::Inline { .. } => {
                    let loaded = inline_certificate(tenant).with_context(|| format!("tenant {}", tenant.name))?;
                    if let Some(loaded) = &loaded {
                        site.install(loaded.key.clone());
                    }
                    loaded
                }
                TlsSource::Acme(acme_config) => {
                    let managed = AcmeSite {
                        tenant: tenant.name.clone(),
                        site,
                        names: hosts,
                        config: acme_config.clone(),
                        dir: acme_dir.join(&tenant.name),
                    };
                    let stored = managed.install_stored();
                    acme.push((managed, stored.clone()));
                    stored
                }
            };
            reports.push(SiteReport { tenant: tenant.name.clone(), cert });
        }
        let terminator = Arc::new(TlsTerminator::new(sites.clone(), challenges.clone()).context("setting up TLS")?);
        let https = Https {
            terminator,
            challenges,
            sites,
            acme_dir,
            api_acme_ca: config.admin.as_ref().and_then(|a| a.acme_ca.clone()),
            startup: Mutex::new(Some(Startup { files, acme })),
            api_sites: Mutex::default(),
            board: std::sync::OnceLock::new(),
        };
        Ok(Some((https, reports)))
    }

    /// In a cluster: where ACME orders post their challenge answers for the other nodes (set before
    /// [`Https::keep_fresh`], and before API tenants are loaded).
    pub(crate) fn share_answers(&self, board: Arc<dyn AnswerBoard>) {
        let _ = self.board.set(board);
    }

    /// Publishes or withdraws an answer another node announced (`{"publish": bool, "answer": {...}}`).
    pub(crate) fn announced_answer(&self, message: &str) {
        match serde_json::from_str::<Announced>(message) {
            Ok(Announced { publish: true, answer }) => {
                if let Err(e) = answer.publish(&self.challenges) {
                    tracing::warn!("ACME answer from another node not published: {e}");
                }
            }
            Ok(Announced { publish: false, answer }) => answer.withdraw(&self.challenges),
            Err(e) => tracing::warn!("ACME answer from another node not understood: {e}"),
        }
    }

    /// Starts reloading certificate files (when they change, and all of them whenever `reload` is notified)
    /// and the file tenants' ACME renewals, on the current runtime.
    pub(crate) fn keep_fresh(&self, reload: Arc<Notify>) {
        let Some(startup) = self.startup.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        tokio::spawn(startup.files.watch(FILE_POLL_INTERVAL, reload));
        for (site, current) in startup.acme {
            tokio::spawn(site.run(current, self.challenges.clone(), self.board.get().cloned()));
        }
    }

    /// Gives the API tenant `tenant` the site its `tls` or `acme` asks for. A certificate given as PEM is
    /// installed at once (it was checked by [`inline_certificate`] before the tenant was accepted). With `acme`,
    /// the stored certificate is installed at once and a renewal orders one when there is none; a renewal
    /// already running for the same hosts and CA goes on, one for other hosts is restarted (the current
    /// certificate serves until the new one is issued). A tenant with neither has no site.
    pub(crate) fn set_tenant(&self, tenant: &Tenant) {
        let name = &tenant.name;
        let hosts = tenant.host_names();
        let mut api_sites = self.api_sites.lock().unwrap_or_else(PoisonError::into_inner);
        match &tenant.tls {
            Some(TlsSource::Acme(config)) => {
                let config = AcmeConfig { ca: self.api_acme_ca.clone(), ..config.clone() };
                if let Some(Some(r)) = api_sites.get(name)
                    && r.config == config
                    && r.hosts == hosts
                {
                    return;
                }
                stop_renewal(api_sites.remove(name));
                let managed = AcmeSite {
                    tenant: name.clone(),
                    site: self.sites.add(name, &hosts),
                    names: hosts.clone(),
                    config: config.clone(),
                    dir: self.acme_dir.join(name),
                };
                let stored = managed.install_stored();
                let board = self.board.get().cloned();
                let task = tokio::spawn(managed.run(stored, self.challenges.clone(), board)).abort_handle();
                api_sites.insert(name.clone(), Some(Renewal { config, hosts, task }));
            }
            Some(TlsSource::Inline { .. }) => {
                stop_renewal(api_sites.remove(name));
                match inline_certificate(tenant) {
                    Ok(Some(loaded)) => self.sites.add(name, &hosts).install(loaded.key),
                    Ok(None) => {}
                    Err(e) => tracing::error!(tenant = %name, "certificate not installed: {e}"),
                }
                api_sites.insert(name.clone(), None);
            }
            Some(TlsSource::Files { .. }) | None => self.drop_site(&mut api_sites, name),
        }
    }

    /// The names tenant `name`'s certificate covers and when it expires, if it has one.
    pub(crate) fn certificate(&self, name: &str) -> Option<(Vec<String>, std::time::SystemTime)> {
        self.sites.get(name)?.certificate()
    }

    /// Removes the API tenant `name`'s site, stops its renewal and deletes its stored ACME account and
    /// certificate.
    pub(crate) fn forget_tenant(&self, name: &str) {
        self.drop_site(&mut self.api_sites.lock().unwrap_or_else(PoisonError::into_inner), name);
        let dir = self.acme_dir.join(name);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(tenant = name, dir = %dir.display(), "removed tenant's certificate left on disk: {e}");
        }
    }

    /// Whether the tenant `name` has a certificate to serve now.
    pub(crate) fn has_certificate(&self, name: &str) -> bool {
        self.sites.get(name).is_some_and(|site| site.has_certificate())
    }

    /// Removes the API tenant `name`'s site and stops its renewal, if it has one.
    fn drop_site(&self, api_sites: &mut HashMap<String, Option<Renewal>>, name: &str) {
        if let Some(site) = api_sites.remove(name) {
            stop_renewal(Some(site));
            self.sites.remove(name);
        }
    }
}

fn stop_renewal(site: Option<Option<Renewal>>) {
    if let Some(Some(renewal)) = site {
        renewal.task.abort();
    }
}

/// The certificate of a tenant with `tls = { cert_pem, key_pem }`, loaded and checked (key matches, names
/// cover the hosts); `None` for a tenant without one.
pub(crate) fn inline_certificate(tenant: &Tenant) -> Result<Option<LoadedCert>, CertError> {
    let Some(TlsSource::Inline { cert, key }) = &tenant.tls else { return Ok(None) };
    let (cert_name, key_name) = (Path::new("tls.cert_pem"), Path::new("tls.key_pem"));
    LoadedCert::from_pem(cert.as_bytes(), key.0.as_bytes(), &tenant.host_names(), cert_name, key_name).map(Some)
}

/// An ACME answer as nodes announce it to each other.
#[derive(serde::Serialize, serde::Deserialize)]
struct Announced {
    publish: bool,
    answer: Answer,
}

/// A cluster's board for ACME answers: the registry's channel in Redis.
pub(crate) struct ClusterBoard(pub(crate) palisade_registry::RedisRegistry);

impl AnswerBoard for ClusterBoard {
    fn post<'a>(
        &'a self,
        answer: &'a Answer,
        publish: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let message = serde_json::json!({ "publish": publish, "answer": answer }).to_string();
            if let Err(e) = self.0.announce_acme(&message).await {
                tracing::warn!(
                    "ACME answer not announced to the other nodes (the CA may reach one that lacks it): {e}"
                );
            }
        })
    }
}
