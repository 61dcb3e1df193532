//! Tenants created through the admin API, and tenants' tokens, on local disk: `DIR/NAME.json` holds an API
//! tenant's document, `DIR/NAME.tokens.json` the hashes of a tenant's tokens (any tenant's, from the file
//! too). Each is written to a temporary file and renamed into place.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::RegistryError;
use crate::file::{io, read_json, write_atomically};
use crate::record::{now, sha256_hex};

/// A tenant created through the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Increases with every change (across all tenants of a store; in Redis, with the apps' versions). First,
    /// so that Redis can set it in the record's JSON without parsing the rest (see `redis_registry.rs`).
    pub version: u64,
    /// The tenant's name.
    pub name: String,
    /// The keys of its `[tenants.NAME]` table, as the API was given them (validated before they were stored).
    pub spec: serde_json::Value,
    /// When it was created, in seconds since the Unix epoch.
    pub created_at: u64,
    /// When it last changed.
    pub updated_at: u64,
}

/// A tenant-scoped admin token: only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// What names it in the API (to revoke it), not secret.
    pub id: String,
    /// SHA-256 of the token, in lower-case hex.
    pub sha256: String,
    /// When it was issued, in seconds since the Unix epoch.
    pub created_at: u64,
}

impl TokenRecord {
    /// The record of `token`, called `id`, issued now.
    pub fn new(id: &str, token: &str) -> TokenRecord {
        TokenRecord { id: id.to_string(), sha256: sha256_hex(token.as_bytes()), created_at: now() }
    }

    /// Whether `token` is this one.
    pub fn matches(&self, token: &str) -> bool {
        // Comparing hashes: equal prefixes of a hash say nothing about the token.
        sha256_hex(token.as_bytes()) == self.sha256
    }
}

impl TenantRecord {
    /// A record of `spec` as tenant `name` at `version`: new, or replacing `previous` (whose creation time it
    /// keeps).
    pub fn new(name: &str, spec: serde_json::Value, version: u64, previous: Option<&TenantRecord>) -> TenantRecord {
        let now = now();
        TenantRecord {
            name: name.to_string(),
            spec,
            version,
            created_at: previous.map_or(now, |p| p.created_at),
            updated_at: now,
        }
    }
}

/// The API's tenants on this node, one file each under a directory.
#[derive(Debug, Clone)]
pub struct FileTenants {
    dir: PathBuf,
}

impl FileTenants {
    /// The store in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<FileTenants, RegistryError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(FileTenants { dir: dir.to_path_buf() })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn tokens_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.tokens.json"))
    }

    /// Every file of the store whose name ends in `suffix`, read as `T` with the name before the suffix. A
    /// file that cannot be read is logged and skipped, so one damaged file does not take the others down.
    fn read_all<T: serde::de::DeserializeOwned>(&self, suffix: &str) -> Result<Vec<(String, T)>, RegistryError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(suffix)) else {
                continue;
            };
            // Names have no dots: `a.tokens.json` is not tenant `a.tokens`.
            if name.contains('.') {
                continue;
            }
            match read_json::<T>(&path) {
                Ok(Some(value)) => out.push((name.to_string(), value)),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping a damaged file: {e}"),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every tenant, sorted by name.
    pub fn list(&self) -> Result<Vec<TenantRecord>, RegistryError> {
        Ok(self.read_all::<TenantRecord>(".json")?.into_iter().map(|(_, record)| record).collect())
    }

    /// Every tenant's tokens, by tenant name.
    pub fn all_tokens(&self) -> Result<Vec<(String, Vec<TokenRecord>)>, RegistryError> {
        self.read_all(".tokens.json")
    }

    /// Tenant `name`'s tokens.
    pub fn tokens(&self, name: &str) -> Result<Vec<TokenRecord>, RegistryError> {
        Ok(read_json(&self.tokens_path(name))?.unwrap_or_default())
    }

    /// Replaces tenant `name`'s tokens with `tokens`.
    pub fn put_tokens(&self, name: &str, tokens: &[TokenRecord]) -> Result<(), RegistryError> {
        if tokens.is_empty() {
            return remove_file(&self.tokens_path(name)).map(drop);
        }
        let text = serde_json::to_vec_pretty(tokens).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        write_atomically(&self.tokens_path(name), &text)
    }

    /// A version larger than every stored one.
    pub fn next_version(&self) -> Result<u64, RegistryError> {
        Ok(self.list()?.iter().map(|r| r.version).max().unwrap_or(0) + 1)
    }

    /// Stores `record`, replacing the tenant's previous one.
    pub fn put(&self, record: &TenantRecord) -> Result<(), RegistryError> {
        let text = serde_json::to_vec_pretty(record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        write_atomically(&self.path(&record.name), &text)
    }

    /// Makes the stored tokens exactly `all` (by tenant name), writing only what changed.
    pub fn replace_tokens(&self, all: &[(String, Vec<TokenRecord>)]) -> Result<(), RegistryError> {
        let current = self.all_tokens()?;
        for (tenant, _) in current.iter().filter(|(t, _)| !all.iter().any(|(w, _)| w == t)) {
            remove_file(&self.tokens_path(tenant))?;
        }
        for (tenant, tokens) in all {
            if !current.iter().any(|(t, c)| t == tenant && c == tokens) {
                self.put_tokens(tenant, tokens)?;
            }
        }
        Ok(())
    }

    /// Removes tenant `name` and its tokens; whether it was there.
    pub fn remove(&self, name: &str) -> Result<bool, RegistryError> {
        remove_file(&self.tokens_path(name))?;
        remove_file(&self.path(name))
    }
}

/// Removes `path`; whether it was there.
fn remove_file(path: &Path) -> Result<bool, RegistryError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replace_list_remove_with_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileTenants::open(dir.path()).expect("open");
        let first = TenantRecord::new("acme", serde_json::json!({"hosts": ["a.example"]}), 1, None);
        store.put(&first).expect("put");
        store.put_tokens("acme", &[TokenRecord::new("t1", "secret")]).expect("tokens");
        store.put_tokens("filed", &[TokenRecord::new("t2", "other")]).expect("tokens of a file tenant");
        let second = TenantRecord::new(
            "acme",
            serde_json::json!({"hosts": ["b.example"]}),
            store.next_version().expect("v"),
            Some(&first),
        );
        assert_eq!(second.version, 2);
        store.put(&second).expect("replace");
        assert_eq!(store.list().expect("list"), vec![second.clone()]);
        let tokens = store.tokens("acme").expect("tokens");
        assert!(tokens[0].matches("secret"));
        assert!(!tokens[0].matches("secreT"));
        let all = store.all_tokens().expect("all tokens");
        assert_eq!(all.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["acme", "filed"]);
        fs::write(dir.path().join("broken.json"), b"{").expect("broken");
        assert_eq!(store.list().expect("list").len(), 1);
        let wanted = vec![("acme".to_string(), vec![TokenRecord::new("t3", "third")])];
        store.replace_tokens(&wanted).expect("replace tokens");
        assert_eq!(store.all_tokens().expect("all tokens"), wanted);
        assert!(store.remove("acme").expect("remove"));
        assert!(store.tokens("acme").expect("tokens").is_empty(), "its tokens went with it");
        assert!(!store.remove("acme").expect("again"));
    }
}
