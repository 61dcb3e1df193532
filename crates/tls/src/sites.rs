//! Which certificate a handshake gets: SNI name → site → the site's current certificate.
//!
//! The name → site map is fixed when the server starts (it follows the tenants' `hosts`); each site's
//! certificate is an atomically swappable slot, so a reload or an ACME renewal replaces it without a lock and
//! without touching connections already established.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use palisade_http::HostMap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Index of a site in [`Sites`].
pub type SiteId = usize;

/// Every HTTPS site: one per tenant with a certificate.
#[derive(Debug, Default)]
pub struct Sites {
    by_name: HostMap<SiteId>,
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    name: String,
    key: ArcSwapOption<CertifiedKey>,
}

impl Sites {
    /// Adds a site (named after its tenant, for logs) answering for `hosts`, with no certificate yet.
    pub fn add(&mut self, name: &str, hosts: &[String]) -> SiteId {
        let id = self.slots.len();
        self.slots.push(Slot { name: name.to_string(), key: ArcSwapOption::empty() });
        for h in hosts {
            self.by_name.insert(h, id);
        }
        id
    }

    /// Installs `key` as the site's certificate; new handshakes use it at once.
    pub fn install(&self, site: SiteId, key: Arc<CertifiedKey>) {
        if let Some(slot) = self.slots.get(site) {
            slot.key.store(Some(key));
        }
    }

    /// The site's name as given to [`Sites::add`].
    pub fn name(&self, site: SiteId) -> &str {
        self.slots.get(site).map_or("", |s| s.name.as_str())
    }

    /// The certificate for a handshake with SNI `server_name` (`None` when the client sent none): the site
    /// claiming the name, else the catch-all (`*`) site; `None` if neither has a certificate.
    pub fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let site = self.by_name.get(server_name)?;
        self.slots.get(*site)?.key.load_full()
    }
}

/// The rustls hook: resolves by SNI through [`Sites`].
#[derive(Debug)]
pub(crate) struct SiteResolver(pub(crate) Arc<Sites>);

impl ResolvesServerCert for SiteResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.resolve(client_hello.server_name())
    }
}
