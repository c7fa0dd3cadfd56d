//! CSR hygiene: the kubelet CSRs that went wrong and that nothing will act on, by cause.
//! Pure (no I/O, no clock): the controller's gauge (`csr_approver_stale_csrs`) and
//! `check --hygiene` classify the same summaries with the same function, so they cannot
//! disagree. Nothing here changes a decision: a CSR is classified, never judged.
//!
//! - [`report`]: the summary by cause `check --hygiene` prints (table or JSON lines).

use std::time::Duration;

use jiff::Timestamp;

use crate::inventory::{CsrState, CsrSummary};
use crate::policy::Policy;
use crate::vocabulary::{NODE_USER_PREFIX, Signer};

pub mod report;

pub use report::{CauseSummary, HygieneReport, NodeCount, render};

/// Why a kubelet CSR is stale. Bounded: these are the values of the gauge's `cause` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StaleCause {
    /// Approved, and the signer refused to issue: a `Failed` condition (kube-controller-
    /// manager's signer writes reason `SignerValidationFailure`). Final: no one signs it.
    SignerFailed,
    /// Approved longer than [`ISSUE_GRACE`] ago and still without a certificate: no signer
    /// acts on it (signer controller off, or a signer name nothing serves).
    NotIssued,
    /// Denied. Final; they pile up when a kubelet keeps asking and is refused each time.
    Denied,
    /// Pending, asked by a requester nothing approves: neither `system:node:<name>` nor (for
    /// the client signer) a bootstrapper of the policy.
    UnknownRequester,
    /// Pending longer than the kubelet waits for it ([`RENEWAL_WAIT`], [`BOOTSTRAP_WAIT`]).
    PendingTooLong,
}

impl StaleCause {
    /// In the order reports list them.
    pub const ALL: [StaleCause; 5] = [
        StaleCause::SignerFailed,
        StaleCause::NotIssued,
        StaleCause::Denied,
        StaleCause::UnknownRequester,
        StaleCause::PendingTooLong,
    ];

    /// The label value and the report's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleCause::SignerFailed => "signer_failed",
            StaleCause::NotIssued => "not_issued",
            StaleCause::Denied => "denied",
            StaleCause::UnknownRequester => "unknown_requester",
            StaleCause::PendingTooLong => "pending_too_long",
        }
    }

    /// One line for a person: what the cause means and why nothing will happen.
    pub fn meaning(self) -> &'static str {
        match self {
            StaleCause::SignerFailed => {
                "approved, but the signer refused to issue (Failed condition, e.g. SignerValidationFailure): never issued"
            }
            StaleCause::NotIssued => {
                "approved more than 5 minutes ago and still no certificate: no signer is acting on it"
            }
            StaleCause::Denied => {
                "final: its kubelet must ask again (they pile up when a kubelet keeps asking and is refused)"
            }
            StaleCause::UnknownRequester => {
                "pending, from a requester nothing approves (neither system:node:<name> nor a bootstrapper of the policy)"
            }
            StaleCause::PendingTooLong => {
                "pending longer than the kubelet waits (15 min for a node's own request, 1 h for a bootstrap request)"
            }
        }
    }
}

/// How long after its approval a CSR may go without a certificate before it counts as
/// never issued. kube-controller-manager's signer signs when it sees the approval (seconds);
/// minutes leave room for a slow or restarting signer.
pub const ISSUE_GRACE: Duration = Duration::from_secs(5 * 60);

/// How long a kubelet waits for a CSR it made with its own credential (client renewal,
/// serving certificate). client-go's certificate manager waits `certificateWaitTimeout`
/// (15 minutes, k8s.io/client-go/util/certificate/certificate_manager.go, v0.37.2) for the
/// certificate, then gives the CSR up and later asks anew with a new key: that CSR is
/// never fetched, whatever happens to it.
pub const RENEWAL_WAIT: Duration = Duration::from_secs(15 * 60);

/// How long a kubelet waits for its bootstrap CSR (the first client certificate, asked
/// with the bootstrap credential): one hour (`requestNodeCertificate` in
/// k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap/bootstrap.go, v1.37.2), after which
/// it exits. Its key is kept (`kubelet-client.key.tmp`) and the CSR is named from it, so a
/// restarted kubelet may wait on the same CSR again; past an hour it waits for an admin.
pub const BOOTSTRAP_WAIT: Duration = Duration::from_secs(3600);

/// Why `csr` is stale as of `now`, or `None` when it is not (issued, of another signer,
/// pending within the kubelet's wait, approved moments ago). `policy`: the policy in
/// force, whose bootstrappers may ask for client certificates; without one, no client
/// requester is called unknown (nothing is decided then, so nothing can be said of who
/// would be). A serving certificate is only ever approved for the node itself.
pub fn classify(csr: &CsrSummary, policy: Option<&Policy>, now: Timestamp) -> Option<StaleCause> {
    let signer = Signer::of(&csr.signer)?;
    let older_than = |since: Option<Timestamp>, limit: Duration| {
        since.is_some_and(|t| now.duration_since(t).as_secs_f64() > limit.as_secs_f64())
    };
    match csr.state {
        CsrState::Issued => None,
        CsrState::Failed => Some(StaleCause::SignerFailed),
        CsrState::Denied => Some(StaleCause::Denied),
        CsrState::Approved => older_than(csr.approved_at.or(csr.created), ISSUE_GRACE)
            .then_some(StaleCause::NotIssued),
        CsrState::Pending => {
            let own_credential = csr.requester.starts_with(NODE_USER_PREFIX);
            let bootstrapper = || {
                signer == Signer::Client
                    && policy.is_none_or(|p| {
                        p.client
                            .bootstrappers
                            .iter()
                            .any(|b| b.matches(&csr.requester, &csr.groups))
                    })
            };
            if !own_credential && !bootstrapper() {
                return Some(StaleCause::UnknownRequester);
            }
            let wait = if own_credential {
                RENEWAL_WAIT
            } else {
                BOOTSTRAP_WAIT
            };
            older_than(csr.created, wait).then_some(StaleCause::PendingTooLong)
        }
    }
}

/// How many of `csrs` are stale, by cause, in [`StaleCause::ALL`]'s order: what the gauge
/// shows, counted without allocating.
pub fn count<'a>(
    csrs: impl IntoIterator<Item = &'a CsrSummary>,
    policy: Option<&Policy>,
    now: Timestamp,
) -> [(StaleCause, usize); 5] {
    let mut counts = StaleCause::ALL.map(|cause| (cause, 0));
    for csr in csrs {
        if let Some(cause) = classify(csr, policy, now)
            && let Some((_, n)) = counts.iter_mut().find(|(c, _)| *c == cause)
        {
            *n += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests;
