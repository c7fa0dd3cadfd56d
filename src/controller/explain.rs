//! Saying what was decided: one Event, one log line and one metric per distinct decision,
//! one Warning Event per cause of a failing write, and the Event a killed writer did not
//! get to publish.

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::runtime::events::Event;

use super::context::Context;
use crate::approval;
use crate::decision::{CsrFacts, Decision, Reason};
use crate::policy::Mode;

/// Who a CSR is, for what was said about it: by uid, as a CSR deleted and re-created under
/// the same name is a new request.
fn id(csr: &CertificateSigningRequest) -> String {
    csr.metadata
        .uid
        .clone()
        .or_else(|| csr.metadata.name.clone())
        .unwrap_or_default()
}

/// What a decision is remembered by: a requeue with the same verdict and reason is no news.
fn key(decision: &Decision) -> (&'static str, Reason) {
    (decision.verdict.as_str(), decision.reason)
}

/// Whether this very decision was explained for this CSR already.
pub(super) fn already_explained(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    decision: &Decision,
) -> bool {
    let repeated = ctx.explained.get(&id(csr)) == Some(key(decision));
    if repeated {
        tracing::debug!(csr = csr.metadata.name.as_deref().unwrap_or_default(), verdict = decision.verdict.as_str(), reason = %decision.reason, "unchanged decision");
    }
    repeated
}

/// The Event, log line and metric of a decision; remembered, so the next reconcile that
/// repeats it stays silent.
pub(super) async fn explain(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    facts: &CsrFacts,
    decision: &Decision,
    mode: Mode,
) {
    ctx.explained.remember(id(csr), key(decision));
    let dry_run = mode == Mode::DryRun;
    tracing::info!(
        csr = %facts.name,
        signer = %facts.signer_name,
        requester = %facts.username,
        node = decision.node.as_deref().unwrap_or_default(),
        verdict = decision.verdict.as_str(),
        reason = %decision.reason,
        dry_run,
        "{}",
        decision.message
    );
    ctx.metrics.count_decision(&facts.signer_name, decision);
    if let Some(event) = approval::event_for(decision, dry_run) {
        publish(ctx, csr, &event).await;
    }
}

/// Publishes an Event about a CSR, counting a failure (by cause) and never retrying it: when
/// RBAC is gone the Event fails too, and a retry loop would only add load.
async fn publish(ctx: &Context, csr: &CertificateSigningRequest, event: &Event) {
    if let Err(error) = approval::publish(&ctx.recorder, csr, event).await {
        ctx.metrics.count_api_error("create");
        ctx.metrics
            .count_write_failure("event", approval::failure_cause(&error));
    }
}

/// A verdict that could not be written: counted by cause, logged, and explained by a
/// Warning Event on the CSR once per cause (the reconcile retries every 5 s), so a lost
/// permission shows in `kubectl describe csr` and in `check`, not only in the log.
pub(super) async fn explain_write_failure(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    decision: &Decision,
    error: &approval::ApprovalError,
) {
    let cause = error.cause();
    ctx.metrics.count_write_failure("approval", cause);
    if !ctx.failed_writes.remember_first((id(csr), cause), ()) {
        return;
    }
    tracing::warn!(csr = csr.metadata.name.as_deref().unwrap_or_default(), verdict = decision.verdict.as_str(), reason = %decision.reason, cause, %error, "could not write the verdict; retrying");
    publish(ctx, csr, &approval::failure_event(decision, error)).await;
}

/// Explains a decision csr-approver wrote but (its writer killed between the condition and
/// the Event) may not have explained: once per CSR per process, for decisions of the last
/// ten minutes, when no csr-approver Event about the CSR says it already. Decisions this
/// process wrote were explained when written (`explained` holds them).
pub(super) async fn explain_written(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    written: &approval::WrittenDecision,
) {
    if !written.explained_after_the_fact(Timestamp::now()) {
        return;
    }
    // The marker of a decision explained (or checked) after the fact; a decided CSR is
    // never decided again, so it cannot be confused with a decision's key.
    let marker = (written.condition, Reason::AlreadyDecided);
    if !ctx.explained.remember_first(id(csr), marker) {
        return;
    }
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    match approval::explained_already(&ctx.client, csr, written).await {
        Ok(true) => {
            tracing::debug!(csr = name, "written decision already explained");
        }
        Ok(false) => {
            tracing::info!(
                csr = name,
                condition = written.condition,
                "explaining a decision written by csr-approver that no Event explains (its writer stopped before publishing one)"
            );
            publish(ctx, csr, &approval::event_for_written(written)).await;
        }
        Err(error) => {
            // Unknown: publishing could duplicate an Event; a missing one is the lesser harm.
            ctx.metrics.count_api_error("list");
            tracing::warn!(csr = name, %error, "cannot tell whether an Event explains the decision written; not publishing one");
        }
    }
}

/// After becoming ready or winning the Lease (every "look again"): the decisions of ours the
/// CSR watch showed in the last ten minutes, each explained unless an Event does
/// ([`explain_written`]). Decided CSRs are not in the controller's store, so no reconcile
/// would find them; one read each, and none for a CSR this process has spoken of.
pub(super) async fn explain_recent_decisions(ctx: &Context) {
    if !ctx.leader.may_write() || !ctx.readiness.is_ready() {
        return;
    }
    for (name, uid) in ctx.cache.recent_decisions_of_ours(Timestamp::now()) {
        let said = uid
            .as_ref()
            .is_some_and(|uid| ctx.explained.get(uid).is_some());
        if said {
            continue;
        }
        match ctx.csrs.get_opt(&name).await {
            Ok(Some(csr)) if csr.metadata.uid == uid => {
                if let Some(written) = approval::written_decision(&csr) {
                    explain_written(ctx, &csr, &written).await;
                }
            }
            Ok(_) => {} // deleted, or re-created as another request
            Err(error) => {
                ctx.metrics.count_api_error("get");
                tracing::warn!(csr = name, %error, "cannot read a recent decision to explain it; not publishing an Event");
            }
        }
    }
}
