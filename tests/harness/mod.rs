//! A real Kubernetes control plane (etcd + kube-apiserver on loopback) for integration tests.
//!
//! ```ignore
//! mod harness;
//!
//! #[tokio::test]
//! async fn approves_something() {
//!     let cp = harness::shared();          // one control plane per test binary
//!     let admin = cp.admin_client();       // needs a tokio runtime (kube spawns a task)
//!     let bootstrapper = cp.impersonating_client(
//!         "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper",
//!         &["system:serviceaccounts", "system:serviceaccounts:openshift-machine-config-operator"],
//!     );
//!     // ...
//! }
//! ```
//!
//! * [`ControlPlane::start`] is **blocking** (it polls `/readyz` on a private thread with its
//!   own runtime), so it may be called from sync code or from inside `#[tokio::test]`.
//! * Binaries come from `$CSR_APPROVER_ASSETS/bin` or else from
//!   `scripts/control-plane-assets.sh`; if neither works, start **panics** with the script's
//!   output: these tests never skip silently.
//! * Nothing outlives the test binary: each server runs under a watchdog that kills it when
//!   the test process goes away (see `process.rs`), and dropping a [`ControlPlane`] kills both
//!   servers and removes its temporary directory. `CSR_APPROVER_KEEP_CONTROL_PLANE=1` keeps
//!   the directory (certificates, logs, etcd data) for debugging.
//! * The whole cluster is shared by the tests of a binary: use unique object names.
#![allow(dead_code)]

pub mod node;
mod pki;
pub mod pod;
pub mod process;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};

pub use pki::kubelet_client_csr_pem;
use process::Supervised;

/// How long kube-apiserver may take to report `/readyz` (generous: 2-core machines).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Signer of kubelet client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Signer of kubelet serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Field manager used by the harness for server-side apply.
const FIELD_MANAGER: &str = "csr-approver-tests";

/// What a control plane runs besides etcd and kube-apiserver.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Real kubelets may join (see [`node`]): bootstrap-token authentication,
    /// `--kubelet-certificate-authority` (the cluster CA) with the admin certificate as the
    /// apiserver's kubelet client, and kube-controller-manager running only the CSR signers
    /// (never an approver) with the cluster CA and [`node::SIGNING_DURATION`].
    pub real_nodes: bool,
}

/// A running etcd + kube-apiserver pair. Dropping it stops both and removes its directory.
pub struct ControlPlane {
    // Field order is drop order: controller-manager and apiserver first, then etcd, then
    // the directory.
    controller_manager: Option<Supervised>,
    apiserver: Supervised,
    etcd: Supervised,
    /// etcd processes killed and replaced by [`ControlPlane::start_etcd`]: kept (dead)
    /// until the end, since the first one's watchdog removes the directory when dropped.
    retired_etcd: Vec<Supervised>,
    workspace: Workspace,
    server_url: String,
    ca_pem: String,
    ca_der: Vec<u8>,
    kubeconfig: PathBuf,
    startup: Duration,
    tokens: AtomicUsize,
    /// How the apiserver was started, to restart it the same way.
    apiserver_command: (PathBuf, Vec<String>),
    /// How etcd was started, likewise.
    etcd_command: (PathBuf, Vec<String>),
}

/// The temporary directory; removed on drop unless `CSR_APPROVER_KEEP_CONTROL_PLANE` is set.
struct Workspace {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("control plane directory kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The control plane shared by all tests of this test binary, started on first use.
/// If starting fails, every caller panics with the same message.
pub fn shared() -> &'static ControlPlane {
    static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    match SHARED.get_or_init(ControlPlane::try_start) {
        Ok(cp) => cp,
        Err(e) => panic!("{e}"),
    }
}

impl ControlPlane {
    /// Starts a fresh, private control plane and waits until it is ready (blocking; a few
    /// seconds when the binaries are cached). Panics with diagnostics if it cannot.
    pub fn start() -> ControlPlane {
        Self::start_with(Options::default())
    }

    /// [`ControlPlane::start`] with `options`.
    pub fn start_with(options: Options) -> ControlPlane {
        Self::try_start_with(options).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start() -> Result<ControlPlane, String> {
        Self::try_start_with(Options::default())
    }

    /// [`ControlPlane::start`] with more kube-apiserver flags (e.g. a short
    /// `--min-request-timeout`, which makes it cut every watch within seconds).
    pub fn start_with_apiserver_flags(flags: &[&str]) -> ControlPlane {
        Self::try_start_inner(Options::default(), flags).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start_with(options: Options) -> Result<ControlPlane, String> {
        Self::try_start_inner(options, &[])
    }

    fn try_start_inner(options: Options, extra_flags: &[&str]) -> Result<ControlPlane, String> {
        let begin = Instant::now();
        let bin = asset_dir()?.join("bin");
        let assets_done = begin.elapsed();

        let keep = std::env::var_os("CSR_APPROVER_KEEP_CONTROL_PLANE").is_some_and(|v| v != "0");
        let dir = tempfile::Builder::new()
            .prefix("csr-approver-cp-")
            .tempdir()
            .map_err(|e| format!("cannot create temp dir: {e}"))?
            .keep();
        let workspace = Workspace {
            dir: dir.clone(),
            keep,
        };
        let pki = pki::generate(&dir)?;
        let [etcd_port, peer_port, api_port] = free_ports()?;
        let server_url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(&kubeconfig, &server_url, &dir)?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = [
            "--name=test".to_owned(),
            format!("--data-dir={}", dir.join("etcd").display()),
            "--unsafe-no-fsync".to_owned(),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=test={peer_url}"),
            "--log-level=warn".to_owned(),
        ];
        let cleanup = (!keep).then_some(dir.as_path());
        let etcd = Supervised::spawn("etcd", &bin.join("etcd"), &etcd_args, &dir, cleanup)?;
        let etcd_command = (bin.join("etcd"), etcd_args.to_vec());

        let file = |name: &str| dir.join(name).display().to_string();
        let mut apiserver_args = vec![
            "--advertise-address=127.0.0.1".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={api_port}"),
            format!("--etcd-servers={etcd_url}"),
            format!("--client-ca-file={}", file(pki::CA_CERT)),
            format!("--tls-cert-file={}", file(pki::SERVING_CERT)),
            format!("--tls-private-key-file={}", file(pki::SERVING_KEY)),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            format!("--service-account-key-file={}", file(pki::SA_PUB)),
            format!("--service-account-signing-key-file={}", file(pki::SA_KEY)),
            "--authorization-mode=Node,RBAC".to_owned(),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            // The default "lease" reconciler refuses a loopback advertise address.
            "--endpoint-reconciler-type=none".to_owned(),
        ];
        if options.real_nodes {
            apiserver_args.extend(node::apiserver_args(&dir));
        }
        apiserver_args.extend(extra_flags.iter().map(|f| f.to_string()));
        let apiserver = Supervised::spawn(
            "kube-apiserver",
            &bin.join("kube-apiserver"),
            &apiserver_args,
            &dir,
            None,
        )?;
        let apiserver_command = (bin.join("kube-apiserver"), apiserver_args.clone());

        let mut cp = ControlPlane {
            controller_manager: None,
            apiserver,
            etcd,
            retired_etcd: Vec::new(),
            workspace,
            server_url,
            ca_pem: pki.ca_pem,
            ca_der: pki.ca_der,
            kubeconfig,
            startup: Duration::ZERO,
            tokens: AtomicUsize::new(0),
            apiserver_command,
            etcd_command,
        };
        let servers_started = begin.elapsed();
        cp.wait_ready()?;
        if options.real_nodes {
            cp.controller_manager = Some(node::spawn_controller_manager(&cp)?);
        }
        cp.startup = begin.elapsed();
        eprintln!(
            "control plane ready at {} in {:.2?} (assets {:.2?}, certificates+spawn {:.2?}, \
             until /readyz {:.2?}); dir {}",
            cp.server_url,
            cp.startup,
            assets_done,
            servers_started - assets_done,
            cp.startup - servers_started,
            cp.dir().display()
        );
        Ok(cp)
    }

    /// Kills kube-apiserver, keeps it down for `downtime`, starts it again with the same
    /// flags and state (etcd keeps running) and waits until it is ready: a control-plane
    /// outage as clients see it.
    pub fn restart_apiserver(&mut self, downtime: Duration) {
        self.stop_apiserver();
        std::thread::sleep(downtime);
        self.start_apiserver();
    }

    /// Kills kube-apiserver (etcd keeps running): clients get "connection refused" until
    /// [`ControlPlane::start_apiserver`].
    pub fn stop_apiserver(&mut self) {
        self.apiserver.stop();
    }

    /// Starts kube-apiserver again with the same flags and state and waits until it is
    /// ready (blocking).
    pub fn start_apiserver(&mut self) {
        let (program, args) = &self.apiserver_command;
        self.apiserver = Supervised::spawn("kube-apiserver", program, args, self.dir(), None)
            .unwrap_or_else(|e| panic!("restart kube-apiserver: {e}"));
        self.wait_ready()
            .unwrap_or_else(|e| panic!("kube-apiserver after restart: {e}"));
    }

    /// Freezes etcd (SIGSTOP): kube-apiserver still accepts requests, but every one that
    /// needs etcd hangs — an etcd outage as the apiserver's clients see it.
    pub fn pause_etcd(&self) {
        self.etcd
            .signal("STOP")
            .unwrap_or_else(|e| panic!("pause etcd: {e}"));
    }

    /// Kills etcd (SIGKILL; its data stays): kube-apiserver answers, but every request that
    /// needs etcd fails until [`ControlPlane::start_etcd`].
    pub fn kill_etcd(&self) {
        self.etcd
            .signal("KILL")
            .unwrap_or_else(|e| panic!("kill etcd: {e}"));
    }

    /// Starts etcd again on the same data and ports, after [`ControlPlane::kill_etcd`].
    pub fn start_etcd(&mut self) {
        // The dead one's exit and PID files would be read as the new one's.
        for stale in ["etcd.exit", "etcd.exit.pid"] {
            let _ = std::fs::remove_file(self.dir().join(stale));
        }
        let (program, args) = &self.etcd_command;
        let started = Supervised::spawn("etcd", program, args, self.dir(), None)
            .unwrap_or_else(|e| panic!("restart etcd: {e}"));
        let dead = std::mem::replace(&mut self.etcd, started);
        self.retired_etcd.push(dead);
    }

    /// Lets a paused etcd run again (SIGCONT).
    pub fn resume_etcd(&self) {
        self.etcd
            .signal("CONT")
            .unwrap_or_else(|e| panic!("resume etcd: {e}"));
    }

    fn wait_ready(&self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(Mutex::new(String::from("no answer yet")));
        let config = self.admin_config();
        let poller = {
            let (stop, last_error) = (stop.clone(), last_error.clone());
            std::thread::spawn(move || poll_readyz(config, tx, &stop, &last_error))
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let result = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => break Ok(()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err("readiness poller died".to_owned());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(exit) = self.etcd.exited().or_else(|| self.apiserver.exited()) {
                break Err(exit);
            }
            if Instant::now() >= deadline {
                break Err(format!("/readyz not OK after {READY_TIMEOUT:?}"));
            }
        };
        stop.store(true, Ordering::Relaxed);
        let _ = poller.join();
        result.map_err(|why| {
            let last = last_error.lock().map(|s| s.clone()).unwrap_or_default();
            format!(
                "control plane did not become ready: {why}\nlast /readyz result: {last}\n{}\n{}",
                self.etcd.log_tail(30),
                self.apiserver.log_tail(40)
            )
        })
    }

    /// `https://127.0.0.1:<port>`
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The cluster CA certificate (PEM); it signed the serving and admin certificates.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// An admin (`system:masters`) kubeconfig using file paths for certificates; usable by
    /// `kubectl --kubeconfig` and by child processes (e.g. the controller binary).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The temporary directory: certificates, `etcd.log`, `kube-apiserver.log`, etcd data.
    pub fn dir(&self) -> &Path {
        &self.workspace.dir
    }

    /// From the call to `start` until `/readyz` answered OK.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The last `lines` lines of both servers' logs, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "{}\n{}",
            self.etcd.log_tail(lines),
            self.apiserver.log_tail(lines)
        )
    }

    /// A client config authenticated with the admin client certificate.
    pub fn admin_config(&self) -> Config {
        let mut config = self.anonymous_config();
        config.auth_info.client_certificate = Some(self.file(pki::ADMIN_CERT));
        config.auth_info.client_key = Some(self.file(pki::ADMIN_KEY));
        config
    }

    /// A client config trusting the cluster CA, with no credentials.
    pub fn anonymous_config(&self) -> Config {
        let mut config = Config::new(self.server_url.parse().expect("server URL is a valid URI"));
        config.root_cert = Some(vec![self.ca_der.clone()]);
        config
    }

    /// `system:masters` client. Must be called inside a tokio runtime (and used only there).
    pub fn admin_client(&self) -> Client {
        client(self.admin_config())
    }

    /// A client that authenticates as admin and impersonates `user` with `groups`, so the
    /// apiserver records exactly that identity (e.g. as a CSR's `spec.username`/`groups`) and
    /// RBAC is evaluated for it. The apiserver adds `system:authenticated` to the groups.
    pub fn impersonating_client(&self, user: &str, groups: &[&str]) -> Client {
        let mut config = self.admin_config();
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|g| (*g).to_owned()).collect());
        client(config)
    }

    /// A client authenticated with a real bound token (TokenRequest API, 1 h) of the
    /// ServiceAccount `namespace/name`, creating the namespace and the account if absent.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Client {
        let admin = self.admin_client();
        ensure_namespace(&admin, namespace).await;
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        ignore_conflict(accounts.create(&PostParams::default(), &account).await)
            .unwrap_or_else(|e| panic!("create ServiceAccount {namespace}/{name}: {e}"));
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
            .status
            .expect("TokenRequest has a status")
            .token;
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        let path = self.dir().join(format!("token-{n}-{namespace}-{name}"));
        fs::write(&path, token).expect("write token file");
        let mut config = self.anonymous_config();
        config.auth_info.token_file = Some(path.display().to_string());
        client(config)
    }

    /// Applies the Machine CRDs in `tests/fixtures/crds/` (OpenShift `machine.openshift.io`
    /// and Cluster API `cluster.x-k8s.io`, both v1beta1) and waits until they are Established.
    /// Idempotent (server-side apply), so every test that needs them may call it.
    pub async fn install_machine_crds(&self) {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crds");
        let mut files: Vec<PathBuf> = fs::read_dir(&fixtures)
            .unwrap_or_else(|e| panic!("read {}: {e}", fixtures.display()))
            .map(|entry| entry.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        self.install_crds(files).await;
    }

    /// Applies one CRD fixture of `tests/fixtures/crds/` (e.g. `machines.cluster.x-k8s.io`)
    /// and waits until it is Established: a CRD installed while the controller runs.
    pub async fn install_crd(&self, name: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/crds")
            .join(format!("{name}.yaml"));
        self.install_crds(vec![path]).await;
    }

    /// Applies the CRDs in `files` and waits until they are Established.
    async fn install_crds(&self, files: Vec<PathBuf>) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.admin_client());
        let mut names = Vec::new();
        for path in files {
            let text = fs::read_to_string(&path).expect("read CRD fixture");
            let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not a CRD: {e}", path.display()));
            let name = crd.metadata.name.clone().expect("CRD has a name");
            crds.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
            names.push(name);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for name in names {
            loop {
                let crd = crds
                    .get(&name)
                    .await
                    .unwrap_or_else(|e| panic!("get CRD {name}: {e}"));
                let established = crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
                if established {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "CRD {name} not Established after 30 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Runs `kubectl --kubeconfig <admin kubeconfig> args...` (blocking) and returns its output.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn file(&self, name: &str) -> String {
        self.dir().join(name).display().to_string()
    }
}

/// `machine.openshift.io/v1beta1` `Machine` (namespaced), for `Api::<DynamicObject>::namespaced_with`.
pub fn openshift_machine_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("machine.openshift.io", "v1beta1", "Machine"),
        "machines",
    )
}

/// `cluster.x-k8s.io/v1beta1` `Machine` (namespaced), for `Api::<DynamicObject>::namespaced_with`.
pub fn capi_machine_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cluster.x-k8s.io", "v1beta1", "Machine"),
        "machines",
    )
}

/// A kubelet client-certificate CSR object named `name` for node `node`
/// (signer `kubernetes.io/kube-apiserver-client-kubelet`, usages digital signature + client
/// auth, fresh ECDSA P-256 PKCS#10 with `O=system:nodes, CN=system:node:<node>`).
pub fn kubelet_client_csr(name: &str, node: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(kubelet_client_csr_pem(node).into_bytes()),
            signer_name: KUBELET_CLIENT_SIGNER.to_owned(),
            usages: Some(vec![
                "digital signature".to_owned(),
                "client auth".to_owned(),
            ]),
            ..Default::default()
        },
        status: None,
    }
}

/// Creates namespace `name` unless it exists.
pub async fn ensure_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    ignore_conflict(namespaces.create(&PostParams::default(), &ns).await)
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// Server-side applies ClusterRoleBinding `binding` of `cluster_role` to `subjects`.
pub async fn bind_cluster_role(
    client: &Client,
    binding: &str,
    cluster_role: &str,
    subjects: Vec<Subject>,
) {
    let crb = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(binding.to_owned()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: cluster_role.to_owned(),
        },
        subjects: Some(subjects),
    };
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(
            binding,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crb),
        )
        .await
        .unwrap_or_else(|e| panic!("apply ClusterRoleBinding {binding}: {e}"));
}

/// An RBAC subject for ServiceAccount `namespace/name`.
pub fn service_account_subject(namespace: &str, name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: name.to_owned(),
        namespace: Some(namespace.to_owned()),
        api_group: None,
    }
}

/// True for a kube API error with HTTP status `code`.
pub fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

fn ignore_conflict<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(e),
    }
}

fn client(config: Config) -> Client {
    Client::try_from(config).expect("build kube client (inside a tokio runtime?)")
}

/// The directory holding `bin/etcd` and `bin/kube-apiserver`.
fn asset_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CSR_APPROVER_ASSETS") {
        let dir = PathBuf::from(dir);
        for b in ["etcd", "kube-apiserver"] {
            if !dir.join("bin").join(b).is_file() {
                return Err(format!("CSR_APPROVER_ASSETS={}: no bin/{b}", dir.display()));
            }
        }
        return Ok(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane-assets.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if !out.status.success() || last.is_empty() {
        return Err(format!(
            "{} failed ({}); the control-plane tests need its binaries \
             (or set CSR_APPROVER_ASSETS)\n--- stderr:\n{stderr}--- stdout:\n{stdout}",
            script.display(),
            out.status
        ));
    }
    Ok(PathBuf::from(last))
}

/// Three distinct free loopback ports (held together while choosing, then released).
fn free_ports() -> Result<[u16; 3], String> {
    let bind = || TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"));
    let listeners = [bind()?, bind()?, bind()?];
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    Ok([
        port(&listeners[0])?,
        port(&listeners[1])?,
        port(&listeners[2])?,
    ])
}

fn write_kubeconfig(path: &Path, server_url: &str, dir: &Path) -> Result<(), String> {
    let file = |name: &str| dir.join(name).display().to_string();
    // JSON is YAML, so kubectl and kube::Config both read this.
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": server_url,
            "certificate-authority": file(pki::CA_CERT),
        }}],
        "users": [{"name": "admin", "user": {
            "client-certificate": file(pki::ADMIN_CERT),
            "client-key": file(pki::ADMIN_KEY),
        }}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    });
    let text = serde_json::to_string_pretty(&kubeconfig).map_err(|e| e.to_string())?;
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs on its own thread (with its own runtime) until `/readyz` answers `ok` or `stop` is set.
fn poll_readyz(config: Config, ready: mpsc::Sender<()>, stop: &AtomicBool, last: &Mutex<String>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            *last.lock().expect("lock") = format!("cannot build runtime: {e}");
            return;
        }
    };
    runtime.block_on(async {
        let client = client(config);
        while !stop.load(Ordering::Relaxed) {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("valid request");
            let outcome =
                tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await;
            match outcome {
                Ok(Ok(body)) if body.trim() == "ok" => {
                    let _ = ready.send(());
                    return;
                }
                Ok(Ok(body)) => *last.lock().expect("lock") = body,
                Ok(Err(e)) => *last.lock().expect("lock") = e.to_string(),
                Err(_) => *last.lock().expect("lock") = "timed out after 5 s".to_owned(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Polls `probe` every 50 ms until it returns Some or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
