//! Configuration → HTTPS: a site per tenant with a certificate, loaded from files or managed by ACME.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use palisade_acme::AcmeSite;
use palisade_config::{Config, TlsSource};
use palisade_tls::{CertFiles, Challenges, LoadedCert, Sites, TlsTerminator};
use tokio::sync::Notify;

/// How often certificate files are checked for changes.
const FILE_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// HTTPS, ready to be served and kept fresh.
pub(crate) struct Https {
    pub(crate) terminator: Arc<TlsTerminator>,
    pub(crate) challenges: Arc<Challenges>,
    sites: Arc<Sites>,
    files: CertFiles,
    acme: Vec<(AcmeSite, Option<LoadedCert>)>,
}

/// What each tenant's certificate is, for `palisade check`.
pub(crate) struct SiteReport {
    pub(crate) tenant: String,
    pub(crate) cert: Option<LoadedCert>,
}

impl Https {
    /// Loads every certificate file (any failure stops start-up, naming the file) and every stored ACME
    /// certificate. `None` when no tenant has a certificate.
    pub(crate) fn load(config: &Config) -> anyhow::Result<Option<(Https, Vec<SiteReport>)>> {
        let tenants: Vec<_> =
            config.tenants.iter().filter_map(|t| Some((t, t.tls.as_ref()?, t.host_names()))).collect();
        if tenants.is_empty() {
            return Ok(None);
        }
        let mut sites = Sites::default();
        let ids: Vec<_> = tenants.iter().map(|(t, _, hosts)| sites.add(&t.name, hosts)).collect();
        let sites = Arc::new(sites);
        let challenges = Arc::new(Challenges::default());
        let mut files = CertFiles::new(sites.clone());
        let mut acme = Vec::new();
        let mut reports = Vec::new();
        for ((tenant, source, hosts), site) in tenants.into_iter().zip(ids) {
            let cert = match source {
                TlsSource::Files { cert, key, location } => Some(
                    files
                        .add(site, cert, key, &hosts)
                        .with_context(|| format!("{location}: tenant {}", tenant.name))?,
                ),
                TlsSource::Acme(acme_config) => {
                    let managed = AcmeSite {
                        tenant: tenant.name.clone(),
                        site,
                        names: hosts,
                        config: acme_config.clone(),
                        dir: config.server.data_dir.join("acme").join(&tenant.name),
                    };
                    let stored = managed.install_stored(&sites);
                    acme.push((managed, stored.clone()));
                    stored
                }
            };
            reports.push(SiteReport { tenant: tenant.name.clone(), cert });
        }
        let terminator = Arc::new(TlsTerminator::new(sites.clone(), challenges.clone()).context("setting up TLS")?);
        Ok(Some((Https { terminator, challenges, sites, files, acme }, reports)))
    }

    /// Starts reloading certificate files (when they change, and all of them whenever `reload` is notified)
    /// and the ACME renewals, on the current runtime.
    pub(crate) fn keep_fresh(self, reload: Arc<Notify>) {
        tokio::spawn(self.files.watch(FILE_POLL_INTERVAL, reload));
        for (site, current) in self.acme {
            tokio::spawn(site.run(current, self.sites.clone(), self.challenges.clone()));
        }
    }
}
