//! What the registry knows about one deployed app.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One deployed app: whose it is, where it is served, and which bytes it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The tenant (as named in the configuration).
    pub tenant: String,
    /// The app's name within its tenant.
    pub name: String,
    /// The route path it is served at (normalised: `/x`, never `/x/`).
    pub route: String,
    /// SHA-256 of the `.wasm`, in lower-case hex.
    pub sha256: String,
    /// Size of the `.wasm` in bytes.
    pub size: u64,
    /// Increases with every deploy (across all apps of a registry): a later deploy has a larger version.
    pub version: u64,
    /// When it was deployed, in seconds since the Unix epoch.
    pub deployed_at: u64,
    /// Its answers go through the tenant's HTTP cache (`cache = true` on a configured route).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache: bool,
}

impl AppRecord {
    /// A record of `bytes` as `tenant/name` at `route` (cached or not), deployed now with `version`.
    pub(crate) fn describe(
        tenant: &str,
        name: &str,
        route: &str,
        cache: bool,
        bytes: &[u8],
        version: u64,
    ) -> AppRecord {
        AppRecord {
            tenant: tenant.to_string(),
            name: name.to_string(),
            route: route.to_string(),
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
            version,
            deployed_at: now(),
            cache,
        }
    }

    /// `tenant/name`, the app's key in every store (names cannot contain `/`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.tenant, self.name)
    }

    /// Whether these are the same bytes at the same route, cached alike (the version may differ).
    pub fn same_app(&self, other: &AppRecord) -> bool {
        self.route == other.route && self.sha256 == other.sha256 && self.cache == other.cache
    }
}

/// Whether `name` can name a tenant or an app: the configuration's rule, which also keeps names safe as file
/// names and Redis key parts.
pub use palisade_config::valid_name;

/// SHA-256 of `bytes` in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, in seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Checks that `bytes` are the ones `record` describes.
pub(crate) fn verify(record: &AppRecord, bytes: &[u8]) -> Result<(), crate::RegistryError> {
    if bytes.len() as u64 != record.size || sha256_hex(bytes) != record.sha256 {
        return Err(crate::RegistryError::Corrupt(format!(
            "app {}: stored bytes do not match their SHA-256 {}",
            record.key(),
            record.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("hello-world_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".."));
        assert!(!valid_name(&"x".repeat(65)));
    }

    #[test]
    fn digest() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
