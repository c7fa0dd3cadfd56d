//! `csr-approver check` and `policy validate` as a user runs them: the real binary, real
//! files in the formats kubectl prints.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
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
    for line in &lines {
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["message", "name", "reason", "verdict"]);
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
    assert_eq!(json_lines(&out)[0]["reason"], "DuplicateClientRequest");
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
    assert!(
        stderr(&out).contains("bad-request.yaml"),
        "{}",
        stderr(&out)
    );
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
