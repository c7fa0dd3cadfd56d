//! csr-approver: safely auto-approves kubelet CertificateSigningRequests on clusters with
//! no cloud machine API (bare metal, UPI). `decision` is the security policy; everything
//! that touches the network lives outside it.

pub mod approval;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod decision;
pub mod evidence;
pub mod expiry;
pub mod facts;
pub mod gather;
pub mod http;
pub mod hygiene;
pub mod identity;
pub mod inventory;
pub mod leader;
pub mod live;
pub mod metrics;
pub mod objects;
pub mod policy;
pub mod policy_watch;
pub mod request;
pub mod vocabulary;

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
    /// The command line asks for something that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The cluster could not be read, or did not behave as required.
    #[error("{0}")]
    Cluster(String),
    /// Part of the input could not be read: `output` reports on the rest and is printed
    /// (on stdout) before the error.
    #[error("{message}")]
    Incomplete { output: String, message: String },
    #[error(transparent)]
    Controller(#[from] controller::ControllerError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
