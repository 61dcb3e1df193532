//! Errors loading guests at start-up. (Run-time failures are mapped to faults by `TenantSandbox::guest_failure`.)

use std::path::PathBuf;

/// Why a guest could not be loaded at start-up (or by `palisade check`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is not a WebAssembly binary, or it is the wrong kind for the route.
    #[error("{}: {reason}", path.display())]
    WrongKind {
        /// The guest file.
        path: PathBuf,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// wasmtime could not validate or compile it.
    #[error("{}: not a valid WebAssembly {kind}: {message}", path.display())]
    Compile {
        /// The guest file.
        path: PathBuf,
        /// "component" or "module".
        kind: &'static str,
        /// wasmtime's explanation.
        message: String,
    },
    /// It imports something palisade does not provide, or lacks the export its ABI needs.
    #[error("{}: {message}", path.display())]
    Link {
        /// The guest file.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// The engine could not be set up.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
}
