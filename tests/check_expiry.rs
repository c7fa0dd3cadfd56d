//! `csr-approver check expiry` (and `expiry`, the kubectl plugin's form) on a dump, as an
//! admin runs it before shutting a cluster down: the real binary, real files.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use builders::{BOOTSTRAPPER, BOOTSTRAPPER_GROUPS, CLIENT_USAGES, Request, SERVING_USAGES};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_csr-approver");
const NOW: &str = "2026-12-01T00:00:00Z";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// A PEM certificate valid from 2026-11-01 to `not_after` (year, month, day), serial `serial`.
fn certificate(serial: u8, not_after: (i32, u8, u8)) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from(vec![serial]));
    params.not_before = rcgen::date_time_ymd(2026, 11, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    params.self_signed(&key).unwrap().pem()
}

fn b64(bytes: Vec<u8>) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes)).unwrap()
}

/// An issued kubelet CSR for `node`'s identity, asked by `user`, its certificate `pem`.
fn issued_csr(name: &str, signer: &str, user: &str, node: &str, pem: &str) -> Value {
    let (groups, usages): (Vec<&str>, &[&str]) = if signer == CLIENT_SIGNER {
        if user == BOOTSTRAPPER {
            (BOOTSTRAPPER_GROUPS.to_vec(), &CLIENT_USAGES)
        } else {
            (vec!["system:nodes", "system:authenticated"], &CLIENT_USAGES)
        }
    } else {
        (
            vec!["system:nodes", "system:authenticated"],
            &SERVING_USAGES,
        )
    };
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name, "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {
            "request": b64(Request::node(node).pem()),
            "signerName": signer,
            "username": user,
            "groups": groups,
            "usages": usages,
        },
        "status": {
            "conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved", "message": "", "lastUpdateTime": "2026-11-01T00:00:05Z"}],
            "certificate": b64(pem.as_bytes().to_vec()),
        }
    })
}

fn node_object(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

fn record(node: &str, client: Option<(&str, &str)>, serving: Option<(&str, &str)>) -> Value {
    let entry = |(csr, not_after): (&str, &str)| json!({"csr": csr, "serial": "0A", "notBefore": "2026-11-01T00:00:00Z", "notAfter": not_after});
    let mut spec = json!({"node": node, "minted": []});
    if let Some(c) = client {
        spec["clientCertificate"] = entry(c);
    }
    if let Some(s) = serving {
        spec["servingCertificate"] = entry(s);
    }
    json!({
        "apiVersion": "csr-approver.io/v1alpha1",
        "kind": "NodeIdentity",
        "metadata": {"name": node},
        "spec": spec,
    })
}

fn write_yaml(dir: &Path, file: &str, document: &Value) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, serde_saphyr::to_string(document).unwrap()).unwrap();
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

/// worker-1: its record (and an older CSR the record supersedes); worker-2: no record, two
/// client CSRs (a bootstrapper's, then its own renewal) and a serving CSR that expires
/// before every client certificate; worker-3: only a client certificate a stranger asked
/// for (not its identity), so unknown; gone: a record without a Node.
fn dump(dir: &Path) -> PathBuf {
    let items = vec![
        node_object("worker-1"),
        node_object("worker-2"),
        node_object("worker-3"),
        record(
            "worker-1",
            Some(("csr-w1-renewal", "2026-12-20T00:00:00Z")),
            Some(("csr-w1-serving", "2026-12-25T00:00:00Z")),
        ),
        record("gone", Some(("csr-gone", "2026-12-02T00:00:00Z")), None),
        issued_csr(
            "csr-w1-join",
            CLIENT_SIGNER,
            BOOTSTRAPPER,
            "worker-1",
            &certificate(1, (2026, 12, 4)),
        ),
        issued_csr(
            "csr-w2-join",
            CLIENT_SIGNER,
            BOOTSTRAPPER,
            "worker-2",
            &certificate(2, (2026, 12, 10)),
        ),
        issued_csr(
            "csr-w2-renewal",
            CLIENT_SIGNER,
            "system:node:worker-2",
            "worker-2",
            &certificate(3, (2026, 12, 12)),
        ),
        issued_csr(
            "csr-w2-serving",
            SERVING_SIGNER,
            "system:node:worker-2",
            "worker-2",
            &certificate(4, (2026, 12, 3)),
        ),
        issued_csr(
            "csr-w3-stranger",
            CLIENT_SIGNER,
            "system:node:worker-9",
            "worker-3",
            &certificate(5, (2026, 12, 2)),
        ),
    ];
    write_yaml(
        dir,
        "dump.yaml",
        &json!({"apiVersion": "v1", "kind": "List", "items": items}),
    )
}

fn expiry(args: &[&str]) -> Output {
    let mut all = vec!["check", "expiry", "--now", NOW];
    all.extend(args);
    run(&all)
}

#[test]
fn the_json_names_the_earliest_client_certificate_its_node_and_the_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dump(dir.path());
    let out = expiry(&[
        "--objects",
        dump.to_str().unwrap(),
        "--margin",
        "2h",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The serving certificate of worker-2 (Dec 3) and the stranger's (Dec 2) do not count.
    assert_eq!(
        report["earliestClient"],
        json!({"node": "worker-2", "notAfter": "2026-12-12T00:00:00Z"})
    );
    assert_eq!(report["shutdownUntil"], "2026-12-11T22:00:00Z");
    assert_eq!(report["alreadyPast"], false);
    assert_eq!(report["marginSeconds"], 7200);
    assert_eq!(report["recovery"], false);
    assert_eq!(report["unknownNodes"], json!(["worker-3"]));
    let summary = report["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("1 node unknown (worker-3): no record or issued CSR holds its client certificate, so the window cannot be computed for it; of the nodes known, the earliest kubelet client certificate expires at 2026-12-12T00:00:00Z (node worker-2); the known nodes can stay shut down until 2026-12-11T22:00:00Z"),
        "{summary}"
    );
    assert!(
        summary.ends_with(
            "(client.recovery is off: an admin approves each node's bootstrap CSR by hand)"
        ),
        "{summary}"
    );
    let nodes = report["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["worker-1", "worker-2", "worker-3"],
        "no Node, no row"
    );
    // worker-1: the record, not the older CSR still present.
    assert_eq!(nodes[0]["client"]["source"], "NodeIdentity");
    assert_eq!(nodes[0]["client"]["csr"], "csr-w1-renewal");
    assert_eq!(nodes[0]["client"]["notAfter"], "2026-12-20T00:00:00Z");
    assert_eq!(nodes[0]["serving"]["notAfter"], "2026-12-25T00:00:00Z");
    // worker-2: the newest issued CSR of each kind, read from status.certificate.
    assert_eq!(
        nodes[1]["client"],
        json!({
            "notBefore": "2026-11-01T00:00:00Z",
            "notAfter": "2026-12-12T00:00:00Z",
            "expired": false,
            "serial": "03",
            "csr": "csr-w2-renewal",
            "source": "CertificateSigningRequest",
        })
    );
    assert_eq!(nodes[1]["serving"]["csr"], "csr-w2-serving");
    assert_eq!(nodes[2]["client"], Value::Null);
    assert_eq!(nodes[2]["serving"], Value::Null);
}

#[test]
fn the_table_says_the_window_on_top_and_the_plugin_form_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dump(dir.path());
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "client:\n  recovery:\n    enabled: true\n").unwrap();
    let args = [
        "--objects",
        dump.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--now",
        NOW,
    ];
    let out = run(&[&["check", "expiry"], &args[..]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("the known nodes can stay shut down until 2026-12-11T23:00:00Z (2026-12-12T00:00:00Z − 1h; 10days 23h from now)")
            && lines[0].ends_with("(client.recovery is on: csr-approver approves each offline node's bootstrap CSR, once per window)"),
        "{table}"
    );
    assert_eq!(lines[1], "");
    assert!(lines[2].starts_with("NODE "), "{table}");
    let row = |node: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(node))
            .unwrap_or_else(|| panic!("no {node} in\n{table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("worker-1"),
        [
            "worker-1",
            "2026-12-20T00:00:00Z",
            "NodeIdentity",
            "2026-12-25T00:00:00Z",
            "NodeIdentity"
        ]
    );
    assert_eq!(
        row("worker-2"),
        [
            "worker-2",
            "2026-12-12T00:00:00Z",
            "CSR",
            "csr-w2-renewal",
            "2026-12-03T00:00:00Z",
            "CSR",
            "csr-w2-serving"
        ]
    );
    assert_eq!(
        row("worker-3"),
        ["worker-3", "unknown", "-", "unknown", "-"]
    );
    // `kubectl csr-approver expiry` runs `csr-approver expiry`: the same answer.
    let plugin = run(&[&["expiry"], &args[..]].concat());
    assert!(plugin.status.success(), "{}", stderr(&plugin));
    assert_eq!(stdout(&plugin), table);
}

#[test]
fn an_expired_certificate_leaves_no_window() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dump(dir.path());
    let out = run(&[
        "check",
        "expiry",
        "--objects",
        dump.to_str().unwrap(),
        "--now",
        "2026-12-15T00:00:00Z",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["alreadyPast"], true);
    assert_eq!(report["nodes"][1]["client"]["expired"], true);
    assert_eq!(report["nodes"][0]["client"]["expired"], false);
    let summary = report["summary"].as_str().unwrap();
    assert!(
        summary.contains("expired at 2026-12-12T00:00:00Z (node worker-2): already past; the cluster cannot be shut down safely"),
        "{summary}"
    );
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dump(dir.path());
    let dump = dump.to_str().unwrap();

    let out = expiry(&["--objects", dump, "--margin", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid value 'soon' for '--margin <DURATION>'")
            && stderr(&out).contains("use e.g. 30m, 2h, 1d"),
        "{}",
        stderr(&out)
    );
    let out = expiry(&["--objects", dump, "--margin=-1h"]);
    assert!(stderr(&out).contains("is negative"), "{}", stderr(&out));

    // `check`'s own flags are not `check expiry`'s.
    let out = expiry(&["--objects", dump, "--pending"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unexpected argument '--pending'"),
        "{}",
        stderr(&out)
    );

    let missing = dir.path().join("missing.yaml");
    let out = expiry(&["--objects", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{}:", missing.display())),
        "{}",
        stderr(&out)
    );

    let no_nodes = write_yaml(
        dir.path(),
        "records.yaml",
        &record("worker-1", Some(("csr-1", "2026-12-20T00:00:00Z")), None),
    );
    let out = expiry(&["--objects", no_nodes.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the --objects files hold no Node"),
        "{}",
        stderr(&out)
    );

    let mut bad_record = record("worker-1", Some(("csr-1", "2026-12-20T00:00:00Z")), None);
    bad_record["spec"]["clientCertificate"]["notAfter"] = json!("next tuesday");
    let bad = write_yaml(dir.path(), "bad-record.yaml", &bad_record);
    let out = expiry(&["--objects", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(bad.to_str().unwrap())
            && err.contains("invalid NodeIdentity: spec.clientCertificate.notAfter"),
        "{err}"
    );

    let mut bad_csr = issued_csr(
        "csr-bad",
        CLIENT_SIGNER,
        BOOTSTRAPPER,
        "worker-1",
        &certificate(9, (2026, 12, 4)),
    );
    bad_csr["status"]["certificate"] = json!("not base64!");
    let bad = write_yaml(
        dir.path(),
        "bad-csr.yaml",
        &json!({"apiVersion": "v1", "kind": "List", "items": [node_object("worker-1"), bad_csr]}),
    );
    let out = expiry(&["--objects", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("CertificateSigningRequest csr-bad") && err.contains("status.certificate"),
        "{err}"
    );
}

#[test]
fn check_still_takes_csr_files_and_names() {
    // `check expiry` is a subcommand; `check FILE` still evaluates files, and a CSR that
    // happens to be named `expiry` is checked as `check -- expiry` (live: no cluster here).
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["check", "--", "expiry"])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Read as a CSR name: the live check looks for a cluster (none here).
    assert!(
        stderr(&out).contains("no cluster to read"),
        "{}",
        stderr(&out)
    );
    let help = stdout(&run(&["check", "--help"]));
    assert!(help.contains("expiry"), "{help}");
}

#[test]
fn live_an_unreachable_server_is_named_and_objects_are_for_offline() {
    let dir = tempfile::tempdir().unwrap();
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
    let kubeconfig = kubeconfig.to_str().unwrap();
    let out = expiry(&["--kubeconfig", kubeconfig]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for part in [
        &format!("the API server https://127.0.0.1:{port}/"),
        "context prod of --kubeconfig",
        "is unreachable: Connection refused",
        "reading the policy ConfigMap",
    ] {
        assert!(err.contains(part), "{err} should contain {part}");
    }
    // With --policy, the first read is the Nodes'.
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "client: {}\n").unwrap();
    let out = expiry(&[
        "--kubeconfig",
        kubeconfig,
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains("(reading Nodes)"), "{}", stderr(&out));

    let dump = dump(dir.path());
    let out = expiry(&[
        "--kubeconfig",
        kubeconfig,
        "--objects",
        dump.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("--objects is for offline mode; with --kubeconfig the cluster is read live"),
        "{}",
        stderr(&out)
    );
}
