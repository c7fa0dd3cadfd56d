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
}

impl ApprovalError {
    /// The API error behind the failure, if it came from the apiserver or the transport.
    pub fn source_error(&self) -> Option<&kube::Error> {
        match self {
            ApprovalError::Write { source, .. } | ApprovalError::Reread { source, .. } => {
                Some(source)
            }
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
        Verdict::Wait => (EventType::Warning, "NotApproved", "Wait"),
        Verdict::Ignore => return None,
    };
    let prefix = if dry_run {
        "[dry-run: nothing written] "
    } else {
        ""
    };
    // The Recorder folds Events that share type, reason and action into one series that
    // keeps its first note: a CSR that waits for one reason, then another, must get a new
    // Event saying the new one.
    let action = match decision.verdict {
        Verdict::Wait => format!("{action}:{}", decision.reason.as_str()),
        _ => action.to_string(),
    };
    Some(Event {
        type_,
        reason: reason.to_string(),
        note: Some(capped(format!("{prefix}{}", explanation(decision)))),
        action,
        secondary: None,
    })
}

/// What a decision says, in its Event and (behind [`MESSAGE_PREFIX`]) its condition.
fn explanation(decision: &Decision) -> String {
    format!("{}: {}", decision.reason.as_str(), decision.message)
}

/// The Events API caps a note at 1 kB. A long note loses its middle, not its end: the
/// end says what to do (for an admin: the approve command).
fn capped(note: String) -> String {
    const CAP: usize = 1000;
    const TAIL: usize = 300;
    const ELLIPSIS: &str = " … ";
    if note.len() <= CAP {
        return note;
    }
    let mut head_end = CAP - TAIL - ELLIPSIS.len();
    while !note.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = note.len() - TAIL;
    while !note.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!("{}{ELLIPSIS}{}", &note[..head_end], &note[tail_start..])
}

#[cfg(test)]
mod capped_tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::{capped, event_for};
    use crate::decision::{Decision, Reason, Verdict};

    fn waiting(reason: Reason) -> Decision {
        Decision {
            verdict: Verdict::Wait,
            reason,
            message: "why".to_string(),
            node: None,
            wants: None,
        }
    }

    #[test]
    fn a_new_reason_to_wait_is_a_new_event_not_a_repeat_of_the_old_one() {
        let first = event_for(&waiting(Reason::NodeNotRegistered), false).unwrap();
        let then = event_for(&waiting(Reason::ForeignSan), false).unwrap();
        assert_eq!(first.reason, then.reason);
        assert_ne!(first.action, then.action, "the Recorder would fold them");
        assert_eq!(then.action, "Wait:ForeignSan");
    }

    #[test]
    fn a_long_note_keeps_its_beginning_and_its_end() {
        let note = format!(
            "NodeAlreadyExists: {}; approve by hand: kubectl certificate approve x",
            "é".repeat(600)
        );
        let cut = capped(note.clone());
        assert!(cut.len() <= 1000, "{}", cut.len());
        assert!(cut.starts_with("NodeAlreadyExists: "));
        assert!(cut.ends_with("kubectl certificate approve x"), "{cut}");
        assert_eq!(capped(String::from("short")), "short");
    }
}

/// The Warning Event on a CSR whose verdict could not be written: the status code and the
/// apiserver's message, and what usually causes it. The cause is in the action because the
/// Recorder folds Events that share type, reason and action into one series keeping the
/// first note: a new cause (403, then 503) must be a new Event, or `check` would show a
/// stale one.
pub fn failure_event(decision: &Decision, error: &ApprovalError) -> Event {
    let (written, action) = match decision.verdict {
        Verdict::Deny => ("Denied", "Deny"),
        _ => ("Approved", "Approve"),
    };
    let cause = error.cause();
    let what = match error {
        ApprovalError::Reread { .. } => "re-reading the CSR after a conflict".to_string(),
        _ => format!("writing the {written} condition"),
    };
    let failure = match error.source_error() {
        Some(kube::Error::Api(status)) => {
            format!("HTTP {} {}: {}", status.code, status.reason, status.message)
        }
        Some(other) => other.to_string(),
        None => error.to_string(),
    };
    let hint = match cause {
        "forbidden" => {
            " csr-approver may not write it: check the ClusterRoleBinding and ClusterRole csr-approver (update on certificatesigningrequests/approval, approve on the signer)."
        }
        "unauthorized" => {
            " The apiserver does not accept csr-approver's credentials (an expired or revoked ServiceAccount token)."
        }
        "throttled" => " The apiserver is rate-limiting csr-approver (API Priority and Fairness).",
        "timeout" | "unavailable" | "server_error" => {
            " The apiserver (or etcd behind it) failed to answer."
        }
        _ => "",
    };
    let note = format!(
        "Decided {} ({}) but {what} failed: {failure}.{hint} Retrying every 5 s.",
        decision.verdict.as_str(),
        decision.reason.as_str(),
    );
    Event {
        type_: EventType::Warning,
        reason: FAILURE_REASON.to_string(),
        note: Some(capped(note)),
        action: format!("{action}:{cause}"),
        secondary: None,
    }
}

/// Publishes an Event about a CSR; failures are logged (and returned, to be counted), never
/// fatal to the decision.
pub async fn publish(
    recorder: &Recorder,
    csr: &CertificateSigningRequest,
    event: &Event,
) -> Result<(), kube::Error> {
    let reference = csr.object_ref(&());
    recorder.publish(event, &reference).await.inspect_err(|error| {
        tracing::warn!(csr = csr.metadata.name.as_deref().unwrap_or_default(), %error, "could not publish Event");
    })
}

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
    use crate::decision::Reason;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("the apiserver's message", reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn the_cause_comes_from_the_status_code_and_the_transport() {
        let cases = [
            (api_error(401, "Unauthorized"), "unauthorized"),
            (api_error(403, "Forbidden"), "forbidden"),
            (api_error(404, "NotFound"), "not_found"),
            (api_error(409, "Conflict"), "conflict"),
            (api_error(422, "Invalid"), "invalid"),
            (api_error(400, "BadRequest"), "invalid"),
            (api_error(429, "TooManyRequests"), "throttled"),
            (api_error(504, "Timeout"), "timeout"),
            (api_error(500, "ServerTimeout"), "timeout"),
            (api_error(503, "ServiceUnavailable"), "unavailable"),
            (api_error(500, "InternalError"), "server_error"),
            (api_error(502, ""), "server_error"),
            (api_error(418, ""), "other"),
            (
                kube::Error::Service(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))),
                "unavailable",
            ),
            (
                kube::Error::Service(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut))),
                "timeout",
            ),
            (kube::Error::LinesCodecMaxLineLengthExceeded, "other"),
        ];
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

    fn approve() -> Decision {
        Decision {
            verdict: Verdict::Approve,
            reason: Reason::NewNodeMachine,
            message: "Machine openshift-machine-api/worker-1 vouches".to_string(),
            node: Some("worker-1".to_string()),
            wants: None,
        }
    }

    #[test]
    fn a_failed_write_is_a_warning_naming_the_status_the_message_and_the_cause() {
        let error = ApprovalError::Write {
            name: "worker-1-client".into(),
            source: api_error(403, "Forbidden"),
        };
        let event = failure_event(&approve(), &error);
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(event.reason, FAILURE_REASON);
        assert_eq!(event.action, "Approve:forbidden");
        let note = event.note.unwrap();
        assert!(
            note.starts_with("Decided approve (NewNodeMachine) but writing the Approved condition failed: HTTP 403 Forbidden: the apiserver's message."),
            "{note}"
        );
        assert!(note.contains("ClusterRoleBinding"), "{note}");
        // Another cause is another Event (the Recorder folds Events by action).
        let unavailable = ApprovalError::Reread {
            name: "worker-1-client".into(),
            source: api_error(503, "ServiceUnavailable"),
        };
        let event = failure_event(&approve(), &unavailable);
        assert_eq!(event.action, "Approve:unavailable");
        assert!(
            event
                .note
                .unwrap()
                .contains("re-reading the CSR after a conflict failed: HTTP 503")
        );
    }

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
