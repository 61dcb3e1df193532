//! Certificates from files, reloaded without a restart: on demand (SIGHUP) and when a file changes.
//!
//! A new certificate is installed only when it loads and passes every check; otherwise the error is logged
//! with the file name and the previous certificate keeps serving. Files are polled (size and modification
//! time) rather than watched, which also catches editors and tools that replace files by renaming.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::cert::{CertError, LoadedCert};
use crate::sites::Site;

/// A certificate that expires within this is logged as a warning at every load.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// Size and modification time of the certificate and key files, to notice changes.
type Stamp = [Option<(SystemTime, u64)>; 2];

#[derive(Debug)]
struct Entry {
    site: Arc<Site>,
    cert: PathBuf,
    key: PathBuf,
    hosts: Vec<String>,
    stamp: Stamp,
}

/// The sites whose certificates come from files.
#[derive(Debug, Default)]
pub struct CertFiles {
    entries: Vec<Entry>,
}

impl CertFiles {
    /// Loads `cert` and `key` for `site` now (covering `hosts`), installs them, and remembers them for reloads.
    pub fn add(&mut self, site: Arc<Site>, cert: &Path, key: &Path, hosts: &[String]) -> Result<LoadedCert, CertError> {
        let stamp = stamp(cert, key);
        let loaded = LoadedCert::from_files(cert, key, hosts)?;
        warn_if_expiring(site.name(), cert, &loaded);
        site.install(loaded.key.clone());
        self.entries.push(Entry { site, cert: cert.into(), key: key.into(), hosts: hosts.to_vec(), stamp });
        Ok(loaded)
    }

    /// Reloads every certificate (`all`) or those whose files changed since the last attempt. Returns how many
    /// were replaced.
    pub fn reload(&mut self, all: bool) -> usize {
        let mut replaced = 0;
        for entry in &mut self.entries {
            let now = stamp(&entry.cert, &entry.key);
            if !all && now == entry.stamp {
                continue;
            }
            // Remembered even when loading fails, so a broken file is reported once, not at every poll.
            entry.stamp = now;
            let tenant = entry.site.name();
            match LoadedCert::from_files(&entry.cert, &entry.key, &entry.hosts) {
                Ok(loaded) => {
                    warn_if_expiring(tenant, &entry.cert, &loaded);
                    entry.site.install(loaded.key.clone());
                    replaced += 1;
                    tracing::info!(
                        tenant,
                        cert = %entry.cert.display(),
                        names = %loaded.names.join(","),
                        "certificate reloaded"
                    );
                }
                Err(e) => tracing::error!(tenant, "certificate not reloaded, the previous one stays in use: {e}"),
            }
        }
        replaced
    }

    /// Reloads changed files every `interval`, and every file whenever `now` is notified, forever.
    pub async fn watch(mut self, interval: Duration, now: Arc<Notify>) {
        loop {
            let all = tokio::select! {
                () = tokio::time::sleep(interval) => false,
                () = now.notified() => true,
            };
            self.reload(all);
        }
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [one(cert), one(key)]
}

/// Logs a certificate that has expired or will soon (it is still served: an expired certificate is the
/// operator's to replace, and refusing to start would take every other site down with it).
pub fn warn_if_expiring(tenant: &str, cert: &Path, loaded: &LoadedCert) {
    let left = loaded.remaining();
    if left.is_zero() {
        tracing::error!(tenant, cert = %cert.display(), "certificate has expired; clients will refuse it");
    } else if left < EXPIRY_WARNING {
        tracing::warn!(tenant, cert = %cert.display(), days = left.as_secs() / 86400, "certificate expires soon");
    }
}
