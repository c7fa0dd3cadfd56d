//! Writing decisions: the `Approved`/`Denied` condition through the `/approval`
//! subresource (PUT: RBAC verb `update`), and the Event that explains each decision.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};

use crate::decision::{Decision, Verdict};
use crate::inventory::CsrState;

/// The condition reason kubectl shows for our approvals.
pub const APPROVED_REASON: &str = "AutoApproved";

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
}

/// What happened when a verdict was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Done,
    /// Someone else decided first (seen on a conflict); nothing was written.
    AlreadyDecided(CsrState),
    /// The CSR judged is gone: deleted, or re-created under its name (seen on a conflict);
    /// nothing was written.
    Gone,
}

/// Writes an Approved or Denied condition, conditional on the resourceVersion of the object
/// judged. On a 409 conflict the CSR is re-read: if it is the same request (same uid; its
/// spec is immutable) and still pending, the write is retried once on the fresh object,
/// else nothing is written, so a CSR is never decided twice nor on another's evidence.
pub async fn write_verdict(
    api: &Api<CertificateSigningRequest>,
    csr: &CertificateSigningRequest,
    decision: &Decision,
) -> Result<Written, ApprovalError> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let (type_, reason) = match decision.verdict {
        Verdict::Approve => ("Approved", APPROVED_REASON.to_string()),
        Verdict::Deny => ("Denied", decision.reason.as_str().to_string()),
        Verdict::Wait { .. } | Verdict::Ignore => return Ok(Written::Done),
    };
    let condition = CertificateSigningRequestCondition {
        type_: type_.to_string(),
        status: "True".to_string(),
        reason: Some(reason),
        message: Some(format!("csr-approver: {}", decision.message)),
        last_update_time: Some(Time(jiff::Timestamp::now())),
        ..Default::default()
    };
    let name = name.as_str();
    if csr
        .metadata
        .resource_version
        .as_deref()
        .is_none_or(str::is_empty)
    {
        return Err(ApprovalError::NoResourceVersion {
            name: name.to_string(),
        });
    }
    let put = |current: &CertificateSigningRequest| {
        let mut desired = current.clone();
        desired
            .status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(condition.clone());
        async move {
            api.replace_subresource("approval", name, &PostParams::default(), &desired)
                .await
        }
    };
    let write_error = |source| ApprovalError::Write {
        name: name.to_string(),
        source,
    };
    match put(csr).await {
        Ok(_) => Ok(Written::Done),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let fresh = match api.get_opt(name).await {
                Ok(Some(fresh)) => fresh,
                Ok(None) => return Ok(Written::Gone),
                Err(source) => {
                    return Err(ApprovalError::Reread {
                        name: name.to_string(),
                        source,
                    });
                }
            };
            if fresh.metadata.uid != csr.metadata.uid {
                return Ok(Written::Gone);
            }
            match CsrState::of(&fresh) {
                CsrState::Pending => put(&fresh)
                    .await
                    .map(|_| Written::Done)
                    .map_err(write_error),
                state => Ok(Written::AlreadyDecided(state)),
            }
        }
        Err(source) => Err(write_error(source)),
    }
}

/// The Event that explains a decision, as `kubectl describe csr` shows it.
pub fn event_for(decision: &Decision, dry_run: bool) -> Option<Event> {
    let (type_, reason, action) = match decision.verdict {
        Verdict::Approve => (EventType::Normal, "Approved", "Approve"),
        Verdict::Deny => (EventType::Warning, "Denied", "Deny"),
        Verdict::Wait { .. } => (EventType::Warning, "NotApproved", "Wait"),
        Verdict::Ignore => return None,
    };
    let prefix = if dry_run {
        "[dry-run: nothing written] "
    } else {
        ""
    };
    let mut note = format!("{prefix}{}: {}", decision.reason.as_str(), decision.message);
    // The Events API caps the note at 1 kB.
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Some(Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    })
}

/// Publishes an Event about a CSR; failures are logged, never fatal to the decision.
pub async fn publish(recorder: &Recorder, csr: &CertificateSigningRequest, event: &Event) -> bool {
    let reference = csr.object_ref(&());
    match recorder.publish(event, &reference).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(csr = csr.metadata.name.as_deref().unwrap_or_default(), %error, "could not publish Event");
            false
        }
    }
}
