//! Real nodes: a real kubelet and its own containerd joining the test control plane through
//! a bootstrap token, as `kubeadm join` does.
//!
//! ```ignore
//! if let Some(why) = harness::node::unsupported() { eprintln!("skipped: {why}"); return; }
//! let cp = ControlPlane::start_with(Options { real_nodes: true });
//! let node = RealNode::start(&cp, "node-a", Ipv4Addr::new(127, 0, 0, 2)).await;
//! // node.bootstrap_user() made its client CSR; kubelet serves on node.kubelet_url()
//! ```
//!
//! * The control plane ([`Options::real_nodes`]) adds bootstrap-token authentication,
//!   `--kubelet-certificate-authority` and kube-controller-manager running **only** the CSR
//!   signers and the CSR cleaner (`--controllers=csrsigning,csrcleaner`: no approver — the
//!   tests' csr-approver is the only one) with the cluster CA and a [`SIGNING_DURATION`]
//!   short enough to see renewals.
//! * A node is one process tree in its own PID and mount namespaces
//!   (`unshare --pid --fork --kill-child=SIGTERM --mount-proc --mount`): its containerd (own root,
//!   state, socket, loopback-only CNI, the local FROM-scratch pause image imported from
//!   `scripts/node-assets.sh`) and its kubelet (own root dir, certificate dir and ports, on a
//!   loopback-range node IP). Fresh tmpfs mounts on `/run`, `/var/lib` and `/var/log` inside
//!   the namespace catch what kubelet and the runc shim write outside the node directory
//!   (`/var/lib/kubelet/device-plugins/kubelet.sock`, `/run/containerd/{s,fifo,runc}`, the
//!   root dir's self bind mount): they vanish with the namespace. The namespace's first
//!   process (`NODE_INIT`) gets SIGTERM when the watchdog of `process.rs` kills `unshare`
//!   (the test process went away or the [`RealNode`] was dropped): it kills every process
//!   of the namespace and removes the cgroups containerd made for pod containers.
//! * The kubelet refuses a loopback `--node-ip` ("nodeIP can't be loopback address": its
//!   address setter fails and leaves `status.addresses` alone), so the harness plays the
//!   part of a cloud provider's node controller: once the Node this kubelet registered
//!   appears (recognised by its kubelet port) without addresses, it sets them to
//!   `InternalIP <ip>` and `Hostname <name>` — exactly what the kubelet reports on a
//!   routable IP — and the kubelet keeps them and requests its serving certificate for them.
//! * A node bootstraps with a fresh kubeadm-style token ([`Bootstrap::Token`]) or with a
//!   bound token of a ServiceAccount bound to `system:node-bootstrapper`
//!   ([`Bootstrap::openshift`]: OpenShift's `openshift-machine-config-operator/node-bootstrapper`),
//!   see [`RealNode::start_with`]. Every node has a directory of its own, so a node started
//!   again under an earlier one's name starts from nothing (a re-provisioned host).
//! * [`restart_signer`] gives kube-controller-manager a shorter signing duration (renewals
//!   within a minute or so).
//! * Needs Linux, root, and the Debian packages of `scripts/node-packages.sh`; see
//!   [`unsupported`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{fs, thread};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::Subject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::process::Supervised;
use super::{ControlPlane, bind_cluster_role, pki};

/// kube-controller-manager's `--cluster-signing-duration`: kubelets renew at 70–90 % of it.
pub const SIGNING_DURATION: &str = "10m";
/// The group every bootstrap token authenticates into, bound to `system:node-bootstrapper`.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// The extra group kubeadm gives its node tokens.
pub const KUBEADM_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// Why real nodes cannot run here, or `None` when they can: Linux and root (kubelet mounts,
/// containerd runs containers). When they can, the Debian packages must be installed: this
/// panics (CI must run these tests, never skip them) if they are not.
pub fn unsupported() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("real-node tests need Linux".to_owned());
    }
    // /proc/self belongs to the effective user.
    let uid = fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if uid.map_or(true, |uid| uid != 0) {
        return Some(
            "real-node tests need root (kubelet and containerd mount and run containers)"
                .to_owned(),
        );
    }
    let missing: Vec<&str> = [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "runc",
        "unshare",
    ]
    .into_iter()
    .filter(|program| !on_path(program))
    .chain((!Path::new(CNI_BIN_DIR).join("loopback").is_file()).then_some("/usr/lib/cni/loopback"))
    .collect();
    assert!(
        missing.is_empty(),
        "real-node tests run as root but {} missing: run scripts/node-packages.sh",
        missing.join(", ")
    );
    None
}

const CNI_BIN_DIR: &str = "/usr/lib/cni";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The directory holding `bin/kubelet`, `bin/kube-controller-manager`, `pause.oci.tar` and
/// `pause.image`: `$CSR_APPROVER_NODE_ASSETS`, or else what `scripts/node-assets.sh` prints
/// (building them once: minutes).
pub fn asset_dir() -> Result<PathBuf, String> {
    static DIR: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    DIR.get_or_init(find_assets).clone()
}

fn find_assets() -> Result<PathBuf, String> {
    let check = |dir: PathBuf| {
        for file in [
            "bin/kubelet",
            "bin/kube-controller-manager",
            "pause.oci.tar",
            "pause.image",
        ] {
            if !dir.join(file).is_file() {
                return Err(format!("{}: no {file}", dir.display()));
            }
        }
        Ok(dir)
    };
    if let Some(dir) = std::env::var_os("CSR_APPROVER_NODE_ASSETS") {
        return check(PathBuf::from(dir)).map_err(|e| format!("CSR_APPROVER_NODE_ASSETS={e}"));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/node-assets.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if !out.status.success() || last.is_empty() {
        return Err(format!(
            "{} failed ({}); real-node tests need its binaries (or set CSR_APPROVER_NODE_ASSETS)\n\
             --- stderr:\n{}--- stdout:\n{stdout}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    check(PathBuf::from(last))
}

/// The name of the local FROM-scratch pause image every node's containerd has imported
/// (`imagePullPolicy: Never`: no registry is reachable).
pub fn pause_image() -> String {
    let assets = asset_dir().unwrap_or_else(|e| panic!("{e}"));
    fs::read_to_string(assets.join("pause.image"))
        .expect("read pause.image")
        .trim()
        .to_owned()
}

/// kube-apiserver flags for real nodes (`dir` = the control plane directory).
pub(super) fn apiserver_args(dir: &Path) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        "--enable-bootstrap-token-auth".to_owned(),
        // logs/exec/port-forward and the node proxy verify the kubelet's serving certificate
        // against the cluster CA, at its InternalIP (node names resolve nowhere here).
        format!("--kubelet-certificate-authority={}", file(pki::CA_CERT)),
        "--kubelet-preferred-address-types=InternalIP".to_owned(),
        format!("--kubelet-client-certificate={}", file(pki::ADMIN_CERT)),
        format!("--kubelet-client-key={}", file(pki::ADMIN_KEY)),
    ]
}

/// kube-controller-manager with only the CSR signing controllers, signing with the cluster CA.
pub(super) fn spawn_controller_manager(cp: &ControlPlane) -> Result<Supervised, String> {
    spawn_signer(cp, SIGNING_DURATION)
}

/// Replaces the control plane's kube-controller-manager by one signing for
/// `signing_duration` (e.g. `"2m"`), before any node starts: a short duration makes
/// kubelets renew within a test. kube-controller-manager v1.37 backdates `NotBefore` by
/// 5 min and, for durations under 8 h, sets `NotAfter` = now + duration, so a kubelet
/// (deadline at 70–90 % of `NotAfter − NotBefore`) renews between
/// `0.7·(d + 5m) − 5m` and `0.9·(d + 5m) − 5m` after each issue: with 2m, at once to 78 s.
pub fn restart_signer(cp: &mut ControlPlane, signing_duration: &str) {
    if let Some(mut old) = cp.controller_manager.take() {
        old.stop();
    }
    let signer = spawn_signer(cp, signing_duration)
        .unwrap_or_else(|e| panic!("restart kube-controller-manager: {e}"));
    cp.controller_manager = Some(signer);
}

fn spawn_signer(cp: &ControlPlane, signing_duration: &str) -> Result<Supervised, String> {
    let bin = asset_dir()?.join("bin/kube-controller-manager");
    let file = |name: &str| cp.dir().join(name).display().to_string();
    let args = vec![
        format!("--kubeconfig={}", cp.kubeconfig_path().display()),
        // The signers and, as on every real cluster, the CSR cleaner (issued and denied CSRs
        // deleted an hour after their verdict, pending ones after a day).
        "--controllers=csrsigning,csrcleaner".to_owned(),
        format!("--cluster-signing-cert-file={}", file(pki::CA_CERT)),
        format!("--cluster-signing-key-file={}", file(pki::CA_KEY)),
        format!("--cluster-signing-duration={signing_duration}"),
        "--leader-elect=false".to_owned(),
        "--secure-port=0".to_owned(),
        "--use-service-account-credentials=false".to_owned(),
    ];
    Supervised::spawn("kube-controller-manager", &bin, &args, cp.dir(), None)
}

/// The process tree of one node's namespaces: `$1` node dir, `$2` kubelet binary, `$3`
/// pause image archive, then the kubelet's arguments. Runs as PID 1 of the namespace. When
/// containerd or kubelet exits, or when it gets SIGTERM (`unshare --kill-child=SIGTERM`: the
/// watchdog killed `unshare`, i.e. the node was dropped or the test process died), it kills
/// every process of the namespace, waits until they are gone, removes the cgroups they ran
/// in (containerd puts pod containers in `/sys/fs/cgroup/*/k8s.io/<id>`, outside any
/// namespace) and touches `$1/stopped`. Mounts vanish with the namespace.
const NODE_INIT: &str = r#"
dir=$1 kubelet=$2 pause=$3; shift 3
stop() {
  trap '' TERM INT HUP
  mine=$(cat /proc/self/cgroup)
  theirs=$(cat /proc/[0-9]*/cgroup 2>/dev/null | sort -u)
  kill -KILL -1 2>/dev/null
  for _ in $(seq 400); do
    procs=(/proc/[0-9]*)
    [ "${#procs[@]}" -le 1 ] && break
    wait 2>/dev/null
    sleep 0.025
  done
  while IFS=: read -r _ controllers path; do
    [ -n "$path" ] && [ "$path" != / ] || continue
    case "$controllers" in
      "") base=/sys/fs/cgroup/unified; [ -e /sys/fs/cgroup/cgroup.controllers ] && base=/sys/fs/cgroup ;;
      name=*) base=/sys/fs/cgroup/${controllers#name=} ;;
      *) base=/sys/fs/cgroup/$controllers ;;
    esac
    # The container's cgroup, then its parents as long as they are empty.
    while [ "$path" != / ] && rmdir "$base$path" 2>/dev/null; do path=$(dirname "$path"); done
  done < <(grep -vxF "$mine" <<<"$theirs")
  touch "$dir/stopped"
  exit "$1"
}
trap 'stop 0' TERM INT HUP
for m in /run /var/lib /var/log; do
  mount -n -t tmpfs -o mode=0755 csr-approver-node "$m" || { echo "cannot mount tmpfs on $m"; stop 101; }
done
mkdir -p /run/containerd /run/lock
containerd --config "$dir/containerd.toml" >"$dir/containerd.log" 2>&1 &
for _ in $(seq 400); do [ -S "$dir/containerd.sock" ] && break; sleep 0.025; done
ctr --address "$dir/containerd.sock" --namespace k8s.io images import "$pause" >"$dir/pause-import.log" 2>&1 \
  || { echo "pause image import failed:"; cat "$dir/pause-import.log"; stop 102; }
"$kubelet" "$@" >"$dir/kubelet.log" 2>&1 &
wait -n
echo "containerd or kubelet exited with status $?"
stop 1
"#;

/// The credential in a node's `--bootstrap-kubeconfig`.
#[derive(Clone, Debug)]
pub enum Bootstrap {
    /// A fresh kubeadm-style bootstrap token (`system:bootstrap:<id>`).
    Token,
    /// A bound token (TokenRequest, 1 h) of ServiceAccount `namespace/name`, bound to
    /// ClusterRole `system:node-bootstrapper` — OpenShift's
    /// `openshift-machine-config-operator/node-bootstrapper`.
    ServiceAccount { namespace: String, name: String },
}

impl Bootstrap {
    /// OpenShift's node-bootstrapper ServiceAccount.
    pub fn openshift() -> Bootstrap {
        Bootstrap::ServiceAccount {
            namespace: "openshift-machine-config-operator".to_owned(),
            name: "node-bootstrapper".to_owned(),
        }
    }
}

/// A real kubelet + containerd. Dropping it kills both and waits until they are gone.
pub struct RealNode {
    addresses: tokio::task::JoinHandle<()>,
    process: Supervised,
    name: String,
    ip: Ipv4Addr,
    kubelet_port: u16,
    dir: PathBuf,
    bootstrap_user: String,
}

impl RealNode {
    /// Creates a bootstrap token for the node and starts its containerd and kubelet
    /// (`--hostname-override=<name> --node-ip=<ip>`). Returns once they are spawned; the
    /// kubelet then makes its client CSR within a fraction of a second.
    pub async fn start(cp: &ControlPlane, name: &str, ip: Ipv4Addr) -> RealNode {
        Self::start_with(cp, name, ip, Bootstrap::Token).await
    }

    /// [`RealNode::start`] with the bootstrap credential `bootstrap`. Each node gets a
    /// directory of its own, also when an earlier node of the same name and IP ran (a host
    /// re-provisioned under its name: nothing of the earlier kubelet's state is reused).
    pub async fn start_with(
        cp: &ControlPlane,
        name: &str,
        ip: Ipv4Addr,
        bootstrap: Bootstrap,
    ) -> RealNode {
        assert!(
            ip.is_loopback(),
            "a test node's IP must be a loopback address, not {ip}"
        );
        let assets = asset_dir().unwrap_or_else(|e| panic!("{e}"));
        let dir = (1..)
            .map(|n| match n {
                1 => cp.dir().join(format!("node-{name}-{ip}")),
                n => cp.dir().join(format!("node-{name}-{ip}-{n}")),
            })
            .find(|d| !d.exists())
            .expect("a free node directory");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let (bootstrap_user, token) = match bootstrap {
            Bootstrap::Token => {
                let (id, token) = create_bootstrap_token(cp).await;
                (format!("system:bootstrap:{id}"), token)
            }
            Bootstrap::ServiceAccount { namespace, name } => {
                let token = service_account_bootstrap_token(cp, &namespace, &name).await;
                (format!("system:serviceaccount:{namespace}:{name}"), token)
            }
        };

        let kubelet_port = free_port(ip);
        let healthz_port = free_port(ip);
        let path = |p: &str| dir.join(p).display().to_string();
        let pause_image = pause_image();
        write(
            &dir,
            "containerd.toml",
            &containerd_config(&dir, &pause_image),
        );
        fs::create_dir_all(dir.join("cni")).expect("create cni dir");
        write(
            &dir.join("cni"),
            "10-loopback.conflist",
            r#"{"cniVersion": "0.4.0", "name": "loopback", "plugins": [{"type": "loopback"}]}"#,
        );
        let ca = path("ca.crt");
        write(&dir, "ca.crt", cp.ca_pem());
        let bootstrap = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": cp.server_url(), "certificate-authority": ca}}],
            "users": [{"name": "bootstrap", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "bootstrap"}}],
            "current-context": "test",
        });
        write(&dir, "bootstrap.kubeconfig", &bootstrap.to_string());
        let config = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": ip.to_string(),
            "port": kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": ip.to_string(),
            "healthzPort": healthz_port,
            "containerRuntimeEndpoint": format!("unix://{}", path("containerd.sock")),
            // What this machine needs (../shared/ECOSYSTEM.md, "Real nodes").
            "failCgroupV1": false,
            "cgroupsPerQOS": false,
            "enforceNodeAllocatable": [],
            "failSwapOn": false,
            "cgroupDriver": "cgroupfs",
            // The TLS bootstrap csr-approver is for.
            "serverTLSBootstrap": true,
            "rotateCertificates": true,
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": true},
                "x509": {"clientCAFile": ca},
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": path("pod-logs"),
            "volumePluginDir": path("volume-plugins"),
            // Fast status updates: the serving certificate waits for the first one.
            "nodeStatusUpdateFrequency": "1s",
            "nodeStatusReportFrequency": "1s",
            "syncFrequency": "5s",
            // No eviction on a busy CI disk.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        });
        write(&dir, "kubelet.yaml", &config.to_string());

        let mut args: Vec<String> = [
            "--pid",
            "--fork",
            "--kill-child=SIGTERM",
            "--mount-proc",
            "--mount",
            "--propagation",
            "private",
            "--",
            "bash",
            "-c",
            NODE_INIT,
            "node-init",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(dir.display().to_string());
        args.push(assets.join("bin/kubelet").display().to_string());
        args.push(assets.join("pause.oci.tar").display().to_string());
        args.extend([
            format!("--config={}", path("kubelet.yaml")),
            format!("--bootstrap-kubeconfig={}", path("bootstrap.kubeconfig")),
            format!("--kubeconfig={}", path("kubelet.kubeconfig")),
            format!("--cert-dir={}", path("pki")),
            format!("--root-dir={}", path("kubelet")),
            format!("--hostname-override={name}"),
            format!("--node-ip={ip}"),
            "--v=2".to_owned(),
        ]);
        let process = Supervised::spawn("node", Path::new("unshare"), &args, &dir, None)
            .unwrap_or_else(|e| panic!("start node {name}: {e}"));
        let addresses = tokio::spawn(report_addresses(
            cp.admin_client(),
            name.to_owned(),
            ip,
            kubelet_port,
        ));
        RealNode {
            addresses,
            process,
            name: name.to_owned(),
            ip,
            kubelet_port,
            dir,
            bootstrap_user,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The kubelet's HTTPS port on [`RealNode::ip`].
    pub fn kubelet_port(&self) -> u16 {
        self.kubelet_port
    }

    /// `https://<ip>:<port>`: the kubelet's API, as `kubectl logs/exec` reach it.
    pub fn kubelet_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.kubelet_port)
    }

    /// The requester the apiserver records for this node's bootstrap credential.
    pub fn bootstrap_user(&self) -> String {
        self.bootstrap_user.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `Some(description)` once the node's process tree has exited on its own.
    pub fn exited(&self) -> Option<String> {
        self.process.exited()
    }

    /// The last `lines` lines of the node's, containerd's and kubelet's logs.
    pub fn log_tail(&self, lines: usize) -> String {
        let tail = |file: &str| {
            let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            format!(
                "--- last lines of {}:\n{}",
                file,
                all[all.len().saturating_sub(lines)..].join("\n")
            )
        };
        format!(
            "{}\n{}\n{}",
            self.process.log_tail(lines),
            tail("containerd.log"),
            tail("kubelet.log")
        )
    }

    /// Stops the node and waits (≤ 10 s) until its processes are gone and their cgroups
    /// removed.
    pub fn stop(&mut self) {
        self.addresses.abort();
        self.process.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.dir.join("stopped").exists() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "node {}: not stopped 10 s after its kill\n{}",
            self.name,
            self.log_tail(10)
        );
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets the addresses of the Node `name` registered by the kubelet serving on `port`, once,
/// as a cloud provider's node controller would (see the module documentation).
async fn report_addresses(client: Client, name: String, ip: Ipv4Addr, port: u16) {
    let nodes: Api<Node> = Api::all(client);
    let patch = Patch::Merge(serde_json::json!({"status": {"addresses": [
        {"type": "InternalIP", "address": ip.to_string()},
        {"type": "Hostname", "address": name},
    ]}}));
    loop {
        if let Ok(Some(node)) = nodes.get_opt(&name).await {
            let status = node.status.unwrap_or_default();
            let ours = status
                .daemon_endpoints
                .and_then(|d| d.kubelet_endpoint)
                .is_some_and(|e| e.port == i32::from(port));
            if ours && status.addresses.unwrap_or_default().is_empty() {
                if nodes
                    .patch_status(&name, &PatchParams::default(), &patch)
                    .await
                    .is_ok()
                {
                    return;
                }
            } else if ours {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a kubeadm-style bootstrap token (Secret `kube-system/bootstrap-token-<id>`) and
/// binds `system:bootstrappers` to `system:node-bootstrapper`; returns (id, `<id>.<secret>`).
pub async fn create_bootstrap_token(cp: &ControlPlane) -> (String, String) {
    let admin = cp.admin_client();
    let id = random_token_chars(6);
    let secret = random_token_chars(16);
    let data: BTreeMap<String, String> = [
        ("token-id", id.as_str()),
        ("token-secret", secret.as_str()),
        ("usage-bootstrap-authentication", "true"),
        ("auth-extra-groups", KUBEADM_TOKEN_GROUP),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let object = Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{id}")),
            namespace: Some("kube-system".to_owned()),
            ..Default::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".to_owned()),
        string_data: Some(data),
        ..Default::default()
    };
    Api::<Secret>::namespaced(admin.clone(), "kube-system")
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create bootstrap token Secret: {e}"));
    bind_cluster_role(
        &admin,
        "kubeadm:kubelet-bootstrap",
        "system:node-bootstrapper",
        vec![Subject {
            kind: "Group".to_owned(),
            name: BOOTSTRAPPERS_GROUP.to_owned(),
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            namespace: None,
        }],
    )
    .await;
    (id.clone(), format!("{id}.{secret}"))
}

/// A bound token (TokenRequest, 1 h) of ServiceAccount `namespace/name`, creating the
/// namespace and the account if absent and binding it to ClusterRole
/// `system:node-bootstrapper` (create and read CSRs), as OpenShift does for its
/// node-bootstrapper.
pub async fn service_account_bootstrap_token(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
) -> String {
    let admin = cp.admin_client();
    super::ensure_namespace(&admin, namespace).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => {}
        Err(e) if super::is_status(&e, 409) => {}
        Err(e) => panic!("create ServiceAccount {namespace}/{name}: {e}"),
    }
    bind_cluster_role(
        &admin,
        &format!("{namespace}:{name}:node-bootstrapper"),
        "system:node-bootstrapper",
        vec![super::service_account_subject(namespace, name)],
    )
    .await;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
        .status
        .expect("TokenRequest has a status")
        .token
}

/// `n` characters of `[a-z0-9]` (bootstrap token syntax), unpredictable enough for tests.
fn random_token_chars(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut x = RandomState::new().hash_one(nanos);
    (0..n)
        .map(|i| {
            if i % 12 == 11 {
                x = RandomState::new().hash_one(x);
            }
            let c = ALPHABET[(x % 36) as usize];
            x /= 36;
            char::from(c)
        })
        .collect()
}

/// A port free on `ip` right now.
fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("bind {ip}:0: {e}"))
}

fn write(dir: &Path, name: &str, contents: &str) {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// containerd 1.6 configuration: everything under `dir`, CRI with a loopback-only CNI and
/// the local pause image, `restrict_oom_score_adj` (root here lacks CAP_SYS_RESOURCE).
fn containerd_config(dir: &Path, pause_image: &str) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd-root"
state = "{d}/containerd-state"
# opt would create /opt/containerd; the others are snapshotters this host cannot use.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{d}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"#
    )
}

/// The policy real-node scenes run under: bootstrap tokens may ask for new nodes, no Machine
/// API, serving SANs checked against the Nodes' own status (loopback allowed: the nodes live
/// on 127.0.0.x), and each of `hosts` in the inventory with its IP and name.
pub fn inventory_policy(hosts: &[(&str, std::net::Ipv4Addr)]) -> String {
    let mut policy = String::from(
        "client:\n  bootstrappers:\n    - group: system:bootstrappers\nmachines:\n  apiGroups: []\n\
         serving:\n  addressSources: [Node]\n  allowLoopback: true\ninventory:\n",
    );
    for (name, ip) in hosts {
        policy.push_str(&format!(
            "  - name: {name}\n    addresses: [{ip}, {name}]\n"
        ));
    }
    policy
}
