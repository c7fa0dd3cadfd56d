//! The one thin writer: applies an [`Effect`] computed elsewhere — the verdict's
//! condition first, then its explanation — and says when to look again.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::runtime::controller::Action;

use super::ReconcileError;
use super::context::Context;
use super::effect::Effect;
use super::explain::{explain, explain_write_failure};
use crate::approval::{self, Written};
use crate::decision::{CsrFacts, Decision, Verdict};
use crate::identity::{Minted, NodeIdentity};
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
        let minted = match record_identity(ctx, facts, decision).await {
            Ok(minted) => minted,
            Err(approval::RecordError::Stale { node, live }) => {
                tracing::info!(csr = %facts.name, %node, "its NodeIdentity changed since the decision; deciding again");
                ctx.cache
                    .remember_identity(&node, live.map(|record| *record));
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(failure) => {
                ctx.metrics.count_api_error("update");
                return match failure.into_approval_failure() {
                    Ok(error) => {
                        explain_write_failure(ctx, csr, decision, &error).await;
                        Err(error.into())
                    }
                    Err(stale) => Err(stale.into()),
                };
            }
        };
        let written = approval::write_verdict(&ctx.csrs, csr, decision).await;
        // The identity is minted whoever approved it: the entry stays then, and after a
        // failed write (which may have landed: the retry finds this CSR's own entry).
        // Taken back only when no approval can come of this CSR: gone, or refused.
        let never_approved = matches!(
            written,
            Ok(Written::Gone | Written::AlreadyDecided(CsrState::Denied | CsrState::Failed))
        );
        if minted && never_approved {
            take_back_identity(ctx, facts, decision).await;
        }
        match written {
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

/// Records what an approval needs in its node's `NodeIdentity`, before the approval is
/// written: the identity it mints — a crash in between leaves an identity recorded and
/// not approved (the same CSR decided again finds its own entry), never one approved and
/// forgotten — or, for a serving approval under `KubeletCertificate`, the addresses
/// independent evidence vouched for. Whether it recorded an identity (which must be taken
/// back if the approval is not written; a vouching stays true either way).
async fn record_identity(
    ctx: &Context,
    facts: &CsrFacts,
    decision: &Decision,
) -> Result<bool, approval::RecordError> {
    let (Verdict::Approve, Some(node)) = (decision.verdict, &decision.node) else {
        return Ok(false);
    };
    let seen = ctx.cache.read().identity(node).cloned();
    if let Some(generation) = &decision.mints_for {
        let minted = Minted {
            csr: facts.name.clone(),
            csr_uid: facts.uid.clone(),
            reason: decision.reason.as_str().to_string(),
            requester: facts.username.clone(),
            at: Timestamp::now(),
            host_generation: generation.key.clone(),
        };
        let record = approval::record_minted(
            &ctx.identities,
            node,
            seen.as_ref(),
            generation.clone(),
            minted,
        )
        .await?;
        ctx.cache.remember_identity(node, record);
        return Ok(true);
    }
    let now = Timestamp::now();
    let stale = |record: Option<&NodeIdentity>| {
        record
            .map_or_else(|| NodeIdentity::empty(node), Clone::clone)
            .with_vouched(&decision.vouches_for, now)
            .is_some()
    };
    // Asked of the cache first: a renewal storm whose addresses were vouched for within
    // the hour costs no read and no write.
    if !decision.vouches_for.is_empty() && stale(seen.as_ref()) {
        let record = approval::record_vouched(
            &ctx.identities,
            node,
            seen.as_ref(),
            &decision.vouches_for,
            now,
        )
        .await?;
        ctx.cache.remember_identity(node, record);
    }
    Ok(false)
}

/// The approval recorded was not written: take its entry back, so that it holds no later
/// request of the host back. Best effort; what stays says which CSR it was.
async fn take_back_identity(ctx: &Context, facts: &CsrFacts, decision: &Decision) {
    let Some(node) = &decision.node else {
        return;
    };
    match approval::take_back(&ctx.identities, node, &facts.name, facts.uid.as_deref()).await {
        Ok(Some(record)) => ctx.cache.remember_identity(node, Some(record)),
        Ok(None) => {}
        Err(error) => {
            ctx.metrics.count_api_error("update");
            tracing::warn!(csr = %facts.name, %node, %error, "the approval was not written and its NodeIdentity entry could not be taken back; it holds later requests for the host back until deleted");
        }
    }
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
