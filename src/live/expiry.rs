//! `check expiry` against a live cluster: Nodes, NodeIdentities, CSRs and the policy read
//! once (read-only), then the pure computation of `crate::expiry`.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use super::{cluster_policy, connect, read_error};
use crate::Result;
use crate::expiry::{self, Report};
use crate::identity::NodeIdentity;
use crate::policy::Policy;

pub struct LiveExpiry {
    /// `--kubeconfig`: this file only; else the kubectl lookup.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// `--context`: this context instead of the kubeconfig's current one.
    pub context: Option<String>,
    pub namespace: String,
    pub policy_configmap: String,
    /// A policy file overriding the ConfigMap.
    pub policy: Option<Policy>,
}

impl LiveExpiry {
    /// The report; the note says where the policy came from when it is the default.
    pub async fn report(self, now: Timestamp, margin: Duration) -> Result<(Report, String)> {
        let (target, client) = connect(self.kubeconfig.as_deref(), self.context.as_deref()).await?;
        let (policy, note) = match self.policy {
            Some(policy) => (policy, String::new()),
            None => {
                cluster_policy(&client, &target, &self.namespace, &self.policy_configmap).await?
            }
        };
        let nodes: Vec<String> = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(read_error("Nodes", &target))?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        // Without the record only the CSRs still present are known: an error, as for
        // `check`, rather than an answer that silently knows less.
        let identities = Api::<NodeIdentity>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(read_error(
                "NodeIdentities (the record of node certificates: install the chart's CRD)",
                &target,
            ))?
            .items;
        let csrs = Api::<CertificateSigningRequest>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(read_error("CertificateSigningRequests", &target))?
            .items;
        let certificates = expiry::node_certificates(&nodes, &identities, &csrs, &policy);
        let report = Report::new(certificates, now, margin, policy.client.recovery.enabled);
        Ok((report, note))
    }
}
