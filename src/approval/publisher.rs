//! Publishing Events (`events.k8s.io/v1`): what kube-runtime's `Recorder` does, without its
//! cache.
//!
//! The Recorder keeps every Event it sent for six minutes, to fold a repeat into a series,
//! and scans that whole cache on every publish. In a join storm that is every approval's
//! Event held and scanned again at each approval: ≈ 4 MiB more peak memory in a 1000-node
//! serving storm, and a `HashMap::retain` among the top symbols of its CPU profile
//! (`bench/profile.sh`). csr-approver never repeats itself — `controller::explain` says each
//! decision once per CSR, and a failed write once per cause — so there is nothing to fold.
//! The Event is the Recorder's, field for field; its answer is not decoded (nothing reads it).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::PostParams;
use kube::core::Resource;
use kube::runtime::events::{Event, EventType, Reporter};

/// Publishes Events as one reporting controller and instance.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    reporter: Reporter,
}

impl Publisher {
    pub fn new(client: Client, reporter: Reporter) -> Publisher {
        Publisher { client, reporter }
    }

    /// Creates one Event about `regarding`, in its namespace (`default` for a cluster-scoped
    /// object such as a CSR).
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let object = event_object(&self.reporter, event, regarding, jiff::Timestamp::now());
        let body = serde_json::to_vec(&object).map_err(kube::Error::SerdeError)?;
        let request = kube::core::Request::new(K8sEvent::url_path(&(), Some(namespace)))
            .create(&PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        self.client.request_text(request).await?;
        Ok(())
    }
}

/// The Event object, as kube-runtime's `Recorder` writes a new one.
fn event_object(
    reporter: &Reporter,
    event: &Event,
    regarding: &ObjectReference,
    now: jiff::Timestamp,
) -> K8sEvent {
    let Reporter {
        controller,
        instance,
    } = reporter;
    K8sEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        note: event.note.clone(),
        metadata: ObjectMeta {
            namespace: regarding.namespace.clone(),
            name: Some(format!(
                "{}.{:x}",
                regarding.name.as_ref().unwrap_or(controller),
                now.as_nanosecond()
            )),
            ..ObjectMeta::default()
        },
        reporting_controller: Some(controller.clone()),
        reporting_instance: Some(instance.clone().unwrap_or_else(|| controller.clone())),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        ..K8sEvent::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn the_event_is_what_kubes_recorder_writes() {
        let reporter = Reporter {
            controller: "csr-approver".into(),
            instance: Some("replica-1".into()),
        };
        let regarding = ObjectReference {
            api_version: Some("certificates.k8s.io/v1".into()),
            kind: Some("CertificateSigningRequest".into()),
            name: Some("csr-a".into()),
            uid: Some("u-a".into()),
            ..ObjectReference::default()
        };
        let now: jiff::Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let event = event_object(
            &reporter,
            &Event {
                type_: EventType::Warning,
                reason: "NotApproved".into(),
                note: Some("UnknownMachine: …".into()),
                action: "Wait:UnknownMachine".into(),
                secondary: None,
            },
            &regarding,
            now,
        );
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": format!("csr-a.{:x}", now.as_nanosecond())},
                "action": "Wait:UnknownMachine",
                "reason": "NotApproved",
                "note": "UnknownMachine: …",
                "type": "Warning",
                "eventTime": "2026-12-07T10:00:00.000000Z",
                "regarding": {"apiVersion": "certificates.k8s.io/v1",
                    "kind": "CertificateSigningRequest", "name": "csr-a", "uid": "u-a"},
                "reportingController": "csr-approver",
                "reportingInstance": "replica-1"
            })
        );
    }
}
