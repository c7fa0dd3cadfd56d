//! Writing a verdict: the condition, conditional on the resourceVersion judged.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};

use super::event::explanation;
use super::{APPROVED_REASON, ApprovalError, MESSAGE_PREFIX};
use crate::decision::{Decision, Verdict};
use crate::inventory::CsrState;

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
        Verdict::Wait | Verdict::Ignore => return Ok(Written::Done),
    };
    let condition = CertificateSigningRequestCondition {
        type_: type_.to_string(),
        status: "True".to_string(),
        reason: Some(reason),
        // The Event's note behind the prefix, so a new leader can publish the Event a
        // killed one wrote the condition for but did not get to explain.
        message: Some(format!("{MESSAGE_PREFIX}{}", explanation(decision))),
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
        async move { put_approval(api, name, &desired).await }
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
            match crate::facts::csr_state(&fresh) {
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

/// PUTs `desired` to the `/approval` subresource. The answer, the whole CSR as written, is
/// read but not decoded: nothing here needs it (the CSR watch brings it anyway), and
/// decoding it was a second full parse of every CSR approved.
async fn put_approval(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    desired: &CertificateSigningRequest,
) -> Result<(), kube::Error> {
    let body = serde_json::to_vec(desired).map_err(kube::Error::SerdeError)?;
    let mut request = kube::core::Request::new(api.resource_url())
        .replace_subresource("approval", name, &PostParams::default(), body)
        .map_err(kube::Error::BuildRequest)?;
    // What kube's own `replace_subresource` marks its request with (its tracing span).
    request.extensions_mut().insert("replace_subresource");
    api.clone().into_client().request_text(request).await?;
    Ok(())
}
