//! One node joining, in the order a real one does: Machine (when a Machine API is
//! installed) → client CSR as the bootstrapper → Node with addresses → Machine linked to
//! it → serving CSR as `system:node:<name>`. In serving-only mode the node already holds
//! its client certificate: the client CSR is skipped, the rest is the same.

use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime};

use csr_approver::inventory::CsrState;
use csr_approver::vocabulary::{CLIENT_SIGNER, SERVING_SIGNER};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::MACHINE_NAMESPACE;
use crate::report::Approval;
use crate::request::csr_pem;
use crate::retry::persist;
use crate::sim::{CLIENT_USAGES, SERVING_USAGES, Sim, Submission};

impl Sim {
    /// Joins node `name`; returns when its client CSR (`None` in serving-only mode) and its
    /// serving CSR were approved. Every step retries through outages until the run's
    /// timeout, as the machine controller and the kubelet do.
    pub async fn join(
        &self,
        name: String,
        ip: Ipv4Addr,
    ) -> Result<(Option<Approval>, Approval), String> {
        let deadline = Instant::now() + self.timeout;
        if let Some(resource) = &self.machine_api {
            self.create_machine(resource, &name, ip, deadline).await?;
        }
        let client = if self.serving_only {
            None
        } else {
            let pem = csr_pem(&name, &[], &[], "system:nodes").map_err(|e| e.to_string())?;
            let csr = Submission {
                client: &self.bootstrapper,
                name: &format!("{name}-client"),
                signer: CLIENT_SIGNER,
                usages: &CLIENT_USAGES,
                pem,
            };
            Some(self.approved(&name, "client", csr).await?)
        };
        self.register_node(&name, ip, deadline).await?;
        if let Some(resource) = &self.machine_api {
            let node_ref =
                Patch::Merge(json!({"status": {"nodeRef": {"kind": "Node", "name": name}}}));
            let (api, patch) = (self.machines(resource), PatchParams::default());
            persist(&format!("Machine {name} nodeRef"), deadline, false, || {
                api.patch_status(&name, &patch, &node_ref)
            })
            .await?;
        }
        let serving = self
            .approved(
                &name,
                "serving",
                Submission {
                    client: &self.as_node(&name)?,
                    name: &format!("{name}-serving"),
                    signer: SERVING_SIGNER,
                    usages: &SERVING_USAGES,
                    pem: csr_pem(&name, std::slice::from_ref(&name), &[ip], "system:nodes")
                        .map_err(|e| e.to_string())?,
                },
            )
            .await?;
        Ok((client, serving))
    }

    /// Submits `node`'s `kind` CSR; how long it took to be approved and when it was, or why
    /// it was not.
    async fn approved(
        &self,
        node: &str,
        kind: &str,
        csr: Submission<'_>,
    ) -> Result<Approval, String> {
        let (latency, state) = self.submit(csr).await?;
        let at = SystemTime::now();
        if state != CsrState::Approved {
            return Err(format!(
                "{kind} CSR of {node} is {} after {latency:?}",
                state.as_str()
            ));
        }
        Ok(Approval { latency, at })
    }

    fn machines(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.admin.clone(), MACHINE_NAMESPACE, resource)
    }

    /// The Machine the installer creates before the host boots, with the addresses that
    /// vouch for it.
    async fn create_machine(
        &self,
        resource: &ApiResource,
        name: &str,
        ip: Ipv4Addr,
        deadline: Instant,
    ) -> Result<(), String> {
        let api = self.machines(resource);
        let (post, patch) = (PostParams::default(), PatchParams::default());
        let mut machine = DynamicObject::new(name, resource);
        machine.metadata.labels = self.labels();
        machine.data = json!({"spec": {}});
        persist(&format!("create Machine {name}"), deadline, true, || {
            api.create(&post, &machine)
        })
        .await?;
        let status = Patch::Merge(json!({"status": {"addresses": [
            {"type": "InternalDNS", "address": name},
            {"type": "InternalIP", "address": ip.to_string()},
        ]}}));
        persist(&format!("Machine {name} status"), deadline, false, || {
            api.patch_status(name, &patch, &status)
        })
        .await?;
        Ok(())
    }

    /// The kubelet registers its Node, then reports its addresses.
    async fn register_node(
        &self,
        name: &str,
        ip: Ipv4Addr,
        deadline: Instant,
    ) -> Result<(), String> {
        let nodes: Api<Node> = Api::all(self.admin.clone());
        let (post, patch) = (PostParams::default(), PatchParams::default());
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: self.labels(),
                ..Default::default()
            },
            ..Default::default()
        };
        persist(&format!("create Node {name}"), deadline, true, || {
            nodes.create(&post, &node)
        })
        .await?;
        let status = Patch::Merge(json!({"status": {"addresses": [
            {"type": "InternalIP", "address": ip.to_string()},
            {"type": "Hostname", "address": name},
        ]}}));
        persist(&format!("Node {name} status"), deadline, false, || {
            nodes.patch_status(name, &patch, &status)
        })
        .await?;
        Ok(())
    }
}
