//! Every metric the controller exports (`docs/design.md` §6), registered on one registry. Label
//! values are bounded: signer names, verdicts, `Reason::as_str()`, fixed verbs.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::decision::Decision;
use crate::vocabulary::Signer;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub decisions: IntCounterVec,
    pub approval_latency: HistogramVec,
    pub reconcile_duration: Histogram,
    pub pending_csrs: GaugeVec,
    pub oldest_pending_age: Gauge,
    pub max_pending: IntGauge,
    pub max_new_nodes: IntGauge,
    pub new_nodes_last_hour: IntGauge,
    pub recovery_pending: IntGauge,
    pub policy_valid: IntGauge,
    pub policy_reloads: IntCounterVec,
    pub leader: IntGauge,
    pub kube_api_errors: IntCounterVec,
    pub write_failures: IntCounterVec,
    pub source_synced: IntGaugeVec,
    pub stale_csrs: IntGaugeVec,
}

const PREFIX: &str = "csr_approver";

/// The `write` label of `csr_approver_write_failures_total`: the verdict's condition, or an
/// Event.
pub const WRITES: [&str; 2] = ["approval", "event"];

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(PREFIX)
}

/// `metric`, registered on `registry`.
fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A registered integer gauge.
fn gauge(registry: &Registry, opts: Opts) -> Result<IntGauge, prometheus::Error> {
    registered(registry, IntGauge::with_opts(opts)?)
}

/// A registered family of integer counters with `labels`.
fn counters(
    registry: &Registry,
    opts: Opts,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    registered(registry, IntCounterVec::new(opts, labels)?)
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        let decisions = counters(
            r,
            opts(
                "decisions_total",
                "Decisions taken on kubelet CSRs, by signer, verdict and reason.",
            ),
            &["signer", "verdict", "reason"],
        )?;
        let approval_latency = registered(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "approval_latency_seconds",
                    "Time from CSR creation to the approval being written (creationTimestamp has one-second resolution).",
                )
                .namespace(PREFIX)
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
                ]),
                &["signer"],
            )?,
        )?;
        let reconcile_duration = registered(
            r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "reconcile_duration_seconds",
                    "Time spent in one reconcile of a CSR.",
                )
                .namespace(PREFIX)
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
        )?;
        let pending_csrs = registered(
            r,
            GaugeVec::new(
                opts("pending_csrs", "Kubelet CSRs currently pending, by signer."),
                &["signer"],
            )?,
        )?;
        let oldest_pending_age = registered(
            r,
            Gauge::with_opts(opts(
                "oldest_pending_csr_age_seconds",
                "Age of the oldest pending kubelet CSR; 0 when none is pending.",
            ))?,
        )?;
        let max_pending = gauge(
            r,
            opts(
                "max_pending_csrs",
                "The flood-guard threshold in force: approvals stop above this many pending CSRs.",
            ),
        )?;
        let max_new_nodes = gauge(
            r,
            opts(
                "max_new_nodes_per_hour",
                "The hourly cap on new node identities in force (client.maxNewNodesPerHour).",
            ),
        )?;
        let new_nodes_last_hour = gauge(
            r,
            opts(
                "new_nodes_approved_last_hour",
                "New node identities (client certificates not requested by a node itself) approved in the last hour, by anyone, recoveries included; new nodes and recoveries wait while this reaches the cap.",
            ),
        )?;
        let recovery_pending = gauge(
            r,
            opts(
                "recovery_csrs_pending",
                "Pending client CSRs in which a bootstrapper asks for the identity of a Node that exists: nodes recovering after their client certificate expired (or someone impersonating them). An admin approves them by hand unless client.recovery is on.",
            ),
        )?;
        let policy_valid = gauge(
            r,
            opts(
                "policy_valid",
                "1 when the policy in force is the ConfigMap's (or the defaults, without one); 0 when the last update was rejected (the last good policy stays in force) or, at start-up, when no valid policy has loaded yet (nothing is decided).",
            ),
        )?;
        let policy_reloads = counters(
            r,
            opts(
                "policy_reloads_total",
                "Policy loads from the ConfigMap, by result (valid, invalid, absent, deleted).",
            ),
            &["result"],
        )?;
        let leader = gauge(
            r,
            opts(
                "leader",
                "1 while this replica holds the Lease and renewed it recently enough to write approvals (within two thirds of the lease duration); 0 on a standby, and on a leader fenced because its renewals fail.",
            ),
        )?;
        let kube_api_errors = counters(
            r,
            opts(
                "kube_api_errors_total",
                "Failed Kubernetes API calls, by verb.",
            ),
            &["verb"],
        )?;
        let write_failures = counters(
            r,
            opts(
                "write_failures_total",
                "Writes that failed, by what was written (approval: the Approved/Denied condition; event: an Event) and cause (forbidden, unauthorized, conflict, not_found, invalid, throttled, timeout, unavailable, server_error, other).",
            ),
            &["write", "cause"],
        )?;
        let source_synced = registered(
            r,
            IntGaugeVec::new(
                opts(
                    "source_synced",
                    "Each source decisions read (watches of CSRs, Nodes, each installed Machine API, the CRDs that say which are installed, the API server's endpoints): 1 once its first list is done, 0 while it lists or cannot be read. Nothing is decided while any is 0; a source whose API is removed is no longer listed.",
                ),
                &["source"],
            )?,
        )?;
        let stale_csrs = registered(
            r,
            IntGaugeVec::new(
                opts(
                    "stale_csrs",
                    "Kubelet CSRs that went wrong and that nothing will act on, by cause (signer_failed, not_issued, denied, unknown_requester, pending_too_long; `csr-approver check --hygiene` lists them).",
                ),
                &["cause"],
            )?,
        )?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        for signer in Signer::ALL.map(Signer::name) {
            pending_csrs.with_label_values(&[signer]).set(0.0);
            approval_latency.with_label_values(&[signer]);
        }
        for cause in crate::hygiene::StaleCause::ALL {
            stale_csrs.with_label_values(&[cause.as_str()]).set(0);
        }
        // Every series at 0 from the start: increase() in the alert needs a sample before
        // the first failure, or it misses a series born at 1.
        for write in WRITES {
            for cause in crate::approval::FAILURE_CAUSES {
                write_failures.with_label_values(&[write, cause]);
            }
        }
        Ok(Metrics {
            registry,
            decisions,
            approval_latency,
            reconcile_duration,
            pending_csrs,
            oldest_pending_age,
            max_pending,
            max_new_nodes,
            new_nodes_last_hour,
            recovery_pending,
            policy_valid,
            policy_reloads,
            leader,
            kube_api_errors,
            write_failures,
            source_synced,
            stale_csrs,
        })
    }

    pub fn count_decision(&self, signer: &str, decision: &Decision) {
        self.decisions
            .with_label_values(&[
                signer_label(signer),
                decision.verdict.as_str(),
                decision.reason.as_str(),
            ])
            .inc();
    }

    pub fn count_api_error(&self, verb: &'static str) {
        self.kube_api_errors.with_label_values(&[verb]).inc();
    }

    /// `write` is `"approval"` or `"event"`; `cause` one of `approval::FAILURE_CAUSES`.
    pub fn count_write_failure(&self, write: &'static str, cause: &'static str) {
        self.write_failures.with_label_values(&[write, cause]).inc();
    }

    /// Every metric family the controller exports, by name, with its type (a histogram's
    /// series are `<name>_bucket`, `_sum` and `_count`): what dashboards and alerts may
    /// query. `Registry::gather` leaves out a labelled family until its first series, so this
    /// gathers a throw-away registry in which each gets one; a labelled family added without
    /// a line here is left out, which makes a check based on this list stricter, never laxer.
    pub fn exported_families()
    -> Result<Vec<(String, prometheus::proto::MetricType)>, prometheus::Error> {
        let probe = Metrics::new()?;
        probe.decisions.with_label_values(&["", "", ""]);
        probe.policy_reloads.with_label_values(&[""]);
        probe.kube_api_errors.with_label_values(&[""]);
        probe.source_synced.with_label_values(&[""]);
        Ok(probe
            .registry
            .gather()
            .iter()
            .map(|family| (family.name().to_owned(), family.get_field_type()))
            .collect())
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buffer).is_err() {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Signer names come from the cluster: only the two kubelet signers become label values.
pub fn signer_label(signer: &str) -> &'static str {
    Signer::of(signer).map_or("other", Signer::name)
}
