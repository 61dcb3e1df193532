//! The file as written: serde types that mirror the TOML exactly, with spans kept for diagnostics.
//!
//! `deny_unknown_fields` everywhere, so a misspelt key is an error with a line number, never silently ignored.

use crate::diagnostic::{ConfigError, Diagnostic, Location};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) server: Option<Spanned<RawServer>>,
    pub(crate) kv: Option<Spanned<RawKv>>,
    pub(crate) admin: Option<Spanned<crate::operate::RawAdmin>>,
    pub(crate) cluster: Option<Spanned<crate::operate::RawCluster>>,
    #[serde(default)]
    pub(crate) tenants: BTreeMap<Spanned<String>, Spanned<RawTenant>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) tls_listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) http3: Option<Spanned<bool>>,
    pub(crate) quic_retry: Option<Spanned<bool>>,
    pub(crate) data_dir: Option<Spanned<String>>,
    pub(crate) shutdown_timeout: Option<Spanned<DurationText>>,
    pub(crate) workers: Option<Spanned<i64>>,
    pub(crate) max_guest_memory: Option<Spanned<SizeValue>>,
    pub(crate) max_loaded_apps: Option<Spanned<i64>>,
    pub(crate) header_timeout: Option<Spanned<DurationText>>,
    pub(crate) body_timeout: Option<Spanned<DurationText>>,
    pub(crate) send_timeout: Option<Spanned<DurationText>>,
    pub(crate) keepalive_timeout: Option<Spanned<DurationText>>,
    pub(crate) tls_handshake_timeout: Option<Spanned<DurationText>>,
    pub(crate) max_connections: Option<Spanned<i64>>,
    pub(crate) max_connections_per_ip: Option<Spanned<i64>>,
    pub(crate) max_uri_length: Option<Spanned<SizeValue>>,
    pub(crate) max_header_count: Option<Spanned<i64>>,
    pub(crate) max_header_size: Option<Spanned<SizeValue>>,
    pub(crate) h2_max_concurrent_streams: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub(crate) hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) memory: Option<Spanned<SizeValue>>,
    pub(crate) max_total_memory: Option<Spanned<SizeValue>>,
    pub(crate) timeout: Option<Spanned<DurationText>>,
    pub(crate) cpu_time: Option<Spanned<DurationText>>,
    pub(crate) max_concurrency: Option<Spanned<i64>>,
    pub(crate) max_queue: Option<Spanned<i64>>,
    pub(crate) queue_timeout: Option<Spanned<DurationText>>,
    pub(crate) weight: Option<Spanned<i64>>,
    pub(crate) max_request_body: Option<Spanned<SizeValue>>,
    pub(crate) max_response_body: Option<Spanned<SizeValue>>,
    pub(crate) max_stderr: Option<Spanned<SizeValue>>,
    pub(crate) data: Option<Spanned<String>>,
    pub(crate) component_data: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) env: BTreeMap<Spanned<String>, Spanned<String>>,
    pub(crate) tls: Option<Spanned<RawTls>>,
    pub(crate) acme: Option<Spanned<RawAcme>>,
    pub(crate) hsts: Option<Spanned<BoolOrString>>,
    pub(crate) https_redirect: Option<Spanned<bool>>,
    pub(crate) outbound: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) kv: Option<Spanned<RawKvLimits>>,
    pub(crate) cache: Option<Spanned<RawCache>>,
    #[serde(default)]
    pub(crate) routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub(crate) max_size: Option<Spanned<SizeValue>>,
    pub(crate) disk: Option<Spanned<SizeValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKv {
    pub(crate) backend: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKvLimits {
    pub(crate) max_keys: Option<Spanned<i64>>,
    pub(crate) max_value: Option<Spanned<SizeValue>>,
    pub(crate) max_total: Option<Spanned<SizeValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) cert: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) cert_pem: Option<Spanned<String>>,
    pub(crate) key_pem: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub(crate) directory: Option<Spanned<String>>,
    pub(crate) email: Option<Spanned<String>>,
    pub(crate) challenge: Option<Spanned<String>>,
    pub(crate) ca: Option<Spanned<String>>,
}

/// `hsts = true` or `hsts = "max-age=...; includeSubDomains"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum BoolOrString {
    Bool(bool),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) path: Option<Spanned<String>>,
    #[serde(rename = "static")]
    pub(crate) static_dir: Option<Spanned<String>>,
    pub(crate) component: Option<Spanned<String>>,
    pub(crate) cgi: Option<Spanned<String>>,
    /// A URL or a table: told apart in [`crate::proxy`].
    pub(crate) proxy: Option<Spanned<toml::Value>>,
    pub(crate) dotfiles: Option<Spanned<bool>>,
    pub(crate) cache: Option<Spanned<bool>>,
}

/// A size is written either as a string with a unit (`"64 MiB"`) or as a plain number of bytes.
#[derive(Debug)]
pub(crate) enum SizeValue {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SizeValue, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Reads a [`SizeValue`], so that what is not one (`1.5`, `true`, a number past 64 bits) is refused with
/// what a size looks like, not the internals of an untagged enum.
struct SizeVisitor;

impl serde::de::Visitor<'_> for SizeVisitor {
    type Value = SizeValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a size: a string with a unit like \"64 MiB\", or a whole number of bytes")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SizeValue, E> {
        Ok(SizeValue::Bytes(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SizeValue, E> {
        i64::try_from(v).map(SizeValue::Bytes).map_err(|_| E::custom(format!("{v} bytes is too large a size")))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<SizeValue, E> {
        i64::try_from(v).map(SizeValue::Bytes).map_err(|_| E::custom(format!("{v} bytes is too large a size")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SizeValue, E> {
        Ok(SizeValue::Text(v.to_string()))
    }
}

/// A duration as written: a string with a unit (`"30s"`), refused with that example when it is anything else.
#[derive(Debug)]
pub(crate) struct DurationText(pub(crate) String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<DurationText, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = DurationText;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration: a string with a unit like \"30s\" or \"500ms\"")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationText, E> {
        Ok(DurationText(v.to_string()))
    }
}

pub(crate) fn parse(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let location = match e.span() {
            Some(span) => Location::of_span(path, text, &span),
            None => Location::at(path, text, 0),
        };
        ConfigError::Invalid(vec![Diagnostic { location, message: e.message().trim().to_string() }])
    })
}
