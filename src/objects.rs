//! Reads Kubernetes objects from YAML/JSON files as `kubectl get -o yaml` (or `-o json`)
//! prints them: single documents, multi-document streams, and `kind: List`, of any size a
//! cluster dumps (JSON through serde_json; YAML with limits scaled to the file, see
//! [`yaml_options`]). A CSR that cannot be read is kept as an [`UnreadableCsr`] naming
//! its field, so that one bad object does not hide the verdicts on the others.

use std::path::{Path, PathBuf};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Service};
use serde_json::Value;

use crate::cluster::KubernetesService;
use crate::identity::NodeIdentity;
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
    /// csr-approver's record of identities minted (`kubectl get nodeidentities -o yaml`).
    pub identities: Vec<NodeIdentity>,
    /// CertificateSigningRequests that could not be read, in file order.
    pub unreadable: Vec<UnreadableCsr>,
}

/// A CertificateSigningRequest of a file that could not be read (a field of the wrong type,
/// `spec.request` not base64, no name): what is known of it, and which field failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableCsr {
    /// `metadata.name`, or where it is in the file when it has none.
    pub name: String,
    /// `spec.username` and `spec.signerName` when they could be read (else empty).
    pub requester: String,
    pub signer: String,
    /// The file, the object's place in it, the field and what is wrong with it.
    pub message: String,
}

/// Options for reading a YAML file of `len` bytes. serde-saphyr's default budget (250 000
/// nodes, 1 000 000 events, 1 024 documents) guards against hostile input, and a real
/// dump breaks it: 10 000 CSRs from `kubectl get csr -o yaml` are about 300 000 nodes.
/// Without aliases every node, event and scalar byte comes from at least one byte of
/// input (tags like `!!str` expand to their full name, hence the factor), so limits scaled
/// to the file refuse nothing a file can hold, while alias expansion, the one way a small
/// file becomes a huge document ("billion laughs"), keeps serde-saphyr's default caps
/// (50 000 aliases, 1 000 000 replayed events); so does the nesting depth (64).
pub fn yaml_options(len: usize) -> serde_saphyr::Options {
    let scaled = len.saturating_mul(4).saturating_add(1 << 20);
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(scaled);
    budget.max_events = budget.max_events.max(scaled);
    budget.max_documents = budget.max_documents.max(scaled);
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(scaled);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// The documents of a file: JSON (what `kubectl get -o json` prints: one value, or several
/// concatenated) when it starts like JSON and parses as such, else YAML.
fn documents(text: &str) -> std::result::Result<Vec<Value>, String> {
    let json_error = if text.trim_start().starts_with(['{', '[']) {
        match serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<std::result::Result<Vec<Value>, _>>()
        {
            Ok(documents) => return Ok(documents),
            // YAML flow style (`{kind: List, ...}`) starts the same way.
            Err(e) => Some(e),
        }
    } else {
        None
    };
    serde_saphyr::from_multiple_with_options(text, yaml_options(text.len())).map_err(|e| {
        match json_error {
            Some(json) => format!("not valid YAML: {e} (nor JSON: {json})"),
            None => format!("not valid YAML: {e}"),
        }
    })
}

/// A PEM file is no Kubernetes object: say what it is and, for a request, how to wrap it.
fn pem_hint(text: &str, origin: &Path) -> Option<String> {
    let label = text
        .trim_start()
        .strip_prefix("-----BEGIN ")?
        .split_once("-----")?
        .0;
    if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
        return Some(format!(
            "a PEM {label}, not a Kubernetes object: give CertificateSigningRequest manifests (`kubectl get csr -o yaml`)"
        ));
    }
    // The decision turns on who asked (spec.username, spec.groups) and for which signer,
    // which the PEM does not hold, and guessing them would answer another question: so the
    // file is refused with the manifest to write, filled in for the likeliest case (a
    // request with SANs is a serving CSR from its node; else a new node's client CSR from
    // OpenShift's bootstrapper).
    let request = crate::request::parse_request(text.as_bytes()).ok();
    let node = request
        .as_ref()
        .and_then(|r| r.common_names.first())
        .and_then(|cn| cn.strip_prefix(crate::vocabulary::NODE_USER_PREFIX))
        .unwrap_or("node");
    let serving = request
        .as_ref()
        .is_some_and(|r| !r.dns_names.is_empty() || !r.ip_addresses.is_empty());
    let (signer, username, groups, usages) = if serving {
        (
            crate::vocabulary::SERVING_SIGNER,
            format!("{}{node}", crate::vocabulary::NODE_USER_PREFIX),
            "[system:nodes, system:authenticated]".to_string(),
            "[digital signature, server auth]",
        )
    } else {
        (
            crate::vocabulary::CLIENT_SIGNER,
            crate::policy::OPENSHIFT_NODE_BOOTSTRAPPER.to_string(),
            "[system:serviceaccounts, system:serviceaccounts:openshift-machine-config-operator, system:authenticated]".to_string(),
            "[digital signature, client auth]",
        )
    };
    let file = origin.display().to_string().replace('\'', r"'\''");
    let renewal = if serving {
        String::new()
    } else {
        format!(
            " (a client renewal is asked by {}{node} in [system:nodes, system:authenticated])",
            crate::vocabulary::NODE_USER_PREFIX
        )
    };
    Some(format!(
        "a PEM CERTIFICATE REQUEST, not a CertificateSigningRequest object: the verdict depends on who asked (spec.username, spec.groups) and for which signer, which a PEM file does not hold. Wrap it as the apiserver would record it, e.g.\n\
         cat > csr.yaml <<EOF\n\
         apiVersion: certificates.k8s.io/v1\n\
         kind: CertificateSigningRequest\n\
         metadata: {{name: {node}-csr}}\n\
         spec:\n\
         \x20 request: $(base64 -w0 < '{file}')\n\
         \x20 signerName: {signer}\n\
         \x20 username: {username}\n\
         \x20 groups: {groups}\n\
         \x20 usages: {usages}\n\
         EOF\n\
         then: csr-approver check csr.yaml{renewal}"
    ))
}

/// What is wrong with a CSR that does not deserialize, naming the field.
fn csr_field_error(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let inner = error.inner();
    if path == "spec.request" {
        return format!(
            "spec.request is not base64 ({inner}): it holds the PEM request base64-encoded, as `kubectl get csr -o yaml` prints it (base64 -w0 < request.pem)"
        );
    }
    if path.is_empty() || path == "." {
        inner.to_string()
    } else {
        format!("{path}: {inner}")
    }
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
        if let Some(hint) = pem_hint(text, origin) {
            return Err(bad(hint));
        }
        let documents = documents(text).map_err(bad)?;
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
                if let Err(failure) = self.add(item) {
                    match failure {
                        Unread::Csr(csr) => self.unreadable.push(UnreadableCsr {
                            name: csr.name.unwrap_or_else(|| format!("({at})")),
                            message: format!("{}, {at}: {}", origin.display(), csr.message),
                            requester: csr.requester,
                            signer: csr.signer,
                        }),
                        Unread::Other(message) => return Err(bad(format!("{at}: {message}"))),
                    }
                }
                found += 1;
            }
        }
        if found == 0 {
            return Err(bad("holds no Kubernetes objects".to_string()));
        }
        Ok(())
    }

    fn add(&mut self, object: Value) -> std::result::Result<(), Unread> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or(Unread::Other("object has no `kind`".to_string()))?
            .to_string();
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match (kind.as_str(), api_version.as_str()) {
            ("CertificateSigningRequest", "certificates.k8s.io/v1") => {
                let text = |pointer: &str| {
                    object
                        .pointer(pointer)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                // Read before the object is consumed, to name a CSR that fails.
                let name = text("/metadata/name");
                let requester = text("/spec/username").unwrap_or_default();
                let signer = text("/spec/signerName").unwrap_or_default();
                let unread = |message: String| {
                    Unread::Csr(CsrFailure {
                        name: name.clone(),
                        requester: requester.clone(),
                        signer: signer.clone(),
                        message,
                    })
                };
                let csr: CertificateSigningRequest = serde_path_to_error::deserialize(object)
                    .map_err(|e| unread(csr_field_error(&e)))?;
                if csr.metadata.name.is_none() {
                    return Err(unread("metadata.name is missing".to_string()));
                }
                self.csrs.push(csr);
            }
            ("Node", "v1") => {
                let node: Node = serde_path_to_error::deserialize(object)
                    .map_err(|e| Unread::Other(format!("invalid Node: {}", field_error(&e))))?;
                if node.metadata.name.is_none() {
                    return Err(Unread::Other("Node has no metadata.name".to_string()));
                }
                self.nodes.push(node);
            }
            ("Service", "v1") => {
                let service: Service = serde_path_to_error::deserialize(object)
                    .map_err(|e| Unread::Other(format!("invalid Service: {}", field_error(&e))))?;
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
                let machine = crate::facts::machine_info(&object).ok_or(Unread::Other(
                    "Machine without apiVersion or metadata.name".to_string(),
                ))?;
                self.machines.push(machine);
            }
            (crate::identity::KIND, crate::identity::API_VERSION) => {
                let record: NodeIdentity =
                    serde_path_to_error::deserialize(object).map_err(|e| {
                        Unread::Other(format!("invalid NodeIdentity: {}", field_error(&e)))
                    })?;
                self.identities.push(record);
            }
            _ => {
                return Err(Unread::Other(format!(
                    "unsupported object {api_version} {kind}: expected CertificateSigningRequest, Node, Machine, Service or NodeIdentity"
                )));
            }
        }
        Ok(())
    }
}

/// Why an object was not added: a CSR is reported on its own row, anything else fails the
/// file (a Node or Machine missing from the inventory would change other verdicts).
enum Unread {
    Csr(CsrFailure),
    Other(String),
}

struct CsrFailure {
    name: Option<String>,
    requester: String,
    signer: String,
    message: String,
}

fn field_error(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    if path.is_empty() || path == "." {
        error.inner().to_string()
    } else {
        format!("{path}: {}", error.inner())
    }
}
