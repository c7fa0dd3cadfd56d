//! The policy from the ConfigMap `csr-approver-policy` (key `policy.yaml`), watched and
//! hot-reloaded. Fail closed: until the ConfigMap's first list no policy is in force (and
//! nothing is decided); an invalid policy at start-up leaves none in force; an invalid
//! update keeps the last good one; no ConfigMap means the documented built-in defaults.

use std::sync::{Arc, RwLock};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Client, Resource};

use crate::http::Readiness;
use crate::metrics::Metrics;
use crate::policy::Policy;

pub const POLICY_KEY: &str = "policy.yaml";

/// The policy in force, swapped atomically on reload; `None` until one has loaded.
#[derive(Debug, Default)]
pub struct PolicyHolder {
    current: RwLock<Option<Arc<Policy>>>,
}

/// What offering a policy to the holder did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The offered policy is now in force.
    Loaded,
    /// Rejected; the last good policy stays in force.
    KeptLastGood,
    /// Rejected, and no policy was ever in force: nothing may be decided.
    NothingInForce,
}

impl PolicyHolder {
    /// The policy in force, or `None` before any (valid) policy has loaded.
    pub fn get(&self) -> Option<Arc<Policy>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Puts a valid policy in force; an invalid one changes nothing.
    pub fn offer<E>(&self, policy: Result<Policy, E>) -> Offer {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        match policy {
            Ok(policy) => {
                *current = Some(Arc::new(policy));
                Offer::Loaded
            }
            Err(_) if current.is_some() => Offer::KeptLastGood,
            Err(_) => Offer::NothingInForce,
        }
    }
}

/// Reads the policy out of the ConfigMap.
pub fn policy_from_configmap(cm: &ConfigMap) -> Result<Policy, String> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(POLICY_KEY))
        .ok_or_else(|| format!("ConfigMap has no key {POLICY_KEY}"))?;
    Policy::from_yaml(text).map_err(|e| e.to_string())
}

pub struct PolicyWatch {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub holder: Arc<PolicyHolder>,
    pub metrics: Metrics,
    pub readiness: Arc<Readiness>,
    pub recorder: crate::approval::Publisher,
    /// Fired after each change of the policy in force: every CSR is reconciled again.
    pub reconcile_all: UnboundedSender<()>,
}

impl PolicyWatch {
    pub async fn run(self) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let config = crate::cluster::watch_config().fields(&format!("metadata.name={}", self.name));
        let mut stream = std::pin::pin!(
            watcher::watcher(api, config).backoff(crate::cluster::WatchBackoff::default())
        );
        let mut seen_in_list = false;
        // Whether the defaults are in force because the ConfigMap is missing: say so once,
        // not on every re-list.
        let mut on_defaults = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Apply(cm)) | Ok(WatchEvent::InitApply(cm)) => {
                    seen_in_list = true;
                    if self.load(&cm).await {
                        on_defaults = false;
                    }
                }
                Ok(WatchEvent::Delete(_)) => self.use_defaults("deleted", &mut on_defaults),
                Ok(WatchEvent::Init) => seen_in_list = false,
                Ok(WatchEvent::InitDone) => {
                    if !seen_in_list {
                        self.use_defaults("absent", &mut on_defaults);
                    }
                }
                Err(error) => tracing::warn!(%error, "policy ConfigMap watch error; retrying"),
            }
        }
    }

    /// Loads the ConfigMap's policy; returns whether it is now in force.
    async fn load(&self, cm: &ConfigMap) -> bool {
        let parsed = policy_from_configmap(cm);
        let mode = parsed.as_ref().ok().map(|p| p.mode);
        let message = parsed.as_ref().err().cloned().unwrap_or_default();
        let consequence = match self.holder.offer(parsed) {
            Offer::Loaded => {
                tracing::info!(configmap = %self.name, ?mode, "policy loaded");
                self.accepted("valid");
                return true;
            }
            Offer::KeptLastGood => "the last good policy stays in force",
            Offer::NothingInForce => {
                "no policy is in force: nothing is decided until a valid policy is applied"
            }
        };
        tracing::error!(configmap = %self.name, error = %message, "invalid policy rejected; {consequence}");
        self.metrics.policy_valid.set(0);
        self.metrics
            .policy_reloads
            .with_label_values(&["invalid"])
            .inc();
        // Readiness is untouched: it means a policy in force, which an invalid one is not.
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidPolicy".to_string(),
            note: Some(format!("rejected, {consequence}: {message}")),
            action: "LoadPolicy".to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &cm.object_ref(&())).await {
            tracing::warn!(%error, "could not publish the InvalidPolicy Event");
        }
        false
    }

    fn use_defaults(&self, why: &'static str, on_defaults: &mut bool) {
        if *on_defaults {
            return;
        }
        *on_defaults = true;
        tracing::info!(
            configmap = %self.name,
            namespace = %self.namespace,
            why,
            "no policy ConfigMap: the documented built-in defaults are in force"
        );
        self.holder.offer::<String>(Ok(Policy::default()));
        self.accepted(why);
    }

    fn accepted(&self, result: &'static str) {
        self.metrics.policy_valid.set(1);
        self.metrics
            .policy_reloads
            .with_label_values(&[result])
            .inc();
        self.readiness.set_policy_loaded();
        let _ = self.reconcile_all.unbounded_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Result<Policy, String> {
        Policy::from_yaml(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn no_policy_is_in_force_before_one_loads() {
        let holder = PolicyHolder::default();
        assert!(!holder.is_loaded());
        assert!(holder.get().is_none());
    }

    #[test]
    fn an_invalid_policy_at_start_up_puts_nothing_in_force() {
        let holder = PolicyHolder::default();
        let invalid = policy("serving: {allowedIPRanges: [not-a-cidr]}\n");
        assert!(
            invalid
                .as_ref()
                .is_err_and(|e| e.contains("serving.allowedIPRanges[0]")),
            "{invalid:?}"
        );
        assert_eq!(holder.offer(invalid), Offer::NothingInForce);
        assert!(holder.get().is_none(), "not the built-in defaults");
        assert_eq!(holder.offer(policy("mode: dry-run\n")), Offer::Loaded);
        assert!(holder.get().is_some_and(|p| p.is_dry_run()));
    }

    #[test]
    fn an_invalid_update_keeps_the_last_good_policy() {
        let holder = PolicyHolder::default();
        assert_eq!(holder.offer(policy("mode: dry-run\n")), Offer::Loaded);
        assert_eq!(holder.offer(policy("mode: yolo\n")), Offer::KeptLastGood);
        assert!(holder.get().is_some_and(|p| p.is_dry_run()));
        assert_eq!(holder.offer(policy("mode: enforce\n")), Offer::Loaded);
        assert!(holder.get().is_some_and(|p| !p.is_dry_run()));
    }
}
