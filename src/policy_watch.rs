//! The policy from the ConfigMap `csr-approver-policy` (key `policy.yaml`), watched and
//! hot-reloaded. An invalid update keeps the last good policy in force; no ConfigMap
//! means the built-in defaults.

use std::sync::{Arc, RwLock};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Client, Resource};

use crate::http::Readiness;
use crate::metrics::Metrics;
use crate::policy::Policy;

pub const POLICY_KEY: &str = "policy.yaml";

/// The policy in force, swapped atomically on reload.
#[derive(Debug)]
pub struct PolicyHolder {
    current: RwLock<Arc<Policy>>,
}

impl Default for PolicyHolder {
    fn default() -> Self {
        PolicyHolder {
            current: RwLock::new(Arc::new(Policy::default())),
        }
    }
}

impl PolicyHolder {
    pub fn get(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, policy: Policy) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
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
    pub recorder: Recorder,
    /// Fired after each change of the policy in force: every CSR is reconciled again.
    pub reconcile_all: UnboundedSender<()>,
}

impl PolicyWatch {
    pub async fn run(self) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut stream = std::pin::pin!(
            watcher::watcher(api, config).backoff(crate::cluster::WatchBackoff::default())
        );
        let mut seen_in_list = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Apply(cm)) | Ok(WatchEvent::InitApply(cm)) => {
                    seen_in_list = true;
                    self.load(&cm).await;
                }
                Ok(WatchEvent::Delete(_)) => self.use_defaults("deleted"),
                Ok(WatchEvent::Init) => seen_in_list = false,
                Ok(WatchEvent::InitDone) => {
                    if !seen_in_list {
                        self.use_defaults("absent");
                    }
                }
                Err(error) => tracing::warn!(%error, "policy ConfigMap watch error; retrying"),
            }
        }
    }

    async fn load(&self, cm: &ConfigMap) {
        match policy_from_configmap(cm) {
            Ok(policy) => {
                tracing::info!(configmap = %self.name, mode = ?policy.mode, "policy loaded");
                self.holder.set(policy);
                self.accepted("valid");
            }
            Err(message) => {
                tracing::error!(configmap = %self.name, error = %message, "invalid policy rejected; the last good policy stays in force");
                self.metrics.policy_valid.set(0);
                self.metrics
                    .policy_reloads
                    .with_label_values(&["invalid"])
                    .inc();
                // Readiness needs a policy in force: the defaults are, until a valid one arrives.
                self.readiness.set_policy_loaded();
                let event = Event {
                    type_: EventType::Warning,
                    reason: "InvalidPolicy".to_string(),
                    note: Some(format!(
                        "rejected, the last good policy stays in force: {message}"
                    )),
                    action: "LoadPolicy".to_string(),
                    secondary: None,
                };
                if let Err(error) = self.recorder.publish(&event, &cm.object_ref(&())).await {
                    tracing::warn!(%error, "could not publish the InvalidPolicy Event");
                }
            }
        }
    }

    fn use_defaults(&self, why: &'static str) {
        tracing::info!(configmap = %self.name, why, "no policy ConfigMap; using built-in defaults");
        self.holder.set(Policy::default());
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
