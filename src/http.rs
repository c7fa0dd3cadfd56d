//! `/metrics`, `/healthz` and `/readyz` on one port.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Ready only once every watch has listed its objects and a policy is in force. The
/// controller decides nothing before that (see `controller::reconcile`), so this is both
/// the `/readyz` answer and the gate in front of every decision.
#[derive(Debug)]
pub struct Readiness {
    state: watch::Sender<ReadyState>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ReadyState {
    caches_synced: bool,
    policy_loaded: bool,
    /// Start-up is still asking the API server which Machine APIs exist (the watches
    /// start after it answers).
    discovering: bool,
}

impl ReadyState {
    fn is_ready(self) -> bool {
        self.caches_synced && self.policy_loaded && !self.discovering
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            state: watch::Sender::new(ReadyState::default()),
        }
    }
}

impl Readiness {
    /// Start-up waits for the API server to answer discovery (or no longer does).
    pub fn set_discovering(&self, discovering: bool) {
        self.state.send_modify(|s| s.discovering = discovering);
    }

    pub fn set_caches_synced(&self) {
        self.state.send_modify(|s| s.caches_synced = true);
    }

    /// A policy is in force: a valid ConfigMap, or the defaults when there is none. Never
    /// set for an invalid policy with nothing valid before it.
    pub fn set_policy_loaded(&self) {
        self.state.send_modify(|s| s.policy_loaded = true);
    }

    pub fn is_ready(&self) -> bool {
        self.state.borrow().is_ready()
    }

    /// Resolves once ready (at once if already).
    pub async fn ready(&self) {
        let mut state = self.state.subscribe();
        // Cannot fail: `self` holds the sender.
        let _ = state.wait_for(|s| s.is_ready()).await;
    }

    /// What readiness still waits for, for `/readyz` and logs.
    pub fn waiting_for(&self) -> &'static str {
        let state = *self.state.borrow();
        if state.discovering {
            return "the API server to answer discovery of the Machine APIs (see the log)";
        }
        match (state.caches_synced, state.policy_loaded) {
            (true, true) => "nothing",
            (false, true) => "the watches' first lists",
            (true, false) => "a valid policy",
            (false, false) => "the watches' first lists and a valid policy",
        }
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
        (StatusCode::OK, "ok".to_string())
    } else {
        // Nothing is decided until ready: say what is missing.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not deciding: waiting for {}",
                state.readiness.waiting_for()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_with_synced_caches_and_a_policy() {
        let readiness = Arc::new(Readiness::default());
        assert!(!readiness.is_ready());
        let waiter = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.ready().await }
        });
        readiness.set_caches_synced();
        assert!(!readiness.is_ready(), "no policy in force yet");
        assert_eq!(readiness.waiting_for(), "a valid policy");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        readiness.set_policy_loaded();
        assert!(readiness.is_ready());
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("ready() resolves once ready")
            .expect("waiter task");
        // Already ready: resolves at once.
        readiness.ready().await;
    }

    #[test]
    fn start_up_says_it_waits_for_the_api_server() {
        let readiness = Readiness::default();
        readiness.set_discovering(true);
        assert!(!readiness.is_ready());
        assert!(readiness.waiting_for().starts_with("the API server"));
        readiness.set_discovering(false);
        assert_eq!(
            readiness.waiting_for(),
            "the watches' first lists and a valid policy"
        );
    }

    #[test]
    fn a_policy_alone_is_not_ready() {
        let readiness = Readiness::default();
        readiness.set_policy_loaded();
        assert!(!readiness.is_ready());
        assert_eq!(readiness.waiting_for(), "the watches' first lists");
    }
}
