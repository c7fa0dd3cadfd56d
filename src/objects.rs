//! Reads Kubernetes objects from YAML/JSON files as `kubectl get -o yaml` prints them:
//! single documents, multi-document streams, and `kind: List`.

use std::path::{Path, PathBuf};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Service};
use serde_json::Value;

use crate::cluster::KubernetesService;
use crate::inventory::MachineInfo;
use crate::{Error, Result};

/// The objects `check` understands, sorted by kind.
#[derive(Debug, Default)]
pub struct ObjectSet {
    pub csrs: Vec<CertificateSigningRequest>,
    pub nodes: Vec<Node>,
    pub machines: Vec<MachineInfo>,
    /// The Service `default/kubernetes`, whose ClusterIPs are never a node's address.
    pub kubernetes_service: Option<Service>,
}

impl ObjectSet {
    pub fn read_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.read_str(&text, path)
    }

    /// `origin` names the input in errors.
    pub fn read_str(&mut self, text: &str, origin: &Path) -> Result<()> {
        let bad = |message: String| Error::BadFile {
            path: PathBuf::from(origin),
            message,
        };
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
        let mut found = 0;
        for (index, document) in documents.into_iter().enumerate() {
            if document.is_null() {
                continue;
            }
            let items = match document.get("kind").and_then(Value::as_str) {
                Some(kind) if kind.ends_with("List") => match document.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    Some(Value::Null) | None => Vec::new(),
                    Some(_) => {
                        return Err(bad(format!(
                            "document {}: `items` is not a list",
                            index + 1
                        )));
                    }
                },
                _ => vec![document],
            };
            for (item_index, item) in items.into_iter().enumerate() {
                let at = format!("document {}, item {}", index + 1, item_index + 1);
                self.add(item).map_err(|m| bad(format!("{at}: {m}")))?;
                found += 1;
            }
        }
        if found == 0 {
            return Err(bad("holds no Kubernetes objects".to_string()));
        }
        Ok(())
    }

    fn add(&mut self, object: Value) -> std::result::Result<(), String> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("object has no `kind`")?
            .to_string();
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match (kind.as_str(), api_version.as_str()) {
            ("CertificateSigningRequest", "certificates.k8s.io/v1") => {
                let csr: CertificateSigningRequest = serde_json::from_value(object)
                    .map_err(|e| format!("invalid CertificateSigningRequest: {e}"))?;
                if csr.metadata.name.is_none() {
                    return Err("CertificateSigningRequest has no metadata.name".to_string());
                }
                self.csrs.push(csr);
            }
            ("Node", "v1") => {
                let node: Node =
                    serde_json::from_value(object).map_err(|e| format!("invalid Node: {e}"))?;
                if node.metadata.name.is_none() {
                    return Err("Node has no metadata.name".to_string());
                }
                self.nodes.push(node);
            }
            ("Service", "v1") => {
                let service: Service =
                    serde_json::from_value(object).map_err(|e| format!("invalid Service: {e}"))?;
                // Only the API server's own Service matters; others are skipped, so that
                // `kubectl get svc -A -o yaml` can be passed as it is.
                if service.metadata.name.as_deref() == Some(KubernetesService::NAME)
                    && service.metadata.namespace.as_deref() == Some(KubernetesService::NAMESPACE)
                {
                    self.kubernetes_service = Some(service);
                }
            }
            ("Machine", v)
                if v.starts_with("machine.openshift.io/") || v.starts_with("cluster.x-k8s.io/") =>
            {
                let machine = MachineInfo::from_json(&object)
                    .ok_or("Machine without apiVersion or metadata.name")?;
                self.machines.push(machine);
            }
            _ => {
                return Err(format!(
                    "unsupported object {api_version} {kind}: expected CertificateSigningRequest, Node, Machine or Service"
                ));
            }
        }
        Ok(())
    }
}
