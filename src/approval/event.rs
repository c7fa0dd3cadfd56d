//! The Events that explain decisions, and publishing them.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::{ApprovalError, FAILURE_REASON, Publisher};
use crate::decision::{Decision, Verdict};

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
    // The action names the reason too, so a CSR that waits for one reason, then another,
    // gets an Event saying the new one even where Events sharing type, reason and action
    // are folded into one series keeping its first note (as kube's Recorder folds them).
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
pub(super) fn explanation(decision: &Decision) -> String {
    format!("{}: {}", decision.reason.as_str(), decision.message)
}

/// The Events API caps a note at 1 kB. A long note loses its middle, not its end: the
/// end says what to do (for an admin: the approve command).
pub(super) fn capped(note: String) -> String {
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
        ApprovalError::Record { node, .. } => format!(
            "recording the identity it mints in NodeIdentity {node}, before writing the {written} condition,"
        ),
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
            " csr-approver may not write it: check the ClusterRoleBinding and ClusterRole csr-approver (update on certificatesigningrequests/approval, approve on the signer, create and update on nodeidentities)."
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
    publisher: &Publisher,
    csr: &CertificateSigningRequest,
    event: &Event,
) -> Result<(), kube::Error> {
    let reference = csr.object_ref(&());
    publisher.publish(event, &reference).await.inspect_err(|error| {
        tracing::warn!(csr = csr.metadata.name.as_deref().unwrap_or_default(), %error, "could not publish Event");
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;
    use crate::approval::fixtures::{api_error, approve, waiting};
    use crate::decision::Reason;

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
}
