//! `csr-approver run`: the wiring. HTTP first (probes answer while the API server is
//! away), then the Lease, the watches (each a readiness source; the Machine CRD watches
//! start and stop the Machine watches) and the policy, and last the controller that
//! reconciles CSRs until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt, future};
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::context::Context;
use super::explain::explain_recent_decisions;
use super::gauges::{refresh_gauges, refresh_source_gauges};
use super::reconcile::{error_policy, reconcile};
use super::{ControllerError, RunConfig, client};
use crate::cluster::{self, ClusterCache, Trigger, WatchedCsr};
use crate::http::{self, Readiness};
use crate::leader::{self, Leadership, LeaseConfig};
use crate::metrics::Metrics;
use crate::policy_watch::{PolicyHolder, PolicyWatch};

/// Whether the process was asked to stop (SIGTERM, Ctrl-C).
#[derive(Clone)]
struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Resolves once the process is asked to stop.
    fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut stopped = self.0.clone();
        async move {
            // An error means the sender is gone: nothing will ask any more.
            let _ = stopped.wait_for(|s| *s).await;
        }
    }
}

/// `csr-approver run`.
pub async fn run(config: RunConfig) -> Result<(), ControllerError> {
    let client = client(config.kubeconfig.as_deref()).await?;
    let metrics = Metrics::new()?;
    let readiness = Arc::new(Readiness::default());
    let cache = Arc::new(ClusterCache::default());
    let policy = Arc::new(PolicyHolder::default());
    let recorder = Context::recorder(client.clone(), Some(config.identity.clone()));
    let (trigger, triggered) = mpsc::unbounded();
    let (reconcile_all, reconcile_all_requests) = mpsc::unbounded::<()>();
    let stop_signal = stop_signal();

    let http_task = serve_http(
        config.http_addr,
        http::router(metrics.clone(), readiness.clone(), {
            let (cache, policy, metrics) = (cache.clone(), policy.clone(), metrics.clone());
            let readiness = readiness.clone();
            Arc::new(move || {
                refresh_gauges(&cache, &policy, &metrics);
                refresh_source_gauges(&readiness, &metrics);
            })
        }),
        stop_signal.clone(),
    )
    .await?;

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

    // Every source registers with readiness before its watch starts; a source found later
    // (a Machine API installed while we run) registers then, and takes readiness away until
    // it has listed.
    let csr_source = readiness.source("CertificateSigningRequests");
    watch_inventory(&client, &cache, &trigger, &readiness);
    readiness.set_started();
    // Reconciles while not ready decide nothing: look at every CSR each time readiness
    // comes (back).
    tokio::spawn({
        let (readiness, reconcile_all) = (readiness.clone(), reconcile_all.clone());
        async move {
            loop {
                readiness.ready().await;
                tracing::info!("every source has listed and a policy is in force: deciding");
                if reconcile_all.unbounded_send(()).is_err() {
                    return;
                }
                readiness.not_ready().await;
                tracing::warn!(
                    waiting_for = %readiness.waiting_for(),
                    "not deciding until every source has listed"
                );
            }
        }
    });
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

    let (reader, writer) = reflector::store();
    let (issued, issued_notices) = mpsc::unbounded();
    let csr_stream = cluster::track_csrs(
        watcher::watcher(
            Api::<WatchedCsr>::all(client.clone()),
            cluster::watch_config(),
        )
        .backoff(cluster::WatchBackoff::default())
        .map_ok(WatchedCsr::unwrap_event),
        cache.clone(),
        trigger,
        csr_source,
        issued,
    )
    .try_filter_map(|event| future::ready(Ok(cluster::for_the_store(event))))
    .reflect(writer)
    .applied_objects();

    let context = Arc::new(Context::new(
        client,
        cache,
        policy,
        metrics,
        recorder,
        leadership.gate.clone(),
        readiness,
    ));
    tokio::spawn(super::certificates::record_issued(
        context.clone(),
        issued_notices,
    ));
    // "Look at everything again" (ready, leadership won, policy changed): every CSR in the
    // store, which holds those awaiting a decision, and the recent decisions of ours that
    // may lack their Event, which it does not hold.
    let look_again = reconcile_all_requests.inspect({
        let context = context.clone();
        move |()| {
            let context = context.clone();
            tokio::spawn(async move { explain_recent_decisions(&context).await });
        }
    });
    Controller::for_stream(csr_stream, reader)
        .reconcile_on(triggered)
        .reconcile_all_on(look_again)
        .graceful_shutdown_on(stop_signal.stopped())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;

    // The controller has stopped: no reconcile runs any more; give the Lease up.
    stop(leadership, http_task).await
}

/// Gives the Lease up and waits for the HTTP server to finish its graceful shutdown.
async fn stop(leadership: Leadership, http_task: JoinHandle<()>) -> Result<(), ControllerError> {
    leadership.release(Duration::from_secs(5)).await;
    let _ = http_task.await;
    Ok(())
}

/// SIGTERM or Ctrl-C, listened for from the start: SIGTERM must stop a replica still
/// waiting for the API server too.
fn stop_signal() -> StopSignal {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    StopSignal(stopped)
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

/// Binds `/metrics`, `/healthz` and `/readyz` before the first API call, so probes
/// answer while the API server is away.
async fn serve_http(
    addr: std::net::SocketAddr,
    app: axum::Router,
    stop_signal: StopSignal,
) -> Result<JoinHandle<()>, ControllerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ControllerError::Http { addr, source })?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop_signal.stopped())
            .await
        {
            tracing::error!(%error, "HTTP server failed");
        }
    }))
}

/// The watches that keep the inventory current: the Service default/kubernetes, the
/// NodeIdentity records, Nodes, each Machine API while its CRD exists, and the API
/// server's endpoints (kubeadm's ConfigMaps; OpenShift's Infrastructure while its CRD
/// exists). Each registers its readiness source before this returns.
fn watch_inventory(
    client: &Client,
    cache: &Arc<ClusterCache>,
    trigger: &Trigger,
    readiness: &Arc<Readiness>,
) {
    tokio::spawn(cluster::watch_kubernetes_service(
        client.clone(),
        cache.clone(),
        trigger.clone(),
        readiness.source("Service default/kubernetes"),
    ));
    tokio::spawn(cluster::watch_identities(
        client.clone(),
        cache.clone(),
        trigger.clone(),
        readiness.source("NodeIdentity records"),
    ));
    tokio::spawn(cluster::watch_nodes(
        client.clone(),
        cache.clone(),
        trigger.clone(),
        readiness.source("Nodes"),
    ));
    for group in cluster::MACHINE_API_GROUPS {
        tokio::spawn(cluster::watch_machine_api(
            client.clone(),
            group,
            cache.clone(),
            trigger.clone(),
            readiness.clone(),
            readiness.source(cluster::machine_crd_source(group)),
        ));
    }
    cluster::watch_kubeadm_endpoints(client, cache, trigger, readiness);
    cluster::watch_infrastructure_api(client, cache, trigger, readiness);
}
