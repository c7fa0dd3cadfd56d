//! Reconciles on a mocked API: what each kind of decision writes, in which order.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::super::reconcile::reconcile;
use super::{ApiServer, Scenario, decisions, ready, stranger};
use crate::decision::{Reason, Verdict, decide};
use crate::inventory::NodeInfo;
use crate::leader::WriteGate;
use crate::policy::{Mode, Policy};
use crate::vocabulary::CLIENT_SIGNER;

const NODE: &str = "worker-1";
const NAME: &str = "worker-1-renewal";

/// A client certificate renewal by Node `worker-1` itself, as its kubelet sends it.
fn renewal_json(resource_version: &str) -> Value {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{NODE}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let mut csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": NAME, "uid": "u-renewal", "resourceVersion": resource_version},
        "spec": {
            "signerName": CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"],
            "username": format!("system:node:{NODE}"),
            "groups": ["system:nodes", "system:authenticated"]
        }
    });
    csr["spec"]["request"] = serde_json::to_value(ByteString(pem.into_bytes())).unwrap();
    csr
}

fn renewal() -> Arc<CertificateSigningRequest> {
    Arc::new(serde_json::from_value(renewal_json("7")).unwrap())
}

/// A ready context whose inventory holds Node `worker-1`.
fn with_node(policy: Policy) -> (super::Context, ApiServer) {
    let (ctx, server) = ready(policy);
    ctx.cache.edit(|inventory| {
        inventory.upsert_node(NodeInfo {
            name: NODE.into(),
            addresses: Vec::new(),
            control_plane: false,
        });
    });
    (ctx, server)
}

fn dry_run() -> Policy {
    Policy {
        mode: Mode::DryRun,
        ..Policy::default()
    }
}

#[tokio::test]
async fn the_renewal_is_one_the_policy_approves() {
    let (ctx, _server) = with_node(Policy::default());
    let facts = crate::facts::csr_facts(&renewal());
    let decision = decide(
        &facts,
        &ctx.cache.read(),
        &Policy::default(),
        jiff::Timestamp::now(),
    );
    assert_eq!(
        (decision.verdict, decision.reason),
        (Verdict::Approve, Reason::ClientRenewal),
        "{}",
        decision.message
    );
}

#[tokio::test]
async fn an_approval_is_one_put_to_approval_then_one_event() {
    let (ctx, server) = with_node(Policy::default());
    let ctx = Arc::new(ctx);
    let api = server.run(Scenario::Writes, NAME, None);
    let action = reconcile(renewal(), ctx.clone()).await.unwrap();
    let (_, calls) = api.await.unwrap();
    assert_eq!(action, Action::await_change());

    let condition = &calls[0].body["status"]["conditions"][0];
    assert_eq!(
        calls[0].body["metadata"]["resourceVersion"], "7",
        "conditional"
    );
    assert_eq!(condition["type"], "Approved");
    assert_eq!(condition["reason"], crate::approval::APPROVED_REASON);
    assert_eq!(condition["status"], "True");
    let event = &calls[1].body;
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["reason"], "Approved");
    assert_eq!(event["regarding"]["name"], NAME);
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .starts_with("ClientRenewal: "),
        "{event}"
    );
    assert!(
        ctx.cache.is_decided(NAME, Some("u-renewal")),
        "known decided before the watch shows it"
    );
}

#[tokio::test]
async fn a_repeated_wait_writes_nothing() {
    let (ctx, server) = ready(Policy::default());
    let ctx = Arc::new(ctx);
    let api = server.run(Scenario::ExplainsOnly, "stranger", None);
    let first = reconcile(stranger(), ctx.clone()).await.unwrap();
    let (mut server, calls) = api.await.unwrap();
    assert_eq!(calls[0].body["type"], "Warning");
    assert_eq!(calls[0].body["reason"], "NotApproved");

    // The requeue finds the same decision: said already, so not said again.
    let again = reconcile(stranger(), ctx.clone()).await.unwrap();
    server.silence("a repeated wait writes nothing").await;
    assert_eq!(first, again, "the same requeue");
    assert_ne!(first, Action::await_change(), "a wait looks again");
    assert_eq!(decisions(&ctx.metrics), 1.0, "counted once");
}

#[tokio::test]
async fn dry_run_writes_only_an_event() {
    let (ctx, server) = with_node(dry_run());
    let ctx = Arc::new(ctx);
    let api = server.run(Scenario::ExplainsOnly, NAME, None);
    let action = reconcile(renewal(), ctx.clone()).await.unwrap();
    let (_, calls) = api.await.unwrap();
    assert_eq!(action, Action::await_change());
    let event = &calls[0].body;
    assert_eq!(event["reason"], "Approved");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.starts_with("[dry-run: nothing written] ClientRenewal: "),
        "{note}"
    );
    assert!(
        !ctx.cache.is_decided(NAME, Some("u-renewal")),
        "nothing written, nothing marked"
    );
}

#[tokio::test]
async fn a_standby_writes_nothing() {
    for policy in [Policy::default(), dry_run()] {
        let (mut ctx, mut server) = with_node(policy);
        ctx.leader = WriteGate::standby();
        let ctx = Arc::new(ctx);
        for csr in [renewal(), stranger()] {
            let action = reconcile(csr, ctx.clone()).await.unwrap();
            assert_eq!(action, Action::await_change(), "election reconciles all");
        }
        server.silence("a standby writes nothing").await;
        assert_eq!(decisions(&ctx.metrics), 0.0, "and decides nothing");
    }
}

#[tokio::test]
async fn a_conflict_rereads_the_csr_once_then_writes_on_the_fresh_object() {
    let (ctx, server) = with_node(Policy::default());
    let ctx = Arc::new(ctx);
    // Someone touched it (a label, say) since the watch showed it: still pending, same uid.
    let mut fresh = renewal_json("8");
    fresh["spec"]["request"] = serde_json::to_value(&renewal().spec.request).unwrap();
    let api = server.run(Scenario::ConflictThenWrites, NAME, Some(fresh));
    let action = tokio::time::timeout(Duration::from_secs(5), reconcile(renewal(), ctx.clone()))
        .await
        .unwrap()
        .unwrap();
    let (_, calls) = api.await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(calls[0].body["metadata"]["resourceVersion"], "7");
    let retry = &calls[2].body;
    assert_eq!(
        retry["metadata"]["resourceVersion"], "8",
        "on the fresh object"
    );
    assert_eq!(retry["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(calls[3].body["reason"], "Approved");
}
