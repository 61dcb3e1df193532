//! Tenants given as JSON (the admin API's `PUT /v1/tenants/NAME`), validated by the same code as the file.
//!
//! The JSON object holds the keys of a `[tenants.NAME]` table. It is turned into that table, written out as
//! TOML, and read back through the file's parser and checks, so the API can never accept what the file would
//! refuse (or the other way round). Each problem is then named by its JSON key (`routes[0].proxy`) instead of
//! a line of a file nobody wrote.
//!
//! Keys that name files on the server (`data`, `tls.cert`, `acme.ca`, a route's `static`, `component` or `cgi`) are
//! refused (a certificate comes as PEM text, `tls.cert_pem` and `tls.key_pem`, or through `acme`):
//! whoever holds an API token must not be able to serve the server's own files. A tenant's guests come
//! through app deploys instead.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::model::{ServerConfig, Tenant};
use crate::{Diagnostic, validate};

/// One problem with a tenant given as JSON, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// The JSON key, as a path: `memory`, `env.NAME`, `routes[1].proxy`; empty for the body as a whole.
    pub key: String,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.key, self.message) }
    }
}

/// Keys of a tenant the API refuses, with why: each names files or directories on the server.
const REFUSED_KEYS: [(&str, &str); 5] = [
    ("data", "names a directory on the server; a tenant's guests keep data in its key-value buckets"),
    ("component_data", "shares the `data` directory on the server; a tenant's guests keep data in its buckets"),
    ("tls.cert", "names a file on the server; give the certificate itself as `tls.cert_pem`, or use `acme`"),
    ("tls.key", "names a file on the server; give the key itself as `tls.key_pem`, or use `acme`"),
    ("acme.ca", "names a file on the server; the operator's `[admin] acme_ca` is trusted for every API tenant"),
];

/// Route keys that name a file or directory on the server.
const ROUTE_FILE_KEYS: [&str; 3] = ["static", "component", "cgi"];

/// Validates `body`, the keys of a `[tenants.NAME]` table as a JSON object, as the tenant `name` of a server
/// running `server`. Its hosts are checked against each other, not against other tenants.
pub fn tenant_from_json(name: &str, body: &Value, server: &ServerConfig) -> Result<Tenant, Vec<KeyProblem>> {
    let problem = |key: &str, message: String| KeyProblem { key: key.to_string(), message };
    let Value::Object(keys) = body else {
        return Err(vec![problem("", "the body must be a JSON object with the keys of a [tenants.NAME] table".into())]);
    };
    let mut problems = Vec::new();
    for (path, why) in REFUSED_KEYS {
        let mut found = Some(body);
        for key in path.split('.') {
            found = found.and_then(|v| v.get(key));
        }
        if found.is_some() {
            problems.push(problem(path, why.to_string()));
        }
    }
    if let Some(Value::Array(routes)) = keys.get("routes") {
        for (i, route) in routes.iter().enumerate() {
            for key in ROUTE_FILE_KEYS.iter().filter(|k| route.get(**k).is_some()) {
                problems.push(problem(
                    &format!("routes[{i}].{key}"),
                    "names a file on the server; deploy the tenant's apps through /v1/tenants/NAME/apps".into(),
                ));
            }
        }
    }
    let table = to_toml("", body, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut tenants = toml::Table::new();
    tenants.insert(name.to_string(), table.unwrap_or_else(|| toml::Value::Table(toml::Table::new())));
    let mut document = toml::Table::new();
    document.insert("tenants".into(), toml::Value::Table(tenants));
    let text = toml::to_string(&document).map_err(|e| vec![problem("", e.to_string())])?;
    let file = Path::new("api");
    let named = |diagnostics: Vec<Diagnostic>| -> Vec<KeyProblem> {
        diagnostics.into_iter().map(|d| problem(&key_at(&text, d.location.line, name), d.message)).collect()
    };
    let raw = crate::raw::parse(file, &text).map_err(|e| match e {
        crate::ConfigError::Invalid(diagnostics) => named(diagnostics),
        other => vec![problem("", other.to_string())],
    })?;
    validate::lone_tenant(file, &text, raw, server).map_err(named)
}

/// `value` as TOML; a `null` anywhere is a problem at its key (TOML has none: leave the key out instead).
fn to_toml(key: &str, value: &Value, problems: &mut Vec<KeyProblem>) -> Option<toml::Value> {
    let join = |child: &str| if key.is_empty() { child.to_string() } else { format!("{key}.{child}") };
    Some(match value {
        Value::Null => {
            problems.push(KeyProblem {
                key: key.to_string(),
                message: "null is not a value here; leave the key out for its default".into(),
            });
            return None;
        }
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => {
                problems.push(KeyProblem { key: key.to_string(), message: format!("{n} is too large a number") });
                return None;
            }
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(
            items.iter().enumerate().filter_map(|(i, v)| to_toml(&format!("{key}[{i}]"), v, problems)).collect(),
        ),
        Value::Object(map) => toml::Value::Table(
            map.iter().filter_map(|(k, v)| Some((k.clone(), to_toml(&join(k), v, problems)?))).collect(),
        ),
    })
}

/// The JSON key written at 1-based `line` of `text`, the TOML that [`tenant_from_json`] wrote for tenant
/// `name`: the table headers above it give the path (`[[...routes]]` counted), the line its last key.
fn key_at(text: &str, line: usize, name: &str) -> String {
    let prefix = format!("tenants.{name}");
    let mut path = String::new();
    let mut arrays: HashMap<String, usize> = HashMap::new();
    for (number, written) in text.lines().enumerate().take(line) {
        let written = written.trim();
        let here = number + 1 == line;
        if let Some(header) = written.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
            let count = arrays.entry(header.to_string()).or_default();
            *count += 1;
            path = indexed(header, &prefix, &arrays);
        } else if let Some(header) = written.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            path = indexed(header, &prefix, &arrays);
        } else if here && let Some(key) = line_key(written) {
            return if path.is_empty() { key } else { format!("{path}.{key}") };
        }
    }
    path
}

/// A table header as a JSON path below the tenant, each array of tables it passes through indexed by how many
/// of its elements came so far.
fn indexed(header: &str, prefix: &str, arrays: &HashMap<String, usize>) -> String {
    let Some(rest) = header.strip_prefix(prefix) else { return String::new() };
    let mut full = prefix.to_string();
    let mut out = Vec::new();
    for segment in rest.split('.').filter(|s| !s.is_empty()) {
        full = format!("{full}.{segment}");
        let segment = segment.trim_matches('"');
        out.push(match arrays.get(&full) {
            Some(count) => format!("{segment}[{}]", count.saturating_sub(1)),
            None => segment.to_string(),
        });
    }
    out.join(".")
}

/// The key of a `key = value` line (unquoted).
fn line_key(line: &str) -> Option<String> {
    if let Some(quoted) = line.strip_prefix('"') {
        return quoted.split_once('"').map(|(k, _)| k.to_string());
    }
    line.split_once('=').map(|(k, _)| k.trim().to_string()).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server() -> ServerConfig {
        let config = crate::Config::parse(Path::new("palisade.toml"), "").expect("an empty configuration is valid");
        config.server
    }

    fn problems(body: Value) -> Vec<KeyProblem> {
        tenant_from_json("acme-co", &body, &server()).expect_err("refused")
    }

    #[test]
    fn a_valid_tenant_with_limits_and_a_proxy_route() {
        let body = json!({
            "hosts": ["acme.example", "*.acme.example"],
            "memory": "32 MiB",
            "max_concurrency": 8,
            "weight": 2,
            "env": {"GREETING": "hi", "A.B": "c"},
            "kv": {"max_keys": 100},
            "routes": [{"path": "/api", "proxy": "http://127.0.0.1:9000"}],
        });
        let tenant = tenant_from_json("acme-co", &body, &server()).expect("valid");
        assert_eq!(tenant.name, "acme-co");
        assert_eq!(tenant.host_names(), ["acme.example", "*.acme.example"]);
        assert_eq!(tenant.limits.memory, 32 << 20);
        assert_eq!(tenant.limits.weight, 2);
        assert_eq!(tenant.env.get("A.B").map(String::as_str), Some("c"));
        assert_eq!(tenant.routes.len(), 1);
    }

    #[test]
    fn a_tenant_needs_no_routes() {
        let tenant = tenant_from_json("t", &json!({"hosts": ["t.example"]}), &server()).expect("valid");
        assert!(tenant.routes.is_empty());
    }

    #[test]
    fn problems_name_the_json_key() {
        let found = problems(json!({
            "hosts": ["a.example"],
            "max_concurrency": 0,
            "memory": "lots",
            "env": {"OK": "1"},
            "routes": [{"path": "/a", "proxy": "http://127.0.0.1:1"}, {"path": "b", "proxy": "http://127.0.0.1:1"}],
        }));
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"max_concurrency"), "{found:?}");
        assert!(keys.contains(&"memory"), "{found:?}");
        assert!(keys.contains(&"routes[1].path"), "{found:?}");
        assert_eq!(found.len(), 3, "{found:?}");
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let found = problems(json!({"hosts": ["a.example"], "memroy": "1 MiB"}));
        assert_eq!(found[0].key, "memroy", "{found:?}");
        assert!(found[0].message.contains("unknown field"), "{found:?}");
        let found = problems(json!({"hosts": "a.example"}));
        assert_eq!(found[0].key, "hosts", "{found:?}");
        let found = problems(json!({"hosts": ["a.example"], "timeout": null}));
        assert_eq!(found[0].key, "timeout", "{found:?}");
        let found = problems(json!(["not", "an", "object"]));
        assert_eq!(found[0].key, "");
    }

    #[test]
    fn keys_that_name_server_files_are_refused() {
        let found = problems(json!({
            "hosts": ["a.example"],
            "data": "/etc",
            "tls": {"cert": "/etc/ssl/a.pem", "key": "/etc/ssl/a.key"},
            "routes": [{"path": "/", "static": "/"}, {"path": "/x", "component": "/bin/x.wasm"}],
        }));
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["data", "tls.cert", "tls.key", "routes[0].static", "routes[1].component"], "{found:?}");
    }

    #[test]
    fn acme_is_checked_like_the_file_and_may_not_name_a_ca_file() {
        let https = crate::Config::parse(
            Path::new("p.toml"),
            "[server]\ntls_listen = [\"127.0.0.1:8443\"]\n[admin]\nlisten = \"127.0.0.1:9901\"\n",
        )
        .expect("tls_listen with [admin] and no certificate yet is valid")
        .server;
        let acme = json!({"directory": "https://ca.example/dir", "email": "ops@a.example"});
        let tenant = tenant_from_json("a", &json!({"hosts": ["a.example"], "acme": acme}), &https).expect("valid");
        assert!(matches!(tenant.tls, Some(crate::TlsSource::Acme(ref a)) if a.ca.is_none()));
        let wildcard = tenant_from_json("a", &json!({"hosts": ["*.a.example"], "acme": acme}), &https);
        assert_eq!(wildcard.expect_err("no wildcard")[0].key, "acme");
        let no_listener = problems(json!({"hosts": ["a.example"], "acme": acme}));
        assert!(no_listener[0].message.contains("tls_listen"), "{no_listener:?}");
        let ca = problems(json!({"hosts": ["a.example"], "acme": {"directory": "https://x/d", "ca": "/etc/passwd"}}));
        assert_eq!(ca[0].key, "acme.ca", "{ca:?}");
    }

    #[test]
    fn hosts_are_required_and_checked() {
        assert_eq!(problems(json!({}))[0].key, "");
        let found = problems(json!({"hosts": ["a.example", "a.example"]}));
        assert_eq!(found[0].key, "hosts", "{found:?}");
    }
}
