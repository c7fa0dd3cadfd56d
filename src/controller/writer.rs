//! The one thin writer: applies an [`Effect`] computed elsewhere — the verdict's
//! condition first, then its explanation — and says when to look again.

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::runtime::controller::Action;

use super::ReconcileError;
use super::context::Context;
use super::effect::Effect;
use super::explain::{explain, explain_write_failure};
use crate::approval::{self, Written};
use crate::decision::{CsrFacts, Decision, Verdict};
use crate::inventory::CsrState;
use crate::metrics::Metrics;

/// Applies `effect`. `write_lock` is the guard of [`Context::write_lock`] when the effect
/// writes: held until the cache knows the verdict, released before the Event.
pub(super) async fn apply(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    facts: &CsrFacts,
    decision: &Decision,
    effect: Effect,
    write_lock: Option<tokio::sync::MutexGuard<'_, ()>>,
) -> Result<Action, ReconcileError> {
    if effect.write {
        match approval::write_verdict(&ctx.csrs, csr, decision).await {
            Ok(Written::Done) => {
                let state = if decision.verdict == Verdict::Approve {
                    observe_latency(&ctx.metrics, facts);
                    CsrState::Approved
                } else {
                    CsrState::Denied
                };
                ctx.cache
                    .mark_decided(&facts.name, csr.metadata.uid.as_deref(), state);
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
                explain_write_failure(ctx, csr, decision, &error).await;
                return Err(error.into());
            }
        }
    }
    drop(write_lock);
    if let Some(mode) = effect.explain {
        explain(ctx, csr, facts, decision, mode).await;
    }
    Ok(effect.action())
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
