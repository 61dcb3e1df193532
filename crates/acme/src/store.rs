//! The tenant's ACME directory: `account.json`, `cert.pem`, `key.pem`, each replaced atomically.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use instant_acme::AccountCredentials;
use palisade_tls::LoadedCert;
use serde::{Deserialize, Serialize};

const ACCOUNT: &str = "account.json";
const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";

/// An account, remembered with the CA it belongs to (changing `directory` makes a new account).
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The stored certificate, if it loads and covers `names`.
pub(crate) fn load_certificate(dir: &Path, names: &[String]) -> Option<LoadedCert> {
    match LoadedCert::from_files(&dir.join(CERT), &dir.join(KEY), names) {
        Ok(c) => Some(c),
        Err(e) => {
            if dir.join(CERT).exists() {
                tracing::warn!("stored ACME certificate not used: {e}");
            }
            None
        }
    }
}

/// Stores a new certificate and key: key first, so a crash in between leaves a mismatch that is refused at
/// the next start (and re-ordered), never a certificate paired with a stale key that loads.
pub(crate) fn save_certificate(dir: &Path, cert_pem: &str, key_pem: &str) -> std::io::Result<()> {
    write_atomically(&dir.join(KEY), key_pem.as_bytes())?;
    write_atomically(&dir.join(CERT), cert_pem.as_bytes())
}

/// The stored account for `directory`, if any.
pub(crate) fn load_account(dir: &Path, directory: &str) -> Option<AccountCredentials> {
    let text = std::fs::read(dir.join(ACCOUNT)).ok()?;
    let stored: StoredAccount = serde_json::from_slice(&text).ok()?;
    (stored.directory == directory).then_some(stored.credentials)
}

pub(crate) fn save_account(dir: &Path, directory: &str, credentials: AccountCredentials) -> std::io::Result<()> {
    let stored = StoredAccount { directory: directory.to_string(), credentials };
    let json = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
    write_atomically(&dir.join(ACCOUNT), &json)
}

/// Writes `bytes` to a temporary file readable only by the owner, syncs it, and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
