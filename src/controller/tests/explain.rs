//! What the controller says, and when it stays silent: before it is ready, after a failed
//! write, and about decisions written by a writer that stopped before explaining them.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::runtime::controller::Action;
use serde_json::json;

use super::super::explain::{explain_recent_decisions, explain_write_failure, explain_written};
use super::super::reconcile::reconcile;
use super::{ApiServer, CSRS, EVENTS, Reply, context, decisions, metric, stranger};
use crate::approval::{self, fixtures::approve};
use crate::policy::Policy;
use crate::vocabulary::CLIENT_SIGNER;

async fn assert_silent(ctx: Arc<super::Context>, server: &mut ApiServer) {
    let action = reconcile(stranger(), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(decisions(&ctx.metrics), 0.0, "no decision before ready");
    server
        .silence("no API call (write or Event) before ready")
        .await;
}

#[tokio::test]
async fn nothing_is_decided_before_the_caches_sync() {
    let (ctx, mut server) = context();
    ctx.policy.offer::<String>(Ok(Policy::default()));
    ctx.readiness.set_policy_loaded();
    let ctx = Arc::new(ctx);
    assert_silent(ctx.clone(), &mut server).await;

    // Once ready, the same CSR is decided (the Event's POST fails: nobody answers).
    drop(server);
    ctx.readiness.set_caches_synced();
    let _ = reconcile(stranger(), ctx.clone()).await.unwrap();
    assert_eq!(decisions(&ctx.metrics), 1.0);
}

#[tokio::test]
async fn nothing_is_decided_without_a_policy_in_force() {
    let (ctx, mut server) = context();
    ctx.readiness.set_caches_synced();
    // An invalid policy at start-up puts none in force.
    ctx.policy
        .offer::<String>(Err("serving.allowedIPRanges[0]: invalid CIDR".to_string()));
    assert_silent(Arc::new(ctx), &mut server).await;
}

fn write_error(code: u16, reason: &str, message: &str) -> approval::ApprovalError {
    approval::ApprovalError::Write {
        name: "stranger".into(),
        source: kube::Error::Api(
            kube::core::Status::failure(message, reason)
                .with_code(code)
                .boxed(),
        ),
    }
}

/// `explain_write_failure` in a task, so that the test can answer its Event.
fn explain_failure(
    ctx: &Arc<super::Context>,
    csr: &Arc<CertificateSigningRequest>,
    error: approval::ApprovalError,
) -> tokio::task::JoinHandle<()> {
    let (ctx, csr) = (ctx.clone(), csr.clone());
    tokio::spawn(async move { explain_write_failure(&ctx, &csr, &approve(), &error).await })
}

#[tokio::test]
async fn a_failing_write_is_one_warning_event_per_cause_and_counted_by_cause() {
    let (ctx, mut server) = context();
    let ctx = Arc::new(ctx);
    let csr = stranger();
    let forbidden = || write_error(403, "Forbidden", "stranger is forbidden");
    let task = explain_failure(&ctx, &csr, forbidden());
    let call = server.answer(Reply::Json(json!({}))).await;
    task.await.unwrap();
    assert!(call.is("POST", EVENTS), "{call:?}");
    let event = call.body;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], approval::FAILURE_REASON);
    assert_eq!(event["regarding"]["name"], "stranger");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("HTTP 403 Forbidden: stranger is forbidden"),
        "{note}"
    );

    // The 5-second retries fail the same way: counted, not announced again.
    for _ in 0..3 {
        // Bounded: a repeated Event would wait for an answer no one sends.
        tokio::time::timeout(
            Duration::from_secs(1),
            explain_write_failure(&ctx, &csr, &approve(), &forbidden()),
        )
        .await
        .expect("no second Event for the same cause");
    }
    server
        .silence("one Event per cause, not one per retry")
        .await;
    let failures = |cause: &str, write: &str| {
        metric(
            &ctx.metrics,
            &format!(r#"csr_approver_write_failures_total{{cause="{cause}",write="{write}"}}"#),
        )
    };
    assert_eq!(failures("forbidden", "approval"), 4.0);

    // A new cause is news; this time the Event itself is refused too (no RBAC in
    // default either): counted as a failed Event write, and not retried.
    let task = explain_failure(
        &ctx,
        &csr,
        write_error(503, "ServiceUnavailable", "etcd is away"),
    );
    let call = server.answer(Reply::Status(403, "Forbidden")).await;
    task.await.unwrap();
    assert_eq!(call.path, EVENTS);
    assert!(
        call.body["note"].as_str().unwrap().contains("HTTP 503"),
        "{:?}",
        call.body
    );
    server.silence("a refused Event is not retried").await;
    assert_eq!(failures("forbidden", "event"), 1.0);
    assert_eq!(failures("unavailable", "approval"), 1.0);
}

/// A CSR csr-approver approved `ago` ago, as its condition shows.
fn approved_by_us(ago: Duration) -> Arc<CertificateSigningRequest> {
    let at = Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "worker-1-client", "uid": "u-9", "resourceVersion": "8"},
            "spec": {"request": "", "signerName": CLIENT_SIGNER},
            "status": {"conditions": [{
                "type": "Approved", "status": "True", "reason": approval::APPROVED_REASON,
                "message": "csr-approver: NewNodeMachine: Machine openshift-machine-api/worker-1",
                "lastUpdateTime": at.to_string()
            }]}
        }))
        .unwrap(),
    )
}

/// `explain_written` in a task, so that the test can answer its calls.
fn explain_later(
    ctx: &Arc<super::Context>,
    csr: &Arc<CertificateSigningRequest>,
) -> tokio::task::JoinHandle<()> {
    let (ctx, csr) = (ctx.clone(), csr.clone());
    let written = approval::written_decision(&csr).unwrap();
    tokio::spawn(async move { explain_written(&ctx, &csr, &written).await })
}

#[tokio::test]
async fn a_decision_written_but_not_explained_is_explained_once() {
    let (ctx, mut server) = context();
    let ctx = Arc::new(ctx);
    let csr = approved_by_us(Duration::from_secs(20));
    let task = explain_later(&ctx, &csr);
    let list = server.answer(Reply::Json(json!({"items": []}))).await;
    assert_eq!(list.method, "GET");
    assert!(
        list.path == "/api/v1/namespaces/default/events"
            && list.query.contains("involvedObject.name%3Dworker-1-client"),
        "{list:?}"
    );
    let call = server.answer(Reply::Json(json!({}))).await;
    task.await.unwrap();
    assert!(call.is("POST", EVENTS), "{call:?}");
    assert_eq!(call.body["type"], "Normal");
    assert_eq!(call.body["reason"], "Approved");
    assert_eq!(
        call.body["note"],
        "NewNodeMachine: Machine openshift-machine-api/worker-1"
    );
    // Seen again (a re-list, a policy change): nothing more, not even a list.
    let written = approval::written_decision(&csr).unwrap();
    explain_written(&ctx, &csr, &written).await;
    server.silence("explained once per process").await;
}

#[tokio::test]
async fn a_written_decision_an_event_explains_or_an_old_one_gets_no_event() {
    let (ctx, mut server) = context();
    let ctx = Arc::new(ctx);
    // Explained by the replica that wrote it.
    let task = explain_later(&ctx, &approved_by_us(Duration::from_secs(20)));
    let existing = json!({"items": [{
        "metadata": {"name": "worker-1-client.1", "namespace": "default"},
        "involvedObject": {"kind": "CertificateSigningRequest", "name": "worker-1-client", "uid": "u-9"},
        "reason": "Approved", "type": "Normal", "reportingComponent": "csr-approver",
        "message": "NewNodeMachine: Machine openshift-machine-api/worker-1"
    }]});
    let _ = server.answer(Reply::Json(existing)).await;
    task.await.unwrap();
    server.silence("no second Approved Event").await;

    // Decided an hour ago: outside the window, not even looked up.
    let mut other = (*approved_by_us(Duration::from_secs(3600))).clone();
    other.metadata.uid = Some("u-10".into());
    explain_written(&ctx, &other, &approval::written_decision(&other).unwrap()).await;
    server.silence("an old decision is history").await;
}

#[tokio::test]
async fn a_new_leader_explains_the_recent_decisions_of_ours_it_finds_unexplained() {
    let (ctx, mut server) = context();
    let ctx = Arc::new(ctx);
    let csr = approved_by_us(Duration::from_secs(20));
    ctx.cache.observe(&csr);
    let mut old = (*approved_by_us(Duration::from_secs(3600))).clone();
    old.metadata.name = Some("worker-0-client".into());
    old.metadata.uid = Some("u-0".into());
    ctx.cache.observe(&old);

    // Not ready: nothing read, nothing said.
    explain_recent_decisions(&ctx).await;
    server.silence("nothing before ready").await;

    ctx.policy.offer::<String>(Ok(Policy::default()));
    ctx.readiness.set_policy_loaded();
    ctx.readiness.set_caches_synced();
    let task = {
        let ctx = ctx.clone();
        tokio::spawn(async move { explain_recent_decisions(&ctx).await })
    };
    let get = server
        .answer(Reply::Json(serde_json::to_value(&*csr).unwrap()))
        .await;
    assert!(
        get.is("GET", &format!("{CSRS}/worker-1-client")),
        "only the recent one is read: {get:?}"
    );
    let list = server.answer(Reply::Json(json!({"items": []}))).await;
    assert_eq!(list.method, "GET");
    let post = server.answer(Reply::Json(json!({}))).await;
    task.await.unwrap();
    assert!(post.is("POST", EVENTS), "{post:?}");
    assert_eq!(post.body["reason"], "Approved");

    // The next "look again": spoken of already, not even read.
    explain_recent_decisions(&ctx).await;
    server.silence("explained once per process").await;
}
