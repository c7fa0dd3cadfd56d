//! Decisions csr-approver wrote, as found on a CSR: what tells them from anyone else's,
//! and whether an Event explains them already.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::Api;
use kube::runtime::events::{Event, EventType};

use super::event::capped;
use super::{APPROVED_REASON, CONTROLLER, MESSAGE_PREFIX};

/// A verdict csr-approver wrote into a CSR's conditions, as found on the CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenDecision {
    /// `Approved` or `Denied`.
    pub condition: &'static str,
    /// The Event's note: the condition's message without [`MESSAGE_PREFIX`].
    pub note: String,
    /// The condition's lastUpdateTime (else lastTransitionTime).
    pub at: Option<jiff::Timestamp>,
}

/// How long after a decision was written a new leader still explains it if no Event does:
/// long enough for any takeover (a lease is seconds), short enough that a restart does
/// not list Events for the whole history of approved CSRs.
pub const EXPLAINED_AFTER_THE_FACT_WITHIN: std::time::Duration =
    std::time::Duration::from_secs(600);

impl WrittenDecision {
    /// Whether it is recent enough at `now` to be explained if no Event does.
    pub fn explained_after_the_fact(&self, now: jiff::Timestamp) -> bool {
        self.at.is_some_and(|at| {
            now.duration_since(at)
                .unsigned_abs()
                .le(&EXPLAINED_AFTER_THE_FACT_WITHIN)
        })
    }
}

/// The verdict csr-approver wrote into this CSR, if any: an `Approved` condition with
/// reason [`APPROVED_REASON`], or a `Denied` one, whose message starts with
/// [`MESSAGE_PREFIX`]. An admin's `kubectl certificate approve` (reason
/// `KubectlApprove`) or another approver's is not ours to explain.
pub fn written_decision(csr: &CertificateSigningRequest) -> Option<WrittenDecision> {
    let conditions = csr.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find_map(|c| {
        let condition = match (c.type_.as_str(), c.reason.as_deref()) {
            ("Approved", Some(APPROVED_REASON)) => "Approved",
            ("Denied", Some(_)) => "Denied",
            _ => return None,
        };
        let note = c.message.as_deref()?.strip_prefix(MESSAGE_PREFIX)?;
        (c.status == "True").then(|| WrittenDecision {
            condition,
            note: capped(note.to_string()),
            at: c
                .last_update_time
                .as_ref()
                .or(c.last_transition_time.as_ref())
                .map(|t| t.0),
        })
    })
}

/// The Event that explains a written decision, as [`event_for`] gave it when deciding.
pub fn event_for_written(written: &WrittenDecision) -> Event {
    let (type_, reason, action) = match written.condition {
        "Denied" => (EventType::Warning, "Denied", "Deny"),
        _ => (EventType::Normal, "Approved", "Approve"),
    };
    Event {
        type_,
        reason: reason.to_string(),
        note: Some(written.note.clone()),
        action: action.to_string(),
        secondary: None,
    }
}

/// Whether an Event from csr-approver (any replica) already explains the written decision
/// on this CSR: one list of the Events about it in `default`, where Events about
/// cluster-scoped objects are recorded (RBAC: `list` events there).
pub async fn explained_already(
    client: &kube::Client,
    csr: &CertificateSigningRequest,
    written: &WrittenDecision,
) -> Result<bool, kube::Error> {
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let selector =
        format!("involvedObject.kind=CertificateSigningRequest,involvedObject.name={name}");
    let reason = event_for_written(written).reason;
    let list = events
        .list(&kube::api::ListParams::default().fields(&selector))
        .await?;
    Ok(list.items.iter().any(|e| {
        e.reporting_component.as_deref() == Some(CONTROLLER)
            && e.reason.as_deref() == Some(reason.as_str())
            && !e.message.as_deref().unwrap_or_default().starts_with("[dry-run")
            // A CSR deleted and re-created under its name is another request.
            && (e.involved_object.uid.is_none() || e.involved_object.uid == csr.metadata.uid)
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;
    use crate::approval::event::{event_for, explanation};
    use crate::approval::fixtures::approve;

    fn with_condition(condition: serde_json::Value) -> CertificateSigningRequest {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "worker-1-client", "uid": "u-1"},
            "spec": {"request": "", "signerName": "kubernetes.io/kube-apiserver-client-kubelet"},
            "status": {"conditions": [condition]}
        }))
        .unwrap()
    }

    #[test]
    fn our_written_decisions_are_told_from_anyone_elses() {
        let decision = approve();
        let ours = with_condition(serde_json::json!({
            "type": "Approved", "status": "True", "reason": APPROVED_REASON,
            "message": format!("{MESSAGE_PREFIX}{}", explanation(&decision)),
            "lastUpdateTime": "2030-01-01T00:00:00Z"
        }));
        let written = written_decision(&ours).unwrap();
        assert_eq!(written.condition, "Approved");
        assert_eq!(
            written.at,
            Some("2030-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap())
        );
        // The very Event it would have had.
        let event = event_for_written(&written);
        let original = event_for(&decision, false).unwrap();
        assert_eq!(
            (event.type_, &event.reason, &event.note, &event.action),
            (
                original.type_,
                &original.reason,
                &original.note,
                &original.action
            )
        );

        let denied = with_condition(serde_json::json!({
            "type": "Denied", "status": "True", "reason": "BadOrganization",
            "message": "csr-approver: BadOrganization: O=system:masters"
        }));
        let written = written_decision(&denied).unwrap();
        assert_eq!(event_for_written(&written).reason, "Denied");
        assert_eq!(event_for_written(&written).type_, EventType::Warning);

        for theirs in [
            // kubectl certificate approve
            serde_json::json!({"type": "Approved", "status": "True", "reason": "KubectlApprove",
                               "message": "This CSR was approved by kubectl certificate approve."}),
            // Another approver borrowing our reason, not our message.
            serde_json::json!({"type": "Approved", "status": "True", "reason": APPROVED_REASON,
                               "message": "approved by another-approver"}),
            serde_json::json!({"type": "Approved", "status": "False", "reason": APPROVED_REASON,
                               "message": "csr-approver: NewNodeMachine: x"}),
        ] {
            assert_eq!(
                written_decision(&with_condition(theirs.clone())),
                None,
                "{theirs}"
            );
        }
    }
}
