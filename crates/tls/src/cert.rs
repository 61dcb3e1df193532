//! A certificate chain and its private key, loaded from PEM and checked before it may serve anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

/// Why a certificate cannot be used. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No `CERTIFICATE` block in the chain file, or one that does not parse.
    #[error("{}: {reason}", path.display())]
    BadCertificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No usable private key in the key file.
    #[error("{}: {reason}", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not the certificate's key.
    #[error("{} does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate does not name a host the tenant serves.
    #[error("{}: the certificate (for {}) does not cover host {host}", path.display(), names.join(", "))]
    NameNotCovered {
        /// The certificate file.
        path: PathBuf,
        /// The host it should cover.
        host: String,
        /// The DNS names it does cover.
        names: Vec<String>,
    },
}

/// A usable certificate: the rustls signing key and what palisade needs to know about the leaf.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// Chain and signing key, as handshakes use them.
    pub key: Arc<CertifiedKey>,
    /// The leaf's DNS names (subject alternative names, lower-case; `*.x` for wildcards).
    pub names: Vec<String>,
    /// The leaf's `notBefore`.
    pub not_before: SystemTime,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
}

impl LoadedCert {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 RSA or SEC1 EC), checks that the key
    /// is the certificate's, and that the certificate covers every one of `hosts` (names or `*.suffix`; `*`
    /// needs no particular name).
    pub fn from_files(cert: &Path, key: &Path, hosts: &[String]) -> Result<LoadedCert, CertError> {
        let cert_pem = std::fs::read(cert).map_err(|source| CertError::Read { path: cert.into(), source })?;
        let key_pem = std::fs::read(key).map_err(|source| CertError::Read { path: key.into(), source })?;
        LoadedCert::from_pem(&cert_pem, &key_pem, hosts, cert, key)
    }

    /// [`LoadedCert::from_files`] on PEM text already read; `cert_path` and `key_path` name it in errors.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        hosts: &[String],
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<LoadedCert, CertError> {
        let bad_cert = |reason: String| CertError::BadCertificate { path: cert_path.into(), reason };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| bad_cert(format!("not a PEM certificate chain ({e})")))?;
        let Some(leaf) = chain.first() else {
            return Err(bad_cert("no CERTIFICATE block found".into()));
        };
        let (names, not_before, not_after) = inspect_leaf(leaf).map_err(bad_cert)?;
        let private_key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::BadKey {
            path: key_path.into(),
            reason: format!("no PKCS#8, RSA or EC private key found ({e})"),
        })?;
        let provider = provider();
        let signing_key = provider
            .key_provider
            .load_private_key(private_key)
            .map_err(|e| CertError::BadKey { path: key_path.into(), reason: format!("unusable private key ({e})") })?;
        let key = CertifiedKey::new(chain, signing_key);
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) = key.keys_match() {
            return Err(CertError::KeyMismatch { cert: cert_path.into(), key: key_path.into() });
        }
        for host in hosts {
            if host != "*" && !names.iter().any(|n| name_covers(n, host)) {
                return Err(CertError::NameNotCovered { path: cert_path.into(), host: host.clone(), names });
            }
        }
        Ok(LoadedCert { key: Arc::new(key), names, not_before, not_after })
    }

    /// How long until the leaf expires (zero if it has).
    pub fn remaining(&self) -> Duration {
        self.not_after.duration_since(SystemTime::now()).unwrap_or_default()
    }

    /// The leaf's whole validity period.
    pub fn lifetime(&self) -> Duration {
        self.not_after.duration_since(self.not_before).unwrap_or_default()
    }
}

/// The crypto provider every handshake and key load uses: the process default if one was installed,
/// otherwise aws-lc-rs.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// The leaf's DNS names and validity period.
pub(crate) fn inspect_leaf(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, SystemTime, SystemTime), String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("the first certificate does not parse ({e})"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(n.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let time = |t: x509_parser::time::ASN1Time| {
        u64::try_from(t.timestamp()).map_or(SystemTime::UNIX_EPOCH, |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    };
    Ok((names, time(parsed.validity().not_before), time(parsed.validity().not_after)))
}

/// Whether certificate name `name` covers host pattern `host` (RFC 6125: a wildcard covers one label).
pub fn name_covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, parent))) => label != "*" && !label.is_empty() && parent == suffix,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_names_cover_one_label() {
        assert!(name_covers("alice.test", "alice.test"));
        assert!(name_covers("*.alice.test", "www.alice.test"));
        assert!(name_covers("*.alice.test", "*.alice.test"));
        assert!(!name_covers("*.alice.test", "alice.test"));
        assert!(!name_covers("*.alice.test", "a.b.alice.test"));
        assert!(!name_covers("alice.test", "www.alice.test"));
    }
}
