//! How the watches read objects off the wire: only the fields csr-approver keeps. serde
//! skips every other field while it scans the JSON, so a list page or a watch event
//! allocates what is kept and nothing else. A kubelet's Node carries kilobytes — labels,
//! annotations, images, conditions, managed fields — of which its record keeps the name
//! and the addresses; built whole, each Node was hundreds of small allocations, made and
//! freed again at every heartbeat and list. A CSR is kept whole but for its managed fields
//! (a JSON tree per writer, which nothing reads).
//!
//! The objects read here are the usual types (`Node`, `DynamicObject`,
//! `CertificateSigningRequest`) holding only those fields, so `facts` stays the one
//! converter from objects to records.

use std::borrow::Cow;

use std::collections::BTreeMap;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec, CertificateSigningRequestStatus,
};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::DynamicObject;
use kube::core::{Resource, TypeMeta};
use kube::runtime::watcher::Event;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::facts::CONTROL_PLANE_LABELS;

/// The metadata a record or the watch itself reads (the watch resumes from
/// `resourceVersion`); annotations, owners, managed fields and every label but the
/// control-plane role are skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Identity {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    labels: RoleLabels,
}

/// Of a Node's labels, only those that make it a control-plane node
/// (`facts::CONTROL_PLANE_LABELS`); every other label is skipped as it is read.
#[derive(Debug, Default)]
struct RoleLabels(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for RoleLabels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RoleLabels;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of labels")
            }
            fn visit_unit<E>(self) -> Result<RoleLabels, E> {
                Ok(RoleLabels::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RoleLabels, A::Error> {
                let mut kept = BTreeMap::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if CONTROL_PLANE_LABELS.contains(&&*key) {
                        kept.insert(key.into_owned(), map.next_value::<String>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(RoleLabels(kept))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl From<Identity> for ObjectMeta {
    fn from(identity: Identity) -> ObjectMeta {
        let labels = identity.labels.0;
        ObjectMeta {
            labels: (!labels.is_empty()).then_some(labels),
            name: identity.name,
            namespace: identity.namespace,
            uid: identity.uid,
            resource_version: identity.resource_version,
            creation_timestamp: identity.creation_timestamp,
            deletion_timestamp: identity.deletion_timestamp,
            ..ObjectMeta::default()
        }
    }
}

/// Every field of `ObjectMeta` but `managedFields`. A CSR's metadata is kept otherwise
/// whole: its approval is a PUT of the object, which must not drop its labels or
/// annotations (an absent `managedFields` is the API's "keep them").
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MetaWithoutManagedFields {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<MetaWithoutManagedFields> for ObjectMeta {
    fn from(meta: MetaWithoutManagedFields) -> ObjectMeta {
        let MetaWithoutManagedFields {
            annotations,
            creation_timestamp,
            deletion_grace_period_seconds,
            deletion_timestamp,
            finalizers,
            generate_name,
            generation,
            labels,
            name,
            namespace,
            owner_references,
            resource_version,
            self_link,
            uid,
        } = meta;
        ObjectMeta {
            annotations,
            creation_timestamp,
            deletion_grace_period_seconds,
            deletion_timestamp,
            finalizers,
            generate_name,
            generation,
            labels,
            managed_fields: None,
            name,
            namespace,
            owner_references,
            resource_version,
            self_link,
            uid,
        }
    }
}

/// A CSR as the CSR watch reads it: whole, without managed fields.
#[derive(Debug, Clone)]
pub struct WatchedCsr(pub CertificateSigningRequest);

impl WatchedCsr {
    /// The CSR watch's event about the CSR itself.
    pub fn unwrap_event(event: Event<WatchedCsr>) -> Event<CertificateSigningRequest> {
        match event {
            Event::Apply(csr) => Event::Apply(csr.0),
            Event::Delete(csr) => Event::Delete(csr.0),
            Event::InitApply(csr) => Event::InitApply(csr.0),
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
        }
    }
}

impl<'de> Deserialize<'de> for WatchedCsr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: MetaWithoutManagedFields,
            spec: CertificateSigningRequestSpec,
            status: Option<CertificateSigningRequestStatus>,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(WatchedCsr(CertificateSigningRequest {
            metadata: wire.metadata.into(),
            spec: wire.spec,
            status: wire.status,
        }))
    }
}

/// A Node as its watch reads it: metadata identity and `status.addresses`.
#[derive(Debug, Clone)]
pub struct WatchedNode(pub Node);

impl<'de> Deserialize<'de> for WatchedNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: Identity,
            status: Option<WireStatus>,
        }
        #[derive(Deserialize)]
        struct WireStatus {
            addresses: Option<Vec<NodeAddress>>,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(WatchedNode(Node {
            metadata: wire.metadata.into(),
            status: wire.status.map(|status| NodeStatus {
                addresses: status.addresses,
                ..NodeStatus::default()
            }),
            ..Node::default()
        }))
    }
}

/// A Machine (either API) as its watch reads it: `apiVersion`/`kind`, metadata identity,
/// and `status.addresses` and `status.nodeRef` kept as the JSON they are, so `facts` reads
/// them exactly as it reads a whole Machine.
#[derive(Debug, Clone)]
pub struct WatchedMachine(pub DynamicObject);

impl<'de> Deserialize<'de> for WatchedMachine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            api_version: Option<String>,
            kind: Option<String>,
            #[serde(default)]
            metadata: Identity,
            status: Option<WireStatus>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct WireStatus {
            addresses: Option<Value>,
            node_ref: Option<Value>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let mut data = Map::new();
        if let Some(status) = wire.status {
            let mut kept = Map::new();
            if let Some(addresses) = status.addresses {
                kept.insert("addresses".to_string(), addresses);
            }
            if let Some(node_ref) = status.node_ref {
                kept.insert("nodeRef".to_string(), node_ref);
            }
            data.insert("status".to_string(), Value::Object(kept));
        }
        let types = match (wire.api_version, wire.kind) {
            (Some(api_version), Some(kind)) => Some(TypeMeta { api_version, kind }),
            _ => None,
        };
        Ok(WatchedMachine(DynamicObject {
            types,
            metadata: wire.metadata.into(),
            data: Value::Object(data),
        }))
    }
}

/// A CustomResourceDefinition as the Machine API's watch reads it: the group, the names
/// and which versions are served. The schemas (most of a CRD's bytes) are skipped.
#[derive(Debug, Clone)]
pub struct WatchedCrd(pub CustomResourceDefinition);

impl<'de> Deserialize<'de> for WatchedCrd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: Identity,
            spec: WireSpec,
        }
        #[derive(Deserialize)]
        struct WireSpec {
            group: String,
            names: CustomResourceDefinitionNames,
            #[serde(default)]
            scope: String,
            #[serde(default)]
            versions: Vec<WireVersion>,
        }
        #[derive(Deserialize)]
        struct WireVersion {
            name: String,
            served: bool,
            #[serde(default)]
            storage: bool,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(WatchedCrd(CustomResourceDefinition {
            metadata: wire.metadata.into(),
            spec: CustomResourceDefinitionSpec {
                group: wire.spec.group,
                names: wire.spec.names,
                scope: wire.spec.scope,
                versions: wire
                    .spec
                    .versions
                    .into_iter()
                    .map(|v| CustomResourceDefinitionVersion {
                        name: v.name,
                        served: v.served,
                        storage: v.storage,
                        ..CustomResourceDefinitionVersion::default()
                    })
                    .collect(),
                ..CustomResourceDefinitionSpec::default()
            },
            status: None,
        }))
    }
}

/// `Resource` for a watched form: the API of the type it stands for (so a watch on it lists
/// and watches that type's endpoint), the metadata it holds.
macro_rules! resource_as {
    ($watched:ty, $whole:ty) => {
        impl Resource for $watched {
            type DynamicType = <$whole as Resource>::DynamicType;
            type Scope = <$whole as Resource>::Scope;

            fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
                <$whole as Resource>::kind(dt)
            }
            fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
                <$whole as Resource>::group(dt)
            }
            fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
                <$whole as Resource>::version(dt)
            }
            fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
                <$whole as Resource>::api_version(dt)
            }
            fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
                <$whole as Resource>::plural(dt)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.0.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.0.metadata
            }
        }
    };
}

resource_as!(WatchedCsr, CertificateSigningRequest);
resource_as!(WatchedNode, Node);
resource_as!(WatchedMachine, DynamicObject);
resource_as!(WatchedCrd, CustomResourceDefinition);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;
    use crate::facts::{machine_info, machine_info_from_object, node_info};
    use kube::api::ApiResource;
    use serde_json::json;

    /// A Node as a kubelet writes it, with everything the record does not keep.
    fn kubelet_node(addresses: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": "Worker-1.Example.com.", "uid": "u-1", "resourceVersion": "42",
                "creationTimestamp": "2026-12-01T10:00:00Z",
                "labels": {"kubernetes.io/hostname": "worker-1", "node-role.kubernetes.io/worker": ""},
                "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                "managedFields": [{"manager": "kubelet", "operation": "Update",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:addresses": {}}}}]
            },
            "spec": {"podCIDR": "10.128.2.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {
                "addresses": addresses,
                "capacity": {"cpu": "4", "memory": "16Gi"},
                "conditions": [{"type": "Ready", "status": "True"}],
                "images": [{"names": ["registry.example/pause:3.10"], "sizeBytes": 300000}],
                "nodeInfo": {"kubeletVersion": "v1.37.2", "machineID": "m", "systemUUID": "s",
                    "bootID": "b", "kernelVersion": "k", "osImage": "o",
                    "containerRuntimeVersion": "c", "kubeProxyVersion": "", "operatingSystem": "linux",
                    "architecture": "amd64"}
            }
        })
    }

    fn both_ways_node(object: Value) -> (Option<crate::inventory::NodeInfo>, WatchedNode) {
        let whole: Node = serde_json::from_value(object.clone()).unwrap();
        let watched: WatchedNode = serde_json::from_value(object).unwrap();
        (node_info(&whole), watched)
    }

    #[test]
    fn a_watched_node_gives_the_record_the_whole_node_gives() {
        for addresses in [
            json!([{"type": "InternalIP", "address": "10.0.0.7"},
                   {"type": "Hostname", "address": "worker-1.example.com"},
                   {"type": "InternalIP", "address": "::ffff:10.0.0.8"},
                   {"type": "ExternalDNS", "address": "-not a name-"}]),
            json!([]),
            Value::Null,
        ] {
            let (whole, watched) = both_ways_node(kubelet_node(addresses));
            assert_eq!(node_info(&watched.0), whole);
            assert_eq!(watched.0.metadata.resource_version.as_deref(), Some("42"));
            assert_eq!(watched.0.metadata.uid.as_deref(), Some("u-1"));
            assert!(watched.0.metadata.labels.is_none(), "labels are not kept");
            assert!(watched.0.metadata.managed_fields.is_none());
        }
        let mut no_status = kubelet_node(Value::Null);
        no_status.as_object_mut().unwrap().remove("status");
        let (whole, watched) = both_ways_node(no_status);
        assert_eq!(node_info(&watched.0), whole);
    }

    #[test]
    fn a_control_plane_role_label_is_the_one_label_kept() {
        for role in CONTROL_PLANE_LABELS {
            let mut object = kubelet_node(json!([]));
            object["metadata"]["labels"][role] = json!("");
            let (whole, watched) = both_ways_node(object);
            assert!(whole.as_ref().unwrap().control_plane, "{role}");
            assert_eq!(node_info(&watched.0), whole);
            let kept = watched.0.metadata.labels.unwrap();
            assert_eq!(
                kept.keys().collect::<Vec<_>>(),
                [role],
                "only the role label"
            );
        }
        let (worker, _) = both_ways_node(kubelet_node(json!([])));
        assert!(!worker.unwrap().control_plane);
    }

    #[test]
    fn odd_node_addresses_read_as_they_do_in_a_whole_node() {
        for addresses in [
            json!([{"address": "10.0.0.7"}]),
            json!([{"type": "InternalIP"}]),
            json!([{"type": "Hostname", "address": "worker-1", "extra": true}]),
        ] {
            let (whole, watched) = both_ways_node(kubelet_node(addresses));
            assert_eq!(node_info(&watched.0), whole);
        }
        let wrong_type = kubelet_node(json!([{"type": 7, "address": "10.0.0.7"}]));
        assert!(serde_json::from_value::<Node>(wrong_type.clone()).is_err());
        assert!(serde_json::from_value::<WatchedNode>(wrong_type).is_err());
    }

    #[test]
    fn a_watched_csr_is_the_whole_csr_without_its_managed_fields() {
        let object = json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {
                "name": "csr-x", "generateName": "csr-", "uid": "u", "resourceVersion": "9",
                "generation": 1, "creationTimestamp": "2026-12-01T10:00:00Z",
                "labels": {"team": "a"}, "annotations": {"note": "kept"},
                "finalizers": ["example.com/hold"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "o-1"}],
                "managedFields": [{"manager": "kubelet", "operation": "Update",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:request": {}}}}]
            },
            "spec": {
                "request": "LS0tLS1CRUdJTg==", "signerName": "kubernetes.io/kubelet-serving",
                "usages": ["digital signature", "server auth"], "username": "system:node:a",
                "groups": ["system:nodes"], "uid": "x", "extra": {"k": ["v"]},
                "expirationSeconds": 3600
            },
            "status": {"conditions": [{"type": "Approved", "status": "True",
                "reason": "R", "message": "M", "lastUpdateTime": "2026-12-01T10:00:01Z"}],
                "certificate": "Y2VydA=="}
        });
        let mut whole: CertificateSigningRequest = serde_json::from_value(object.clone()).unwrap();
        let watched: WatchedCsr = serde_json::from_value(object).unwrap();
        assert!(whole.metadata.managed_fields.take().is_some());
        assert_eq!(watched.0, whole);
        // What its approval PUTs back keeps the labels and annotations, and says nothing
        // of managed fields (the API keeps them).
        let put = serde_json::to_value(&watched.0).unwrap();
        assert_eq!(put["metadata"]["annotations"]["note"], "kept");
        assert!(put["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn a_watched_form_lists_and_watches_the_endpoint_of_its_type() {
        assert_eq!(WatchedNode::url_path(&(), None), "/api/v1/nodes");
        assert_eq!(
            WatchedCsr::url_path(&(), None),
            "/apis/certificates.k8s.io/v1/certificatesigningrequests"
        );
        assert_eq!(
            WatchedMachine::url_path(&machine_resource(), None),
            "/apis/machine.openshift.io/v1beta1/machines"
        );
        assert_eq!(WatchedNode::kind(&()), "Node");
    }

    fn machine_resource() -> ApiResource {
        ApiResource {
            group: "machine.openshift.io".into(),
            version: "v1beta1".into(),
            api_version: "machine.openshift.io/v1beta1".into(),
            kind: "Machine".into(),
            plural: "machines".into(),
        }
    }

    fn machine(status: Option<Value>, deleting: bool, api_version: bool) -> Value {
        let mut object = json!({
            "kind": "Machine",
            "metadata": {
                "name": "worker-1", "namespace": "openshift-machine-api", "uid": "m-1",
                "resourceVersion": "7", "creationTimestamp": "2026-12-01T10:00:00Z",
                "labels": {"machine.openshift.io/cluster-api-machine-role": "worker"},
                "managedFields": [{"manager": "machine-controller", "operation": "Update"}]
            },
            "spec": {"providerSpec": {"value": {"kind": "BareMetalMachineProviderSpec"}}}
        });
        if api_version {
            object["apiVersion"] = json!("machine.openshift.io/v1beta1");
        }
        if deleting {
            object["metadata"]["deletionTimestamp"] = json!("2026-12-01T11:00:00Z");
        }
        if let Some(status) = status {
            object["status"] = status;
        }
        object
    }

    #[test]
    fn a_watched_machine_gives_the_record_the_whole_machine_gives() {
        let resource = machine_resource();
        let statuses = [
            Some(json!({
                "addresses": [{"type": "InternalIP", "address": "10.0.0.7"},
                              {"type": "Hostname", "address": "Worker-1."},
                              {"type": "VIP", "address": "10.0.0.8"},
                              {"type": 7, "address": "10.0.0.9"}],
                "nodeRef": {"kind": "Node", "name": "worker-1", "uid": "n-1"},
                "phase": "Running",
                "providerStatus": {"conditions": [{"type": "Ready"}]}
            })),
            Some(json!({"addresses": [{"type": "InternalDNS", "address": "worker-1"}]})),
            Some(json!({"nodeRef": {"name": ""}})),
            Some(json!({})),
            Some(Value::Null),
            None,
        ];
        for status in statuses {
            for deleting in [false, true] {
                for api_version in [false, true] {
                    let object = machine(status.clone(), deleting, api_version);
                    let whole: DynamicObject = serde_json::from_value(object.clone()).unwrap();
                    let mut as_in_a_file = object.clone();
                    as_in_a_file["apiVersion"] = json!(resource.api_version);
                    let watched: WatchedMachine = serde_json::from_value(object).unwrap();
                    let expected = machine_info_from_object(&whole, &resource);
                    assert!(expected.is_some());
                    // The watch reads typed metadata, `check` reads JSON: the same record.
                    assert_eq!(machine_info(&as_in_a_file), expected);
                    assert_eq!(machine_info_from_object(&watched.0, &resource), expected);
                    assert_eq!(watched.0.metadata.resource_version.as_deref(), Some("7"));
                    assert!(watched.0.data.get("spec").is_none(), "spec is not kept");
                }
            }
        }
    }
}
