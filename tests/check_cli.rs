//! `csr-approver check` and `policy validate` as a user runs them: the real binary, real
//! files in the formats kubectl prints.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use builders::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_csr-approver");
const NOW: &str = "2026-11-23T12:00:00Z";

fn csr_object(
    name: &str,
    signer: &str,
    user: &str,
    groups: &[&str],
    usages: &[&str],
    request: &Request,
    created: &str,
) -> Value {
    let encoded = serde_json::to_value(k8s_openapi::ByteString(request.pem())).expect("base64");
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {
            "request": encoded,
            "signerName": signer,
            "username": user,
            "groups": groups,
            "usages": usages,
        },
        "status": {}
    })
}

fn client_csr(name: &str, node: &str) -> Value {
    csr_object(
        name,
        "kubernetes.io/kube-apiserver-client-kubelet",
        BOOTSTRAPPER,
        &BOOTSTRAPPER_GROUPS,
        &CLIENT_USAGES,
        &Request::node(node),
        "2026-11-23T11:59:00Z",
    )
}

fn serving_csr(name: &str, node: &str, ip: &str) -> Value {
    csr_object(
        name,
        "kubernetes.io/kubelet-serving",
        &format!("system:node:{node}"),
        &["system:nodes", "system:authenticated"],
        &SERVING_USAGES,
        &Request::node(node).ip(ip),
        "2026-11-23T11:59:30Z",
    )
}

fn machine_object(name: &str, host: &str, node_ref: Option<&str>) -> Value {
    let mut status = json!({"addresses": [{"type": "InternalDNS", "address": host}, {"type": "InternalIP", "address": "10.0.0.11"}]});
    if let Some(n) = node_ref {
        status["nodeRef"] = json!({"kind": "Node", "name": n});
    }
    json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "Machine",
        "metadata": {"name": name, "namespace": "openshift-machine-api", "creationTimestamp": "2026-11-23T11:50:00Z"},
        "status": status
    })
}

fn node_object(name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
}

fn write_yaml(dir: &Path, file: &str, documents: &[Value]) -> PathBuf {
    let text = documents
        .iter()
        .map(|d| serde_saphyr::to_string(d).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n");
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write");
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `check --objects OBJECTS --now NOW -o json CSRS`, which must succeed: its JSON lines.
fn check_offline(objects: &Path, csrs: &Path) -> Vec<Value> {
    let out = run(&[
        "check",
        "--objects",
        objects.to_str().unwrap(),
        "--now",
        NOW,
        "-o",
        "json",
        csrs.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&out)
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect()
}

/// worker-1 is joining (Machine, no Node), worker-2 is registered (Node, linked Machine).
fn cluster(dir: &Path) -> PathBuf {
    write_yaml(
        dir,
        "cluster.yaml",
        &[list(vec![
            machine_object("worker-1", "worker-1", None),
            machine_object("worker-2", "worker-2", Some("worker-2")),
            node_object("worker-2", "10.0.0.12"),
        ])],
    )
}

#[test]
fn kubectl_list_is_explained_in_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = cluster(dir.path());
    let csrs = write_yaml(
        dir.path(),
        "csrs.yaml",
        &[list(vec![
            client_csr("csr-w1", "worker-1"),
            serving_csr("csr-w1-serving", "worker-1", "10.0.0.11"),
            serving_csr("csr-w2-serving", "worker-2", "10.0.0.12"),
            serving_csr("csr-w2-forged", "worker-2", "10.0.0.13"),
            client_csr("csr-stranger", "worker-9"),
        ])],
    );
    let out = run(&[
        "check",
        "--objects",
        objects.to_str().unwrap(),
        "--now",
        NOW,
        "-o",
        "json",
        csrs.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let got: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["verdict"].as_str().unwrap().to_string(),
                l["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("csr-w1", "approve", "NewNodeMachine"),
        ("csr-w1-serving", "wait", "NodeNotRegistered"),
        ("csr-w2-serving", "approve", "ServingAddressesVerified"),
        ("csr-w2-forged", "wait", "ForeignSan"),
        ("csr-stranger", "wait", "UnknownMachine"),
    ];
    assert_eq!(
        got,
        want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
    // The message names the SAN, the node and what it has (an admin hint may follow).
    let message = lines[3]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "IP SAN 10.0.0.13 is not an address of node worker-2 (has 10.0.0.12, worker-2, 10.0.0.11)"
        ),
        "{message}"
    );
    // `class` says what kind of answer each is; `verdict` keeps its meaning.
    let classes: Vec<&str> = lines.iter().map(|l| l["class"].as_str().unwrap()).collect();
    assert_eq!(
        classes,
        [
            "Approval",
            "Transient",
            "Approval",
            "ForAnAdmin",
            "Transient"
        ]
    );
    for line in &lines {
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["class", "message", "name", "reason", "verdict"]);
    }
}

#[test]
fn table_output_shows_requester_signer_verdict_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = cluster(dir.path());
    let csrs = write_yaml(dir.path(), "one.yaml", &[client_csr("csr-w1", "worker-1")]);
    let out = run(&[
        "check",
        "--objects",
        objects.to_str().unwrap(),
        "--now",
        NOW,
        csrs.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    for column in [
        "NAME",
        "REQUESTER",
        "SIGNER",
        "VERDICT",
        "REASON",
        "MESSAGE",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().expect("one row");
    for cell in [
        "csr-w1",
        BOOTSTRAPPER,
        "kubelet-client",
        "APPROVE",
        "NewNodeMachine",
        "Machine openshift-machine-api/worker-1",
    ] {
        assert!(row.contains(cell), "{row} should contain {cell}");
    }
}

#[test]
fn multi_document_csr_files_and_policy_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csrs = write_yaml(
        dir.path(),
        "multi.yaml",
        &[client_csr("a", "worker-1"), client_csr("b", "db-1")],
    );
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "inventory:\n  - namePattern: '^worker-[0-9]+$'\n").unwrap();
    let out = run(&[
        "check",
        "--policy",
        policy.to_str().unwrap(),
        "--now",
        NOW,
        "-o",
        "json",
        csrs.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reasons: Vec<String> = json_lines(&out)
        .iter()
        .map(|l| l["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["NewNodeInventory", "UnknownMachine"]);
}

#[test]
fn other_csrs_in_objects_feed_the_duplicate_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut approved = client_csr("first", "worker-1");
    approved["status"] =
        json!({"conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved"}]});
    let objects = write_yaml(
        dir.path(),
        "objects.yaml",
        &[list(vec![
            machine_object("worker-1", "worker-1", None),
            approved,
        ])],
    );
    let csrs = write_yaml(dir.path(), "csrs.yaml", &[client_csr("second", "worker-1")]);
    assert_eq!(
        check_offline(&objects, &csrs)[0]["reason"],
        "DuplicateClientRequest"
    );
}

#[test]
fn node_identities_in_objects_remember_what_the_csrs_no_longer_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `kubectl get nodeidentities -o yaml`: worker-1's Machine already minted its identity,
    // whose CSR the CSR cleaner has deleted since.
    let record = json!({
        "apiVersion": "csr-approver.io/v1alpha1",
        "kind": "NodeIdentity",
        "metadata": {"name": "worker-1"},
        "spec": {
            "node": "worker-1",
            "hostGeneration": {
                "key": "Machine machine.openshift.io/openshift-machine-api/worker-1 created 2026-11-23T11:50:00Z",
                "source": "Machine openshift-machine-api/worker-1 (machine.openshift.io)",
                "names": ["worker-1"]
            },
            "minted": [{
                "csr": "first",
                "reason": "NewNodeMachine",
                "requester": BOOTSTRAPPER,
                "at": "2026-11-23T11:55:00Z",
                "hostGeneration": "Machine machine.openshift.io/openshift-machine-api/worker-1 created 2026-11-23T11:50:00Z"
            }]
        }
    });
    let csrs = write_yaml(dir.path(), "csrs.yaml", &[client_csr("second", "worker-1")]);
    let check = |objects: &[Value]| {
        let objects = write_yaml(dir.path(), "objects.yaml", &[list(objects.to_vec())]);
        check_offline(&objects, &csrs)[0].clone()
    };
    let machine = machine_object("worker-1", "worker-1", None);
    let remembered = check(&[machine.clone(), record]);
    assert_eq!(
        remembered["reason"], "DuplicateClientRequest",
        "{remembered}"
    );
    assert!(
        remembered["message"]
            .as_str()
            .unwrap()
            .contains("CSR first"),
        "{remembered}"
    );
    // Without the record the same files approve: the record is what decided.
    assert_eq!(check(&[machine])["reason"], "NewNodeMachine");
}

#[test]
fn invalid_policy_file_names_file_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csrs = write_yaml(dir.path(), "c.yaml", &[client_csr("a", "worker-1")]);
    let policy = dir.path().join("bad-policy.yaml");
    std::fs::write(&policy, "serving:\n  allowedIPRanges: [10.0.0.0/33]\n").unwrap();
    let out = run(&[
        "check",
        "--policy",
        policy.to_str().unwrap(),
        csrs.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad-policy.yaml") && err.contains("serving.allowedIPRanges[0]"),
        "{err}"
    );
}

#[test]
fn garbage_csr_file_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.yaml");
    std::fs::write(&path, "{{{ not yaml").unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("garbage.yaml") && err.contains("not valid YAML"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn csr_with_invalid_base64_request_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut csr = client_csr("a", "worker-1");
    csr["spec"]["request"] = json!("!!!not base64!!!");
    let path = write_yaml(dir.path(), "bad-request.yaml", &[csr]);
    let out = run(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // The row names the file, the field and what it should hold.
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.starts_with("a "))
        .expect("a row for a");
    for cell in [
        "ERROR",
        "InvalidObject",
        "bad-request.yaml, document 1, item 1: spec.request is not base64",
        "base64 -w0 < request.pem",
    ] {
        assert!(row.contains(cell), "{row} should contain {cell}");
    }
    assert!(
        stderr(&out).contains("1 of 1 CertificateSigningRequests could not be read"),
        "{}",
        stderr(&out)
    );
}

/// One CSR that cannot be read is its own ERROR row; the others are still evaluated, and
/// the exit status is 1 (verdicts, even refusals, exit 0: they are answers).
#[test]
fn one_unreadable_csr_does_not_hide_the_verdicts_on_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = cluster(dir.path());
    let mut bad_request = client_csr("csr-bad-request", "worker-1");
    bad_request["spec"]["request"] = json!("!!!not base64!!!");
    let mut bad_usages = client_csr("csr-bad-usages", "worker-1");
    bad_usages["spec"]["usages"] = json!("client auth");
    let csrs = write_yaml(
        dir.path(),
        "csrs.yaml",
        &[list(vec![
            client_csr("csr-w1", "worker-1"),
            bad_request,
            client_csr("csr-stranger", "worker-9"),
            bad_usages,
        ])],
    );
    let check = |format: &str| {
        run(&[
            "check",
            "--objects",
            objects.to_str().unwrap(),
            "--now",
            NOW,
            "-o",
            format,
            csrs.to_str().unwrap(),
        ])
    };
    let out = check("json");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let got: Vec<String> = json_lines(&out)
        .iter()
        .map(|l| {
            format!(
                "{} {} {} {}",
                l["name"].as_str().unwrap(),
                l["verdict"].as_str().unwrap(),
                l["reason"].as_str().unwrap(),
                l["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got[0].starts_with("csr-w1 approve NewNodeMachine"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("csr-stranger wait UnknownMachine"),
        "{got:#?}"
    );
    assert!(
        got[2].starts_with("csr-bad-request error InvalidObject ")
            && got[2].contains(
                "csrs.yaml, document 1, item 2: spec.request is not base64 (Invalid symbol 33, offset 0.)"
            ),
        "{got:#?}"
    );
    assert!(
        got[3].starts_with("csr-bad-usages error InvalidObject ")
            && got[3].contains("csrs.yaml, document 1, item 4: spec.usages: invalid type"),
        "{got:#?}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("2 of 4 CertificateSigningRequests could not be read")
            && err.contains("the others were evaluated"),
        "{err}"
    );
    // The table: the same, with the requester and signer that could be read.
    let out = check("table");
    assert_eq!(out.status.code(), Some(1));
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.starts_with("csr-bad-usages "))
        .unwrap_or_else(|| panic!("no row for csr-bad-usages in\n{table}"));
    for cell in [BOOTSTRAPPER, "kubelet-client", "ERROR", "InvalidObject"] {
        assert!(row.contains(cell), "{row} should contain {cell}");
    }
    assert!(table.contains("APPROVE"), "{table}");
}

#[test]
fn an_unreadable_csr_among_the_objects_fails_the_check_naming_its_field() {
    // The cluster's other CSRs feed the duplicate and flood rules: without one, a verdict
    // could be wrong, so this one is an error, not a row.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bad = approved(client_csr("earlier", "worker-1"));
    bad["spec"]["request"] = json!("%%%");
    let objects = write_yaml(dir.path(), "objects.yaml", &[list(vec![bad])]);
    let csrs = write_yaml(dir.path(), "c.yaml", &[client_csr("a", "worker-1")]);
    let out = run(&[
        "check",
        "--objects",
        objects.to_str().unwrap(),
        csrs.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("objects.yaml")
            && err.contains("CertificateSigningRequest earlier")
            && err.contains("spec.request is not base64"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn unsupported_object_kind_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = write_yaml(
        dir.path(),
        "objects.yaml",
        &[json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})],
    );
    let csrs = write_yaml(dir.path(), "c.yaml", &[client_csr("a", "worker-1")]);
    let out = run(&[
        "check",
        "--objects",
        objects.to_str().unwrap(),
        csrs.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("objects.yaml") && err.contains("v1 Pod"),
        "{err}"
    );
}

#[test]
fn missing_file_is_named() {
    let out = run(&["check", "/nonexistent/csrs.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/csrs.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_now_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csrs = write_yaml(dir.path(), "c.yaml", &[client_csr("a", "worker-1")]);
    let out = run(&["check", "--now", "yesterday", csrs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--now"), "{}", stderr(&out));
}

#[test]
fn policy_validate_accepts_a_good_policy_and_rejects_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "deny: true\nclient:\n  joinWindow: 30m\n").unwrap();
    let out = run(&["policy", "validate", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "client:\n  joinWindow: -5m\n").unwrap();
    let out = run(&["policy", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("client.joinWindow"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_validate_says_how_each_pattern_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("patterns.yaml");
    std::fs::write(&file, "inventory:\n  - namePattern: '^worker-1|x$'\n").unwrap();
    let out = run(&["policy", "validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "inventory[0].namePattern: \"^worker-1|x$\" matches whole names only, as ^(?:^worker-1|x$)$"
        ),
        "{stdout}"
    );
}

#[test]
fn check_reads_the_kubernetes_service_and_refuses_its_cluster_ip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = |namespace: &str, name: &str, ip: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "clusterIPs": [ip]}
        })
    };
    // The node's own kubelet reports the Service IP as its address.
    let mut node = node_object("worker-1", "10.0.0.11");
    node["status"]["addresses"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "InternalIP", "address": "172.30.0.1"}));
    let cluster = write_yaml(
        dir.path(),
        "cluster.yaml",
        &[list(vec![
            node,
            service("default", "kubernetes", "172.30.0.1"),
            // Other Services are read and skipped.
            service("openshift-dns", "dns-default", "172.30.0.10"),
        ])],
    );
    let csrs = write_yaml(
        dir.path(),
        "csrs.yaml",
        &[serving_csr("s1", "worker-1", "172.30.0.1")],
    );
    let out = run(&[
        "check",
        "--now",
        NOW,
        "--objects",
        cluster.to_str().unwrap(),
        csrs.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["reason"], "ReservedSan", "{lines:?}");
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("kubernetes Service"),
        "{lines:?}"
    );
}

#[test]
fn text_logs_carry_no_colour_codes_when_not_at_a_terminal() {
    // A Pod's log (`kubectl logs`) is a pipe: escape codes there are noise.
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("unreachable.kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--log-format",
            "text",
            "--http-addr",
            "127.0.0.1:0",
            "--leader-election",
            "false",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let log = stderr(&out);
    assert!(log.contains("serving /metrics"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a piped log: {log:?}"
    );
}

fn approved(mut csr: Value) -> Value {
    csr["status"] =
        json!({"conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved"}]});
    csr
}

#[test]
fn pending_filters_the_files_offline_and_decided_csrs_still_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = cluster(dir.path());
    let csrs = write_yaml(
        dir.path(),
        "csrs.yaml",
        &[list(vec![
            approved(client_csr("csr-w1-first", "worker-1")),
            client_csr("csr-w1-again", "worker-1"),
            client_csr("csr-stranger", "worker-9"),
        ])],
    );
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--objects",
            objects.to_str().unwrap(),
            "--now",
            NOW,
            "-o",
            "json",
            csrs.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        json_lines(&out)
            .iter()
            .map(|l| {
                format!(
                    "{} {}",
                    l["name"].as_str().unwrap(),
                    l["reason"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        check(&[]),
        [
            "csr-w1-first AlreadyDecided",
            "csr-w1-again DuplicateClientRequest",
            "csr-stranger UnknownMachine"
        ]
    );
    // The approved CSR is not listed, and still makes the second one a duplicate.
    assert_eq!(
        check(&["--pending"]),
        [
            "csr-w1-again DuplicateClientRequest",
            "csr-stranger UnknownMachine"
        ]
    );
}

#[test]
fn files_and_csr_names_cannot_be_mixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csrs = write_yaml(dir.path(), "c.yaml", &[client_csr("a", "worker-1")]);
    let out = run(&["check", csrs.to_str().unwrap(), "csr-abc12"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("c.yaml is a file but csr-abc12 is not"),
        "{err}"
    );
    // With a live flag, a path is no CSR name.
    let out = run(&["check", "--context", "prod", csrs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("is a file, not a CSR name") && err.contains("--context"),
        "{err}"
    );
    let out = run(&[
        "check",
        "--context",
        "prod",
        "--objects",
        csrs.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--objects is for offline mode"),
        "{}",
        stderr(&out)
    );
}

/// A client CSR worker-1's Machine vouches for, in a table.
fn approvable(dir: &Path) -> (PathBuf, PathBuf) {
    let objects = cluster(dir);
    let csrs = write_yaml(dir, "one.yaml", &[client_csr("csr-w1", "worker-1")]);
    (objects, csrs)
}

#[test]
fn table_colours_verdicts_only_when_asked_or_at_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (objects, csrs) = approvable(dir.path());
    let table = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--objects",
            objects.to_str().unwrap(),
            "--now",
            NOW,
            csrs.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    // A pipe (this test) gets plain text; so does --color never.
    for plain in [table(&[]), table(&["--color", "never"])] {
        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        assert!(plain.contains("APPROVE"), "{plain}");
    }
    let colored = table(&["--color", "always"]);
    assert!(
        colored.contains("\u{1b}[32mAPPROVE\u{1b}[0m"),
        "{colored:?}"
    );
    // Columns stay aligned: the escape codes take no width.
    let strip = |s: &str| s.replace("\u{1b}[32m", "").replace("\u{1b}[0m", "");
    assert_eq!(strip(&colored), table(&[]));
    // JSON is for scripts: never coloured.
    let json = table(&["--color", "always", "-o", "json"]);
    assert!(!json.contains('\u{1b}'), "{json:?}");
}

/// Runs the binary on a pseudo-terminal (util-linux `script`), as a person at a terminal.
fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let command = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .output()
        .expect("util-linux `script` runs (Debian: bsdutils)");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (objects, csrs) = approvable(dir.path());
    let args = [
        "check",
        "--objects",
        objects.to_str().unwrap(),
        "--now",
        NOW,
        csrs.to_str().unwrap(),
    ];
    let tty = on_a_terminal(&args, &[]);
    assert!(tty.contains("\u{1b}[32mAPPROVE\u{1b}[0m"), "{tty:?}");
    let no_color = on_a_terminal(&args, &[("NO_COLOR", "1")]);
    assert!(no_color.contains("APPROVE"), "{no_color:?}");
    assert!(!no_color.contains('\u{1b}'), "{no_color:?}");
}

/// `--policy` for the tests below: `deny` as given.
fn deny_policy(dir: &Path, deny: bool) -> PathBuf {
    let path = dir.join(format!("deny-{deny}.yaml"));
    std::fs::write(&path, format!("deny: {deny}\n")).unwrap();
    path
}

/// The VERDICT column tells a CSR that may still be approved (WAIT) from one that never
/// will be (REFUSED: forged or invalid) and one left for an admin (ADMIN).
#[test]
fn table_says_refused_or_admin_for_csrs_that_will_not_be_approved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = cluster(dir.path());
    let masters = csr_object(
        "csr-masters",
        "kubernetes.io/kube-apiserver-client-kubelet",
        BOOTSTRAPPER,
        &BOOTSTRAPPER_GROUPS,
        &CLIENT_USAGES,
        &Request::node("worker-1").org(Some("system:masters")),
        "2026-11-23T11:59:00Z",
    );
    let csrs = write_yaml(
        dir.path(),
        "csrs.yaml",
        &[list(vec![
            client_csr("csr-w1", "worker-1"),
            masters,
            serving_csr("csr-w2-forged", "worker-2", "10.0.0.13"),
            client_csr("csr-stranger", "worker-9"),
        ])],
    );
    let table = |deny: bool, extra: &[&str]| {
        let policy = deny_policy(dir.path(), deny);
        let mut args = vec![
            "check",
            "--objects",
            objects.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--now",
            NOW,
            csrs.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let verdict_of = |table: &str, name: &str| -> String {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in\n{table}"));
        let cells: Vec<&str> = row
            .split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        format!("{} {}", cells[3], cells[4])
    };
    let plain = table(false, &[]);
    assert_eq!(verdict_of(&plain, "csr-w1"), "APPROVE NewNodeMachine");
    assert_eq!(verdict_of(&plain, "csr-masters"), "REFUSED BadOrganization");
    assert_eq!(verdict_of(&plain, "csr-w2-forged"), "ADMIN ForeignSan");
    assert_eq!(verdict_of(&plain, "csr-stranger"), "WAIT UnknownMachine");
    // deny: true denies the forged, never what waits for an admin.
    let deny = table(true, &[]);
    assert_eq!(verdict_of(&deny, "csr-masters"), "DENY BadOrganization");
    assert_eq!(verdict_of(&deny, "csr-w2-forged"), "ADMIN ForeignSan");
    // Coloured apart from WAIT's yellow.
    let colored = table(false, &["--color", "always"]);
    assert!(
        colored.contains("\u{1b}[31mREFUSED\u{1b}[0m"),
        "{colored:?}"
    );
    assert!(colored.contains("\u{1b}[35mADMIN\u{1b}[0m"), "{colored:?}");
    assert!(colored.contains("\u{1b}[33mWAIT\u{1b}[0m"), "{colored:?}");
    // JSON: the verdict as before, the class beside it.
    let policy = deny_policy(dir.path(), false);
    let out = run(&[
        "check",
        "--objects",
        objects.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--now",
        NOW,
        "-o",
        "json",
        csrs.to_str().unwrap(),
    ]);
    let lines = json_lines(&out);
    assert_eq!(
        (lines[1]["verdict"].as_str(), lines[1]["class"].as_str()),
        (Some("wait"), Some("Definitive"))
    );
    assert_eq!(
        (lines[2]["verdict"].as_str(), lines[2]["class"].as_str()),
        (Some("wait"), Some("ForAnAdmin"))
    );
}

/// A dump as large as a real cluster's: 10 000 CSRs, as `kubectl get csr -o yaml` and
/// `-o json` print them (a `kind: List`, approved CSRs carrying their certificate).
/// serde-saphyr's default budget refused the YAML one (`budget breached: Nodes`).
#[test]
fn a_dump_of_10000_csrs_is_read_as_yaml_and_as_json() {
    const COUNT: usize = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = cluster(dir.path());
    // One request for all (key generation would dominate the test); every CSR but the last
    // is approved, so the last one, pending, is a duplicate only if the others were read.
    // The items are one serialised CSR with its name, uid and resourceVersion replaced:
    // serialising 10 000 objects would take longer than checking them.
    // Placeholders with a `-` (never in base64) and a number YAML must quote as a string.
    let pending = client_csr("csr-placeholder", "worker-1");
    let mut approved = pending.clone();
    approved["metadata"]["uid"] = json!("uid-placeholder");
    approved["metadata"]["resourceVersion"] = json!("7777777777");
    approved["status"] = json!({
        "certificate": serde_json::to_value(k8s_openapi::ByteString(vec![0x30; 1100])).unwrap(),
        "conditions": [{
            "type": "Approved", "status": "True", "reason": "AutoApproved",
            "message": "csr-approver: Machine openshift-machine-api/worker-1 vouches",
            "lastUpdateTime": "2026-11-23T11:59:01Z",
            "lastTransitionTime": "2026-11-23T11:59:01Z"
        }]
    });
    let fill = |template: &str, i: usize| {
        template
            .replace("csr-placeholder", &format!("csr-{i}"))
            .replace(
                "uid-placeholder",
                &format!("00000000-0000-0000-0000-{i:012}"),
            )
            .replace("7777777777", &format!("{}", 1_000_000_000 + i))
    };
    // YAML as kubectl prints a List: each item a `- ` entry, indented under `items:`.
    let as_item = |csr: &Value| {
        let text = serde_saphyr::to_string(csr).unwrap();
        let mut lines = text.lines();
        let first = format!("- {}\n", lines.next().unwrap());
        first + &lines.map(|l| format!("  {l}\n")).collect::<String>()
    };
    let (approved_yaml, pending_yaml) = (as_item(&approved), as_item(&pending));
    let mut yaml_text =
        String::from("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n");
    // JSON as `kubectl get -o json` prints it: indented by 4.
    let pretty = |csr: &Value| {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        serde::Serialize::serialize(csr, &mut serializer).unwrap();
        String::from_utf8(out).unwrap()
    };
    let (approved_json, pending_json) = (pretty(&approved), pretty(&pending));
    let mut json_items = Vec::with_capacity(COUNT);
    for i in 0..COUNT - 1 {
        yaml_text.push_str(&fill(&approved_yaml, i));
        json_items.push(fill(&approved_json, i));
    }
    yaml_text.push_str(&fill(&pending_yaml, COUNT - 1));
    json_items.push(fill(&pending_json, COUNT - 1));
    let json_text = format!(
        "{{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n{}\n    ],\n    \"kind\": \"List\",\n    \"metadata\": {{\"resourceVersion\": \"\"}}\n}}\n",
        json_items.join(",\n")
    );
    let yaml = dir.path().join("csrs.yaml");
    std::fs::write(&yaml, &yaml_text).unwrap();
    let json_path = dir.path().join("csrs.json");
    std::fs::write(&json_path, &json_text).unwrap();
    assert!(
        yaml_text.len() > 20_000_000,
        "a real-size dump: {} bytes",
        yaml_text.len()
    );
    // Both at once: each takes a few seconds in a debug build.
    let checks: Vec<_> = [yaml, json_path]
        .into_iter()
        .map(|file| {
            let objects = objects.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let out = run(&[
                    "check",
                    "--objects",
                    objects.to_str().unwrap(),
                    "--now",
                    NOW,
                    "--pending",
                    "-o",
                    "json",
                    file.to_str().unwrap(),
                ]);
                eprintln!("{}: {:.1?}", file.display(), started.elapsed());
                (file, out)
            })
        })
        .collect();
    for check in checks {
        let (file, out) = check.join().unwrap();
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 1, "{}: {lines:?}", file.display());
        assert_eq!(lines[0]["name"], format!("csr-{}", COUNT - 1));
        assert_eq!(
            lines[0]["reason"],
            "DuplicateClientRequest",
            "{}: {lines:?}",
            file.display()
        );
    }
}

/// JSON is read as JSON, and YAML in flow style, which starts like JSON, still as YAML.
#[test]
fn json_and_flow_style_yaml_files_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csr = client_csr("csr-w1", "worker-1");
    let json_file = dir.path().join("one.json");
    std::fs::write(&json_file, serde_json::to_string_pretty(&csr).unwrap()).unwrap();
    let flow = dir.path().join("flow.yaml");
    std::fs::write(
        &flow,
        format!("{{kind: List, apiVersion: v1, items: [{csr}]}}\n"),
    )
    .unwrap();
    let objects = cluster(dir.path());
    for file in [&json_file, &flow] {
        let out = run(&[
            "check",
            "--objects",
            objects.to_str().unwrap(),
            "--now",
            NOW,
            "-o",
            "json",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
        assert_eq!(json_lines(&out)[0]["reason"], "NewNodeMachine");
    }
}

/// A PEM request has no requester or signer, on which the verdict turns: it is refused
/// with the manifest that wraps it, and that manifest, run as printed, is checked.
#[test]
fn a_pem_request_is_refused_with_the_manifest_that_wraps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("worker-1.csr");
    std::fs::write(&pem, Request::node("worker-1").pem()).unwrap();
    let out = run(&["check", pem.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("a PEM CERTIFICATE REQUEST, not a CertificateSigningRequest object")
            && err.contains("spec.username"),
        "{err}"
    );
    let script: String = err
        .lines()
        .skip_while(|l| !l.starts_with("cat > csr.yaml"))
        .take_while(|l| *l != "EOF")
        .chain(["EOF"])
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        script.contains("signerName: kubernetes.io/kube-apiserver-client-kubelet"),
        "{err}"
    );
    let written = Command::new("bash")
        .args(["-euc", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(written.status.success(), "{}", stderr(&written));
    let objects = cluster(dir.path());
    let out = run(&[
        "check",
        "--objects",
        objects.to_str().unwrap(),
        "--now",
        NOW,
        "-o",
        "json",
        dir.path().join("csr.yaml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["name"], "worker-1-csr");
    assert_eq!(lines[0]["reason"], "NewNodeMachine", "{lines:?}");
    // A serving request (it has SANs) gets the serving manifest, from its node.
    let serving = dir.path().join("serving.csr");
    std::fs::write(&serving, Request::node("worker-2").ip("10.0.0.12").pem()).unwrap();
    let err = stderr(&run(&["check", serving.to_str().unwrap()]));
    assert!(
        err.contains("signerName: kubernetes.io/kubelet-serving")
            && err.contains("username: system:node:worker-2"),
        "{err}"
    );
}

/// A server nothing listens on: the error says which server, from which context and file,
/// and that it is unreachable (kube alone says `client error (Connect)`).
#[test]
fn an_unreachable_server_is_named_with_its_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port just closed, so nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.path().join("prod.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: x}}}}]\ncontexts: [{{name: prod, context: {{cluster: c, user: u}}}}]\ncurrent-context: prod\n"),
    )
    .unwrap();
    let out = run(&["check", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for part in [
        &format!("the API server https://127.0.0.1:{port}/"),
        "context prod of --kubeconfig",
        "prod.kubeconfig",
        "is unreachable: Connection refused",
        "reading the policy ConfigMap",
    ] {
        assert!(err.contains(part), "{err} should contain {part}");
    }
    assert!(!err.contains("ServiceError"), "{err}");
}

/// `csr` with `created` and these status conditions (type, reason, lastUpdateTime) and,
/// when `issued`, a certificate.
fn with_status(
    mut csr: Value,
    created: &str,
    conditions: &[(&str, &str, &str)],
    issued: bool,
) -> Value {
    csr["metadata"]["creationTimestamp"] = json!(created);
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|(kind, reason, at)| {
            json!({"type": kind, "status": "True", "reason": reason, "lastUpdateTime": at})
        })
        .collect();
    csr["status"] = json!({"conditions": conditions});
    if issued {
        // Any non-empty certificate marks it issued.
        csr["status"]["certificate"] = json!("Zm9v");
    }
    csr
}

/// A dump holding one CSR of each cause, and healthy ones that are none; read offline
/// from --objects alone, the report is one JSON line per cause.
#[test]
fn hygiene_summarises_a_dump_by_cause_in_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let approved = ("Approved", "AutoApproved", "2026-11-23T10:00:00Z");
    let dump = write_yaml(
        dir.path(),
        "dump.yaml",
        &[list(vec![
            // Approved, then refused by the signer.
            with_status(
                serving_csr("csr-refused", "worker-2", "10.0.0.12"),
                "2026-11-23T10:00:00Z",
                &[
                    approved,
                    ("Failed", "SignerValidationFailure", "2026-11-23T10:00:01Z"),
                ],
                false,
            ),
            // Approved two hours ago, never signed.
            with_status(
                client_csr("csr-unsigned", "worker-3"),
                "2026-11-23T09:59:00Z",
                &[approved],
                false,
            ),
            // Denied twice for worker-1.
            with_status(
                client_csr("csr-denied-1", "worker-1"),
                "2026-11-23T08:00:00Z",
                &[("Denied", "Forged", "2026-11-23T08:00:01Z")],
                false,
            ),
            with_status(
                client_csr("csr-denied-2", "worker-1"),
                "2026-11-23T09:00:00Z",
                &[("Denied", "Forged", "2026-11-23T09:00:01Z")],
                false,
            ),
            // A client CSR from a requester no policy lists.
            csr_object(
                "csr-stranger",
                "kubernetes.io/kube-apiserver-client-kubelet",
                "system:serviceaccount:default:builder",
                &["system:serviceaccounts", "system:authenticated"],
                &CLIENT_USAGES,
                &Request::node("worker-4"),
                "2026-11-23T11:59:00Z",
            ),
            // A serving CSR its kubelet gave up on 15 minutes after asking.
            csr_object(
                "csr-abandoned",
                "kubernetes.io/kubelet-serving",
                "system:node:worker-2",
                &["system:nodes", "system:authenticated"],
                &SERVING_USAGES,
                &Request::node("worker-2").ip("10.0.0.12"),
                "2026-11-23T11:40:00Z",
            ),
            // Healthy: issued long ago, and a fresh bootstrap request.
            with_status(
                client_csr("csr-issued", "worker-2"),
                "2026-11-23T07:00:00Z",
                &[approved],
                true,
            ),
            client_csr("csr-fresh", "worker-5"),
        ])],
    );
    let out = run(&[
        "check",
        "--hygiene",
        "--objects",
        dump.to_str().unwrap(),
        "--now",
        NOW,
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let summary: Vec<(&str, u64, Vec<&str>)> = lines
        .iter()
        .map(|l| {
            (
                l["cause"].as_str().unwrap(),
                l["count"].as_u64().unwrap(),
                l["examples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("signer_failed", 1, vec!["csr-refused"]),
            ("not_issued", 1, vec!["csr-unsigned"]),
            ("denied", 2, vec!["csr-denied-1", "csr-denied-2"]),
            ("unknown_requester", 1, vec!["csr-stranger"]),
            ("pending_too_long", 1, vec!["csr-abandoned"]),
        ]
    );
    let denied = &lines[2];
    assert_eq!(denied["oldest_age_seconds"], json!(4 * 3600), "{denied}");
    assert_eq!(denied["oldest_created"], json!("2026-11-23T08:00:00Z"));
    assert_eq!(denied["nodes"], json!([{"node": "worker-1", "count": 2}]));

    // The same from the CSR file alone, as a table with a legend.
    let out = run(&["check", "--hygiene", "--now", NOW, dump.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let denied_row = table
        .lines()
        .find(|l| l.starts_with("denied"))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        denied_row.split_whitespace().collect::<Vec<_>>(),
        [
            "denied",
            "2",
            "4h",
            "worker-1",
            "(2)",
            "csr-denied-1,",
            "csr-denied-2"
        ],
        "{table}"
    );
    assert!(
        table.contains("pending_too_long: pending longer than the kubelet waits"),
        "{table}"
    );
}

#[test]
fn hygiene_takes_no_csr_names_and_no_pending() {
    let out = run(&["check", "--hygiene", "csr-abc12"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--hygiene reports on every CSR of the cluster"),
        "{}",
        stderr(&out)
    );
    let out = run(&["check", "--hygiene", "--pending"]);
    assert_eq!(out.status.code(), Some(2), "a clap usage error");
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}
