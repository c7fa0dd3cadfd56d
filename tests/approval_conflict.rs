//! Writing a verdict against a scripted API (tower-test): the apiserver's 409 on the
//! `/approval` PUT must lead to a re-read, and a CSR someone else decided meanwhile must
//! never get a second condition from us.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use builders::Request;
use csr_approver::approval::{RecordError, Written, record_minted, record_vouched, write_verdict};
use csr_approver::decision::{Decision, Reason, Verdict};
use csr_approver::identity::{HostGeneration, Minted, NodeIdentity};
use csr_approver::vocabulary::AddressValue;
use http::{Method, Response, StatusCode};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::client::Body;
use kube::{Api, Client};
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<http::Request<Body>, Response<Body>>;

fn csr(conditions: Value) -> CertificateSigningRequest {
    serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "worker-1-client", "resourceVersion": "1"},
        "spec": {
            "request": k8s_openapi::ByteString(Request::node("worker-1").pem()),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"]
        },
        "status": {"conditions": conditions}
    }))
    .unwrap()
}

fn approve() -> Decision {
    Decision {
        verdict: Verdict::Approve,
        reason: Reason::NewNodeMachine,
        message: "Machine openshift-machine-api/worker-1 address InternalDNS=worker-1".to_string(),
        node: Some("worker-1".to_string()),
        wants: None,
        mints_for: None,
        vouches_for: Vec::new(),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
           "message": "the object has been modified"})
}

async fn body_json(request: http::Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Expects one request with `method` on `path`; returns its JSON body (if any).
async fn expect(
    handle: &mut Handle,
    method: Method,
    path: &str,
    reply: Response<Body>,
) -> Option<Value> {
    let (request, send) =
        tokio::time::timeout(std::time::Duration::from_secs(2), handle.next_request())
            .await
            .expect("a request within 2 s")
            .expect("service still open");
    assert_eq!(request.method(), method);
    assert_eq!(request.uri().path(), path);
    let body = if method == Method::PUT {
        Some(body_json(request).await)
    } else {
        None
    };
    send.send_response(reply);
    body
}

const APPROVAL: &str =
    "/apis/certificates.k8s.io/v1/certificatesigningrequests/worker-1-client/approval";
const OBJECT: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests/worker-1-client";

fn setup() -> (Api<CertificateSigningRequest>, Handle) {
    let (service, handle) = tower_test::mock::pair::<http::Request<Body>, Response<Body>>();
    (Api::all(Client::new(service, "default")), handle)
}

/// The scenario every conflict test starts with: our PUT is answered 409, and the fresh
/// read that follows is answered `reply`.
async fn conflict_then_read(handle: &mut Handle, reply: Response<Body>) {
    expect(
        handle,
        Method::PUT,
        APPROVAL,
        json_response(StatusCode::CONFLICT, &conflict()),
    )
    .await;
    expect(handle, Method::GET, OBJECT, reply).await;
}

#[tokio::test]
async fn approval_is_one_put_with_the_approved_condition() {
    let (api, mut handle) = setup();
    let pending = csr(json!([]));
    let server = tokio::spawn(async move {
        let body = expect(
            &mut handle,
            Method::PUT,
            APPROVAL,
            json_response(
                StatusCode::OK,
                &json!(csr(json!([{"type": "Approved", "status": "True"}]))),
            ),
        )
        .await
        .unwrap();
        let condition = &body["status"]["conditions"][0];
        assert_eq!(condition["type"], "Approved");
        assert_eq!(condition["status"], "True");
        assert_eq!(condition["reason"], "AutoApproved");
        assert!(
            condition["message"]
                .as_str()
                .unwrap()
                .contains("InternalDNS=worker-1")
        );
        assert_eq!(
            body["metadata"]["resourceVersion"], "1",
            "the write is conditional on what we decided on"
        );
    });
    assert_eq!(
        write_verdict(&api, &pending, &approve()).await.unwrap(),
        Written::Done
    );
    server.await.unwrap();
}

#[tokio::test]
async fn conflict_with_someone_elses_decision_writes_nothing_more() {
    let (api, mut handle) = setup();
    let pending = csr(json!([]));
    let server = tokio::spawn(async move {
        let denied_elsewhere =
            csr(json!([{"type": "Denied", "status": "True", "reason": "AdminDenied"}]));
        conflict_then_read(
            &mut handle,
            json_response(StatusCode::OK, &json!(denied_elsewhere)),
        )
        .await;
        assert_silence(
            &mut handle,
            "no second write after a conflict with a decided CSR",
        )
        .await;
    });
    let written = write_verdict(&api, &pending, &approve()).await.unwrap();
    assert_eq!(
        written,
        Written::AlreadyDecided(csr_approver::inventory::CsrState::Denied)
    );
    server.await.unwrap();
}

#[tokio::test]
async fn conflict_on_a_still_pending_csr_is_retried_once_on_the_fresh_object() {
    let (api, mut handle) = setup();
    let pending = csr(json!([]));
    let server = tokio::spawn(async move {
        let mut fresh = csr(json!([]));
        fresh.metadata.resource_version = Some("2".to_string());
        conflict_then_read(&mut handle, json_response(StatusCode::OK, &json!(fresh))).await;
        let body = expect(
            &mut handle,
            Method::PUT,
            APPROVAL,
            json_response(
                StatusCode::OK,
                &json!(csr(json!([{"type": "Approved", "status": "True"}]))),
            ),
        )
        .await
        .unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], "2");
        assert_eq!(
            body["status"]["conditions"].as_array().unwrap().len(),
            1,
            "exactly one condition added"
        );
    });
    assert_eq!(
        write_verdict(&api, &pending, &approve()).await.unwrap(),
        Written::Done
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_second_conflict_is_an_error_not_a_loop() {
    let (api, mut handle) = setup();
    let pending = csr(json!([]));
    let server = tokio::spawn(async move {
        conflict_then_read(
            &mut handle,
            json_response(StatusCode::OK, &json!(csr(json!([])))),
        )
        .await;
        expect(
            &mut handle,
            Method::PUT,
            APPROVAL,
            json_response(StatusCode::CONFLICT, &conflict()),
        )
        .await;
    });
    assert!(write_verdict(&api, &pending, &approve()).await.is_err());
    server.await.unwrap();
}

/// Asserts that no request arrives within 300 ms.
async fn assert_silence(handle: &mut Handle, why: &str) {
    let silence =
        tokio::time::timeout(std::time::Duration::from_millis(300), handle.next_request()).await;
    assert!(silence.is_err() || silence.unwrap().is_none(), "{why}");
}

#[tokio::test]
async fn a_csr_recreated_under_its_name_is_not_decided_on_the_old_ones_evidence() {
    let (api, mut handle) = setup();
    let mut pending = csr(json!([]));
    pending.metadata.uid = Some("uid-judged".to_string());
    let server = tokio::spawn(async move {
        // Deleted and re-created meanwhile: pending, but another request.
        let mut other = csr(json!([]));
        other.metadata.uid = Some("uid-other".to_string());
        other.metadata.resource_version = Some("5".to_string());
        conflict_then_read(&mut handle, json_response(StatusCode::OK, &json!(other))).await;
        assert_silence(&mut handle, "no write onto a different CSR").await;
    });
    assert_eq!(
        write_verdict(&api, &pending, &approve()).await.unwrap(),
        Written::Gone
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_csr_deleted_meanwhile_is_gone_not_an_error() {
    let (api, mut handle) = setup();
    let pending = csr(json!([]));
    let server = tokio::spawn(async move {
        let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not found"});
        conflict_then_read(
            &mut handle,
            json_response(StatusCode::NOT_FOUND, &not_found),
        )
        .await;
        assert_silence(&mut handle, "nothing more for a deleted CSR").await;
    });
    assert_eq!(
        write_verdict(&api, &pending, &approve()).await.unwrap(),
        Written::Gone
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_csr_without_resource_version_is_never_written_unconditionally() {
    let (api, mut handle) = setup();
    let mut pending = csr(json!([]));
    pending.metadata.resource_version = None;
    let server = tokio::spawn(async move {
        assert_silence(&mut handle, "no PUT without a resourceVersion").await;
    });
    assert!(matches!(
        write_verdict(&api, &pending, &approve()).await,
        Err(csr_approver::approval::ApprovalError::NoResourceVersion { .. })
    ));
    server.await.unwrap();
}

// ---- The NodeIdentity record, written before an approval that mints an identity ----

const RECORDS: &str = "/apis/csr-approver.io/v1alpha1/nodeidentities";
const RECORD: &str = "/apis/csr-approver.io/v1alpha1/nodeidentities/worker-1";

fn generation() -> HostGeneration {
    HostGeneration {
        key: "Machine machine.openshift.io/openshift-machine-api/worker-1 created t".into(),
        source: "Machine openshift-machine-api/worker-1 (machine.openshift.io)".into(),
        names: vec!["worker-1".into()],
    }
}

fn minted(csr: &str) -> Minted {
    Minted {
        csr: csr.into(),
        csr_uid: Some(format!("uid-{csr}")),
        reason: "NewNodeMachine".into(),
        requester: "bootstrapper".into(),
        at: jiff::Timestamp::UNIX_EPOCH,
        host_generation: generation().key,
    }
}

fn record_at(version: &str, csrs: &[&str]) -> NodeIdentity {
    let mut record = NodeIdentity::first(generation(), minted(csrs[0]), "worker-1");
    for csr in &csrs[1..] {
        record = record.with_minted(generation(), minted(csr)).unwrap();
    }
    record.metadata.resource_version = Some(version.into());
    record
}

fn setup_records() -> (Api<NodeIdentity>, Handle) {
    let (service, handle) = tower_test::mock::pair::<http::Request<Body>, Response<Body>>();
    (Api::all(Client::new(service, "default")), handle)
}

async fn expect_body(
    handle: &mut Handle,
    method: Method,
    path: &str,
    reply: Response<Body>,
) -> Value {
    let (request, send) =
        tokio::time::timeout(std::time::Duration::from_secs(2), handle.next_request())
            .await
            .expect("a request within 2 s")
            .expect("service still open");
    assert_eq!((request.method(), request.uri().path()), (&method, path));
    let body = body_json(request).await;
    send.send_response(reply);
    body
}

#[tokio::test]
async fn a_first_identity_creates_the_record_in_one_request() {
    let (api, mut handle) = setup_records();
    let server = tokio::spawn(async move {
        let body = expect_body(
            &mut handle,
            Method::POST,
            RECORDS,
            json_response(StatusCode::CREATED, &json!(record_at("1", &["first"]))),
        )
        .await;
        assert_eq!(body["metadata"]["name"], "worker-1");
        assert_eq!(body["spec"]["minted"][0]["csr"], "first");
        assert_eq!(body["spec"]["hostGeneration"]["names"][0], "worker-1");
    });
    let written = record_minted(&api, "worker-1", None, generation(), minted("first"))
        .await
        .unwrap()
        .expect("the record written");
    assert_eq!(written.metadata.resource_version.as_deref(), Some("1"));
    server.await.unwrap();
}

#[tokio::test]
async fn a_record_changed_since_the_decision_is_not_overwritten_but_read_again() {
    let (api, mut handle) = setup_records();
    let seen = record_at("5", &["first"]);
    let server = tokio::spawn(async move {
        let body = expect_body(
            &mut handle,
            Method::PUT,
            RECORD,
            json_response(StatusCode::CONFLICT, &conflict()),
        )
        .await;
        assert_eq!(
            body["metadata"]["resourceVersion"], "5",
            "conditional on the version decided on"
        );
        assert_eq!(body["spec"]["minted"][1]["csr"], "second");
        expect(
            &mut handle,
            Method::GET,
            RECORD,
            json_response(StatusCode::OK, &json!(record_at("6", &["first", "other"]))),
        )
        .await;
    });
    let error = record_minted(
        &api,
        "worker-1",
        Some(&seen),
        generation(),
        minted("second"),
    )
    .await
    .unwrap_err();
    let RecordError::Stale {
        live: Some(live), ..
    } = error
    else {
        panic!("a conflict is a stale decision: {error}");
    };
    assert_eq!(
        live.spec.minted[1].csr, "other",
        "decided again on the live record"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_record_created_meanwhile_is_read_rather_than_replaced() {
    let (api, mut handle) = setup_records();
    let server = tokio::spawn(async move {
        expect_body(
            &mut handle,
            Method::POST,
            RECORDS,
            json_response(
                StatusCode::CONFLICT,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "AlreadyExists", "code": 409}),
            ),
        )
        .await;
        expect(
            &mut handle,
            Method::GET,
            RECORD,
            json_response(StatusCode::OK, &json!(record_at("3", &["earlier"]))),
        )
        .await;
    });
    let error = record_minted(&api, "worker-1", None, generation(), minted("second"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RecordError::Stale { live: Some(live), .. } if live.spec.minted[0].csr == "earlier"),
        "{error}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_record_holding_this_csr_already_needs_no_write() {
    let (api, _handle) = setup_records();
    let seen = record_at("5", &["first"]);
    let written = record_minted(&api, "worker-1", Some(&seen), generation(), minted("first"))
        .await
        .unwrap();
    assert_eq!(written, Some(seen));
}

/// §8: a serving approval under `KubeletCertificate` records the addresses independent
/// evidence vouched for; a node csr-approver never minted an identity for gets a record
/// of its own, in one request.
#[tokio::test]
async fn vouched_addresses_create_a_record_without_an_identity() {
    let (api, mut handle) = setup_records();
    let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let server = tokio::spawn(async move {
        let mut created = NodeIdentity::empty("worker-1");
        created.metadata.resource_version = Some("1".into());
        let body = expect_body(
            &mut handle,
            Method::POST,
            RECORDS,
            json_response(StatusCode::CREATED, &json!(created)),
        )
        .await;
        assert_eq!(body["spec"]["node"], "worker-1");
        assert_eq!(body["spec"].get("hostGeneration"), None, "{body}");
        assert_eq!(body["spec"]["servingAddresses"][0]["address"], "10.0.0.11");
        assert_eq!(
            body["spec"]["servingAddresses"][1]["address"],
            "worker-1.example.com"
        );
        assert_eq!(
            body["spec"]["servingAddresses"][0]["independentlyVouchedAt"],
            "2027-01-15T08:00:00Z"
        );
    });
    let addresses = [
        AddressValue::parse("10.0.0.11"),
        AddressValue::parse("Worker-1.Example.com."),
    ];
    record_vouched(&api, "worker-1", None, &addresses, at)
        .await
        .unwrap()
        .expect("the record written");
    server.await.unwrap();
}

#[tokio::test]
async fn vouching_refreshed_within_the_hour_needs_no_request() {
    let (api, _handle) = setup_records();
    let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let addresses = [AddressValue::parse("10.0.0.11")];
    let mut seen = record_at("5", &["first"])
        .with_vouched(&addresses, at)
        .unwrap();
    seen.metadata.resource_version = Some("6".into());
    let later = at + jiff::SignedDuration::from_mins(59);
    let written = record_vouched(&api, "worker-1", Some(&seen), &addresses, later)
        .await
        .unwrap();
    assert_eq!(written, Some(seen), "no request: the mock would hang");
}

#[tokio::test]
async fn vouching_replaces_the_record_conditionally_and_keeps_its_identities() {
    let (api, mut handle) = setup_records();
    let seen = record_at("5", &["first"]);
    let server = tokio::spawn(async move {
        let body = expect_body(
            &mut handle,
            Method::PUT,
            RECORD,
            json_response(StatusCode::CONFLICT, &conflict()),
        )
        .await;
        assert_eq!(body["metadata"]["resourceVersion"], "5");
        assert_eq!(body["spec"]["minted"][0]["csr"], "first");
        assert_eq!(body["spec"]["servingAddresses"][0]["address"], "10.0.0.11");
        expect(
            &mut handle,
            Method::GET,
            RECORD,
            json_response(StatusCode::OK, &json!(record_at("6", &["first"]))),
        )
        .await;
    });
    let error = record_vouched(
        &api,
        "worker-1",
        Some(&seen),
        &[AddressValue::parse("10.0.0.11")],
        jiff::Timestamp::from_second(1_800_000_000).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, RecordError::Stale { live: Some(_), .. }),
        "{error}"
    );
    server.await.unwrap();
}
