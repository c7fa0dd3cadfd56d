//! The running controller: one reconcile per CSR — gather facts from the caches, `decide`,
//! act (write the verdict when leading and enforcing), explain (Event, log, metric).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::approval::{self, Written};
use crate::cluster::{self, ClusterCache, SyncTracker};
use crate::decision::{
    CLIENT_SIGNER, CsrFacts, Decision, NODE_USER_PREFIX, Reason, SERVING_SIGNER, Verdict,
    count_new_nodes_approved, decide, max_new_nodes, max_pending,
};
use crate::evidence::Wanted;
use crate::gather::{self, Reading};
use crate::http::{self, Readiness};
use crate::inventory::CsrState;
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::policy_watch::{PolicyHolder, PolicyWatch};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("HTTP server on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Approval(#[from] approval::ApprovalError),
}

/// Everything `csr-approver run` is configured with.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub policy_configmap: String,
    pub http_addr: SocketAddr,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_duration_seconds: u64,
    pub identity: String,
}

/// What one reconcile needs; built once in `run`.
pub struct Context {
    client: Client,
    csrs: Api<CertificateSigningRequest>,
    cache: Arc<ClusterCache>,
    policy: Arc<PolicyHolder>,
    metrics: Metrics,
    recorder: Recorder,
    /// Open while this replica holds the Lease and renewed it recently enough (the fence).
    leader: leader::WriteGate,
    /// Open once every watch the decision reads has listed and a policy is in force.
    readiness: Arc<Readiness>,
    /// The last decision explained per CSR, so a requeue repeating it adds no Event.
    explained: Mutex<HashMap<String, (&'static str, Reason)>>,
    /// The write failures explained per CSR (by uid) and cause: one Warning Event for each,
    /// not one per 5-second retry.
    failed_writes: Mutex<HashSet<(String, &'static str)>>,
    /// Serialises verdict writes so the duplicate and flood rules see each write before
    /// the next decision that depends on them.
    write_lock: tokio::sync::Mutex<()>,
}

/// Builds a client from a kubeconfig file, or from the in-cluster/default configuration.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, ControllerError> {
    let config = kube_config(kubeconfig).await?;
    Client::try_from(config).map_err(|e| ControllerError::Config(e.to_string()))
}

/// The client configuration from a kubeconfig file, or in-cluster/default.
pub async fn kube_config(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Config, ControllerError> {
    match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| ControllerError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| ControllerError::Config(format!("{}: {e}", path.display())))
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ControllerError::Config(e.to_string())),
    }
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let _timer = ctx.metrics.reconcile_duration.start_timer();
    // Standby replicas keep their caches warm and decide nothing; winning the Lease (or
    // renewing it again after a fence) reconciles everything.
    if !ctx.leader.may_write() {
        return Ok(Action::await_change());
    }
    // Fail closed: with a Node, Machine or CSR cache still empty, or no policy in force,
    // a decision could approve what the cluster forbids (a client CSR for a Node that
    // exists, a signer the policy disables). Nothing — no write, no Event — until ready;
    // becoming ready reconciles every CSR (see `run`).
    let Some(policy) = ctx.policy.get().filter(|_| ctx.readiness.is_ready()) else {
        tracing::debug!(
            csr = csr.metadata.name.as_deref().unwrap_or_default(),
            waiting_for = ctx.readiness.waiting_for(),
            "not deciding before ready"
        );
        return Ok(Action::await_change());
    };
    // A decision found written by csr-approver: explained already, or (its writer killed
    // between condition and Event) explained now.
    if let Some(written) = approval::written_decision(&csr) {
        explain_written(&ctx, &csr, &written).await;
        return Ok(Action::await_change());
    }
    let facts = crate::facts::csr_facts(&csr);
    let uid = csr.metadata.uid.as_deref();
    // The store may still hold the pending object we just approved; a reconcile queued
    // meanwhile must not judge it again (it would see its own Node and cry forgery).
    if ctx.cache.is_decided(&facts.name, uid) {
        return Ok(Action::await_change());
    }
    let mut decision = decide_now(&ctx, &facts, &policy);
    if let Some(wanted) = &decision.wants {
        gather_evidence(&ctx, wanted, &policy).await;
        decision = decide_now(&ctx, &facts, &policy);
    }
    if decision.verdict == Verdict::Ignore {
        tracing::debug!(csr = %facts.name, reason = %decision.reason, "ignored");
        return Ok(Action::await_change());
    }

    let writes = matches!(decision.verdict, Verdict::Approve | Verdict::Deny);
    if writes && !policy.is_dry_run() {
        let _guard = ctx.write_lock.lock().await;
        // Again at the last moment: the Lease may have gone stale meanwhile.
        if !ctx.leader.may_write() {
            return Ok(Action::await_change());
        }
        // Decide again under the lock: a write that just landed may change the answer.
        decision = decide_now(&ctx, &facts, &policy);
        if matches!(decision.verdict, Verdict::Approve | Verdict::Deny) {
            match approval::write_verdict(&ctx.csrs, &csr, &decision).await {
                Ok(Written::Done) => {
                    let state = if decision.verdict == Verdict::Approve {
                        observe_latency(&ctx.metrics, &facts);
                        CsrState::Approved
                    } else {
                        CsrState::Denied
                    };
                    ctx.cache.mark_decided(&facts.name, uid, state);
                }
                Ok(Written::AlreadyDecided(state)) => {
                    tracing::info!(csr = %facts.name, state = state.as_str(), "decided by someone else first; nothing written");
                    return Ok(Action::await_change());
                }
                Ok(Written::Gone) => {
                    tracing::info!(csr = %facts.name, "deleted or re-created since it was judged; nothing written");
                    return Ok(Action::await_change());
                }
                Err(error) => {
                    ctx.metrics.count_api_error("update");
                    explain_write_failure(&ctx, &csr, &facts, &decision, &error).await;
                    return Err(error.into());
                }
            }
        }
    }

    explain(&ctx, &csr, &facts, &decision, policy.is_dry_run()).await;
    Ok(match decision.verdict {
        Verdict::Wait => Action::requeue(requeue_after(decision.reason.class())),
        Verdict::Approve | Verdict::Deny | Verdict::Ignore => Action::await_change(),
    })
}

/// Requeue after a transient wait; watches on Nodes and Machines usually come first.
const RETRY_TRANSIENT: Duration = Duration::from_secs(30);
/// Requeue after a definitive refusal that is left pending (`deny: false`): only a change
/// in the cluster or the policy can alter it, and those trigger a reconcile themselves.
const RETRY_DEFINITIVE: Duration = Duration::from_secs(600);

fn requeue_after(class: crate::decision::ReasonClass) -> Duration {
    match class {
        crate::decision::ReasonClass::Definitive | crate::decision::ReasonClass::ForAnAdmin => {
            RETRY_DEFINITIVE
        }
        _ => RETRY_TRANSIENT,
    }
}

/// Reads the evidence a decision asked for and records it with when it was read.
async fn gather_evidence(ctx: &Context, wanted: &Wanted, policy: &Policy) {
    let service_ips = ctx.cache.read().kubernetes_service_ips().to_vec();
    let reading = gather::read(&ctx.client, wanted, policy, &service_ips).await;
    if let Some(error) = reading.error() {
        if let Reading::Lease(..) = reading {
            ctx.metrics.count_api_error("get");
        }
        tracing::info!(?wanted, %error, "evidence read on demand is no evidence");
    }
    ctx.cache.record(reading);
}

fn decide_now(ctx: &Context, facts: &CsrFacts, policy: &crate::policy::Policy) -> Decision {
    let inventory = ctx.cache.read();
    decide(facts, &inventory, policy, Timestamp::now())
}

fn observe_latency(metrics: &Metrics, facts: &CsrFacts) {
    if let Some(created) = facts.created {
        let seconds = Timestamp::now()
            .duration_since(created)
            .as_secs_f64()
            .max(0.0);
        metrics
            .approval_latency
            .with_label_values(&[crate::metrics::signer_label(&facts.signer_name)])
            .observe(seconds);
    }
}

/// One Event, one log line and one metric per distinct decision.
async fn explain(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    facts: &CsrFacts,
    decision: &Decision,
    dry_run: bool,
) {
    let key = (decision.verdict.as_str(), decision.reason);
    // By uid: a CSR deleted and re-created under the same name is a new request.
    let id = csr
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| facts.name.clone());
    let repeated = {
        let mut explained = ctx.explained.lock().unwrap_or_else(|p| p.into_inner());
        let previous = explained.insert(id, key);
        // Bounded: forgetting costs at most one repeated Event per pending CSR.
        if explained.len() > 10_000 {
            explained.clear();
        }
        previous == Some(key)
    };
    if repeated {
        tracing::debug!(csr = %facts.name, verdict = decision.verdict.as_str(), reason = %decision.reason, "unchanged decision");
        return;
    }
    tracing::info!(
        csr = %facts.name,
        signer = %facts.signer_name,
        requester = %facts.username,
        node = decision.node.as_deref().unwrap_or_default(),
        verdict = decision.verdict.as_str(),
        reason = %decision.reason,
        dry_run,
        "{}",
        decision.message
    );
    ctx.metrics.count_decision(&facts.signer_name, decision);
    if let Some(event) = approval::event_for(decision, dry_run) {
        publish(ctx, csr, &event).await;
    }
}

/// Publishes an Event about a CSR, counting a failure (by cause) and never retrying it: when
/// RBAC is gone the Event fails too, and a retry loop would only add load.
async fn publish(ctx: &Context, csr: &CertificateSigningRequest, event: &Event) -> bool {
    match approval::publish(&ctx.recorder, csr, event).await {
        Ok(()) => true,
        Err(error) => {
            ctx.metrics.count_api_error("create");
            ctx.metrics
                .count_write_failure("event", approval::failure_cause(&error));
            false
        }
    }
}

/// A verdict that could not be written: counted by cause, logged, and explained by a
/// Warning Event on the CSR once per cause (the reconcile retries every 5 s), so a lost
/// permission shows in `kubectl describe csr` and in `check`, not only in the log.
async fn explain_write_failure(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    facts: &CsrFacts,
    decision: &Decision,
    error: &approval::ApprovalError,
) {
    let cause = error.cause();
    ctx.metrics.count_write_failure("approval", cause);
    let id = csr
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| facts.name.clone());
    let first = {
        let mut failed = ctx.failed_writes.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: forgetting costs at most one repeated Event per failing CSR.
        if failed.len() > 10_000 {
            failed.clear();
        }
        failed.insert((id, cause))
    };
    if !first {
        return;
    }
    tracing::warn!(csr = %facts.name, verdict = decision.verdict.as_str(), reason = %decision.reason, cause, %error, "could not write the verdict; retrying");
    publish(ctx, csr, &approval::failure_event(decision, error)).await;
}

/// How long after a decision was written a new leader still explains it if no Event does:
/// long enough for any takeover (a lease is seconds), short enough that a restart does
/// not list Events for the whole history of approved CSRs.
const EXPLAIN_WRITTEN_WITHIN: Duration = Duration::from_secs(600);

/// Explains a decision csr-approver wrote but (its writer killed between the condition and
/// the Event) may not have explained: once per CSR per process, for decisions of the last
/// ten minutes, when no csr-approver Event about the CSR says it already. Decisions this
/// process wrote were explained when written (`explained` holds them).
async fn explain_written(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    written: &approval::WrittenDecision,
) {
    let recent = written.at.is_some_and(|at| {
        Timestamp::now()
            .duration_since(at)
            .unsigned_abs()
            .le(&EXPLAIN_WRITTEN_WITHIN)
    });
    if !recent {
        return;
    }
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    let id = csr.metadata.uid.clone().unwrap_or_else(|| name.to_string());
    let first = {
        let mut explained = ctx.explained.lock().unwrap_or_else(|p| p.into_inner());
        // The marker of a decision explained (or checked) after the fact; a decided CSR
        // is never decided again, so it cannot be confused with a decision's key.
        let marker = (written.condition, Reason::AlreadyDecided);
        !explained.contains_key(&id) && explained.insert(id, marker).is_none()
    };
    if !first {
        return;
    }
    match approval::explained_already(&ctx.client, csr, written).await {
        Ok(true) => {
            tracing::debug!(csr = name, "written decision already explained");
        }
        Ok(false) => {
            tracing::info!(
                csr = name,
                condition = written.condition,
                "explaining a decision written by csr-approver that no Event explains (its writer stopped before publishing one)"
            );
            publish(ctx, csr, &approval::event_for_written(written)).await;
        }
        Err(error) => {
            // Unknown: publishing could duplicate an Event; a missing one is the lesser harm.
            ctx.metrics.count_api_error("list");
            tracing::warn!(csr = name, %error, "cannot tell whether an Event explains the decision written; not publishing one");
        }
    }
}

fn error_policy(
    csr: Arc<CertificateSigningRequest>,
    error: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(csr = csr.metadata.name.as_deref().unwrap_or_default(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Refreshes the gauges that describe the queue of pending CSRs.
fn refresh_gauges(cache: &ClusterCache, policy: &PolicyHolder, metrics: &Metrics) {
    let inventory = cache.read();
    let now = Timestamp::now();
    let mut oldest = 0.0f64;
    for signer in [CLIENT_SIGNER, SERVING_SIGNER] {
        let pending: Vec<_> = inventory
            .csrs()
            .filter(|c| c.signer == signer && c.state == CsrState::Pending)
            .collect();
        metrics
            .pending_csrs
            .with_label_values(&[signer])
            .set(pending.len() as f64);
        for c in pending {
            if let Some(created) = c.created {
                oldest = oldest.max(now.duration_since(created).as_secs_f64());
            }
        }
    }
    metrics.oldest_pending_age.set(oldest);
    let recovering = inventory
        .csrs()
        .filter(|c| c.signer == CLIENT_SIGNER && c.state == CsrState::Pending)
        .filter(|c| !c.requester.starts_with(NODE_USER_PREFIX))
        .filter(|c| {
            c.node_name
                .as_deref()
                .is_some_and(|n| inventory.node(n).is_some())
        })
        .count();
    // No policy in force: no threshold either (the gauge keeps 0).
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    if let Some(policy) = policy.get() {
        metrics
            .max_pending
            .set(gauge(max_pending(&inventory, &policy)));
        metrics
            .max_new_nodes
            .set(gauge(max_new_nodes(&inventory, &policy, now)));
    }
    metrics.recovery_pending.set(gauge(recovering));
    metrics
        .new_nodes_last_hour
        .set(gauge(count_new_nodes_approved(&inventory, now, "")));
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: no more writes, releasing the Lease");
}

/// `csr-approver run`.
pub async fn run(config: RunConfig) -> Result<(), ControllerError> {
    let client = client(config.kubeconfig.as_deref()).await?;
    let metrics = Metrics::new()?;
    let readiness = Arc::new(Readiness::default());
    let cache = Arc::new(ClusterCache::default());
    let policy = Arc::new(PolicyHolder::default());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "csr-approver".to_string(),
            instance: Some(config.identity.clone()),
        },
    );
    let (trigger, triggered) = mpsc::unbounded();
    let (reconcile_all, reconcile_all_requests) = mpsc::unbounded::<()>();

    let (stop, stopped) = watch::channel(false);
    let stop_signal = {
        let mut stopped = stopped.clone();
        move || async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    // From the start: SIGTERM must stop a replica still waiting for the API server too.
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });

    let app = http::router(metrics.clone(), readiness.clone(), {
        let (cache, policy, metrics) = (cache.clone(), policy.clone(), metrics.clone());
        Arc::new(move || refresh_gauges(&cache, &policy, &metrics))
    });
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| ControllerError::Http {
            addr: config.http_addr,
            source,
        })?;
    tracing::info!(addr = %config.http_addr, "serving /metrics, /healthz, /readyz");
    let http_task = tokio::spawn({
        let stop_signal = stop_signal.clone();
        async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop_signal())
                .await
            {
                tracing::error!(%error, "HTTP server failed");
            }
        }
    });

    let leadership = if config.leader_election {
        leader::elect(
            client.clone(),
            LeaseConfig {
                namespace: config.namespace.clone(),
                name: config.lease_name.clone(),
                identity: config.identity.clone(),
                duration_seconds: config.lease_duration_seconds,
            },
            metrics.clone(),
            reconcile_all.clone(),
        )
    } else {
        leader::always_leader(&metrics)
    };

    // The HTTP server is up before the first API call, so probes answer while the API
    // server is away: alive (/healthz), not ready (/readyz says what it waits for). Which
    // Machine APIs exist decides once which watches run, so only a definitive answer will
    // do — an unreachable API server is not "no Machine API", which would drop Machine
    // evidence for good: ask until it answers (exiting instead would only restart the
    // pod into CrashLoopBackOff during a control-plane restart).
    readiness.set_discovering(true);
    let machine_apis = tokio::select! {
        apis = cluster::discover_machine_apis_until_answered(&client) => apis,
        () = stop_signal.clone()() => {
            leadership.release(Duration::from_secs(5)).await;
            let _ = http_task.await;
            return Ok(());
        }
    };
    readiness.set_discovering(false);
    // CSRs, Nodes, the Service default/kubernetes, and each Machine API.
    let tracker = SyncTracker::new(3 + machine_apis.len(), {
        let readiness = readiness.clone();
        move || readiness.set_caches_synced()
    });
    // Reconciles before readiness decide nothing: look at every CSR once it is reached.
    tokio::spawn({
        let (readiness, reconcile_all) = (readiness.clone(), reconcile_all.clone());
        async move {
            readiness.ready().await;
            tracing::info!("every watch has listed and a policy is in force: deciding");
            let _ = reconcile_all.unbounded_send(());
        }
    });
    tokio::spawn(cluster::watch_kubernetes_service(
        client.clone(),
        cache.clone(),
        trigger.clone(),
        tracker.clone(),
    ));
    tokio::spawn(cluster::watch_nodes(
        client.clone(),
        cache.clone(),
        trigger.clone(),
        tracker.clone(),
    ));
    for resource in machine_apis {
        tokio::spawn(cluster::watch_machines(
            client.clone(),
            resource,
            cache.clone(),
            trigger.clone(),
            tracker.clone(),
        ));
    }
    tokio::spawn(
        PolicyWatch {
            client: client.clone(),
            namespace: config.namespace.clone(),
            name: config.policy_configmap.clone(),
            holder: policy.clone(),
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            recorder: recorder.clone(),
            reconcile_all: reconcile_all.clone(),
        }
        .run(),
    );

    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let csr_stream = cluster::track_csrs(
        watcher::watcher(csrs.clone(), cluster::watch_config())
            .backoff(crate::cluster::WatchBackoff::default())
            .modify(|csr: &mut CertificateSigningRequest| csr.managed_fields_mut().clear())
            .reflect(writer),
        cache.clone(),
        trigger.clone(),
        tracker,
    )
    .applied_objects();

    let context = Arc::new(Context {
        client: client.clone(),
        csrs,
        cache,
        policy,
        metrics,
        recorder,
        leader: leadership.gate.clone(),
        readiness,
        explained: Mutex::new(HashMap::new()),
        failed_writes: Mutex::new(HashSet::new()),
        write_lock: tokio::sync::Mutex::new(()),
    });
    Controller::for_stream(csr_stream, reader)
        .reconcile_on(triggered)
        .reconcile_all_on(reconcile_all_requests)
        .graceful_shutdown_on(stop_signal())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;

    // The controller has stopped: no reconcile runs any more; give the Lease up.
    leadership.release(Duration::from_secs(5)).await;
    let _ = http_task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;
    use kube::client::Body;

    type Handle = tower_test::mock::Handle<::http::Request<Body>, ::http::Response<Body>>;

    fn context(readiness: Arc<Readiness>, policy: Arc<PolicyHolder>) -> (Arc<Context>, Handle) {
        let (service, handle) =
            tower_test::mock::pair::<::http::Request<Body>, ::http::Response<Body>>();
        let client = Client::new(service, "default");
        let context = Context {
            client: client.clone(),
            csrs: Api::all(client.clone()),
            cache: Arc::new(ClusterCache::default()),
            policy,
            metrics: Metrics::new().unwrap(),
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "csr-approver".to_string(),
                    instance: None,
                },
            ),
            leader: leader::WriteGate::always(),
            readiness,
            explained: Mutex::new(HashMap::new()),
            failed_writes: Mutex::new(HashSet::new()),
            write_lock: tokio::sync::Mutex::new(()),
        };
        (Arc::new(context), handle)
    }

    /// A pending CSR from a stranger: any policy in force has something to say about it.
    fn csr() -> Arc<CertificateSigningRequest> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "stranger", "uid": "u-1", "resourceVersion": "7"},
                "spec": {
                    "request": "",
                    "signerName": CLIENT_SIGNER,
                    "usages": ["digital signature", "client auth"],
                    "username": "mallory"
                }
            }))
            .unwrap(),
        )
    }

    fn decisions(ctx: &Context) -> u64 {
        ctx.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("csr_approver_decisions_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    async fn assert_silent(ctx: Arc<Context>, handle: &mut Handle) {
        let action = reconcile(csr(), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::await_change());
        assert_eq!(decisions(&ctx), 0, "no decision before ready");
        let request = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await;
        assert!(
            request.is_err(),
            "no API call (write or Event) before ready"
        );
    }

    #[tokio::test]
    async fn nothing_is_decided_before_the_caches_sync() {
        let readiness = Arc::new(Readiness::default());
        let policy = Arc::new(PolicyHolder::default());
        policy.offer::<String>(Ok(crate::policy::Policy::default()));
        readiness.set_policy_loaded();
        let (ctx, mut handle) = context(readiness.clone(), policy);
        assert_silent(ctx.clone(), &mut handle).await;

        // Once ready, the same CSR is decided (the Event's POST fails: nobody answers).
        drop(handle);
        readiness.set_caches_synced();
        let _ = reconcile(csr(), ctx.clone()).await.unwrap();
        assert_eq!(decisions(&ctx), 1);
    }

    #[tokio::test]
    async fn nothing_is_decided_without_a_policy_in_force() {
        let readiness = Arc::new(Readiness::default());
        readiness.set_caches_synced();
        let policy = Arc::new(PolicyHolder::default());
        // An invalid policy at start-up puts none in force.
        policy.offer::<String>(Err("serving.allowedIPRanges[0]: invalid CIDR".to_string()));
        let (ctx, mut handle) = context(readiness, policy);
        assert_silent(ctx, &mut handle).await;
    }

    fn status(code: u16, reason: &str) -> ::http::Response<Body> {
        let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "code": code, "reason": reason, "message": format!("{reason} says the apiserver")});
        ::http::Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    fn ok(body: serde_json::Value) -> ::http::Response<Body> {
        ::http::Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    /// The next request (method, path and query, JSON body), answered with `reply`.
    async fn next(
        handle: &mut Handle,
        reply: ::http::Response<Body>,
    ) -> (String, String, serde_json::Value) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(2), handle.next_request())
            .await
            .expect("a request within 2 s")
            .expect("service open");
        let method = request.method().to_string();
        // The path, and `?query` when there is one.
        let uri = match request.uri().query().filter(|q| !q.is_empty()) {
            Some(query) => format!("{}?{query}", request.uri().path()),
            None => request.uri().path().to_string(),
        };
        let bytes = request.into_body().collect_bytes().await.unwrap();
        send.send_response(reply);
        (
            method,
            uri,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn assert_no_request(handle: &mut Handle, why: &str) {
        let request = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
        assert!(request.is_err(), "{why}");
    }

    fn metric(ctx: &Context, line_start: &str) -> f64 {
        ctx.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(line_start))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn approve() -> Decision {
        Decision {
            verdict: Verdict::Approve,
            reason: Reason::NewNodeMachine,
            message: "Machine openshift-machine-api/stranger vouches".to_string(),
            node: Some("stranger".to_string()),
            wants: None,
        }
    }

    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

    #[tokio::test]
    async fn a_failing_write_is_one_warning_event_per_cause_and_counted_by_cause() {
        let (ctx, mut handle) = context(
            Arc::new(Readiness::default()),
            Arc::new(PolicyHolder::default()),
        );
        let csr = csr();
        let facts = crate::facts::csr_facts(&csr);
        let forbidden = || approval::ApprovalError::Write {
            name: "stranger".into(),
            source: kube::Error::Api(
                kube::core::Status::failure("stranger is forbidden", "Forbidden")
                    .with_code(403)
                    .boxed(),
            ),
        };
        let task = {
            let (ctx, csr, facts) = (ctx.clone(), csr.clone(), facts.clone());
            tokio::spawn(async move {
                explain_write_failure(&ctx, &csr, &facts, &approve(), &forbidden()).await;
            })
        };
        let (method, uri, event) = next(&mut handle, ok(serde_json::json!({}))).await;
        task.await.unwrap();
        assert_eq!((method.as_str(), uri.as_str()), ("POST", EVENTS));
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], approval::FAILURE_REASON);
        assert_eq!(event["regarding"]["name"], "stranger");
        let note = event["note"].as_str().unwrap();
        assert!(
            note.contains("HTTP 403 Forbidden: stranger is forbidden"),
            "{note}"
        );

        // The 5-second retries fail the same way: counted, not announced again.
        for _ in 0..3 {
            // Bounded: a repeated Event would wait for an answer no one sends.
            tokio::time::timeout(
                Duration::from_secs(1),
                explain_write_failure(&ctx, &csr, &facts, &approve(), &forbidden()),
            )
            .await
            .expect("no second Event for the same cause");
        }
        assert_no_request(&mut handle, "one Event per cause, not one per retry").await;
        assert_eq!(
            metric(
                &ctx,
                r#"csr_approver_write_failures_total{cause="forbidden",write="approval"}"#
            ),
            4.0,
            "{}",
            ctx.metrics.render()
        );

        // A new cause is news; this time the Event itself is refused too (no RBAC in
        // default either): counted as a failed Event write, and not retried.
        let unavailable = approval::ApprovalError::Write {
            name: "stranger".into(),
            source: kube::Error::Api(
                kube::core::Status::failure("etcd is away", "ServiceUnavailable")
                    .with_code(503)
                    .boxed(),
            ),
        };
        let task = {
            let (ctx, csr, facts) = (ctx.clone(), csr.clone(), facts.clone());
            tokio::spawn(async move {
                explain_write_failure(&ctx, &csr, &facts, &approve(), &unavailable).await;
            })
        };
        let (_, uri, event) = next(&mut handle, status(403, "Forbidden")).await;
        task.await.unwrap();
        assert_eq!(uri, EVENTS);
        assert!(
            event["note"].as_str().unwrap().contains("HTTP 503"),
            "{event}"
        );
        assert_no_request(&mut handle, "a refused Event is not retried").await;
        assert_eq!(
            metric(
                &ctx,
                r#"csr_approver_write_failures_total{cause="forbidden",write="event"}"#
            ),
            1.0
        );
        assert_eq!(
            metric(
                &ctx,
                r#"csr_approver_write_failures_total{cause="unavailable",write="approval"}"#
            ),
            1.0
        );
    }

    /// A CSR csr-approver approved `ago` ago, as its condition shows.
    fn approved_by_us(ago: Duration) -> CertificateSigningRequest {
        let at = Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "worker-1-client", "uid": "u-9", "resourceVersion": "8"},
            "spec": {"request": "", "signerName": CLIENT_SIGNER},
            "status": {"conditions": [{
                "type": "Approved", "status": "True", "reason": approval::APPROVED_REASON,
                "message": "csr-approver: NewNodeMachine: Machine openshift-machine-api/worker-1",
                "lastUpdateTime": at.to_string()
            }]}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_decision_written_but_not_explained_is_explained_once() {
        let (ctx, mut handle) = context(
            Arc::new(Readiness::default()),
            Arc::new(PolicyHolder::default()),
        );
        let csr = approved_by_us(Duration::from_secs(20));
        let written = approval::written_decision(&csr).unwrap();
        let task = {
            let (ctx, csr, written) = (ctx.clone(), csr.clone(), written.clone());
            tokio::spawn(async move { explain_written(&ctx, &csr, &written).await })
        };
        let (method, uri, _) = next(&mut handle, ok(serde_json::json!({"items": []}))).await;
        assert_eq!(method, "GET");
        assert!(
            uri.starts_with("/api/v1/namespaces/default/events?")
                && uri.contains("involvedObject.name%3Dworker-1-client"),
            "{uri}"
        );
        let (method, uri, event) = next(&mut handle, ok(serde_json::json!({}))).await;
        task.await.unwrap();
        assert_eq!((method.as_str(), uri.as_str()), ("POST", EVENTS));
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["reason"], "Approved");
        assert_eq!(
            event["note"],
            "NewNodeMachine: Machine openshift-machine-api/worker-1"
        );
        // Seen again (a re-list, a policy change): nothing more, not even a list.
        explain_written(&ctx, &csr, &written).await;
        assert_no_request(&mut handle, "explained once per process").await;
    }

    #[tokio::test]
    async fn a_written_decision_an_event_explains_or_an_old_one_gets_no_event() {
        let (ctx, mut handle) = context(
            Arc::new(Readiness::default()),
            Arc::new(PolicyHolder::default()),
        );
        // Explained by the replica that wrote it.
        let csr = approved_by_us(Duration::from_secs(20));
        let written = approval::written_decision(&csr).unwrap();
        let task = {
            let (ctx, csr, written) = (ctx.clone(), csr.clone(), written.clone());
            tokio::spawn(async move { explain_written(&ctx, &csr, &written).await })
        };
        let existing = serde_json::json!({"items": [{
            "metadata": {"name": "worker-1-client.1", "namespace": "default"},
            "involvedObject": {"kind": "CertificateSigningRequest", "name": "worker-1-client", "uid": "u-9"},
            "reason": "Approved", "type": "Normal", "reportingComponent": "csr-approver",
            "message": "NewNodeMachine: Machine openshift-machine-api/worker-1"
        }]});
        let _ = next(&mut handle, ok(existing)).await;
        task.await.unwrap();
        assert_no_request(&mut handle, "no second Approved Event").await;

        // Decided an hour ago: outside the window, not even looked up.
        let old = approved_by_us(Duration::from_secs(3600));
        let mut other = old.clone();
        other.metadata.uid = Some("u-10".into());
        explain_written(&ctx, &other, &approval::written_decision(&other).unwrap()).await;
        assert_no_request(&mut handle, "an old decision is history").await;
    }
}
