//! `/metrics`, `/healthz` and `/readyz` on one port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Ready only once every watch has listed its objects and a policy is loaded.
#[derive(Debug, Default)]
pub struct Readiness {
    caches_synced: AtomicBool,
    policy_loaded: AtomicBool,
}

impl Readiness {
    pub fn set_caches_synced(&self) {
        self.caches_synced.store(true, Ordering::Release);
    }

    pub fn set_policy_loaded(&self) {
        self.policy_loaded.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.caches_synced.load(Ordering::Acquire) && self.policy_loaded.load(Ordering::Acquire)
    }
}

/// Refreshes gauges computed from the caches just before a scrape.
pub type ScrapeHook = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
struct HttpState {
    metrics: Metrics,
    readiness: Arc<Readiness>,
    before_scrape: ScrapeHook,
}

pub fn router(metrics: Metrics, readiness: Arc<Readiness>, before_scrape: ScrapeHook) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(serve_readiness))
        .with_state(HttpState {
            metrics,
            readiness,
            before_scrape,
        })
}

async fn serve_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (state.before_scrape)();
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn serve_readiness(State(state): State<HttpState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for caches to sync and a policy to load",
        )
    }
}

pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
