//! Evidence the controller reads on demand, end to end on a real kube-apiserver + etcd,
//! with the controller binary under its ServiceAccount and the RBAC of deploy/:
//! - certificate recovery: a bootstrapper asks for the identity of a Node that exists; the
//!   controller reads the node's Lease in kube-node-lease (`client.recovery`);
//! - serving renewals: the controller dials the kubelet port a Node publishes and reads
//!   the serving certificate it presents, verified against a kubelet-serving CA
//!   (`serving.addressSources: [KubeletCertificate]`). The kubelets here are TLS endpoints
//!   in the test process serving certificates the test's CA issued.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use builders::Request;
use csr_approver::identity::NodeIdentity;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use scene::*;
use serde_json::json;

const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(15);

fn bare_metal() -> SceneOptions {
    SceneOptions {
        machine_crds: false,
        policy: None,
    }
}

/// The Warning Event's note about `csr` once there is one.
async fn warning_note(scene: &Scene, csr: &str) -> String {
    wait_for(APPROVAL_TIMEOUT, || async {
        scene
            .events_about("default", csr)
            .await
            .into_iter()
            .find(|(t, r, _)| t == "Warning" && r == "NotApproved")
            .map(|(_, _, note)| note)
    })
    .await
    .unwrap_or_else(|| panic!("a Warning Event about {csr}"))
}

async fn approved_note(scene: &Scene, csr: &str, controller: usize) -> String {
    assert_eq!(
        scene.wait_condition(csr, APPROVAL_TIMEOUT).await.as_deref(),
        Some("Approved"),
        "{csr}\n{}",
        scene.controller_log(controller)
    );
    wait_for(APPROVAL_TIMEOUT, || async {
        scene
            .events_about("default", csr)
            .await
            .into_iter()
            .find(|(t, r, _)| t == "Normal" && r == "Approved")
            .map(|(_, _, note)| note)
    })
    .await
    .unwrap_or_else(|| panic!("an Approved Event about {csr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_recovers_its_identity_and_a_live_one_is_left_to_an_admin() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(bare_metal()).await;
    scene
        .set_policy(
            "deny: true\nclient: {recovery: {enabled: true, offlineFor: 1m}}\ninventory: [{name: worker-1}, {name: worker-2}]\n",
        )
        .await;
    for node in ["worker-1", "worker-2"] {
        scene.register_node(node, &[("Hostname", node)]).await;
    }
    // worker-1 has been off for two hours; worker-2 renewed its Lease a moment ago.
    scene
        .node_lease("worker-1", Duration::from_secs(2 * 3600))
        .await;
    scene.node_lease("worker-2", Duration::from_secs(2)).await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;

    scene.join_request("recover-1", "worker-1").await;
    let note = approved_note(&scene, "recover-1", c).await;
    assert!(
        note.starts_with("NodeRecovery: ") && note.contains("has not been renewed for 2h"),
        "{note}"
    );

    // Someone with the bootstrap credential asks for the live node's identity.
    scene.join_request("impersonate-2", "worker-2").await;
    let note = warning_note(&scene, "impersonate-2").await;
    assert!(
        note.starts_with("NodeAlreadyExists: ")
            && note.contains("less than client.recovery.offlineFor 1m")
            && note.contains("kubectl certificate approve impersonate-2"),
        "{note}"
    );
    // A second recovery for worker-1 within the window is someone else's.
    scene.join_request("recover-1-again", "worker-1").await;
    let note = warning_note(&scene, "recover-1-again").await;
    assert!(note.contains("one recovery per node per window"), "{note}");
    // deny: true, yet neither is denied: an admin may still approve them by hand.
    for csr in ["impersonate-2", "recover-1-again"] {
        assert_eq!(scene.condition(csr).await, None, "{csr} stays pending");
    }
    let pending = wait_for(APPROVAL_TIMEOUT, || async {
        let value = metric(&scene.metrics(c), "csr_approver_recovery_csrs_pending");
        (value == 2.0).then_some(value)
    })
    .await;
    assert_eq!(pending, Some(2.0), "{}", scene.metrics(c));

    // `check` on the live cluster reads the Lease as the controller does, and says the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_csr-approver"))
        .args(["check", "--kubeconfig"])
        .arg(scene.cp.kubeconfig_path())
        .args(["-o", "json", "impersonate-2", "recover-1-again"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let explained: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(explained.len(), 2, "{stdout}");
    for line in &explained {
        assert_eq!(line["reason"], "NodeAlreadyExists", "{line}");
        let message = line["message"].as_str().unwrap();
        assert!(
            !message.contains("has not been read")
                && (message.contains("less than client.recovery.offlineFor 1m")
                    || message.contains("one recovery per node per window")),
            "{message}"
        );
    }
}

async fn identity(scene: &Scene, node: &str) -> Option<NodeIdentity> {
    Api::<NodeIdentity>::all(scene.admin.clone())
        .get_opt(node)
        .await
        .unwrap()
}

/// A CA for kubelet serving certificates, kept apart from the cluster CA as OpenShift does.
struct ServingCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl ServingCa {
    fn new(name: &str) -> ServingCa {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        ServingCa {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// A kubelet serving certificate for `cn` with these SANs, and its key (DER).
    fn serving_certificate(&self, cn: &str, sans: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:nodes");
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().unwrap()),
            })
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }
}

/// A kubelet's port: completes TLS handshakes with `cert` until the test ends.
async fn kubelet_endpoint(ip: &str, (cert, key): (Vec<u8>, Vec<u8>)) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    address
}

/// A Node whose status lists `ip` and publishes `port` as its kubelet's, as a kubelet does.
async fn node_at(scene: &Scene, name: &str, ip: &str, port: u16) {
    scene
        .register_node(name, &[("InternalIP", ip), ("Hostname", name)])
        .await;
    Api::<Node>::all(scene.admin.clone())
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}),
            ),
        )
        .await
        .expect("Node kubelet port");
}

async fn serving_request(scene: &Scene, csr: &str, node: &str, ips: &[&str]) {
    let mut request = Request::node(node).dns(node);
    for ip in ips {
        request = request.ip(ip);
    }
    scene
        .create_csr(
            &scene.node_client(node),
            csr,
            SERVING_SIGNER,
            &SERVING_USAGES,
            request.pem(),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_renewal_keeps_the_addresses_its_current_certificate_holds() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(bare_metal()).await;
    let ca = ServingCa::new("kubelet-serving-ca");
    let ca_file = scene.cp.dir().join("kubelet-serving-ca.crt");
    std::fs::write(&ca_file, ca.issuer.pem()).unwrap();
    // 192.168.50.x is a secondary network that no Node status lists.
    let good = kubelet_endpoint(
        "127.0.0.21",
        ca.serving_certificate(
            "system:node:worker-1",
            &["worker-1", "127.0.0.21", "192.168.50.21"],
        ),
    )
    .await;
    let rogue_ca = ServingCa::new("someone-else");
    let unknown_issuer = kubelet_endpoint(
        "127.0.0.22",
        rogue_ca.serving_certificate(
            "system:node:worker-2",
            &["worker-2", "127.0.0.22", "192.168.50.22"],
        ),
    )
    .await;
    let someone_elses = kubelet_endpoint(
        "127.0.0.23",
        ca.serving_certificate(
            "system:node:worker-1",
            &["worker-3", "127.0.0.23", "192.168.50.23"],
        ),
    )
    .await;
    node_at(&scene, "worker-1", "127.0.0.21", good.port()).await;
    node_at(&scene, "worker-2", "127.0.0.22", unknown_issuer.port()).await;
    node_at(&scene, "worker-3", "127.0.0.23", someone_elses.port()).await;
    let trusting = format!(
        "serving:\n  allowLoopback: true\n  addressSources: [Node, KubeletCertificate]\n  kubeletServingCAFile: {}\n",
        ca_file.display()
    );
    scene.set_policy(&trusting).await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;

    // §8: the certificate alone never vouches for its own renewal. No independent source
    // ever vouched for 192.168.50.21: refused, saying so.
    serving_request(
        &scene,
        "renew-1",
        "worker-1",
        &["127.0.0.21", "192.168.50.21"],
    )
    .await;
    let note = warning_note(&scene, "renew-1").await;
    assert!(
        note.starts_with("ForeignSan: ")
            && note.contains("ever vouched for it")
            && note.contains("serving.kubeletCertificateMaxAge"),
        "{note}"
    );
    assert_eq!(scene.condition("renew-1").await, None);
    assert_eq!(
        identity(&scene, "worker-1").await,
        None,
        "a refusal writes nothing"
    );

    // An inventory entry vouches for it: approved, and the record (created for a node
    // csr-approver minted no identity for) remembers that independent evidence did.
    scene
        .set_policy(&format!(
            "{trusting}inventory:\n  - name: worker-1\n    addresses: [192.168.50.21]\n"
        ))
        .await;
    let note = approved_note(&scene, "renew-1", c).await;
    assert!(note.contains("inventory"), "{note}");
    let record = identity(&scene, "worker-1")
        .await
        .expect("a NodeIdentity for worker-1");
    assert_eq!(record.spec.host_generation, None, "{record:?}");
    let vouched: Vec<&str> = record
        .spec
        .serving_addresses
        .iter()
        .map(|v| v.address.as_str())
        .collect();
    for address in ["127.0.0.21", "192.168.50.21", "worker-1"] {
        assert!(vouched.contains(&address), "{address}: {vouched:?}");
    }

    // The entry gone, the kubelet's certificate renews the address within the bound.
    scene.set_policy(&trusting).await;
    serving_request(
        &scene,
        "renew-1-again",
        "worker-1",
        &["127.0.0.21", "192.168.50.21"],
    )
    .await;
    let note = approved_note(&scene, "renew-1-again", c).await;
    assert!(
        note.contains(&format!(
            "the serving certificate node worker-1's kubelet presents at {good}"
        )),
        "{note}"
    );
    let again = identity(&scene, "worker-1").await.expect("the record");
    // (Compared by entry: the issued certificates may be recorded meanwhile.)
    assert_eq!(
        again.spec.serving_addresses, record.spec.serving_addresses,
        "vouched within the hour: not written again"
    );

    // Refusals, each for the rule it breaks; none is approved.
    serving_request(
        &scene,
        "renew-1-more",
        "worker-1",
        &["127.0.0.21", "192.168.50.99"],
    )
    .await;
    serving_request(
        &scene,
        "renew-2",
        "worker-2",
        &["127.0.0.22", "192.168.50.22"],
    )
    .await;
    serving_request(
        &scene,
        "renew-3",
        "worker-3",
        &["127.0.0.23", "192.168.50.23"],
    )
    .await;
    let expectations = [
        (
            "renew-1-more",
            "nor in the serving certificate its kubelet presents",
        ),
        ("renew-2", "TLS handshake: invalid peer certificate"),
        ("renew-3", "is for CN [\"system:node:worker-1\"]"),
    ];
    for (csr, words) in expectations {
        let note = warning_note(&scene, csr).await;
        assert!(
            note.starts_with("ForeignSan: ") && note.contains(words),
            "{csr}: {note}"
        );
        assert_eq!(scene.condition(csr).await, None, "{csr} stays pending");
    }

    // Without the source in the policy nothing is dialled: the SAN is simply foreign.
    scene
        .set_policy("serving:\n  allowLoopback: true\n  addressSources: [Node]\n")
        .await;
    serving_request(
        &scene,
        "renew-1-untrusted",
        "worker-1",
        &["127.0.0.21", "192.168.50.21"],
    )
    .await;
    let note = warning_note(&scene, "renew-1-untrusted").await;
    assert!(
        note.starts_with("ForeignSan: ") && !note.contains("serving certificate"),
        "{note}"
    );
}
