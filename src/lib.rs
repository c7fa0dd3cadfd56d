//! csr-approver: safely auto-approves kubelet CertificateSigningRequests on clusters with
//! no cloud machine API (bare metal, UPI). `decision` is the security policy; everything
//! that touches the network lives outside it.

pub mod check;
pub mod cli;
pub mod decision;
pub mod inventory;
pub mod objects;
pub mod policy;
pub mod request;

use std::path::PathBuf;

/// Errors surfaced to the user of the binary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Policy {
        path: PathBuf,
        source: policy::PolicyError,
    },
    #[error("invalid --now {value:?}: {message} (expected RFC 3339, e.g. 2026-11-23T12:00:00Z)")]
    BadTime { value: String, message: String },
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
