//! Deployed apps on local disk: `DIR/TENANT/NAME.json` (the record) and `DIR/TENANT/NAME.SHA256.wasm`.
//!
//! A deploy writes the new `.wasm` under its own name, then renames the new record over the old one, then
//! removes the old `.wasm`: whatever moment a crash hits, the record names bytes that are complete on disk.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::record::verify;
use crate::{AppRecord, RegistryError};

/// The apps this node serves, under one directory.
#[derive(Debug, Clone)]
pub struct FileRegistry {
    dir: PathBuf,
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.display().to_string(), source }
}

impl FileRegistry {
    /// The registry in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<FileRegistry, RegistryError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(FileRegistry { dir: dir.to_path_buf() })
    }

    fn record_path(&self, tenant: &str, name: &str) -> PathBuf {
        self.dir.join(tenant).join(format!("{name}.json"))
    }

    fn wasm_path(&self, record: &AppRecord) -> PathBuf {
        self.dir.join(&record.tenant).join(format!("{}.{}.wasm", record.name, record.sha256))
    }

    /// Every app's record, sorted by tenant and name. A record that cannot be read is logged and skipped, so
    /// one damaged file does not take the others down.
    pub fn list(&self) -> Result<Vec<AppRecord>, RegistryError> {
        let mut records = Vec::new();
        for tenant in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let tenant = tenant.map_err(io(&self.dir))?.path();
            if !tenant.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&tenant).map_err(io(&tenant))? {
                let path = entry.map_err(io(&tenant))?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                match read_json::<AppRecord>(&path) {
                    Ok(Some(record)) => records.push(record),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("skipping a deployed app: {e}"),
                }
            }
        }
        records.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
        Ok(records)
    }

    /// The app's bytes, checked against its record.
    pub fn read(&self, record: &AppRecord) -> Result<Vec<u8>, RegistryError> {
        let path = self.wasm_path(record);
        let bytes = fs::read(&path).map_err(io(&path))?;
        verify(record, &bytes)?;
        Ok(bytes)
    }

    /// A version larger than every stored one.
    pub fn next_version(&self) -> Result<u64, RegistryError> {
        Ok(self.list()?.iter().map(|r| r.version).max().unwrap_or(0) + 1)
    }

    /// A record for `bytes` as `tenant/name` at `route` (cached or not), with the next version (not stored yet).
    pub fn new_record(
        &self,
        tenant: &str,
        name: &str,
        route: &str,
        cache: bool,
        bytes: &[u8],
    ) -> Result<AppRecord, RegistryError> {
        Ok(AppRecord::describe(tenant, name, route, cache, bytes, self.next_version()?))
    }

    /// Stores `record` and its `bytes`, replacing the app's previous version.
    pub fn put(&self, record: &AppRecord, bytes: &[u8]) -> Result<(), RegistryError> {
        verify(record, bytes)?;
        let dir = self.dir.join(&record.tenant);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let previous = self.get(&record.tenant, &record.name)?;
        write_atomically(&self.wasm_path(record), bytes)?;
        let text = serde_json::to_vec_pretty(record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        write_atomically(&self.record_path(&record.tenant, &record.name), &text)?;
        if let Some(old) = previous.filter(|old| old.sha256 != record.sha256) {
            let _ = fs::remove_file(self.wasm_path(&old));
        }
        Ok(())
    }

    /// The record of `tenant/name`, if it is deployed here.
    pub fn get(&self, tenant: &str, name: &str) -> Result<Option<AppRecord>, RegistryError> {
        read_json(&self.record_path(tenant, name))
    }

    /// Removes `tenant/name`; whether it was there.
    pub fn remove(&self, tenant: &str, name: &str) -> Result<bool, RegistryError> {
        let Some(record) = self.get(tenant, name)? else { return Ok(false) };
        let path = self.record_path(tenant, name);
        fs::remove_file(&path).map_err(io(&path))?;
        let _ = fs::remove_file(self.wasm_path(&record));
        Ok(true)
    }
}

/// The JSON file at `path` read as `T`; `None` if there is no such file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, RegistryError> {
    match fs::read(path) {
        Ok(text) => serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| RegistryError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`. The file is the
/// owner's alone: a tenant document may hold a private key (`tls.key_pem`).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let temporary = path.with_extension("partial");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io(&temporary))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io(&temporary))?;
    fs::rename(&temporary, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replace_list_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = FileRegistry::open(dir.path()).expect("open");
        let v1 = registry.new_record("alice", "hello", "/hello", false, b"one").expect("record");
        registry.put(&v1, b"one").expect("put v1");
        let v2 = registry.new_record("alice", "hello", "/hi", true, b"two").expect("record");
        assert!(v2.version > v1.version);
        registry.put(&v2, b"two").expect("put v2");
        assert_eq!(registry.list().expect("list"), vec![v2.clone()]);
        assert_eq!(registry.read(&v2).expect("read"), b"two");
        // The old bytes are gone, and a record cannot be stored with bytes it does not describe.
        assert!(registry.read(&v1).is_err());
        assert!(matches!(registry.put(&v2, b"other"), Err(RegistryError::Corrupt(_))));
        assert!(registry.remove("alice", "hello").expect("remove"));
        assert!(!registry.remove("alice", "hello").expect("remove again"));
        assert!(registry.list().expect("list").is_empty());
    }

    #[test]
    fn damaged_bytes_are_refused_and_damaged_records_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = FileRegistry::open(dir.path()).expect("open");
        let record = registry.new_record("bob", "app", "/", false, b"wasm").expect("record");
        registry.put(&record, b"wasm").expect("put");
        fs::write(registry.wasm_path(&record), b"WASM").expect("damage");
        assert!(matches!(registry.read(&record), Err(RegistryError::Corrupt(_))));
        fs::write(dir.path().join("bob/broken.json"), b"{").expect("broken record");
        assert_eq!(registry.list().expect("list"), vec![record]);
    }
}
