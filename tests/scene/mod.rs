//! The scene of end-to-end tests: a private control plane with the deploy/ RBAC, the
//! controller binary running under its own ServiceAccount token, and kubelets played through
//! impersonation (`Scene`). Built on the control plane of tests/harness.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::Subject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::harness::process::Supervised;
use crate::harness::{ControlPlane, bind_cluster_role, openshift_machine_resource};

pub const NAMESPACE: &str = "csr-approver";
pub const BOOTSTRAPPER: &str =
    "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper";
pub const BOOTSTRAPPER_GROUPS: [&str; 2] = [
    "system:serviceaccounts",
    "system:serviceaccounts:openshift-machine-config-operator",
];
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// Scenarios run one at a time: each owns a control plane and a controller.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Scene {
    pub cp: ControlPlane,
    pub admin: Client,
    pub controller_kubeconfig: PathBuf,
    controllers: Vec<(Supervised, u16)>,
}

pub struct SceneOptions {
    pub machine_crds: bool,
    pub policy: Option<&'static str>,
}

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

impl Scene {
    pub async fn new(options: SceneOptions) -> Scene {
        Self::on(ControlPlane::start(), options).await
    }

    /// The scene on a control plane started by the caller (e.g. with real-node options).
    pub async fn on(cp: ControlPlane, options: SceneOptions) -> Scene {
        let admin = cp.admin_client();
        if options.machine_crds {
            cp.install_machine_crds().await;
            crate::harness::ensure_namespace(&admin, "openshift-machine-api").await;
        }
        let out = cp.kubectl(&[
            "apply",
            "-f",
            &repo("deploy/crd.yaml"),
            "-f",
            &repo("deploy/namespace.yaml"),
            "-f",
            &repo("deploy/serviceaccount.yaml"),
            "-f",
            &repo("deploy/rbac.yaml"),
        ]);
        assert!(
            out.status.success(),
            "kubectl apply deploy/: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/nodeidentities.csr-approver.io",
            "--timeout=60s",
        ]);
        assert!(
            out.status.success(),
            "the NodeIdentity CRD is established: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // As on OpenShift: the bootstrapper may create CSRs.
        bind_cluster_role(
            &admin,
            "node-bootstrapper-csr",
            "system:node-bootstrapper",
            vec![Subject {
                kind: "User".to_string(),
                name: BOOTSTRAPPER.to_string(),
                api_group: Some("rbac.authorization.k8s.io".to_string()),
                namespace: None,
            }],
        )
        .await;
        let scene_dir = cp.dir().to_path_buf();
        let controller_kubeconfig = write_service_account_kubeconfig(&cp, &admin, &scene_dir).await;
        let scene = Scene {
            cp,
            admin,
            controller_kubeconfig,
            controllers: Vec::new(),
        };
        if let Some(policy) = options.policy {
            scene.set_policy(policy).await;
        }
        scene
    }

    /// Creates or replaces the policy ConfigMap.
    pub async fn set_policy(&self, policy: &str) {
        let cms: Api<ConfigMap> = Api::namespaced(self.admin.clone(), NAMESPACE);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("csr-approver-policy".into()),
                ..Default::default()
            },
            data: Some([("policy.yaml".to_string(), policy.to_string())].into()),
            ..Default::default()
        };
        cms.patch(
            "csr-approver-policy",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&cm),
        )
        .await
        .expect("apply policy ConfigMap");
    }

    /// Starts a controller replica under the ServiceAccount; returns its index.
    pub fn start_controller(&mut self, name: &'static str, extra: &[&str]) -> usize {
        let kubeconfig = self.controller_kubeconfig.clone();
        self.start_controller_with(name, &kubeconfig, extra)
    }

    /// The controller's kubeconfig (its ServiceAccount token) pointing at `server` instead,
    /// e.g. a proxy in front of kube-apiserver (`127.0.0.1`: the serving certificate's SAN).
    pub fn controller_kubeconfig_for(&self, server: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.controller_kubeconfig).expect("kubeconfig");
        let mut kubeconfig: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        kubeconfig["clusters"][0]["cluster"]["server"] = json!(server);
        let path = self
            .cp
            .dir()
            .join(format!("controller-{}.kubeconfig", free_port()));
        std::fs::write(&path, kubeconfig.to_string()).expect("write kubeconfig");
        path
    }

    /// [`Scene::start_controller`] with another kubeconfig.
    pub fn start_controller_with(
        &mut self,
        name: &'static str,
        kubeconfig: &std::path::Path,
        extra: &[&str],
    ) -> usize {
        let port = free_port();
        let mut args: Vec<String> = [
            "run",
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8 path"),
            "--namespace",
            NAMESPACE,
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--identity",
            name,
            "--lease-duration",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = Supervised::spawn(
            name,
            std::path::Path::new(env!("CARGO_BIN_EXE_csr-approver")),
            &args,
            self.cp.dir(),
            None,
        )
        .expect("controller starts");
        self.controllers.push((process, port));
        self.controllers.len() - 1
    }

    pub fn controller_port(&self, index: usize) -> u16 {
        self.controllers[index].1
    }

    pub fn kill_controller(&mut self, index: usize) {
        self.controllers[index].0.stop();
    }

    /// Sends SIGTERM to a replica, as the kubelet does when a Pod stops.
    pub fn terminate_controller(&self, identity: &str) {
        let status = std::process::Command::new("pkill")
            // Anchored on the binary so the watchdog (`bash -c … csr-approver run …`) is spared.
            .args([
                "-TERM",
                "-f",
                "--",
                &format!(
                    "^{} run .*--identity {identity}( |$)",
                    env!("CARGO_BIN_EXE_csr-approver")
                ),
            ])
            .status()
            .expect("pkill runs");
        assert!(
            status.success(),
            "no controller process with identity {identity}"
        );
    }

    /// Whether the replica's process has exited, with its status.
    pub fn controller_exit(&self, index: usize) -> Option<String> {
        self.controllers[index].0.exited()
    }

    pub fn controller_log(&self, index: usize) -> String {
        self.controllers[index].0.log_tail(60)
    }

    /// Waits until the replica answers /readyz with 200.
    pub async fn wait_ready(&self, index: usize) {
        let port = self.controller_port(index);
        let ok = wait_for(Duration::from_secs(30), || async move {
            http_get(port, "/readyz")
                .filter(|(code, _)| *code == 200)
                .map(|_| ())
        })
        .await;
        assert!(
            ok.is_some(),
            "controller never became ready:\n{}",
            self.controller_log(index)
        );
    }

    pub fn metrics(&self, index: usize) -> String {
        http_get(self.controller_port(index), "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    pub fn bootstrapper(&self) -> Client {
        self.cp
            .impersonating_client(BOOTSTRAPPER, &BOOTSTRAPPER_GROUPS)
    }

    pub fn node_client(&self, node: &str) -> Client {
        self.cp
            .impersonating_client(&format!("system:node:{node}"), &["system:nodes"])
    }

    pub async fn create_csr(
        &self,
        as_client: &Client,
        name: &str,
        signer: &str,
        usages: &[&str],
        pem: Vec<u8>,
    ) {
        let csr = CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem),
                signer_name: signer.to_string(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                ..Default::default()
            },
            status: None,
        };
        Api::<CertificateSigningRequest>::all(as_client.clone())
            .create(&PostParams::default(), &csr)
            .await
            .unwrap_or_else(|e| panic!("create CSR {name}: {e}"));
    }

    /// A new node's client CSR, as the OpenShift node-bootstrapper sends it.
    pub async fn join_request(&self, csr: &str, node: &str) {
        self.create_csr(
            &self.bootstrapper(),
            csr,
            CLIENT_SIGNER,
            &["digital signature", "client auth"],
            crate::builders::Request::node(node).pem(),
        )
        .await;
    }

    /// The Lease `kube-node-lease/<node>` as its kubelet leaves it, last renewed `ago` ago.
    pub async fn node_lease(&self, node: &str, ago: Duration) {
        crate::harness::ensure_namespace(&self.admin, "kube-node-lease").await;
        let renewed = jiff::Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(node.to_string()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.to_string()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(renewed)),
                ..Default::default()
            }),
        };
        Api::<Lease>::namespaced(self.admin.clone(), "kube-node-lease")
            .create(&PostParams::default(), &lease)
            .await
            .expect("create Lease");
    }

    /// Deletes a CSR as kube-controller-manager's CSR cleaner does an hour after its
    /// verdict (the cleaner's delays are constants: the tests delete in its place).
    pub async fn delete_csr_as_the_cleaner_does(&self, name: &str) {
        Api::<CertificateSigningRequest>::all(self.admin.clone())
            .delete(name, &Default::default())
            .await
            .expect("delete CSR");
    }

    pub async fn csr(&self, name: &str) -> CertificateSigningRequest {
        Api::<CertificateSigningRequest>::all(self.admin.clone())
            .get(name)
            .await
            .expect("get CSR")
    }

    /// The first condition type (Approved/Denied) of a CSR, if any.
    pub async fn condition(&self, name: &str) -> Option<String> {
        self.csr(name)
            .await
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| c.first().map(|c| c.type_.clone()))
    }

    pub async fn wait_condition(&self, name: &str, timeout: Duration) -> Option<String> {
        wait_for(timeout, || async move { self.condition(name).await }).await
    }

    /// Creates an OpenShift Machine with status addresses (and optionally a nodeRef).
    pub async fn create_machine(&self, name: &str, addresses: &[(&str, &str)]) {
        let api = self.machines();
        let mut machine = DynamicObject::new(name, &openshift_machine_resource());
        machine.data = json!({"spec": {}});
        api.create(&PostParams::default(), &machine)
            .await
            .expect("create Machine");
        api.patch_status(name, &PatchParams::default(), &status_addresses(addresses))
            .await
            .expect("Machine status");
    }

    pub async fn link_machine(&self, name: &str, node: &str) {
        let api = self.machines();
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"nodeRef": {"kind": "Node", "name": node}}})),
        )
        .await
        .expect("Machine nodeRef");
    }

    fn machines(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.admin.clone(),
            "openshift-machine-api",
            &openshift_machine_resource(),
        )
    }

    /// Registers a Node with status addresses, as its kubelet would.
    pub async fn register_node(&self, name: &str, addresses: &[(&str, &str)]) {
        let api: Api<Node> = Api::all(self.admin.clone());
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &node)
            .await
            .expect("create Node");
        api.patch_status(name, &PatchParams::default(), &status_addresses(addresses))
            .await
            .expect("Node status");
    }

    /// Creates Nodes named `names` (no status), `concurrency` at a time, as the admin: a
    /// cluster of thousands of Nodes whose first list takes the controller a while.
    pub async fn create_nodes(&self, names: Vec<String>, concurrency: usize) {
        use futures::StreamExt;
        let api: Api<Node> = Api::all(self.admin.clone());
        futures::stream::iter(names)
            .map(|name| {
                let api = api.clone();
                async move {
                    let node = Node {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    api.create(&PostParams::default(), &node)
                        .await
                        .unwrap_or_else(|e| panic!("create Node {name}: {e}"));
                }
            })
            .buffer_unordered(concurrency)
            .collect::<()>()
            .await;
    }

    /// Every CSR that has a condition (Approved, Denied, …), as (name, types).
    pub async fn decided_csrs(&self) -> Vec<(String, Vec<String>)> {
        Api::<CertificateSigningRequest>::all(self.admin.clone())
            .list(&Default::default())
            .await
            .expect("list CSRs")
            .items
            .into_iter()
            .filter_map(|csr| {
                let types: Vec<String> = csr
                    .status?
                    .conditions?
                    .into_iter()
                    .map(|c| c.type_)
                    .collect();
                (!types.is_empty()).then(|| (csr.metadata.name.unwrap_or_default(), types))
            })
            .collect()
    }

    /// The replica's `/readyz` status code, if it answers.
    pub fn readyz(&self, index: usize) -> Option<u16> {
        http_get(self.controller_port(index), "/readyz").map(|(code, _)| code)
    }

    async fn events_regarding(
        &self,
        namespace: &str,
        object_name: &str,
    ) -> Vec<k8s_openapi::api::events::v1::Event> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.admin.clone(), namespace);
        api.list(&Default::default())
            .await
            .expect("list Events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object_name))
            .collect()
    }

    /// Events about `object_name` (CSRs' land in `default`), as (type, reason, note).
    pub async fn events_about(
        &self,
        namespace: &str,
        object_name: &str,
    ) -> Vec<(String, String, String)> {
        self.events_regarding(namespace, object_name)
            .await
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// How many times Events about `object_name` were recorded: each Event once, plus the
    /// repeats folded into its series.
    pub async fn event_occurrences(&self, namespace: &str, object_name: &str) -> i32 {
        self.events_regarding(namespace, object_name)
            .await
            .into_iter()
            .map(|e| e.series.map_or(1, |s| s.count))
            .sum()
    }
}

async fn write_service_account_kubeconfig(
    cp: &ControlPlane,
    admin: &Client,
    dir: &std::path::Path,
) -> PathBuf {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request("csr-approver", &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token status")
        .token;
    let ca = dir.join("e2e-ca.crt");
    std::fs::write(&ca, cp.ca_pem()).expect("write CA");
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": cp.server_url(), "certificate-authority": ca}}],
        "users": [{"name": "csr-approver", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "csr-approver"}}],
        "current-context": "test",
    });
    let path = dir.join("controller.kubeconfig");
    std::fs::write(&path, kubeconfig.to_string()).expect("write kubeconfig");
    path
}

/// A status patch setting `addresses` as Nodes and Machines type them.
fn status_addresses(addresses: &[(&str, &str)]) -> Patch<serde_json::Value> {
    let addresses: Vec<_> = addresses
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    Patch::Merge(json!({"status": {"addresses": addresses}}))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A minimal HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

pub use crate::harness::wait_for;

/// The value of a metric sample line `name{labels} value`, summed over matching lines.
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
