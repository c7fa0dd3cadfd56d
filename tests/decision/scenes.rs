//! Builders the tables share on top of `tests/common`: the CSRs and cluster objects most
//! rows start from, so that a row says only what it changes.

use csr_approver::inventory::{CsrState, CsrSummary, MachineInfo};
use csr_approver::vocabulary::CLIENT_SIGNER;

use crate::builders::{Csr, Request, ago, machine, summary};

/// worker-1's first client CSR, from the OpenShift bootstrapper.
pub fn worker1() -> Csr {
    Csr::client(&Request::node("worker-1"))
}

/// A client renewal of `node` by the node itself.
pub fn renewal(node: &str) -> Csr {
    Csr::renewal(node, &Request::node(node))
}

/// A serving CSR from `system:node:<node>`.
pub fn serving(node: &str, request: Request) -> Csr {
    Csr::serving(node, &request)
}

/// The request of `node`, to add SANs to.
pub fn w(node: &str) -> Request {
    Request::node(node)
}

/// A CSR whose object carries no creationTimestamp.
pub fn undated(mut csr: Csr) -> Csr {
    csr.0.created = None;
    csr
}

/// A Machine created `seconds` ago whose InternalDNS names host worker-1.
pub fn worker1_machine(name: &str, seconds: i64) -> MachineInfo {
    machine(name, ago(seconds), &[("InternalDNS", "worker-1")])
}

/// The Machine, linked to Node `node`.
pub fn linked(mut m: MachineInfo, node: &str) -> MachineInfo {
    m.node_ref = Some(node.to_string());
    m
}

/// The Machine, being deleted.
pub fn deleting(mut m: MachineInfo) -> MachineInfo {
    m.deleting = true;
    m
}

/// The Machine, in another namespace.
pub fn in_namespace(mut m: MachineInfo, namespace: &str) -> MachineInfo {
    m.namespace = namespace.into();
    m
}

/// The Machine, of Cluster API in namespace `capi`.
pub fn cluster_api(mut m: MachineInfo) -> MachineInfo {
    m.api_group = "cluster.x-k8s.io".into();
    in_namespace(m, "capi")
}

/// A pending client CSR from the bootstrapper for `node`, created a minute ago.
pub fn pending(name: &str, node: &str) -> CsrSummary {
    summary(name, CLIENT_SIGNER, node, CsrState::Pending, ago(60))
}

/// A client CSR from the bootstrapper for `node`, approved `minutes` ago.
pub fn approved_new_node(name: &str, node: &str, minutes: i64) -> CsrSummary {
    let mut s = summary(
        name,
        CLIENT_SIGNER,
        node,
        CsrState::Issued,
        ago(minutes * 60 + 30),
    );
    s.approved_at = Some(ago(minutes * 60));
    s
}

/// The summary as if the node itself had asked (a renewal).
pub fn by_the_node(mut s: CsrSummary, node: &str) -> CsrSummary {
    s.requester = format!("system:node:{node}");
    s
}
