//! One reconcile of one CSR: facts from the caches, `decide`, the effect of the decision,
//! and the writer that applies it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::runtime::controller::Action;

use super::context::Context;
use super::effect::{self, Effect};
use super::explain::{already_explained, explain_written};
use super::{ReconcileError, writer};
use crate::approval;
use crate::decision::{CsrFacts, Decision, Verdict, decide, verdicts_are_read};
use crate::evidence::Wanted;
use crate::gather::{self, Reading};
use crate::policy::Policy;
use crate::vocabulary::Signer;

pub(super) async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    // Reconciles take turns in the order they came, a few at a time; a waiting one holds
    // only this small future, the boxed rest is allocated when its turn comes. (kube's own
    // `Config::concurrency` parks the overflow in a `HashSet` and takes from it in hash
    // order: in a 2000-CSR storm some waited 17 s while the median took 0.1 s.)
    let Ok(_turn) = ctx.turns.acquire().await else {
        return Ok(Action::await_change()); // closed: never, the context owns it
    };
    Box::pin(reconcile_in_turn(csr, ctx.clone())).await
}

async fn reconcile_in_turn(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let _timer = ctx.metrics.reconcile_duration.start_timer();
    // Standby replicas keep their caches warm and decide nothing; winning the Lease (or
    // renewing it again after a fence) reconciles everything.
    if !ctx.leader.may_write() {
        return Ok(Action::await_change());
    }
    // Fail closed: with a Node, Machine or CSR cache still empty (or a Machine API just
    // installed and not listed yet), or no policy in force, a decision could approve what
    // the cluster forbids (a client CSR for a Node that exists, a signer the policy
    // disables). Nothing — no write, no Event — until ready; becoming ready (again)
    // reconciles every CSR (see `run`).
    let Some(policy) = ctx.policy.get().filter(|_| ctx.readiness.is_ready()) else {
        tracing::debug!(
            csr = csr.metadata.name.as_deref().unwrap_or_default(),
            waiting_for = %ctx.readiness.waiting_for(),
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
    // The store may still hold the pending object we just approved; a reconcile queued
    // meanwhile must not judge it again (it would see its own Node and cry forgery). Asked
    // before reading the request, which a decided CSR need not have parsed.
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    if ctx.cache.is_decided(name, csr.metadata.uid.as_deref()) {
        return Ok(Action::await_change());
    }
    let facts = ctx.cache.csr_facts(&csr);
    let mut decision = decide_now(&ctx, &facts, &policy);
    if let Some(wanted) = &decision.wants {
        gather_evidence(&ctx, wanted, &policy).await;
        decision = decide_now(&ctx, &facts, &policy);
    }
    if decision.verdict == Verdict::Ignore {
        tracing::debug!(csr = %facts.name, reason = %decision.reason, "ignored");
    }
    let mut effect = effect_now(&ctx, &csr, &decision, &policy);
    // Verdicts no decision reads (serving) are written side by side: nothing another
    // reconcile decides can change with them.
    let others_read_it = Signer::of(&facts.signer_name).is_none_or(verdicts_are_read);
    let write_lock = if effect.write && others_read_it {
        let lock = ctx.write_lock.lock().await;
        // Decide again under the lock: a write that just landed may change the answer;
        // and ask for leadership at the last moment: the Lease may have gone stale.
        decision = decide_now(&ctx, &facts, &policy);
        effect = effect_now(&ctx, &csr, &decision, &policy);
        Some(lock)
    } else {
        None
    };
    // A source found meanwhile (a Machine API installed while evidence was read) may hold
    // what speaks against this decision: take it again once that source has listed.
    if !ctx.readiness.is_ready() {
        return Ok(Action::await_change());
    }
    writer::apply(&ctx, &csr, &facts, &decision, effect, write_lock).await
}

fn decide_now(ctx: &Context, facts: &CsrFacts, policy: &Policy) -> Decision {
    let inventory = ctx.cache.read();
    decide(facts, &inventory, policy, Timestamp::now())
}

fn effect_now(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    decision: &Decision,
    policy: &Policy,
) -> Effect {
    effect::of(
        decision,
        policy.mode,
        ctx.leader.may_write(),
        already_explained(ctx, csr, decision),
    )
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

pub(super) fn error_policy(
    csr: Arc<CertificateSigningRequest>,
    error: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(csr = csr.metadata.name.as_deref().unwrap_or_default(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
