//! What a guest imports and exports, and which of its imports palisade cannot provide.

use std::fmt;

/// A guest's interface with the host, for `palisade check` and start-up logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    /// "component" or "CGI module".
    pub kind: &'static str,
    /// Imported interfaces (components) or import modules with their function count (modules).
    pub imports: Vec<String>,
    /// Exported interfaces or functions.
    pub exports: Vec<String>,
}

impl fmt::Display for AppInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| if v.is_empty() { "nothing".to_string() } else { v.join(", ") };
        write!(f, "{}; imports {}; exports {}", self.kind, list(&self.imports), list(&self.exports))
    }
}

/// WASI 0.2 packages linked into every component (any 0.2.x patch version links, by semver).
const PROVIDED_PACKAGES: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:io",
    "wasi:random",
    "wasi:sockets",
    "wasi:http",
    "wasi:keyvalue",
];

/// Whether `import` (e.g. `wasi:http/types@0.2.3`) names a package and version palisade links.
pub(crate) fn component_import_provided(import: &str) -> bool {
    let (path, version) = import.split_once('@').unwrap_or((import, ""));
    let package = path.split_once('/').map_or(path, |(p, _)| p);
    PROVIDED_PACKAGES.contains(&package) && (version.starts_with("0.2.") || version == "0.2")
}

pub(crate) fn component_info(engine: &wasmtime::Engine, component: &wasmtime::component::Component) -> AppInfo {
    let ty = component.component_type();
    AppInfo {
        kind: "component",
        imports: ty.imports(engine).map(|(name, _)| name.to_string()).collect(),
        exports: ty.exports(engine).map(|(name, _)| name.to_string()).collect(),
    }
}

/// The module every CGI import must come from.
pub(crate) const PREVIEW1: &str = "wasi_snapshot_preview1";

pub(crate) fn module_info(module: &wasmtime::Module) -> AppInfo {
    let mut imports: Vec<(String, usize)> = Vec::new();
    for import in module.imports() {
        match imports.iter_mut().find(|(m, _)| m == import.module()) {
            Some((_, n)) => *n += 1,
            None => imports.push((import.module().to_string(), 1)),
        }
    }
    AppInfo {
        kind: "CGI module",
        imports: imports.into_iter().map(|(m, n)| format!("{m} ({n} functions)")).collect(),
        exports: module.exports().map(|e| e.name().to_string()).collect(),
    }
}

/// Imports of a module that do not come from WASI preview1, as `module::name`.
pub(crate) fn foreign_module_imports(module: &wasmtime::Module) -> Vec<String> {
    module.imports().filter(|i| i.module() != PREVIEW1).map(|i| format!("{}::{}", i.module(), i.name())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provided_imports() {
        assert!(component_import_provided("wasi:http/types@0.2.12"));
        assert!(component_import_provided("wasi:cli/environment@0.2.0"));
        assert!(component_import_provided("wasi:sockets/tcp@0.2.3"));
        assert!(component_import_provided("wasi:keyvalue/store@0.2.0-draft"));
        assert!(!component_import_provided("wasi:config/store@0.2.0-draft"));
        assert!(!component_import_provided("wasi:http/types@0.3.0-rc-2025-09-16"));
        assert!(!component_import_provided("fermyon:spin/key-value@2.0.0"));
        assert!(!component_import_provided("wasi:httpx/types@0.2.0"));
    }
}
