//! `/metrics`, `/healthz` and `/readyz` on one port.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Ready only while every source a decision reads has listed and a policy is in force.
/// The controller decides nothing otherwise (see `controller::reconcile`), so this is both
/// the `/readyz` answer and the gate in front of every decision.
///
/// Sources come and go: a Machine API installed while the controller runs is a new source,
/// unsynced until its watch has listed, and readiness goes away until it has (fail closed:
/// its Machines may speak against a request). Each source is registered by name with
/// [`Readiness::source`] and reports through the [`Source`] handle it gets; dropping the
/// handle removes the source (its API is gone, or its watch was stopped).
#[derive(Debug)]
pub struct Readiness {
    state: watch::Sender<ReadyState>,
}

/// What a source reports: its first list has not finished, has, or it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    Listing,
    Synced,
    /// Present but unusable (forbidden, unparsable): nothing that reads it can be decided.
    Failing(String),
}

#[derive(Debug, Clone, Default)]
struct ReadyState {
    policy_loaded: bool,
    /// Start-up has registered every source it starts with (until then an empty registry
    /// would read as "everything listed").
    started: bool,
    /// Name → (registration id, state). The id tells a source re-registered under the same
    /// name (a CRD deleted and installed again) from the handle it replaces.
    sources: BTreeMap<String, (u64, SourceState)>,
    next_id: u64,
}

impl ReadyState {
    fn is_ready(&self) -> bool {
        self.policy_loaded
            && self.started
            && self
                .sources
                .values()
                .all(|(_, state)| *state == SourceState::Synced)
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            state: watch::Sender::new(ReadyState::default()),
        }
    }
}

/// One registered source's handle: reports its state; removes it from readiness when
/// dropped.
#[derive(Debug)]
pub struct Source {
    readiness: Arc<Readiness>,
    name: String,
    id: u64,
}

impl Source {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its first list is done (again, after [`Source::failing`]).
    pub fn synced(&self) {
        self.set(SourceState::Synced);
    }

    /// It exists but cannot be used: decisions wait until it can.
    pub fn failing(&self, why: impl Into<String>) {
        self.set(SourceState::Failing(why.into()));
    }

    /// Its watch could not list it (API server away, forbidden): decisions wait until it can.
    pub fn list_failed(&self, error: &impl std::fmt::Display) {
        self.failing(format!("the API server has not listed it: {error}"));
    }

    fn set(&self, new: SourceState) {
        let mut changed = false;
        self.readiness.state.send_if_modified(|s| {
            match s.sources.get_mut(&self.name) {
                Some((id, state)) if *id == self.id && *state != new => {
                    *state = new.clone();
                    changed = true;
                }
                _ => {}
            }
            changed
        });
        if changed {
            match &new {
                SourceState::Synced => tracing::info!(source = %self.name, "source synced"),
                SourceState::Failing(why) => {
                    tracing::warn!(source = %self.name, %why, "source unusable; not deciding until it is")
                }
                SourceState::Listing => {}
            }
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let removed = self
            .readiness
            .state
            .send_if_modified(|s| match s.sources.get(&self.name) {
                Some((id, _)) if *id == self.id => s.sources.remove(&self.name).is_some(),
                _ => false,
            });
        if removed {
            tracing::info!(source = %self.name, "source gone; no longer waited for");
        }
    }
}

impl Readiness {
    /// Registers source `name`, listing until its handle says otherwise. A source of the
    /// same name registered before is replaced (its old handle no longer reports).
    pub fn source(self: &Arc<Self>, name: impl Into<String>) -> Source {
        let name = name.into();
        let mut id = 0;
        self.state.send_modify(|s| {
            s.next_id += 1;
            id = s.next_id;
            s.sources.insert(name.clone(), (id, SourceState::Listing));
        });
        tracing::info!(source = %name, "watching a new source; not deciding until it has listed");
        Source {
            readiness: self.clone(),
            name,
            id,
        }
    }

    /// Start-up has registered the sources it starts with: from now on readiness is theirs
    /// (and any registered later).
    pub fn set_started(&self) {
        self.state.send_modify(|s| s.started = true);
    }

    /// Every source as listed, for tests that have no watches: start-up done.
    pub fn set_caches_synced(&self) {
        self.set_started();
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
        let _ = state.wait_for(ReadyState::is_ready).await;
    }

    /// Resolves once not ready (at once if not).
    pub async fn not_ready(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| !s.is_ready()).await;
    }

    /// Every registered source and its state, by name.
    pub fn sources(&self) -> Vec<(String, SourceState)> {
        let state = self.state.borrow();
        state
            .sources
            .iter()
            .map(|(name, (_, s))| (name.clone(), s.clone()))
            .collect()
    }

    /// What readiness still waits for, for `/readyz` and logs.
    pub fn waiting_for(&self) -> String {
        let state = self.state.borrow();
        let mut waits = Vec::new();
        if !state.started {
            waits.push("start-up to watch its sources".to_string());
        }
        let listing: Vec<&str> = state
            .sources
            .iter()
            .filter(|(_, (_, s))| *s == SourceState::Listing)
            .map(|(name, _)| name.as_str())
            .collect();
        if !listing.is_empty() {
            waits.push(format!("the first list of {}", listing.join(", ")));
        }
        for (name, (_, s)) in &state.sources {
            if let SourceState::Failing(why) = s {
                waits.push(format!("{name}: {why}"));
            }
        }
        if !state.policy_loaded {
            waits.push("a valid policy".to_string());
        }
        if waits.is_empty() {
            "nothing".to_string()
        } else {
            waits.join("; ")
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
    fn start_up_says_it_has_not_started_its_watches() {
        let readiness = Readiness::default();
        assert_eq!(
            readiness.waiting_for(),
            "start-up to watch its sources; a valid policy"
        );
    }

    #[test]
    fn a_policy_alone_is_not_ready() {
        let readiness = Arc::new(Readiness::default());
        readiness.set_policy_loaded();
        let nodes = readiness.source("Nodes");
        readiness.set_started();
        assert!(!readiness.is_ready());
        assert_eq!(readiness.waiting_for(), "the first list of Nodes");
        nodes.synced();
        assert!(readiness.is_ready());
    }

    #[tokio::test]
    async fn a_source_added_later_takes_readiness_away_until_it_has_listed() {
        let readiness = Arc::new(Readiness::default());
        let nodes = readiness.source("Nodes");
        readiness.set_started();
        readiness.set_policy_loaded();
        nodes.synced();
        assert!(readiness.is_ready());

        let machines = readiness.source("Machines cluster.x-k8s.io/v1beta1");
        assert!(!readiness.is_ready(), "a new source is waited for");
        assert_eq!(
            readiness.waiting_for(),
            "the first list of Machines cluster.x-k8s.io/v1beta1"
        );
        tokio::time::timeout(std::time::Duration::from_secs(1), readiness.not_ready())
            .await
            .expect("not_ready() resolves at once");
        machines.synced();
        assert!(readiness.is_ready());

        // Unreadable after all: not ready, and /readyz says why.
        machines.list_failed(&"403 Forbidden");
        assert!(!readiness.is_ready());
        assert_eq!(
            readiness.waiting_for(),
            "Machines cluster.x-k8s.io/v1beta1: the API server has not listed it: 403 Forbidden"
        );
        // Its API removed: no longer waited for.
        drop(machines);
        assert!(readiness.is_ready());
        assert_eq!(
            readiness.sources(),
            vec![("Nodes".to_string(), SourceState::Synced)]
        );
    }

    #[test]
    fn a_replaced_handle_no_longer_reports() {
        let readiness = Arc::new(Readiness::default());
        readiness.set_started();
        readiness.set_policy_loaded();
        let old = readiness.source("Machines");
        let new = readiness.source("Machines");
        old.synced();
        assert!(!readiness.is_ready(), "the old handle speaks for nothing");
        drop(old);
        assert_eq!(
            readiness.sources(),
            vec![("Machines".to_string(), SourceState::Listing)]
        );
        new.synced();
        assert!(readiness.is_ready());
    }
}
