//! `csr-approver simulate`: N kubelets joining a cluster, as the demo, the end-to-end
//! checks and the benchmarks need them. Each node: Machine (when a Machine API is
//! installed) → client CSR as the bootstrapper → Node with addresses → serving CSR as
//! `system:node:<n>`. Optional forged CSRs must stay unapproved: each is done when it is
//! decided (denied) or explained (csr-approver's Warning Event), not after a timeout, and
//! all are read again at the end. Progress goes to stderr; per-phase latency is reported.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Semaphore, oneshot};

use crate::decision::{CLIENT_SIGNER, SERVING_SIGNER};
use crate::inventory::CsrState;
use crate::policy::{OPENSHIFT_MACHINE_GROUP, OPENSHIFT_NODE_BOOTSTRAPPER};

pub const MACHINE_NAMESPACE: &str = "openshift-machine-api";
const RUN_LABEL: &str = "csr-approver.io/simulation";

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("generating a key or CSR: {0}")]
    Crypto(#[from] rcgen::Error),
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct SimulateConfig {
    pub nodes: usize,
    pub forged: usize,
    pub prefix: String,
    pub concurrency: usize,
    pub timeout: Duration,
    /// Use Machines when the OpenShift Machine API is installed.
    pub machines: bool,
}

/// Latency percentiles of one phase, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseStats {
    pub phase: &'static str,
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl PhaseStats {
    fn of(phase: &'static str, mut samples: Vec<Duration>) -> PhaseStats {
        samples.sort();
        let pick = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index].as_secs_f64() * 1000.0
        };
        PhaseStats {
            phase,
            count: samples.len(),
            p50_ms: pick(0.50),
            p95_ms: pick(0.95),
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    pub nodes: usize,
    pub joined: usize,
    pub used_machines: bool,
    pub phases: Vec<PhaseStats>,
    pub wall_seconds: f64,
    pub approvals_per_second: f64,
    pub forged: usize,
    pub forged_approved: Vec<String>,
    pub failures: Vec<String>,
}

impl SimulationReport {
    pub fn succeeded(&self) -> bool {
        self.forged_approved.is_empty() && self.failures.is_empty() && self.joined == self.nodes
    }

    pub fn render_table(&self) -> String {
        let mut out = format!(
            "{} of {} nodes joined in {:.2}s ({:.1} approvals/s){}\n\n",
            self.joined,
            self.nodes,
            self.wall_seconds,
            self.approvals_per_second,
            if self.used_machines {
                ", with Machines"
            } else {
                ", inventory only (no Machine API)"
            }
        );
        out.push_str(&format!(
            "{:<28} {:>6} {:>10} {:>10} {:>10} {:>10}\n",
            "PHASE", "COUNT", "P50 ms", "P95 ms", "P99 ms", "MAX ms"
        ));
        for p in &self.phases {
            out.push_str(&format!(
                "{:<28} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1}\n",
                p.phase, p.count, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms
            ));
        }
        out.push_str(&format!(
            "\nforged CSRs submitted: {}, approved: {}{}\n",
            self.forged,
            self.forged_approved.len(),
            if self.forged_approved.is_empty() {
                " (good)".to_string()
            } else {
                format!(" — {:?}", self.forged_approved)
            }
        ));
        for failure in &self.failures {
            out.push_str(&format!("FAILED: {failure}\n"));
        }
        out
    }
}

/// Approval waits: CSR name → who to tell when it is decided.
type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<CsrState>>>>;

/// Forged CSRs' waits: CSR name → who to tell the note of the Warning Event that explains
/// why csr-approver left it pending.
type Explainers = Arc<Mutex<HashMap<String, oneshot::Sender<String>>>>;

/// How the wait for a CSR ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waited {
    Decided(CsrState),
    /// Left pending, with a Warning Event saying why (its reason and note).
    Explained(String),
    TimedOut,
}

/// What each forgery (`index % 6`) is, as progress names it.
const FORGERIES: [&str; 6] = [
    "system:masters in the subject",
    "a name no Machine expects",
    "a foreign IP",
    "an existing node's identity",
    "the API server's name",
    "a neighbour's IP, written into its own Node status",
];

struct Sim {
    admin: Client,
    bootstrapper: Client,
    base: Config,
    run_id: String,
    waiters: Waiters,
    explainers: Explainers,
    machine_api: Option<ApiResource>,
    timeout: Duration,
}

/// Whether a failed call is worth repeating, as a kubelet repeats it: anything but a
/// request the apiserver calls malformed (400, 422). That includes outages, broken
/// connections, overload — and 403, which a freshly restarted apiserver answers until its
/// RBAC cache has synced (the kubelet's bootstrap keeps trying through it too).
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => !matches!(status.code, 400 | 409 | 422),
        kube::Error::SerdeError(_) | kube::Error::FromUtf8(_) => false,
        _ => true,
    }
}

fn already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists")
}

/// Repeats `call` through transient failures (backoff 250 ms doubling to 2 s) until
/// `deadline`, as a kubelet keeps retrying through a control-plane outage. With
/// `created_by_us`, an `AlreadyExists` answer means an earlier attempt landed but its
/// response was lost: success.
async fn persist<T, F, Fut>(
    what: &str,
    deadline: Instant,
    created_by_us: bool,
    mut call: F,
) -> Result<Option<T>, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delays = crate::cluster::WatchBackoff::default();
    loop {
        match call().await {
            Ok(value) => return Ok(Some(value)),
            Err(error) if created_by_us && already_exists(&error) => return Ok(None),
            Err(error) if is_transient(&error) && Instant::now() < deadline => {
                tracing::debug!(what, %error, "transient failure; retrying");
                let delay = delays.next().unwrap_or(Duration::from_secs(2));
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(format!("{what}: {error}")),
        }
    }
}

fn impersonating(base: &Config, user: &str, groups: &[&str]) -> Result<Client, kube::Error> {
    let mut config = base.clone();
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Client::try_from(config)
}

fn node_ip(index: usize) -> Ipv4Addr {
    let i = index as u32 + 1;
    Ipv4Addr::new(10, 200 + ((i >> 16) & 0x1f) as u8, (i >> 8) as u8, i as u8)
}

fn csr_pem(
    node: &str,
    dns: &[String],
    ips: &[Ipv4Addr],
    org: &str,
) -> Result<Vec<u8>, rcgen::Error> {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, org);
    dn.push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name = dn;
    for name in dns {
        params
            .subject_alt_names
            .push(rcgen::SanType::DnsName(name.clone().try_into()?));
    }
    for ip in ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress((*ip).into()));
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(params.serialize_request(&key)?.pem()?.into_bytes())
}

impl Sim {
    /// Submits a CSR as `client` and waits until it is decided (or the timeout).
    async fn submit(
        &self,
        client: &Client,
        name: &str,
        signer: &str,
        usages: &[&str],
        pem: Vec<u8>,
    ) -> Result<(Duration, CsrState), String> {
        let (elapsed, waited) = self
            .submit_until(client, name, signer, usages, pem, None)
            .await?;
        match waited {
            Waited::Decided(state) => Ok((elapsed, state)),
            Waited::Explained(_) | Waited::TimedOut => Ok((elapsed, CsrState::Pending)),
        }
    }

    /// [`Sim::submit`]; with `explained`, the wait also ends when a Warning Event explains
    /// the CSR (a forgery left pending is done then: waiting out the timeout would tell
    /// nothing more, and looks hung).
    async fn submit_until(
        &self,
        client: &Client,
        name: &str,
        signer: &str,
        usages: &[&str],
        pem: Vec<u8>,
        explained: Option<oneshot::Receiver<String>>,
    ) -> Result<(Duration, Waited), String> {
        let (tell, told) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), tell);
        let csr = CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some([(RUN_LABEL.to_string(), self.run_id.clone())].into()),
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
        let started = Instant::now();
        let api = Api::<CertificateSigningRequest>::all(client.clone());
        let post = PostParams::default();
        persist(
            &format!("create CSR {name}"),
            started + self.timeout,
            true,
            || api.create(&post, &csr),
        )
        .await?;
        let explained = async {
            match explained {
                Some(note) => note.await.ok(),
                None => None,
            }
        };
        let waited = tokio::select! {
            Ok(state) = told => Waited::Decided(state),
            Some(note) = explained => Waited::Explained(note),
            () = tokio::time::sleep(self.timeout) => Waited::TimedOut,
        };
        // Whichever ended the wait, the other waiter is left over.
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.explainers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok((started.elapsed(), waited))
    }

    async fn join(&self, name: String, ip: Ipv4Addr) -> Result<(Duration, Duration), String> {
        // Every step retries through outages until the run's timeout, as the machine
        // controller and the kubelet do.
        let deadline = Instant::now() + self.timeout;
        let (post, patch) = (PostParams::default(), PatchParams::default());
        if let Some(resource) = &self.machine_api {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.admin.clone(), MACHINE_NAMESPACE, resource);
            let mut machine = DynamicObject::new(&name, resource);
            machine.metadata.labels = Some([(RUN_LABEL.to_string(), self.run_id.clone())].into());
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
                api.patch_status(&name, &patch, &status)
            })
            .await?;
        }
        let pem = csr_pem(&name, &[], &[], "system:nodes").map_err(|e| e.to_string())?;
        let (client_latency, state) = self
            .submit(
                &self.bootstrapper,
                &format!("{name}-client"),
                CLIENT_SIGNER,
                &["digital signature", "client auth"],
                pem,
            )
            .await?;
        if state != CsrState::Approved {
            return Err(format!(
                "client CSR of {name} is {} after {:?}",
                state.as_str(),
                client_latency
            ));
        }
        // The kubelet registers its Node, then reports its addresses.
        let nodes: Api<Node> = Api::all(self.admin.clone());
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(RUN_LABEL.to_string(), self.run_id.clone())].into()),
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
            nodes.patch_status(&name, &patch, &status)
        })
        .await?;
        if let Some(resource) = &self.machine_api {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.admin.clone(), MACHINE_NAMESPACE, resource);
            let node_ref =
                Patch::Merge(json!({"status": {"nodeRef": {"kind": "Node", "name": name}}}));
            persist(&format!("Machine {name} nodeRef"), deadline, false, || {
                api.patch_status(&name, &patch, &node_ref)
            })
            .await?;
        }
        let node_client = impersonating(
            &self.base,
            &format!("system:node:{name}"),
            &["system:nodes"],
        )
        .map_err(|e| e.to_string())?;
        let pem = csr_pem(&name, std::slice::from_ref(&name), &[ip], "system:nodes")
            .map_err(|e| e.to_string())?;
        let (serving_latency, state) = self
            .submit(
                &node_client,
                &format!("{name}-serving"),
                SERVING_SIGNER,
                &["digital signature", "server auth"],
                pem,
            )
            .await?;
        if state != CsrState::Approved {
            return Err(format!(
                "serving CSR of {name} is {} after {:?}",
                state.as_str(),
                serving_latency
            ));
        }
        Ok((client_latency, serving_latency))
    }

    /// Forged CSRs: each breaks one rule and must never be approved. `victim` is the first
    /// node of the run and `neighbour` the second (its IP is `node_ip(1)`).
    async fn forge(
        &self,
        index: usize,
        victim: &str,
        neighbour: &str,
    ) -> Result<(String, Waited), String> {
        let name = format!("{}-forged-{index}", self.run_id);
        let client_usages = ["digital signature", "client auth"];
        let serving_usages = ["digital signature", "server auth"];
        let as_victim = || {
            impersonating(
                &self.base,
                &format!("system:node:{victim}"),
                &["system:nodes"],
            )
            .map_err(|e| e.to_string())
        };
        let (client, signer, usages, pem) = match index % 6 {
            // system:masters in the subject, from the bootstrapper.
            0 => (
                self.bootstrapper.clone(),
                CLIENT_SIGNER,
                client_usages,
                csr_pem(victim, &[], &[], "system:masters"),
            ),
            // The bootstrapper asking for an identity no machine expects.
            1 => (
                self.bootstrapper.clone(),
                CLIENT_SIGNER,
                client_usages,
                csr_pem(&format!("{victim}-intruder"), &[], &[], "system:nodes"),
            ),
            // A node asking for a serving certificate with another host's IP.
            2 => (
                as_victim()?,
                SERVING_SIGNER,
                serving_usages,
                csr_pem(victim, &[], &[Ipv4Addr::new(192, 0, 2, 1)], "system:nodes"),
            ),
            // The bootstrapper asking for the identity of a node that exists (its pods'
            // Secrets would follow).
            3 => (
                self.bootstrapper.clone(),
                CLIENT_SIGNER,
                client_usages,
                csr_pem(victim, &[], &[], "system:nodes"),
            ),
            // A node asking to be the API server for pods.
            4 => (
                as_victim()?,
                SERVING_SIGNER,
                serving_usages,
                csr_pem(
                    victim,
                    &["kubernetes.default.svc".to_string()],
                    &[node_ip(0)],
                    "system:nodes",
                ),
            ),
            // A node that writes its neighbour's IP into its own Node status, then asks
            // for a certificate for it.
            _ => {
                let status = json!({"status": {"addresses": [
                    {"type": "InternalIP", "address": node_ip(0).to_string()},
                    {"type": "Hostname", "address": victim},
                    {"type": "InternalIP", "address": node_ip(1).to_string()},
                ]}});
                Api::<Node>::all(as_victim()?)
                    .patch_status(victim, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .map_err(|e| format!("Node {victim} status, claiming {neighbour}'s IP: {e}"))?;
                (
                    as_victim()?,
                    SERVING_SIGNER,
                    serving_usages,
                    csr_pem(victim, &[], &[node_ip(1)], "system:nodes"),
                )
            }
        };
        let pem = pem.map_err(|e| e.to_string())?;
        let (explain, explained) = oneshot::channel();
        self.explainers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), explain);
        let (_, waited) = self
            .submit_until(&client, &name, signer, &usages, pem, Some(explained))
            .await?;
        Ok((name, waited))
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Calls `each` with every object the watch applies, retrying through watch errors.
async fn for_each_applied<K>(api: Api<K>, config: watcher::Config, mut each: impl FnMut(K))
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let stream = watcher::watcher(api, config).backoff(crate::cluster::WatchBackoff::default());
    let mut stream = std::pin::pin!(stream.applied_objects());
    while let Some(applied) = stream.next().await {
        match applied {
            Ok(object) => each(object),
            Err(error) => tracing::warn!(%error, "watch error; retrying"),
        }
    }
}

/// Watches this run's CSRs and wakes the waiter of each one that is decided.
async fn watch_decisions(admin: Client, run_id: String, waiters: Waiters) {
    let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={run_id}"));
    for_each_applied(
        Api::<CertificateSigningRequest>::all(admin),
        config,
        |csr| {
            let state = CsrState::of(&csr);
            if state == CsrState::Pending {
                return;
            }
            let name = csr.metadata.name.unwrap_or_default();
            if let Some(tell) = waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name)
            {
                let _ = tell.send(state);
            }
        },
    )
    .await;
}

/// Watches the Warning Events about CSRs (csr-approver records one for each CSR it leaves
/// pending) and hands the note to the forgery waiting for it.
async fn watch_explanations(admin: Client, explainers: Explainers) {
    let config = watcher::Config::default()
        .fields("involvedObject.kind=CertificateSigningRequest,type=Warning");
    for_each_applied(Api::<CoreEvent>::all(admin), config, |event| {
        let Some(name) = event.involved_object.name.as_deref() else {
            return;
        };
        if let Some(tell) = explainers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
        {
            let note = format!(
                "{}: {}",
                event.reason.as_deref().unwrap_or_default(),
                event.message.as_deref().unwrap_or_default()
            );
            let _ = tell.send(note);
        }
    })
    .await;
}

/// Prints how far the join is every 2 s, while it changes: a run of thousands of nodes
/// (or one held up by an outage) would otherwise be silent until its report.
async fn report_progress(nodes: usize, joined: Arc<AtomicUsize>, started: Instant) {
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = joined.load(Ordering::Relaxed);
        if now != last && now < nodes {
            eprintln!(
                "simulate: {now} of {nodes} nodes joined ({:.0?})",
                started.elapsed()
            );
            last = now;
        }
    }
}

async fn ensure_namespace(client: &Client, name: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn simulate(
    base: Config,
    config: SimulateConfig,
) -> Result<SimulationReport, SimulateError> {
    // Every forgery targets the first node; some also need a neighbour (an IP to steal).
    if config.forged > 0 && config.nodes < 2 {
        return Err(SimulateError::Failed(format!(
            "--forged {} needs at least 2 --nodes: the forgeries impersonate the first node and steal from the second",
            config.forged
        )));
    }
    let admin = Client::try_from(base.clone())?;
    let bootstrapper = impersonating(
        &base,
        OPENSHIFT_NODE_BOOTSTRAPPER,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:openshift-machine-config-operator",
        ],
    )?;
    let machine_api = if config.machines {
        match kube::discovery::group(&admin, OPENSHIFT_MACHINE_GROUP).await {
            Ok(group) => group.recommended_kind("Machine").map(|(r, _)| r),
            Err(_) => None,
        }
    } else {
        None
    };
    if machine_api.is_some() {
        ensure_namespace(&admin, MACHINE_NAMESPACE).await?;
    }
    let run_id = format!(
        "{}-{}",
        config.prefix,
        jiff::Timestamp::now().as_second() % 100_000
    );
    let waiters: Waiters = Arc::default();
    let explainers: Explainers = Arc::default();
    // Aborted however this function returns: a watch outliving its run would spin on a
    // closed client while the runtime shuts down.
    let _watch = AbortOnDrop(tokio::spawn(watch_decisions(
        admin.clone(),
        run_id.clone(),
        waiters.clone(),
    )));
    let _explanations = (config.forged > 0).then(|| {
        AbortOnDrop(tokio::spawn(watch_explanations(
            admin.clone(),
            explainers.clone(),
        )))
    });
    // Let the watch establish before the first CSR can be decided.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sim = Arc::new(Sim {
        admin,
        bootstrapper,
        base,
        run_id: run_id.clone(),
        waiters,
        explainers,
        machine_api,
        timeout: config.timeout,
    });

    let started = Instant::now();
    eprintln!(
        "simulate: {} nodes joining ({} at a time){}",
        config.nodes,
        config.concurrency.max(1),
        match config.forged {
            0 => String::new(),
            n => format!(", {n} forged CSRs once the first two have joined"),
        }
    );
    let joined_so_far = Arc::new(AtomicUsize::new(0));
    let _progress = AbortOnDrop(tokio::spawn(report_progress(
        config.nodes,
        joined_so_far.clone(),
        started,
    )));
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    // The forgeries impersonate the first node and steal from the second: they start as
    // soon as both have joined, and then race the rest of the join.
    let (first_two_done, first_two) = tokio::sync::watch::channel(0usize);
    let first_two_done = Arc::new(first_two_done);
    let mut tasks = Vec::new();
    for index in 0..config.nodes {
        let (sim, limit, done) = (sim.clone(), limit.clone(), first_two_done.clone());
        let joined_so_far = joined_so_far.clone();
        let name = format!("{run_id}-{index}");
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result = sim.join(name, node_ip(index)).await;
            joined_so_far.fetch_add(usize::from(result.is_ok()), Ordering::Relaxed);
            if index < 2 {
                done.send_modify(|n| *n += 1);
            }
            result
        }));
    }
    let victim = format!("{run_id}-0");
    let neighbour = format!("{run_id}-1");
    let forgeries: Vec<_> = (0..config.forged)
        .map(|i| {
            let (sim, victim, neighbour) = (sim.clone(), victim.clone(), neighbour.clone());
            let mut first_two = first_two.clone();
            tokio::spawn(async move {
                let _ = first_two.wait_for(|n| *n >= 2).await;
                sim.forge(i, &victim, &neighbour).await
            })
        })
        .collect();
    let mut client_latencies = Vec::new();
    let mut serving_latencies = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok((client, serving))) => {
                client_latencies.push(client);
                serving_latencies.push(serving);
            }
            Ok(Err(failure)) => failures.push(failure),
            Err(join_error) => failures.push(join_error.to_string()),
        }
    }
    let wall = started.elapsed();
    eprintln!(
        "simulate: {} of {} nodes joined in {:.1?}{}",
        client_latencies.len(),
        config.nodes,
        wall,
        match config.forged {
            0 => String::new(),
            n => format!(
                "; {n} forged CSRs: each must stay unapproved, done when csr-approver explains it (a Warning Event) or denies it, at most {}",
                humantime::format_duration(config.timeout)
            ),
        }
    );

    let mut forged_approved = Vec::new();
    let mut forged_names = Vec::new();
    for (index, forgery) in forgeries.into_iter().enumerate() {
        let what = FORGERIES[index % FORGERIES.len()];
        match forgery.await {
            Ok(Ok((name, waited))) => {
                let outcome = match &waited {
                    Waited::Decided(CsrState::Approved | CsrState::Issued) => {
                        forged_approved.push(name.clone());
                        "APPROVED — a forgery got through".to_string()
                    }
                    Waited::Decided(state) => state.as_str().to_string(),
                    Waited::Explained(note) => format!("left Pending — {note}"),
                    Waited::TimedOut => format!(
                        "still Pending after {}, and nothing explained why",
                        humantime::format_duration(config.timeout)
                    ),
                };
                eprintln!("  {name} ({what}): {outcome}");
                forged_names.push(name);
            }
            Ok(Err(failure)) => failures.push(failure),
            Err(join_error) => failures.push(join_error.to_string()),
        }
    }
    // A forgery is done once explained; one approved after that (which no rule allows)
    // is caught here, read again after the whole run.
    let csrs: Api<CertificateSigningRequest> = Api::all(sim.admin.clone());
    for name in forged_names {
        if forged_approved.contains(&name) {
            continue;
        }
        match csrs.get_opt(&name).await {
            Ok(Some(csr)) => {
                if matches!(CsrState::of(&csr), CsrState::Approved | CsrState::Issued) {
                    eprintln!("  {name}: APPROVED after it was explained");
                    forged_approved.push(name);
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(csr = name, %error, "could not read a forged CSR again"),
        }
    }

    let joined = serving_latencies.len();
    Ok(SimulationReport {
        nodes: config.nodes,
        joined,
        used_machines: sim.machine_api.is_some(),
        phases: vec![
            PhaseStats::of("client CSR → approved", client_latencies),
            PhaseStats::of("serving CSR → approved", serving_latencies),
        ],
        wall_seconds: wall.as_secs_f64(),
        approvals_per_second: if wall.is_zero() {
            0.0
        } else {
            (joined * 2) as f64 / wall.as_secs_f64()
        },
        forged: config.forged,
        forged_approved,
        failures,
    })
}
