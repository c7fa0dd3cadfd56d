//! Forged CSRs: each breaks one rule and must never be approved. They impersonate the
//! run's first node (the victim) and steal from its second (the neighbour, `node_ip(1)`).

use std::net::Ipv4Addr;

use csr_approver::vocabulary::{CLIENT_SIGNER, SERVING_SIGNER};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::request::{csr_pem, node_ip};
use crate::sim::{CLIENT_USAGES, SERVING_USAGES, Sim, Submission, Waited};

/// The forgeries, in the order a run submits them (over again after the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// `system:masters` in the subject, from the bootstrapper.
    MastersGroup,
    /// The bootstrapper asking for an identity no machine expects.
    UnexpectedName,
    /// A node asking for a serving certificate with another host's IP.
    ForeignIp,
    /// The bootstrapper asking for the identity of a node that exists (its pods' Secrets
    /// would follow).
    ExistingNode,
    /// A node asking to be the API server for pods.
    ApiServerName,
    /// A node that writes its neighbour's IP into its own Node status, then asks for a
    /// certificate for it.
    NeighbourIp,
}

impl Forgery {
    const ALL: [Forgery; 6] = [
        Forgery::MastersGroup,
        Forgery::UnexpectedName,
        Forgery::ForeignIp,
        Forgery::ExistingNode,
        Forgery::ApiServerName,
        Forgery::NeighbourIp,
    ];

    pub fn nth(index: usize) -> Forgery {
        Self::ALL[index % Self::ALL.len()]
    }

    /// What it is, as progress names it.
    pub fn what(self) -> &'static str {
        match self {
            Forgery::MastersGroup => "system:masters in the subject",
            Forgery::UnexpectedName => "a name no Machine expects",
            Forgery::ForeignIp => "a foreign IP",
            Forgery::ExistingNode => "an existing node's identity",
            Forgery::ApiServerName => "the API server's name",
            Forgery::NeighbourIp => "a neighbour's IP, written into its own Node status",
        }
    }
}

impl Sim {
    /// Submits forgery number `index`; returns what it is, its CSR's name and how its wait
    /// ended.
    pub async fn forge(&self, index: usize) -> Result<(Forgery, String, Waited), String> {
        let victim = &format!("{}-0", self.run_id);
        let neighbour = format!("{}-1", self.run_id);
        let name = format!("{}-forged-{index}", self.run_id);
        let forgery = Forgery::nth(index);
        let nodes = "system:nodes";
        let as_client = |client, pem| (client, CLIENT_SIGNER, CLIENT_USAGES, pem);
        let as_serving = |client, pem| (client, SERVING_SIGNER, SERVING_USAGES, pem);
        let (client, signer, usages, pem) = match forgery {
            Forgery::MastersGroup => as_client(
                self.bootstrapper.clone(),
                csr_pem(victim, &[], &[], "system:masters"),
            ),
            Forgery::UnexpectedName => as_client(
                self.bootstrapper.clone(),
                csr_pem(&format!("{victim}-intruder"), &[], &[], nodes),
            ),
            Forgery::ForeignIp => as_serving(
                self.as_node(victim)?,
                csr_pem(victim, &[], &[Ipv4Addr::new(192, 0, 2, 1)], nodes),
            ),
            Forgery::ExistingNode => {
                as_client(self.bootstrapper.clone(), csr_pem(victim, &[], &[], nodes))
            }
            Forgery::ApiServerName => as_serving(
                self.as_node(victim)?,
                csr_pem(
                    victim,
                    &["kubernetes.default.svc".to_string()],
                    &[node_ip(0)],
                    nodes,
                ),
            ),
            Forgery::NeighbourIp => {
                let status = json!({"status": {"addresses": [
                    {"type": "InternalIP", "address": node_ip(0).to_string()},
                    {"type": "Hostname", "address": victim},
                    {"type": "InternalIP", "address": node_ip(1).to_string()},
                ]}});
                Api::<Node>::all(self.as_node(victim)?)
                    .patch_status(victim, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .map_err(|e| format!("Node {victim} status, claiming {neighbour}'s IP: {e}"))?;
                as_serving(
                    self.as_node(victim)?,
                    csr_pem(victim, &[], &[node_ip(1)], nodes),
                )
            }
        };
        let explained = self.waits.explanation(&name);
        let csr = Submission {
            client: &client,
            name: &name,
            signer,
            usages: &usages,
            pem: pem.map_err(|e| e.to_string())?,
        };
        let (_, waited) = self.submit_until(csr, Some(explained)).await?;
        Ok((forgery, name, waited))
    }
}
