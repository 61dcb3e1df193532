//! Errors loading guests, and the mapping of run-time guest failures to faults.

use std::path::PathBuf;

use palisade_http::{Fault, HandlerError};

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

/// Turns a failed guest run into the fault the client sees, keeping the full story for the log.
pub(crate) fn guest_failure(error: &wasmtime::Error) -> HandlerError {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            HandlerError::new(Fault::GuestTimeout, "guest exceeded its deadline", format!("{error:?}"))
        }
        _ => HandlerError::new(Fault::GuestFailed, "guest failed", format!("{error:?}")),
    }
}

pub(crate) fn timed_out() -> HandlerError {
    HandlerError::new(Fault::GuestTimeout, "guest exceeded its deadline", "deadline reached")
}
