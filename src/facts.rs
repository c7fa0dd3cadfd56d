//! Kubernetes objects → the compact facts csr-approver keeps. The watch path, `check` (from
//! files) and `check` (live) all read objects through these functions, so they cannot
//! disagree on what an object says; the rest of the program sees only the facts.

use std::borrow::Cow;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::decision::CsrFacts;
use crate::inventory::{CsrState, CsrSummary, MachineInfo, NodeInfo, TypedAddress};
use crate::request::{ParsedRequest, RequestError, decided_request_common_names, parse_request};
use crate::vocabulary::{common_or_owned, node_name_from_cn, normalize_dns_name};

/// A CSR's facts, its request parsed and verified here: once per object seen, shared by
/// every decision and summary made from it.
pub fn csr_facts(csr: &CertificateSigningRequest) -> CsrFacts {
    csr_facts_with_request(csr, Arc::new(parse_request(&csr.spec.request.0)))
}

/// A CSR's facts with its request as parsed from this very object before (same uid): the
/// spec of a CSR never changes, so the parse holds for every later version of it.
pub fn csr_facts_with_request(
    csr: &CertificateSigningRequest,
    request: Arc<Result<ParsedRequest, RequestError>>,
) -> CsrFacts {
    let spec = &csr.spec;
    CsrFacts {
        name: csr.metadata.name.clone().unwrap_or_default(),
        uid: csr.metadata.uid.clone(),
        signer_name: spec.signer_name.clone(),
        username: spec.username.clone().unwrap_or_default(),
        groups: spec.groups.clone().unwrap_or_default(),
        usages: spec.usages.clone().unwrap_or_default(),
        expiration_seconds: spec.expiration_seconds.map(i64::from),
        created: csr.metadata.creation_timestamp.as_ref().map(|t| t.0),
        state: csr_state(csr),
        approved_at: approved_at(csr),
        request,
    }
}

/// A CSR as the duplicate and flood rules see it, from its facts.
pub fn csr_summary(facts: &CsrFacts) -> CsrSummary {
    CsrSummary {
        name: facts.name.as_str().into(),
        signer: common_or_owned(&facts.signer_name),
        created: facts.created,
        state: facts.state,
        node_name: subject_node_name(&facts.request),
        requester: facts.username.clone(),
        groups: common_groups(&facts.groups),
        approved_at: facts.approved_at,
    }
}

/// A decided CSR as the duplicate and flood rules see it, its request read without
/// verifying it (see [`decided_request_common_names`] for why that is sound); only for a
/// CSR whose `state` is not pending: a pending one is summarised from its verified facts.
pub fn decided_csr_summary(csr: &CertificateSigningRequest, state: CsrState) -> CsrSummary {
    let spec = &csr.spec;
    let common_names = decided_request_common_names(&spec.request.0);
    CsrSummary {
        name: csr.metadata.name.as_deref().unwrap_or_default().into(),
        signer: common_or_owned(&spec.signer_name),
        created: csr.metadata.creation_timestamp.as_ref().map(|t| t.0),
        state,
        node_name: common_names.ok().and_then(|cns| node_name_of(&cns)),
        requester: spec.username.clone().unwrap_or_default(),
        groups: common_groups(spec.groups.as_deref().unwrap_or_default()),
        approved_at: approved_at(csr),
    }
}

/// A CSR as the controller's cache summarises it: a pending one from its verified facts, a
/// decided one from its subject ([`decided_csr_summary`]).
pub fn cached_csr_summary(csr: &CertificateSigningRequest) -> CsrSummary {
    match csr_state(csr) {
        CsrState::Pending => csr_summary(&csr_facts(csr)),
        decided => decided_csr_summary(csr, decided),
    }
}

fn common_groups(groups: &[String]) -> Vec<Cow<'static, str>> {
    groups.iter().map(|g| common_or_owned(g)).collect()
}

/// Only a name `decide` could accept: garbage must not count as a request for a node.
fn subject_node_name(request: &Result<ParsedRequest, RequestError>) -> Option<String> {
    node_name_of(&request.as_ref().ok()?.common_names)
}

/// The node a subject names: exactly one CN, `system:node:<valid name>`.
fn node_name_of(common_names: &[String]) -> Option<String> {
    match common_names {
        [cn] => node_name_from_cn(cn).map(str::to_string),
        _ => None,
    }
}

/// Where a CSR stands, from its status conditions and certificate.
pub fn csr_state(csr: &CertificateSigningRequest) -> CsrState {
    let Some(status) = csr.status.as_ref() else {
        return CsrState::Pending;
    };
    let has = |t: &str| {
        status
            .conditions
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status != "False"))
    };
    if has("Denied") {
        CsrState::Denied
    } else if has("Failed") {
        CsrState::Failed
    } else if status.certificate.as_ref().is_some_and(|c| !c.0.is_empty()) {
        CsrState::Issued
    } else if has("Approved") {
        CsrState::Approved
    } else {
        CsrState::Pending
    }
}

/// When the `Approved` condition was last updated, if the CSR carries one.
pub fn approved_at(csr: &CertificateSigningRequest) -> Option<Timestamp> {
    let condition = csr
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Approved" && c.status != "False")?;
    condition
        .last_update_time
        .as_ref()
        .or(condition.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// The labels that make a Node a control-plane node. A kubelet cannot set them on its own
/// Node (NodeRestriction refuses `node-role.kubernetes.io/` labels from nodes): an admin or
/// the installer does.
pub const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// A Node's name (normalised), status addresses, and whether it is a control-plane node;
/// `None` for a Node without a name.
pub fn node_info(node: &Node) -> Option<NodeInfo> {
    let name = normalize_dns_name(node.metadata.name.as_deref()?);
    let control_plane = node
        .metadata
        .labels
        .as_ref()
        .is_some_and(|labels| CONTROL_PLANE_LABELS.iter().any(|l| labels.contains_key(*l)));
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|list| {
            list.iter()
                .map(|a| TypedAddress::new(&a.type_, &a.address))
                .collect()
        })
        .unwrap_or_default();
    Some(NodeInfo {
        name: name.into(),
        addresses,
        control_plane,
    })
}

/// A Machine of either API as the API server returns it: list items may lack
/// `apiVersion`, which `resource` supplies. Read from the typed metadata and the status
/// as decoded, not through a JSON copy of the object: the Machine watch does this for every
/// event.
pub fn machine_info_from_object(
    object: &DynamicObject,
    resource: &ApiResource,
) -> Option<MachineInfo> {
    let metadata = &object.metadata;
    machine_record(MachineFields {
        api_version: object
            .types
            .as_ref()
            .map_or(resource.api_version.as_str(), |t| t.api_version.as_str()),
        name: metadata.name.as_deref()?,
        namespace: metadata.namespace.as_deref().unwrap_or_default(),
        created: metadata.creation_timestamp.as_ref().map(|t| t.0),
        deleting: metadata.deletion_timestamp.is_some(),
        status: object.data.get("status"),
    })
}

/// A Machine of either API from its JSON form. Both APIs share the shape this needs:
/// `status.addresses[{type,address}]` and `status.nodeRef.name`.
pub fn machine_info(object: &Value) -> Option<MachineInfo> {
    let metadata = object.get("metadata")?;
    machine_record(MachineFields {
        api_version: object.get("apiVersion")?.as_str()?,
        name: metadata.get("name")?.as_str()?,
        namespace: metadata
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        created: metadata
            .get("creationTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok()),
        deleting: metadata
            .get("deletionTimestamp")
            .is_some_and(|t| !t.is_null()),
        status: object.get("status"),
    })
}

/// What a Machine record is made of, however the object was read.
struct MachineFields<'a> {
    api_version: &'a str,
    name: &'a str,
    namespace: &'a str,
    created: Option<Timestamp>,
    deleting: bool,
    status: Option<&'a Value>,
}

fn machine_record(fields: MachineFields<'_>) -> Option<MachineInfo> {
    let status = fields.status;
    let addresses = status
        .and_then(|s| s.get("addresses"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| {
                    let kind = a.get("type")?.as_str()?;
                    let address = a.get("address")?.as_str()?;
                    Some(TypedAddress::new(kind, address))
                })
                .collect()
        })
        .unwrap_or_default();
    let node_ref = status
        .and_then(|s| s.get("nodeRef"))
        .and_then(|r| r.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(normalize_dns_name);
    Some(MachineInfo {
        api_group: fields.api_version.split('/').next()?.into(),
        namespace: fields.namespace.into(),
        name: fields.name.into(),
        created: fields.created,
        addresses,
        node_ref,
        deleting: fields.deleting,
    })
}

/// The ClusterIP(s) of a Service: `spec.clusterIPs` (dual-stack), else `spec.clusterIP`;
/// `None` (headless) and unparsable values are not addresses.
pub fn service_cluster_ips(service: &Service) -> Vec<IpAddr> {
    let spec = service.spec.as_ref();
    let listed = spec
        .and_then(|s| s.cluster_ips.clone())
        .filter(|ips| !ips.is_empty());
    let raw = listed.unwrap_or_else(|| {
        spec.and_then(|s| s.cluster_ip.clone())
            .into_iter()
            .collect()
    });
    raw.iter()
        .filter_map(|ip| IpAddr::from_str(ip.trim()).ok())
        .collect()
}
