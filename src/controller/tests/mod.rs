//! The reconciler against a mocked API server (controller-rs style): a `tower_test` mock
//! service behind a real `kube::Client`, an [`ApiServer`] that answers the calls a
//! [`Scenario`] expects, in order, and fails on any other or on silence where a call was due.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod explain;
mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use ::http::{Request, Response};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::context::Context;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::vocabulary::CLIENT_SIGNER;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// A context on a mocked API, and the server side of that API.
fn context() -> (Context, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let context = Context::test(Client::new(service, "default"));
    (context, ApiServer(handle))
}

/// [`context`], ready to decide under `policy`: caches synced, the policy in force.
fn ready(policy: Policy) -> (Context, ApiServer) {
    let (ctx, server) = context();
    ctx.policy.offer::<String>(Ok(policy));
    ctx.readiness.set_policy_loaded();
    ctx.readiness.set_caches_synced();
    (ctx, server)
}

/// One request as the API server saw it: method, path, query (without the leading `?`)
/// and JSON body (`Null` when there is none).
#[derive(Debug)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

impl Call {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// What the API server answers a call with.
enum Reply {
    /// 200 with the request's own body: what a PUT or a POST would return.
    Echo,
    /// 200 with this body.
    Json(Value),
    /// A `Status` failure with this code and reason.
    Status(u16, &'static str),
}

/// The calls a reconcile is expected to make, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Exactly one PUT of the verdict to `/approval`, then one Event.
    Writes,
    /// Only the Event: dry-run, or a decision that leaves the CSR pending.
    ExplainsOnly,
    /// The approval PUT answered 409; the CSR re-read once (`fresh`), written again, and
    /// then the Event.
    ConflictThenWrites,
}

struct ApiServer(Handle);

impl ApiServer {
    /// The next call, answered with `reply`; fails after a second without one.
    async fn answer(&mut self, reply: Reply) -> Call {
        let (request, send) = tokio::time::timeout(Duration::from_secs(1), self.0.next_request())
            .await
            .expect("a call within a second")
            .expect("the client is alive");
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        send.send_response(match reply {
            Reply::Echo => json_response(200, &body),
            Reply::Json(value) => json_response(200, &value),
            Reply::Status(code, reason) => status(code, reason),
        });
        Call {
            method,
            path,
            query,
            body,
        }
    }

    /// No call at all for a while (controller-rs' `RadioSilence`).
    async fn silence(&mut self, why: &str) {
        let call = tokio::time::timeout(Duration::from_millis(200), self.0.next_request()).await;
        if let Ok(Some((request, _))) = call {
            panic!("{why}: got {} {}", request.method(), request.uri());
        }
    }

    /// Answers the calls of `scenario` about CSR `name` in another task; the task returns
    /// them for their bodies to be checked. `fresh` is what a re-read returns.
    fn run(
        mut self,
        scenario: Scenario,
        name: &str,
        fresh: Option<Value>,
    ) -> tokio::task::JoinHandle<(ApiServer, Vec<Call>)> {
        let approval = format!("{CSRS}/{name}/approval");
        let csr = format!("{CSRS}/{name}");
        tokio::spawn(async move {
            let mut calls = Vec::new();
            if scenario == Scenario::ConflictThenWrites {
                let put = self.answer(Reply::Status(409, "Conflict")).await;
                assert!(put.is("PUT", &approval), "{put:?}");
                let get = self
                    .answer(Reply::Json(fresh.expect("a fresh CSR to re-read")))
                    .await;
                assert!(get.is("GET", &csr), "one re-read: {get:?}");
                calls.extend([put, get]);
            }
            if scenario != Scenario::ExplainsOnly {
                let put = self.answer(Reply::Echo).await;
                assert!(put.is("PUT", &approval), "{put:?}");
                calls.push(put);
            }
            let event = self.answer(Reply::Echo).await;
            assert!(event.is("POST", EVENTS), "{event:?}");
            calls.push(event);
            self.silence("nothing after the Event").await;
            (self, calls)
        })
    }
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "code": code, "reason": reason, "message": format!("{reason} says the apiserver")});
    json_response(code, &body)
}

/// A pending CSR from a stranger: any policy in force has something to say about it.
fn stranger() -> Arc<CertificateSigningRequest> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "stranger", "uid": "u-1", "resourceVersion": "7"},
            "spec": {
                "request": "",
                "signerName": CLIENT_SIGNER,
                "usages": ["digital signature", "client auth"],
                "username": "mallory"
            }
        }))
        .unwrap(),
    )
}

/// The sum of the samples of every series whose line starts with `line_start`.
fn metric(metrics: &Metrics, line_start: &str) -> f64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn decisions(metrics: &Metrics) -> f64 {
    metric(metrics, "csr_approver_decisions_total{")
}
