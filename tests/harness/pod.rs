//! csr-approver as a Pod on a real node ([`super::node::RealNode`]), installed with the Helm
//! chart (`charts/csr-approver`) from the image `scripts/build-image.sh` builds.
//!
//! ```ignore
//! let image = harness::pod::image_archive()?;            // None: CSR_APPROVER_IMAGE=skip
//! let cp = ControlPlane::start_with(Options { real_nodes: true });
//! let _workloads = Workloads::start(&cp);                 // Deployment → Pod, bound to its node
//! let node = RealNode::start(&cp, "control-0", ip).await;
//! // … its client CSR approved (by hand: nothing runs csr-approver yet) …
//! import_image(&node, &image.archive);
//! helm_install(&cp, &chart_values(&cp, &image, "control-0", port, POLICY));
//! ```
//!
//! What a real cluster has and the test control plane lacks, and how this module stands in:
//! * **Deployment and ReplicaSet controllers**: a second kube-controller-manager running only
//!   `deployment,replicaset,root-ca-cert-publisher` (the first one only signs CSRs; the
//!   publisher writes ConfigMap `kube-root-ca.crt`, which the token volume mounts).
//! * **kube-scheduler**: [`Workloads`] binds each unscheduled Pod (`pods/binding`, as the
//!   scheduler does) to the node its `nodeSelector` names by `kubernetes.io/hostname`.
//! * **The `kubernetes` Service** (no kube-proxy, no endpoints: `--endpoint-reconciler-type=none`):
//!   the chart's `extraEnv` sets `KUBERNETES_SERVICE_HOST=127.0.0.1` and
//!   `KUBERNETES_SERVICE_PORT=<apiserver port>`, which the Pod reaches on the host network
//!   (`hostNetwork: true`). The ServiceAccount token is the projected one the kubelet gets
//!   from the TokenRequest API, as in any cluster.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

use super::ControlPlane;
use super::node::{RealNode, asset_dir};
use super::pki;
use super::process::Supervised;

/// Release name and namespace of the chart install.
pub const RELEASE: &str = "csr-approver";
pub const NAMESPACE: &str = "csr-approver";

/// The image to run: its reference and its OCI archive (`podman save`).
#[derive(Clone, Debug)]
pub struct Image {
    pub reference: String,
    pub archive: PathBuf,
}

impl Image {
    /// (repository, tag) of [`Image::reference`].
    pub fn repository_and_tag(&self) -> (String, String) {
        let r = &self.reference;
        match r.rfind(':').filter(|&i| !r[i..].contains('/')) {
            Some(i) => (r[..i].to_owned(), r[i + 1..].to_owned()),
            None => (r.clone(), "latest".to_owned()),
        }
    }
}

/// The image archive: `$CSR_APPROVER_IMAGE_ARCHIVE` (scripts/test.sh builds it), or else
/// built now by `scripts/build-image.sh --save target/static/csr-approver-image.oci.tar`
/// (a second when nothing changed, minutes cold). `Ok(None)` when `CSR_APPROVER_IMAGE=skip`.
/// The reference is the one recorded in the archive (what `ctr images import` names it).
pub fn image_archive() -> Result<Option<Image>, String> {
    if std::env::var("CSR_APPROVER_IMAGE").is_ok_and(|i| i == "skip") {
        return Ok(None);
    }
    let archive = match std::env::var_os("CSR_APPROVER_IMAGE_ARCHIVE").filter(|a| !a.is_empty()) {
        Some(archive) => PathBuf::from(archive),
        None => {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
            let archive = repo.join("target/static/csr-approver-image.oci.tar");
            let out = Command::new("bash")
                .arg(repo.join("scripts/build-image.sh"))
                .arg("--save")
                .arg(&archive)
                .output()
                .map_err(|e| format!("cannot run scripts/build-image.sh: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "scripts/build-image.sh --save {} failed ({}); set CSR_APPROVER_IMAGE_ARCHIVE \
                     to a built archive\n{}",
                    archive.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            archive
        }
    };
    let index = Command::new("tar")
        .arg("-xOf")
        .arg(&archive)
        .arg("index.json")
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !index.status.success() {
        return Err(format!(
            "{}: no index.json (not an OCI archive?): {}",
            archive.display(),
            String::from_utf8_lossy(&index.stderr)
        ));
    }
    let index: serde_json::Value = serde_json::from_slice(&index.stdout)
        .map_err(|e| format!("{}: index.json: {e}", archive.display()))?;
    let reference = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .ok_or_else(|| format!("{}: index.json names no image: {index}", archive.display()))?
        .to_owned();
    Ok(Some(Image { reference, archive }))
}

/// Imports `archive` into `node`'s containerd (namespace `k8s.io`, where the kubelet looks),
/// waiting (≤ 20 s) for its socket.
pub fn import_image(node: &RealNode, archive: &Path) -> Result<(), String> {
    let socket = node.dir().join("containerd.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        if Instant::now() > deadline {
            return Err(format!("no {} after 20 s", socket.display()));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["--namespace", "k8s.io", "images", "import"])
        .arg(archive)
        .output()
        .map_err(|e| format!("cannot run ctr: {e}"))?;
    ok(out, &format!("ctr images import {}", archive.display())).map(drop)
}

/// What a real cluster runs to turn the chart's Deployment into a running Pod, and this
/// control plane does not (see the module documentation). Dropping it stops both.
pub struct Workloads {
    controllers: Supervised,
    binder: tokio::task::JoinHandle<()>,
}

impl Workloads {
    /// Starts kube-controller-manager with only the Deployment, ReplicaSet and root-CA
    /// publisher controllers, and the Pod binder. Needs a tokio runtime.
    pub fn start(cp: &ControlPlane) -> Workloads {
        let bin = asset_dir()
            .unwrap_or_else(|e| panic!("{e}"))
            .join("bin/kube-controller-manager");
        let args = vec![
            format!("--kubeconfig={}", cp.kubeconfig_path().display()),
            "--controllers=deployment,replicaset,root-ca-cert-publisher".to_owned(),
            format!("--root-ca-file={}", cp.dir().join(pki::CA_CERT).display()),
            "--leader-elect=false".to_owned(),
            "--secure-port=0".to_owned(),
            "--use-service-account-credentials=false".to_owned(),
        ];
        let controllers = Supervised::spawn(
            "kube-controller-manager-workloads",
            &bin,
            &args,
            cp.dir(),
            None,
        )
        .unwrap_or_else(|e| panic!("start kube-controller-manager (workloads): {e}"));
        let binder = tokio::spawn(bind_pods(cp.admin_client()));
        Workloads {
            controllers,
            binder,
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.controllers.log_tail(lines)
    }
}

impl Drop for Workloads {
    fn drop(&mut self) {
        self.binder.abort();
        self.controllers.stop();
    }
}

/// The scheduler's part, for nodeSelector-pinned Pods: every Pod without a node whose
/// `nodeSelector` names a host (`kubernetes.io/hostname`) is bound to that node.
async fn bind_pods(client: Client) {
    let pods: Api<Pod> = Api::all(client.clone());
    let unscheduled = ListParams::default().fields("spec.nodeName=");
    loop {
        for pod in pods
            .list(&unscheduled)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let host = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_selector.as_ref())
                .and_then(|s| s.get("kubernetes.io/hostname"))
                .cloned();
            let (Some(host), Some(name), Some(namespace)) =
                (host, pod.metadata.name, pod.metadata.namespace)
            else {
                continue;
            };
            let binding = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": host},
            });
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let _ = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Approves CSR `name` as the cluster admin (`kubectl certificate approve`): how the first
/// node of a cluster gets its client certificate before any approver runs on it.
pub async fn approve_by_hand(admin: &Client, name: &str) -> Result<(), kube::Error> {
    let patch = Patch::Merge(serde_json::json!({"status": {"conditions": [{
        "type": "Approved",
        "status": "True",
        "reason": "AdminApproved",
        "message": "the first node, approved by hand: no approver runs yet",
    }]}}));
    Api::<CertificateSigningRequest>::all(admin.clone())
        .patch_approval(name, &PatchParams::default(), &patch)
        .await
        .map(drop)
}

/// Chart values: one replica from `image` (`pullPolicy: Never`: imported, not pulled) on the
/// host network of node `node` (nodeSelector by hostname), serving HTTP on `http_port`,
/// reaching the apiserver at 127.0.0.1, with `policy` (YAML) as its policy. JSON, which is
/// YAML for helm.
pub fn chart_values(
    cp: &ControlPlane,
    image: &Image,
    node: &str,
    http_port: u16,
    policy: &str,
) -> String {
    let (repository, tag) = image.repository_and_tag();
    let api_port = cp
        .server_url()
        .rsplit(':')
        .next()
        .expect("server URL has a port")
        .to_owned();
    let policy: serde_json::Value = serde_saphyr::from_str(policy).expect("policy is YAML");
    serde_json::json!({
        "replicas": 1,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "hostNetwork": true,
        "httpPort": http_port,
        "nodeSelector": {"kubernetes.io/hostname": node},
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": api_port},
        ],
        "policy": policy,
    })
    .to_string()
}

/// A TCP port free on every address of this host right now (`httpPort` with `hostNetwork`:
/// the controller binds `0.0.0.0:<port>`).
pub fn free_host_port() -> u16 {
    std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("bind 0.0.0.0:0: {e}"))
}

/// `helm <args>` with the control plane's admin kubeconfig and helm's own state under the
/// control plane directory. helm is `$HELM`, or where `scripts/tools.sh --env` says.
pub fn helm(cp: &ControlPlane, args: &[&str]) -> Output {
    let helm_dir = cp.dir().join("helm");
    Command::new(helm_binary())
        .args(args)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .env("HELM_CONFIG_HOME", helm_dir.join("config"))
        .env("HELM_CACHE_HOME", helm_dir.join("cache"))
        .env("HELM_DATA_HOME", helm_dir.join("data"))
        .output()
        .expect("run helm")
}

/// `helm install csr-approver charts/csr-approver -n csr-approver --create-namespace -f <values>`.
pub fn helm_install(cp: &ControlPlane, values: &str) -> Result<String, String> {
    let file = cp.dir().join("chart-values.json");
    std::fs::write(&file, values).map_err(|e| format!("write {}: {e}", file.display()))?;
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/csr-approver");
    let file = file.display().to_string();
    let chart = chart.display().to_string();
    ok(
        helm(
            cp,
            &[
                "install",
                RELEASE,
                &chart,
                "--namespace",
                NAMESPACE,
                "--create-namespace",
                "--values",
                &file,
            ],
        ),
        "helm install",
    )
}

fn helm_binary() -> PathBuf {
    if let Some(helm) = std::env::var_os("HELM").filter(|h| !h.is_empty()) {
        return PathBuf::from(helm);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--env")
        .output()
        .expect("run scripts/tools.sh --env");
    let env = String::from_utf8_lossy(&out.stdout);
    env.split_whitespace()
        .find_map(|w| w.strip_prefix("HELM="))
        .map(|h| PathBuf::from(h.trim_matches(['"', '\''])))
        .unwrap_or_else(|| panic!("scripts/tools.sh --env names no HELM: {env}"))
}

fn ok(out: Output, what: &str) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The Pod of the release once it is Running and Ready: its name.
pub async fn wait_pod_ready(admin: &Client, timeout: Duration) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let selector = ListParams::default().labels("app.kubernetes.io/name=csr-approver");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for pod in pods
            .list(&selector)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let status = pod.status.unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if status.phase.as_deref() == Some("Running") && ready {
                return pod.metadata.name;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// The release's Pods as `kubectl get pods -o wide` would summarise them, for failures.
pub async fn describe_pods(admin: &Client) -> String {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    match pods.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .map(|p| {
                format!(
                    "pod {:?} on {:?}: {:?}",
                    p.metadata.name,
                    p.spec.and_then(|s| s.node_name),
                    p.status
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("cannot list pods: {e}"),
    }
}
