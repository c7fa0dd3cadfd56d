//! Writing decisions: the `Approved`/`Denied` condition through the `/approval`
//! subresource (PUT: RBAC verb `update`), and the Event that explains each decision.
//!
//! - [`write`]: the conditional write of a verdict, re-reading once on a conflict.
//! - [`event`]: the Events that explain a decision or a failed write.
//! - [`publisher`]: publishing an Event (kube's `Recorder`, without its cache).
//! - [`written`]: decisions found written on a CSR, and whether an Event explains them.
//! - [`identity`]: the identity an approval mints, recorded before it is written.
//! - here: the names every writer and reader agrees on, and the bounded failure causes.

mod event;
mod identity;
mod publisher;
mod write;
mod written;

pub use event::{event_for, failure_event, publish};
pub use identity::{RecordError, record_minted, record_vouched, take_back};
pub use publisher::Publisher;
pub use write::{Written, write_verdict};
pub use written::{
    EXPLAINED_AFTER_THE_FACT_WITHIN, WrittenDecision, event_for_written, explained_already,
    written_decision,
};

/// The condition reason kubectl shows for our approvals.
pub const APPROVED_REASON: &str = "AutoApproved";

/// How every condition message we write starts: what tells our decisions from an admin's
/// (a new leader explains ours that no Event explains yet, see [`written_decision`]).
pub const MESSAGE_PREFIX: &str = "csr-approver: ";

/// The reason of the Warning Event on a CSR whose verdict could not be written; `check`
/// reads the latest one as the CSR's last write error.
pub const FAILURE_REASON: &str = "ApprovalFailed";

/// The reporting controller of every Event we publish.
pub const CONTROLLER: &str = "csr-approver";

/// Every value [`failure_cause`] returns: the `cause` label of
/// `csr_approver_write_failures_total`.
pub const FAILURE_CAUSES: [&str; 10] = [
    "forbidden",
    "unauthorized",
    "conflict",
    "not_found",
    "invalid",
    "throttled",
    "timeout",
    "unavailable",
    "server_error",
    "other",
];

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("writing the approval of {name}: {source}")]
    Write { name: String, source: kube::Error },
    #[error("re-reading {name} after a conflict: {source}")]
    Reread { name: String, source: kube::Error },
    /// Without a resourceVersion the PUT would overwrite whatever the CSR has become since
    /// it was judged; the apiserver's 409 on a stale version is what prevents that.
    #[error("{name} has no resourceVersion: refusing an unconditional write")]
    NoResourceVersion { name: String },
    /// The identity an approval mints is recorded first: without its record, no approval.
    #[error("recording the identity in NodeIdentity {node}: {source}")]
    Record { node: String, source: kube::Error },
}

impl ApprovalError {
    /// The API error behind the failure, if it came from the apiserver or the transport.
    pub fn source_error(&self) -> Option<&kube::Error> {
        match self {
            ApprovalError::Write { source, .. }
            | ApprovalError::Reread { source, .. }
            | ApprovalError::Record { source, .. } => Some(source),
            ApprovalError::NoResourceVersion { .. } => None,
        }
    }

    /// A bounded label for the metric: see [`failure_cause`].
    pub fn cause(&self) -> &'static str {
        self.source_error().map_or("other", failure_cause)
    }
}

/// Why an API call failed, as a metric label: from the HTTP status or the kind of transport
/// failure, never from the error text (which names objects and users, an unbounded set).
pub fn failure_cause(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) => match (status.code, status.reason.as_str()) {
            (401, _) => "unauthorized",
            (403, _) => "forbidden",
            (404, _) => "not_found",
            (409, _) => "conflict",
            (400 | 422, _) => "invalid",
            (429, _) => "throttled",
            // 504 Timeout, and 500 ServerTimeout: the apiserver gave up waiting (on etcd).
            (504, _) | (500, "ServerTimeout" | "Timeout") => "timeout",
            (503, _) => "unavailable",
            (500..=599, _) => "server_error",
            _ => "other",
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            if timed_out(error) {
                "timeout"
            } else {
                // Connection refused or reset, TLS handshake cut: no apiserver answered.
                "unavailable"
            }
        }
        _ => "other",
    }
}

/// Whether a transport error is a timeout somewhere in its chain of causes.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// Decisions as the runtime's tests need them, built in one place.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::decision::{Decision, Reason, Verdict};

    /// An approval of a new node that a Machine vouches for.
    pub(crate) fn approve() -> Decision {
        Decision {
            verdict: Verdict::Approve,
            reason: Reason::NewNodeMachine,
            message: "Machine openshift-machine-api/worker-1 vouches".to_string(),
            node: Some("worker-1".to_string()),
            wants: None,
            mints_for: None,
            vouches_for: Vec::new(),
        }
    }

    /// A failure the apiserver answers with `code` and `reason`.
    pub(crate) fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("the apiserver's message", reason)
                .with_code(code)
                .boxed(),
        )
    }

    /// A decision to leave the CSR pending for `reason`.
    pub(crate) fn waiting(reason: Reason) -> Decision {
        Decision {
            verdict: Verdict::Wait,
            reason,
            message: "why".to_string(),
            node: None,
            wants: None,
            mints_for: None,
            vouches_for: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::api_error;

    fn io_error(kind: std::io::ErrorKind) -> kube::Error {
        kube::Error::Service(Box::new(std::io::Error::from(kind)))
    }

    #[test]
    fn the_cause_comes_from_the_status_code_and_the_transport() {
        // What the apiserver answered (status code, reason) → the label.
        #[rustfmt::skip]
        let statuses = [
            (401, "Unauthorized", "unauthorized"), (403, "Forbidden", "forbidden"),
            (404, "NotFound", "not_found"), (409, "Conflict", "conflict"),
            (422, "Invalid", "invalid"), (400, "BadRequest", "invalid"),
            (429, "TooManyRequests", "throttled"), (418, "", "other"),
            // 504, and a 500 that says the apiserver gave up waiting.
            (504, "Timeout", "timeout"), (500, "ServerTimeout", "timeout"),
            (503, "ServiceUnavailable", "unavailable"),
            (500, "InternalError", "server_error"), (502, "", "server_error"),
        ];
        let transport = [
            (
                io_error(std::io::ErrorKind::ConnectionRefused),
                "unavailable",
            ),
            (io_error(std::io::ErrorKind::TimedOut), "timeout"),
            (kube::Error::LinesCodecMaxLineLengthExceeded, "other"),
        ];
        let cases = statuses
            .into_iter()
            .map(|(code, reason, cause)| (api_error(code, reason), cause))
            .chain(transport);
        for (error, cause) in cases {
            assert_eq!(failure_cause(&error), cause, "{error}");
            assert!(
                FAILURE_CAUSES.contains(&cause),
                "{cause} is a declared label"
            );
        }
        let unconditional = ApprovalError::NoResourceVersion { name: "x".into() };
        assert_eq!(unconditional.cause(), "other");
    }
}
