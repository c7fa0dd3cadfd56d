//! Reads the evidence a decision asks for (`evidence::Wanted`): a Node's Lease, and the
//! serving certificate a kubelet presents on its port. Everything here touches the
//! network; what the readings mean is decided in `decision`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::decision::why_reserved;
use crate::evidence::{KubeletCertificate, NodeLease, Observations, Observed, Wanted};
use crate::inventory::Inventory;
use crate::policy::Policy;
use crate::vocabulary::{AddressValue, canonical_dns_name, canonical_ip};
use crate::vocabulary::{NODE_USER_PREFIX, NODES_GROUP};

/// Where kubelets keep their Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// A kubelet that does not answer within this is no evidence.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a reading found nothing; its text becomes part of the decision's message.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error("reading {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0} does not exist")]
    Missing(String),
    #[error("Node {node} lists no InternalIP the controller may dial{detail}")]
    NoAddress { node: String, detail: String },
    #[error("Node {0} publishes no kubelet port (status.daemonEndpoints.kubeletEndpoint.Port)")]
    NoPort(String),
    #[error("serving.kubeletServingCAFile {path}: {message}")]
    Ca { path: String, message: String },
    #[error("{endpoint}: {message}")]
    Probe {
        endpoint: SocketAddr,
        message: String,
    },
    #[error("{endpoint}: the certificate presented {message}")]
    Certificate {
        endpoint: SocketAddr,
        message: String,
    },
}

/// One reading of the evidence a decision asked for, by node.
#[derive(Debug, Clone)]
pub enum Reading {
    Lease(String, Observed<NodeLease>),
    KubeletCertificate(String, Observed<KubeletCertificate>),
}

impl Reading {
    /// Why nothing could be read, if so.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reading::Lease(_, r) => r.outcome.as_ref().err(),
            Reading::KubeletCertificate(_, r) => r.outcome.as_ref().err(),
        }
        .map(String::as_str)
    }

    pub fn record(self, observations: &mut Observations) {
        match self {
            Reading::Lease(node, r) => observations.record_lease(&node, r),
            Reading::KubeletCertificate(node, r) => {
                observations.record_kubelet_certificate(&node, r)
            }
        }
    }
}

/// Reads what `wanted` names. `kubernetes_service_ips` (the API server's in-cluster
/// addresses) are never dialled as a kubelet, nor is any other reserved address.
pub async fn read(
    client: &Client,
    wanted: &Wanted,
    policy: &Policy,
    kubernetes_service_ips: &[IpAddr],
) -> Reading {
    match wanted {
        Wanted::NodeLease(node) => Reading::Lease(node.clone(), node_lease(client, node).await),
        Wanted::KubeletCertificate(node) => {
            let mut reserved = Inventory::default();
            reserved.set_kubernetes_service_ips(kubernetes_service_ips.iter().copied());
            let dialable = |ip: IpAddr| match why_reserved(&AddressValue::Ip(ip), &reserved, policy)
            {
                Some(why) => Err(why),
                None => Ok(()),
            };
            let reading = kubelet_certificate(
                client,
                node,
                &policy.serving.kubelet_serving_ca_file,
                dialable,
            )
            .await;
            Reading::KubeletCertificate(node.clone(), reading)
        }
    }
}

/// Reads `kube-node-lease/<node>`.
pub async fn node_lease(client: &Client, node: &str) -> Observed<NodeLease> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let what = format!("Lease {NODE_LEASE_NAMESPACE}/{node}");
    let outcome = match api.get_opt(node).await {
        Ok(Some(lease)) => Ok(NodeLease {
            renewed: lease.spec.and_then(|s| s.renew_time).map(|t| t.0),
        }),
        Ok(None) => Err(GatherError::Missing(what)),
        Err(source) => Err(GatherError::Api { what, source }),
    };
    Observed {
        at: Timestamp::now(),
        outcome: outcome.map_err(|e| e.to_string()),
    }
}

/// Dials the kubelet of `node` (its first InternalIP that `dialable` accepts, at the port
/// its Node publishes) and reads the serving certificate it presents, verified against
/// the CA bundle in `ca_file` for the address dialled.
///
/// The Node's status is written by the node itself, so `dialable` refuses addresses no
/// node may own (loopback unless allowed, link-local — cloud metadata lives there — and
/// the like): the controller must not be sent to knock on arbitrary doors.
pub async fn kubelet_certificate(
    client: &Client,
    node: &str,
    ca_file: &str,
    dialable: impl Fn(IpAddr) -> Result<(), String>,
) -> Observed<KubeletCertificate> {
    let outcome = read_kubelet_certificate(client, node, ca_file, dialable).await;
    Observed {
        at: Timestamp::now(),
        outcome: outcome.map_err(|e| e.to_string()),
    }
}

async fn read_kubelet_certificate(
    client: &Client,
    node: &str,
    ca_file: &str,
    dialable: impl Fn(IpAddr) -> Result<(), String>,
) -> Result<KubeletCertificate, GatherError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let what = format!("Node {node}");
    let object = nodes
        .get_opt(node)
        .await
        .map_err(|source| GatherError::Api {
            what: what.clone(),
            source,
        })?
        .ok_or(GatherError::Missing(what))?;
    let status = object.status.unwrap_or_default();
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .and_then(|e| u16::try_from(e.port).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| GatherError::NoPort(node.to_string()))?;
    let mut refused = Vec::new();
    let ip = status
        .addresses
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse::<IpAddr>().ok().map(canonical_ip))
        .find(|ip| match dialable(*ip) {
            Ok(()) => true,
            Err(why) => {
                refused.push(format!("{ip} is {why}"));
                false
            }
        })
        .ok_or_else(|| GatherError::NoAddress {
            node: node.to_string(),
            detail: if refused.is_empty() {
                String::new()
            } else {
                format!(" ({})", refused.join("; "))
            },
        })?;
    let roots = read_roots(ca_file).await?;
    let endpoint = SocketAddr::new(ip, port);
    let der = presented_certificate(endpoint, roots).await?;
    read_certificate(&der, node, endpoint)
}

async fn read_roots(path: &str) -> Result<RootCertStore, GatherError> {
    let ca_error = |message: String| GatherError::Ca {
        path: path.to_string(),
        message,
    };
    let pem = tokio::fs::read(path)
        .await
        .map_err(|e| ca_error(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ca_error(format!("not a PEM certificate bundle: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ca_error("holds no certificate".to_string()));
    }
    Ok(roots)
}

/// The leaf certificate `endpoint` presents once the handshake verified it against
/// `roots` for the IP dialled (rustls/webpki: chain, validity period, serverAuth usage).
async fn presented_certificate(
    endpoint: SocketAddr,
    roots: RootCertStore,
) -> Result<CertificateDer<'static>, GatherError> {
    let probe_error = |message: String| GatherError::Probe { endpoint, message };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| probe_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(endpoint)
            .await
            .map_err(|e| probe_error(format!("connecting: {e}")))?;
        connector
            .connect(ServerName::IpAddress(endpoint.ip().into()), tcp)
            .await
            .map_err(|e| probe_error(format!("TLS handshake: {e}")))
    };
    let stream = tokio::time::timeout(PROBE_TIMEOUT, handshake)
        .await
        .map_err(|_| probe_error(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())))??;
    let (_, session) = stream.get_ref();
    session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.clone().into_owned())
        .ok_or_else(|| probe_error("no certificate presented".to_string()))
}

/// The verified leaf must be `node`'s: subject `CN=system:node:<node>, O=system:nodes`.
fn read_certificate(
    der: &[u8],
    node: &str,
    endpoint: SocketAddr,
) -> Result<KubeletCertificate, GatherError> {
    let cert_error = |message: String| GatherError::Certificate { endpoint, message };
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| cert_error(format!("does not parse: {e}")))?;
    let subject = cert.subject();
    let common_names: Vec<&str> = subject
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .collect();
    let organizations: Vec<&str> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    let expected = format!("{NODE_USER_PREFIX}{node}");
    if common_names != [expected.as_str()] || organizations != [NODES_GROUP] {
        return Err(cert_error(format!(
            "is for CN {common_names:?} O {organizations:?}, not {expected} in {NODES_GROUP}"
        )));
    }
    let mut addresses = Vec::new();
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    if let Some(canonical) = canonical_dns_name(dns) {
                        addresses.push(AddressValue::Dns(canonical));
                    }
                }
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        addresses.push(AddressValue::Ip(canonical_ip(ip)));
                    }
                }
                _ => {}
            }
        }
    }
    let not_after = Timestamp::from_second(cert.validity().not_after.timestamp())
        .map_err(|e| cert_error(format!("has an unreadable notAfter: {e}")))?;
    Ok(KubeletCertificate {
        endpoint: endpoint.to_string(),
        serial: cert.raw_serial_as_string(),
        not_after,
        addresses,
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn endpoint() -> SocketAddr {
        "127.0.0.1:10250".parse().unwrap()
    }

    fn certificate(cn: &str, o: &str, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, cn);
        subject.push(DnType::OrganizationName, o);
        params.distinguished_name = subject;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_certificate_must_be_the_nodes_own() {
        let sans = vec![
            SanType::DnsName("Node-A.".try_into().unwrap()),
            SanType::IpAddress("10.0.0.5".parse().unwrap()),
        ];
        let good = certificate("system:node:node-a", NODES_GROUP, sans.clone());
        let read = read_certificate(&good, "node-a", endpoint()).unwrap();
        assert_eq!(
            read.addresses,
            vec![
                AddressValue::Dns("node-a".to_string()),
                AddressValue::Ip("10.0.0.5".parse().unwrap())
            ]
        );

        let neighbour = certificate("system:node:node-b", NODES_GROUP, sans.clone());
        let error = read_certificate(&neighbour, "node-a", endpoint()).unwrap_err();
        assert!(error.to_string().contains("system:node:node-b"), "{error}");

        let not_a_node = certificate("system:node:node-a", "system:masters", sans);
        let error = read_certificate(&not_a_node, "node-a", endpoint()).unwrap_err();
        assert!(error.to_string().contains("system:masters"), "{error}");
    }
}
