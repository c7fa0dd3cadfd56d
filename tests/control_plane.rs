//! Smoke tests proving the test control plane (tests/harness) is a real kube-apiserver:
//! it records requester identities on CSRs, enforces RBAC including the `approve` verb on
//! `signers`, issues ServiceAccount tokens, and serves the Machine CRDs with status.

mod harness;

use std::time::{Duration, Instant};

use harness::{KUBELET_CLIENT_SIGNER, bind_cluster_role, is_status, service_account_subject};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

const BOOTSTRAPPER: &str =
    "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper";
const BOOTSTRAPPER_GROUPS: [&str; 2] = [
    "system:serviceaccounts",
    "system:serviceaccounts:openshift-machine-config-operator",
];

fn approval(reason: &str) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"status": {"conditions": [{
        "type": "Approved",
        "status": "True",
        "reason": reason,
        "message": "approved by the control-plane smoke test",
    }]}}))
}

/// Approves with PUT on `/approval` (RBAC verb `update`, unlike `patch_approval`'s `patch`).
async fn approve_by_update(
    csrs: &Api<CertificateSigningRequest>,
    name: &str,
    reason: &str,
) -> Result<CertificateSigningRequest, kube::Error> {
    let mut csr = csrs.get(name).await?;
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".to_owned(),
            status: "True".to_owned(),
            reason: Some(reason.to_owned()),
            message: Some("approved by the control-plane smoke test".to_owned()),
            ..Default::default()
        });
    csrs.replace_subresource("approval", name, &PostParams::default(), &csr)
        .await
}

fn is_approved(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Approved" && c.status == "True")
        })
}

#[tokio::test]
async fn bootstrapper_csr_records_identity_and_admin_can_approve() {
    let cp = harness::shared();
    let admin = cp.admin_client();
    bind_cluster_role(
        &admin,
        "smoke-node-bootstrapper",
        "system:node-bootstrapper",
        vec![service_account_subject(
            "openshift-machine-config-operator",
            "node-bootstrapper",
        )],
    )
    .await;

    let name = "smoke-bootstrapper-worker-1";
    let as_bootstrapper: Api<CertificateSigningRequest> =
        Api::all(cp.impersonating_client(BOOTSTRAPPER, &BOOTSTRAPPER_GROUPS));
    // RBAC caches are informer-fed: a fresh binding takes a moment to apply.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match as_bootstrapper
            .create(
                &PostParams::default(),
                &harness::kubelet_client_csr(name, "worker-1"),
            )
            .await
        {
            Ok(_) => break,
            Err(e) if is_status(&e, 403) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create CSR as the node-bootstrapper: {e}"),
        }
    }

    let csrs: Api<CertificateSigningRequest> = Api::all(admin);
    let csr = csrs.get(name).await.expect("read CSR back");
    assert_eq!(csr.spec.username.as_deref(), Some(BOOTSTRAPPER));
    assert_eq!(csr.spec.signer_name, KUBELET_CLIENT_SIGNER);
    let groups = csr.spec.groups.clone().unwrap_or_default();
    for g in BOOTSTRAPPER_GROUPS.iter().chain(&["system:authenticated"]) {
        assert!(
            groups.iter().any(|x| x == g),
            "{g} missing from recorded groups {groups:?}"
        );
    }
    assert!(!is_approved(&csr));

    csrs.patch_approval(name, &PatchParams::default(), &approval("SmokeTest"))
        .await
        .expect("admin approves through /approval");
    let csr = csrs.get(name).await.expect("read approved CSR");
    assert!(is_approved(&csr), "no Approved condition: {:?}", csr.status);
}

#[tokio::test]
async fn node_identity_creates_its_own_csr() {
    let cp = harness::shared();
    let as_node: Api<CertificateSigningRequest> =
        Api::all(cp.impersonating_client("system:node:worker-2", &["system:nodes"]));
    let name = "smoke-node-worker-2";
    as_node
        .create(
            &PostParams::default(),
            &harness::kubelet_client_csr(name, "worker-2"),
        )
        .await
        .expect("the Node authorizer lets a node create CSRs");
    let csr = Api::<CertificateSigningRequest>::all(cp.admin_client())
        .get(name)
        .await
        .expect("read CSR back");
    assert_eq!(csr.spec.username.as_deref(), Some("system:node:worker-2"));
}

#[tokio::test]
async fn approving_needs_approve_on_the_signer() {
    let cp = harness::shared();
    let admin = cp.admin_client();
    let (namespace, account) = ("smoke-rbac", "approver");
    let approver = cp.service_account_client(namespace, account).await;

    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let role = |name: &str, rules: Vec<PolicyRule>| ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        rules: Some(rules),
        ..Default::default()
    };
    let rule = |resources: &[&str], verbs: &[&str], names: Option<&[&str]>| PolicyRule {
        api_groups: Some(vec!["certificates.k8s.io".to_owned()]),
        resources: Some(resources.iter().map(|s| (*s).to_owned()).collect()),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        resource_names: names.map(|ns| ns.iter().map(|s| (*s).to_owned()).collect()),
        ..Default::default()
    };
    let apply = PatchParams::apply("csr-approver-tests").force();
    roles
        .patch(
            "smoke-csr-approval-update",
            &apply,
            &Patch::Apply(role(
                "smoke-csr-approval-update",
                vec![
                    rule(
                        &["certificatesigningrequests"],
                        &["get", "list", "watch"],
                        None,
                    ),
                    rule(&["certificatesigningrequests/approval"], &["update"], None),
                ],
            )),
        )
        .await
        .expect("apply approval-update ClusterRole");
    bind_cluster_role(
        &admin,
        "smoke-csr-approval-update",
        "smoke-csr-approval-update",
        vec![service_account_subject(namespace, account)],
    )
    .await;

    let name = "smoke-rbac-worker-3";
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    csrs.create(
        &PostParams::default(),
        &harness::kubelet_client_csr(name, "worker-3"),
    )
    .await
    .expect("admin creates CSR");

    let as_approver: Api<CertificateSigningRequest> = Api::all(approver);
    // Wait until RBAC lets the account update /approval; then the CertificateApproval
    // admission plugin must still refuse because `approve` on the signer is missing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refusal = loop {
        let err = approve_by_update(&as_approver, name, "NotAllowed")
            .await
            .expect_err("approving without `approve` on signers must fail");
        let text = err.to_string();
        if text.contains("cannot ") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        break err;
    };
    assert!(is_status(&refusal, 403), "expected 403, got {refusal}");
    assert!(
        refusal.to_string().contains(KUBELET_CLIENT_SIGNER),
        "403 should name the signer: {refusal}"
    );
    assert!(!is_approved(&csrs.get(name).await.expect("get CSR")));

    roles
        .patch(
            "smoke-approve-kubelet-client",
            &apply,
            &Patch::Apply(role(
                "smoke-approve-kubelet-client",
                vec![rule(
                    &["signers"],
                    &["approve"],
                    Some(&[KUBELET_CLIENT_SIGNER]),
                )],
            )),
        )
        .await
        .expect("apply signer ClusterRole");
    bind_cluster_role(
        &admin,
        "smoke-approve-kubelet-client",
        "smoke-approve-kubelet-client",
        vec![service_account_subject(namespace, account)],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match approve_by_update(&as_approver, name, "Allowed").await {
            Ok(_) => break,
            Err(e) if is_status(&e, 403) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("approve with `approve` on the signer: {e}"),
        }
    }
    assert!(is_approved(&csrs.get(name).await.expect("get CSR")));
}

#[tokio::test]
async fn machine_crds_serve_status() {
    let cp = harness::shared();
    cp.install_machine_crds().await;
    let admin = cp.admin_client();
    harness::ensure_namespace(&admin, "openshift-machine-api").await;

    let machines: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        "openshift-machine-api",
        &harness::openshift_machine_resource(),
    );
    let mut machine = DynamicObject::new("smoke-worker-4", &harness::openshift_machine_resource());
    machine.data = json!({"spec": {"providerID": "baremetalhost:///openshift-machine-api/h4"}});
    machines
        .create(&PostParams::default(), &machine)
        .await
        .expect("create OpenShift Machine");
    let status = json!({"status": {
        "phase": "Provisioned",
        "addresses": [
            {"type": "InternalIP", "address": "192.0.2.4"},
            {"type": "Hostname", "address": "worker-4"},
        ],
        "nodeRef": {"kind": "Node", "name": "worker-4"},
    }});
    machines
        .patch_status(
            "smoke-worker-4",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("patch Machine status");
    let back = machines
        .get("smoke-worker-4")
        .await
        .expect("read Machine back");
    assert_eq!(
        back.data["status"]["addresses"],
        status["status"]["addresses"]
    );
    assert_eq!(back.data["status"]["nodeRef"]["name"], "worker-4");
    assert_eq!(
        back.data["spec"]["providerID"],
        "baremetalhost:///openshift-machine-api/h4"
    );

    // Status is a subresource: a plain update does not change it.
    let ignored = json!({"status": {"phase": "Deleting"}});
    machines
        .patch(
            "smoke-worker-4",
            &PatchParams::default(),
            &Patch::Merge(&ignored),
        )
        .await
        .expect("patch Machine main resource");
    let back = machines
        .get("smoke-worker-4")
        .await
        .expect("read Machine back");
    assert_eq!(back.data["status"]["phase"], "Provisioned");

    harness::ensure_namespace(&admin, "capi-smoke").await;
    let capi: Api<DynamicObject> =
        Api::namespaced_with(admin, "capi-smoke", &harness::capi_machine_resource());
    let mut machine = DynamicObject::new("smoke-worker-5", &harness::capi_machine_resource());
    machine.data = json!({"spec": {"clusterName": "c1", "bootstrap": {"dataSecretName": "x"}}});
    capi.create(&PostParams::default(), &machine)
        .await
        .expect("create CAPI Machine");
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "192.0.2.5"}],
        "nodeRef": {"apiVersion": "v1", "kind": "Node", "name": "worker-5", "uid": "u5"},
    }});
    capi.patch_status(
        "smoke-worker-5",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .expect("patch CAPI Machine status");
    let back = capi
        .get("smoke-worker-5")
        .await
        .expect("read CAPI Machine back");
    assert_eq!(back.data["status"], status["status"]);
    assert_eq!(back.data["spec"]["bootstrap"]["dataSecretName"], "x");
}

#[test]
fn kubeconfig_works_with_kubectl() {
    let cp = harness::shared();
    let out = cp.kubectl(&["get", "--raw", "/readyz"]);
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let out = cp.kubectl(&["auth", "can-i", "approve", "signers"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "yes",
        "admin is system:masters"
    );
}

/// A private control plane is really gone after drop: port closed, directory removed.
#[test]
fn dropping_a_control_plane_stops_it() {
    let cp = harness::ControlPlane::start();
    let dir = cp.dir().to_path_buf();
    let addr = cp.server_url().trim_start_matches("https://").to_owned();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    assert!(dir.join("kube-apiserver.log").is_file());
    drop(cp);
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "apiserver still listening"
    );
    assert!(!dir.exists(), "{} not removed", dir.display());
}
