//! `csr-approver check --kubeconfig`: answers "why is this CSR still Pending?" against a
//! live cluster, read-only: the same inventory and policy the controller would use.

use std::path::PathBuf;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use kube::api::{Api, DynamicObject, ListParams};

use crate::check::{self, Evaluation};
use crate::cluster::KubernetesService;
use crate::decision::{CLIENT_SIGNER, SERVING_SIGNER};
use crate::inventory::{CsrState, MachineInfo};
use crate::policy::Policy;
use crate::policy_watch::policy_from_configmap;
use crate::{Error, Result};

pub struct LiveCheck {
    pub kubeconfig: PathBuf,
    pub namespace: String,
    pub policy_configmap: String,
    /// A policy file overriding the ConfigMap.
    pub policy: Option<Policy>,
    pub names: Vec<String>,
    pub pending_only: bool,
}

fn api_error(what: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |e| Error::Cluster(format!("reading {what}: {e}"))
}

impl LiveCheck {
    /// Evaluates the selected CSRs; the note says where the policy came from.
    pub async fn evaluate(self, now: Timestamp) -> Result<(Vec<Evaluation>, String)> {
        let client = crate::controller::client(Some(&self.kubeconfig)).await?;
        let (policy, note) = match self.policy {
            Some(policy) => (policy, String::new()),
            None => self.cluster_policy(&client).await?,
        };
        let csrs = Api::<CertificateSigningRequest>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api_error("CertificateSigningRequests"))?
            .items;
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api_error("Nodes"))?
            .items;
        let mut machines = Vec::new();
        for resource in crate::cluster::discover_machine_apis(&client).await {
            let list = Api::<DynamicObject>::all_with(client.clone(), &resource)
                .list(&ListParams::default())
                .await
                .map_err(api_error("Machines"))?;
            machines.extend(list.items.iter().filter_map(|m| {
                let mut value = serde_json::to_value(m).ok()?;
                value["apiVersion"] = serde_json::Value::String(resource.api_version.clone());
                MachineInfo::from_json(&value)
            }));
        }
        let kubernetes_service =
            Api::<Service>::namespaced(client.clone(), KubernetesService::NAMESPACE)
                .get_opt(KubernetesService::NAME)
                .await
                .map_err(api_error("Service default/kubernetes"))?;
        let inventory =
            check::build_inventory(&nodes, machines, &csrs, kubernetes_service.as_ref());
        let mut targets: Vec<CertificateSigningRequest> = csrs
            .iter()
            .filter(|c| {
                let name = c.metadata.name.as_deref().unwrap_or_default();
                if self.names.is_empty() {
                    c.spec.signer_name == CLIENT_SIGNER || c.spec.signer_name == SERVING_SIGNER
                } else {
                    self.names.iter().any(|n| n == name)
                }
            })
            .filter(|c| !self.pending_only || CsrState::of(c) == CsrState::Pending)
            .cloned()
            .collect();
        for name in &self.names {
            if !csrs
                .iter()
                .any(|c| c.metadata.name.as_deref() == Some(name))
            {
                return Err(Error::Cluster(format!(
                    "CertificateSigningRequest {name} not found"
                )));
            }
        }
        targets.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        });
        Ok((check::evaluate(&targets, &inventory, &policy, now), note))
    }

    async fn cluster_policy(&self, client: &kube::Client) -> Result<(Policy, String)> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        let found = api
            .get_opt(&self.policy_configmap)
            .await
            .map_err(api_error("the policy ConfigMap"))?;
        match found {
            None => Ok((
                Policy::default(),
                format!(
                    "# no ConfigMap {}/{}: built-in default policy\n",
                    self.namespace, self.policy_configmap
                ),
            )),
            Some(cm) => policy_from_configmap(&cm).map(|p| (p, String::new())).map_err(|message| {
                Error::Cluster(format!(
                    "ConfigMap {}/{} holds an invalid policy ({message}); the controller keeps its last good policy (at start-up it has none and approves nothing). Pass --policy FILE to evaluate with a file",
                    self.namespace, self.policy_configmap
                ))
            }),
        }
    }
}
