//! Which certificate a handshake gets: SNI name → site → the site's current certificate.
//!
//! A site is a tenant with a certificate. The name → site map is swapped whole (copy, change, publish) when a
//! tenant with a certificate is added, changes its hosts or goes, so handshakes read it without a lock. Each
//! site's certificate is an atomically swappable slot of its own, so a reload or an ACME renewal replaces it
//! without touching the map or connections already established.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use palisade_http::HostMap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One HTTPS site: a tenant's name and its current certificate.
#[derive(Debug)]
pub struct Site {
    name: String,
    key: ArcSwapOption<CertifiedKey>,
}

impl Site {
    /// The site's name: its tenant's, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Installs `key` as the site's certificate; new handshakes use it at once.
    pub fn install(&self, key: Arc<CertifiedKey>) {
        self.key.store(Some(key));
    }

    /// Whether the site has a certificate to serve.
    pub fn has_certificate(&self) -> bool {
        self.key.load().is_some()
    }

    /// The names the site's certificate covers and when it expires, if it has one (and its leaf parses).
    pub fn certificate(&self) -> Option<(Vec<String>, std::time::SystemTime)> {
        let key = self.key.load_full()?;
        let (names, _, not_after) = crate::cert::inspect_leaf(key.cert.first()?).ok()?;
        Some((names, not_after))
    }
}

/// Every HTTPS site, by the host names it answers for.
#[derive(Debug, Default)]
pub struct Sites {
    table: ArcSwap<Table>,
    /// Serialises writers; readers never take it.
    writer: Mutex<()>,
}

#[derive(Debug, Default, Clone)]
struct Table {
    by_name: HostMap<Arc<Site>>,
    /// Each site with the hosts it was added with, to take them out again.
    by_tenant: HashMap<String, (Arc<Site>, Vec<String>)>,
}

impl Sites {
    /// Adds the site `name` answering for `hosts`, or gives an existing site of that name these hosts instead
    /// of its old ones (its certificate stays until another is installed). Returns the site, to install
    /// certificates in.
    pub fn add(&self, name: &str, hosts: &[String]) -> Arc<Site> {
        self.edit(|table| table.put(name, hosts))
    }

    /// [`Sites::add`] for many sites at once, publishing the map once (start-up with many tenants).
    pub fn add_all<'a>(&self, sites: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Vec<Arc<Site>> {
        self.edit(|table| sites.into_iter().map(|(name, hosts)| table.put(name, hosts)).collect())
    }

    /// Removes the site `name`: its hosts get no certificate from the next handshake on.
    pub fn remove(&self, name: &str) {
        self.edit(|table| {
            table.unmap(name);
            table.by_tenant.remove(name);
        });
    }

    /// The site `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<Arc<Site>> {
        self.table.load().by_tenant.get(name).map(|(site, _)| site.clone())
    }

    /// The certificate for a handshake with SNI `server_name` (`None` when the client sent none): the site
    /// claiming the name, else the catch-all (`*`) site; `None` if neither has a certificate.
    pub fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.table.load().by_name.get(server_name)?.key.load_full()
    }

    fn edit<R>(&self, change: impl FnOnce(&mut Table) -> R) -> R {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut table = Table::clone(&self.table.load());
        let result = change(&mut table);
        self.table.store(Arc::new(table));
        result
    }
}

impl Table {
    fn put(&mut self, name: &str, hosts: &[String]) -> Arc<Site> {
        let site = match self.by_tenant.get(name) {
            Some((site, _)) => site.clone(),
            None => Arc::new(Site { name: name.to_string(), key: ArcSwapOption::empty() }),
        };
        self.unmap(name);
        for h in hosts {
            self.by_name.insert(h, site.clone());
        }
        self.by_tenant.insert(name.to_string(), (site.clone(), hosts.to_vec()));
        site
    }

    /// Takes the hosts of site `name` out of the name map (those another site has claimed since stay).
    fn unmap(&mut self, name: &str) {
        if let Some((site, hosts)) = self.by_tenant.get(name) {
            for h in hosts {
                self.by_name.remove_if(h, |s| Arc::ptr_eq(s, site));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(sites: &Sites, name: &str) -> Option<String> {
        sites.table.load().by_name.get(Some(name)).map(|s| s.name().to_string())
    }

    #[test]
    fn sites_come_change_hosts_and_go() {
        let sites = Sites::default();
        let hosts = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let added = sites.add_all([("a", hosts(&["a.test"]).as_slice()), ("b", hosts(&["*.b.test"]).as_slice())]);
        assert_eq!(added.len(), 2);
        assert_eq!(owner(&sites, "a.test").as_deref(), Some("a"));
        assert_eq!(owner(&sites, "x.b.test").as_deref(), Some("b"));
        // New hosts for a: the same site (its certificate stays), the old name no longer maps to it.
        let again = sites.add("a", &hosts(&["www.a.test"]));
        assert!(Arc::ptr_eq(&again, &added[0]));
        assert_eq!(owner(&sites, "a.test"), None);
        assert_eq!(owner(&sites, "www.a.test").as_deref(), Some("a"));
        // A host handed from b to c stays c's when b goes.
        sites.add("c", &hosts(&["*.b.test"]));
        sites.remove("b");
        assert_eq!(owner(&sites, "x.b.test").as_deref(), Some("c"));
        assert!(sites.get("b").is_none());
        sites.remove("c");
        assert_eq!(owner(&sites, "x.b.test"), None);
        assert!(!again.has_certificate());
    }
}
