//! csr-approver as a kubectl (and oc) plugin, run through the real kubectl: the binary
//! linked as `kubectl-csr_approver` in a directory first on PATH, found by kubectl's plugin
//! lookup, reading the cluster from `$KUBECONFIG` as kubectl would (a plugin receives none
//! of kubectl's flags), against the real test control plane of `tests/harness/`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use builders::Request;
use harness::{bind_cluster_role, ensure_namespace, is_status, service_account_subject};

const BIN: &str = env!("CARGO_BIN_EXE_csr-approver");
const BOOTSTRAPPER: &str =
    "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper";
const BOOTSTRAPPER_GROUPS: [&str; 2] = [
    "system:serviceaccounts",
    "system:serviceaccounts:openshift-machine-config-operator",
];
const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];

/// `$KUBECTL` (what `scripts/tools.sh --env` exports), else `kubectl` on PATH.
fn kubectl_program() -> OsString {
    std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into())
}

/// A directory holding the binary as kubectl expects a plugin: an executable named
/// `kubectl-csr_approver` (`_` is `-` in the command), here a symlink as the docs suggest,
/// and an empty home so no kubeconfig of the person running the tests is read.
struct PluginDir {
    bin: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl PluginDir {
    fn new() -> PluginDir {
        let dir = PluginDir::empty();
        std::os::unix::fs::symlink(BIN, dir.plugin_path()).expect("symlink the plugin");
        dir
    }

    fn empty() -> PluginDir {
        PluginDir {
            bin: tempfile::tempdir().expect("tempdir"),
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn plugin_path(&self) -> PathBuf {
        self.bin.path().join("kubectl-csr_approver")
    }

    /// `kubectl args...` with the plugin directory first on PATH, `KUBECONFIG` from `env`
    /// only, and no colour preference inherited.
    fn kubectl(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.path().to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        let mut command = Command::new(kubectl_program());
        command
            .args(args)
            .env("PATH", std::env::join_paths(dirs).expect("PATH"))
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG")
            .env_remove("NO_COLOR")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(env.iter().copied());
        command.output().unwrap_or_else(|e| {
            panic!(
                "cannot run {:?} ({e}): install kubectl or set $KUBECTL (scripts/tools.sh --env)",
                kubectl_program()
            )
        })
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn failed(o: &Output, what: &str) -> String {
    assert!(
        !o.status.success(),
        "{what} should fail:\n{}\n{}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

/// The table row of CSR `name`, if listed.
fn row<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn installed_by_the_script_kubectl_lists_and_runs_it() {
    let dir = PluginDir::empty();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-plugin.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir.bin.path())
        .env("CSR_APPROVER_BIN", BIN)
        .output()
        .unwrap();
    let installed = ok(&out, "scripts/install-plugin.sh");
    assert_eq!(installed.trim(), dir.plugin_path().to_str().unwrap());
    let mode = std::fs::symlink_metadata(dir.plugin_path())
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o755,
        "a copy, mode 0755"
    );
    let out = dir.kubectl(&["plugin", "list"], &[]);
    // kubectl lists plugins in PATH order: the first is the one `kubectl csr-approver` runs
    // (another copy later on PATH makes kubectl warn and exit non-zero, so the status is
    // not asserted).
    let text = stdout(&out);
    let first = text.lines().find(|l| l.ends_with("kubectl-csr_approver"));
    assert_eq!(
        first,
        dir.plugin_path().to_str(),
        "{text}\n{}",
        stderr(&out)
    );
    let version = ok(
        &dir.kubectl(&["csr-approver", "--version"], &[]),
        "kubectl csr-approver --version",
    );
    assert_eq!(
        version.trim(),
        format!("csr-approver {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_names_the_command_the_admin_typed() {
    let dir = PluginDir::new();
    let help = ok(
        &dir.kubectl(&["csr-approver", "check", "--help"], &[]),
        "kubectl csr-approver check --help",
    );
    assert!(
        help.contains("Usage: kubectl csr-approver check [OPTIONS] [CSR]..."),
        "{help}"
    );
    for flag in ["--kubeconfig", "--context", "--pending", "--color"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    // `kubectl csr-approver expiry` is `csr-approver expiry`, i.e. `check expiry`.
    let help = ok(
        &dir.kubectl(&["csr-approver", "expiry", "--help"], &[]),
        "kubectl csr-approver expiry --help",
    );
    assert!(
        help.contains("Usage: kubectl csr-approver expiry [OPTIONS]"),
        "{help}"
    );
    for flag in ["--kubeconfig", "--objects", "--margin", "--output"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let err = failed(
        &dir.kubectl(&["csr-approver", "chekc"], &[]),
        "a mistyped subcommand",
    );
    assert!(err.contains("Usage: kubectl csr-approver"), "{err}");
    // oc runs `oc-` plugins too (and `kubectl-` ones); no oc here, so the file is run as oc
    // would run it: by its path.
    std::os::unix::fs::symlink(BIN, dir.bin.path().join("oc-csr_approver")).unwrap();
    let out = Command::new(dir.bin.path().join("oc-csr_approver"))
        .args(["check", "--help"])
        .output()
        .unwrap();
    let help = ok(&out, "oc-csr_approver check --help");
    assert!(help.contains("Usage: oc csr-approver check"), "{help}");
    // Under its own name, it is itself.
    let out = Command::new(BIN)
        .args(["check", "--help"])
        .output()
        .unwrap();
    assert!(
        ok(&out, "csr-approver check --help").contains("Usage: csr-approver check"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_missing_kubeconfig_or_context_is_an_error_naming_it() {
    let dir = PluginDir::new();
    let missing = dir.home.path().join("missing.kubeconfig");
    let missing = missing.to_str().unwrap();
    let err = failed(
        &dir.kubectl(
            &["csr-approver", "check", "--pending"],
            &[("KUBECONFIG", missing)],
        ),
        "KUBECONFIG naming a missing file",
    );
    assert!(
        err.contains(&format!("KUBECONFIG={missing}: no such file")),
        "{err}"
    );
    let err = failed(
        &dir.kubectl(&["csr-approver", "check", "--kubeconfig", missing], &[]),
        "--kubeconfig naming a missing file",
    );
    assert!(
        err.contains(&format!(
            "kubeconfig {missing} (from --kubeconfig) does not exist"
        )),
        "{err}"
    );
    // Nothing at all: not KUBECONFIG, not ~/.kube/config, not a Pod.
    let err = failed(
        &dir.kubectl(&["csr-approver", "check", "--pending"], &[]),
        "no kubeconfig anywhere",
    );
    let home_config = dir.home.path().join(".kube/config");
    assert!(
        err.contains("no cluster to read")
            && err.contains(&format!("{} does not exist", home_config.display()))
            && err.contains("not a Pod"),
        "{err}"
    );
    // A context the kubeconfig does not have: named, with the ones it has.
    let file = dir.home.path().join("one.kubeconfig");
    std::fs::write(&file, kubeconfig_text("https://127.0.0.1:1", "only")).unwrap();
    let file = file.to_str().unwrap();
    let err = failed(
        &dir.kubectl(
            &["csr-approver", "check", "--context", "prod"],
            &[("KUBECONFIG", file)],
        ),
        "an unknown context",
    );
    assert!(
        err.contains(&format!(
            "KUBECONFIG={file}: context \"prod\" not found (contexts: only)"
        )),
        "{err}"
    );
}

/// A kubeconfig (JSON is YAML) with one context `name` on `server`, no credentials.
fn kubeconfig_text(server: &str, name: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "insecure-skip-tls-verify": true}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    })
    .to_string()
}

/// The harness's admin kubeconfig split in two files, as a `KUBECONFIG` list merges them:
/// `contexts.yaml` holds the contexts (`plugin`, current, and `elsewhere`, whose server
/// listens nowhere), `credentials.yaml` the clusters and users.
fn split_kubeconfig(cp: &harness::ControlPlane, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let admin: Value =
        serde_json::from_str(&std::fs::read_to_string(cp.kubeconfig_path()).unwrap()).unwrap();
    let mut clusters = admin["clusters"].as_array().unwrap().clone();
    clusters.push(json!({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": true}}));
    let contexts = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "plugin",
        "contexts": [
            {"name": "plugin", "context": {"cluster": "test", "user": "admin"}},
            {"name": "elsewhere", "context": {"cluster": "nowhere", "user": "admin"}},
        ],
    });
    let credentials = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": admin["users"],
    });
    let a = dir.join("contexts.yaml");
    let b = dir.join("credentials.yaml");
    std::fs::write(&a, contexts.to_string()).unwrap();
    std::fs::write(&b, credentials.to_string()).unwrap();
    (a, b, cp.kubeconfig_path().to_path_buf())
}

fn client_csr(name: &str, pem: Vec<u8>) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem),
            signer_name: harness::KUBELET_CLIENT_SIGNER.to_owned(),
            usages: Some(CLIENT_USAGES.iter().map(|u| (*u).to_owned()).collect()),
            ..Default::default()
        },
        status: None,
    }
}

/// The cluster as an admin finds it mid-join (csr-approver's CRD installed): the policy
/// ConfigMap expects host
/// `plugin-worker-1`; its client CSR is pending, a forged one (`O=system:masters`) too, and
/// an earlier CSR of another host is already approved.
async fn mid_join(cp: &harness::ControlPlane) {
    let admin = cp.admin_client();
    ensure_namespace(&admin, "csr-approver").await;
    // Installed as the chart installs it: `check` reads csr-approver's identity records.
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crd.yaml");
    for args in [
        &["apply", "-f", crd][..],
        &[
            "wait",
            "--for=condition=Established",
            "crd/nodeidentities.csr-approver.io",
            "--timeout=60s",
        ],
    ] {
        let out = cp.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let policy = ConfigMap {
        metadata: ObjectMeta {
            name: Some("csr-approver-policy".to_owned()),
            namespace: Some("csr-approver".to_owned()),
            ..Default::default()
        },
        data: Some(
            [(
                "policy.yaml".to_owned(),
                "inventory:\n  - name: plugin-worker-1\n".to_owned(),
            )]
            .into(),
        ),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(admin.clone(), "csr-approver")
        .create(&PostParams::default(), &policy)
        .await
        .expect("create the policy ConfigMap");
    bind_cluster_role(
        &admin,
        "plugin-node-bootstrapper",
        "system:node-bootstrapper",
        vec![service_account_subject(
            "openshift-machine-config-operator",
            "node-bootstrapper",
        )],
    )
    .await;
    let as_bootstrapper: Api<CertificateSigningRequest> =
        Api::all(cp.impersonating_client(BOOTSTRAPPER, &BOOTSTRAPPER_GROUPS));
    let requests = [
        ("plugin-join", Request::node("plugin-worker-1").pem()),
        (
            "plugin-forged",
            Request::node("plugin-worker-1")
                .org(Some("system:masters"))
                .pem(),
        ),
        ("plugin-done", Request::node("plugin-worker-2").pem()),
    ];
    for (name, pem) in requests {
        // RBAC caches are informer-fed: a fresh binding takes a moment to apply.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match as_bootstrapper
                .create(&PostParams::default(), &client_csr(name, pem.clone()))
                .await
            {
                Ok(_) => break,
                Err(e) if is_status(&e, 403) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create CSR {name} as the node-bootstrapper: {e}"),
            }
        }
    }
    let approval = Patch::Merge(json!({"status": {"conditions": [{
        "type": "Approved", "status": "True", "reason": "AdminApproved",
        "message": "approved by hand",
    }]}}));
    Api::<CertificateSigningRequest>::all(admin)
        .patch_approval("plugin-done", &PatchParams::default(), &approval)
        .await
        .expect("admin approves plugin-done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_csr_approver_check_explains_a_live_cluster() {
    let cp = harness::shared();
    mid_join(cp).await;
    let dir = PluginDir::new();
    let (contexts, credentials, admin_kubeconfig) = split_kubeconfig(cp, dir.home.path());
    // A list, merged, with a missing file in the middle that kubectl would skip too.
    let list = format!(
        "{}:{}:{}",
        contexts.display(),
        dir.home.path().join("not-there.yaml").display(),
        credentials.display()
    );
    let env = [("KUBECONFIG", list.as_str())];
    let kubectl = |args: &[&str]| tokio::task::block_in_place(|| dir.kubectl(args, &env));

    // `kubectl csr-approver check --pending`, KUBECONFIG only, stdout a pipe.
    let table = ok(
        &kubectl(&["csr-approver", "check", "--pending"]),
        "kubectl csr-approver check --pending",
    );
    let join = row(&table, "plugin-join").unwrap_or_else(|| panic!("no plugin-join in\n{table}"));
    for cell in [
        BOOTSTRAPPER,
        "kubelet-client",
        "APPROVE",
        "NewNodeInventory",
        "inventory entry plugin-worker-1",
    ] {
        assert!(join.contains(cell), "{join:?} should contain {cell}");
    }
    let forged =
        row(&table, "plugin-forged").unwrap_or_else(|| panic!("no plugin-forged in\n{table}"));
    assert!(
        // Forged: refused (left pending under deny: false), not waiting for anything.
        forged.contains("REFUSED") && forged.contains("BadOrganization"),
        "{forged}"
    );
    assert!(
        row(&table, "plugin-done").is_none(),
        "an approved CSR is not pending:\n{table}"
    );
    assert!(
        !table.contains('\u{1b}'),
        "escape codes in piped output: {table:?}"
    );
    // The same with colour asked for: the assertion above can fail.
    let colored = ok(
        &kubectl(&["csr-approver", "check", "--pending", "--color", "always"]),
        "--color always",
    );
    assert!(
        colored.contains("\u{1b}[32mAPPROVE\u{1b}[0m"),
        "{colored:?}"
    );

    // `kubectl csr-approver check NAME` (what `oc csr-approver check NAME` runs).
    let one = ok(
        &kubectl(&["csr-approver", "check", "plugin-done", "-o", "json"]),
        "kubectl csr-approver check plugin-done",
    );
    let lines: Vec<Value> = one
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{one}");
    assert_eq!(lines[0]["name"], "plugin-done");
    assert_eq!(lines[0]["verdict"], "ignore");
    assert_eq!(lines[0]["reason"], "AlreadyDecided");
    let one = ok(
        &kubectl(&["csr-approver", "check", "plugin-join"]),
        "kubectl csr-approver check plugin-join",
    );
    assert_eq!(one.lines().count(), 2, "header and one row:\n{one}");
    assert!(row(&one, "plugin-join").is_some_and(|r| r.contains("NewNodeInventory")));
    let err = failed(
        &kubectl(&["csr-approver", "check", "plugin-nope"]),
        "an unknown CSR name",
    );
    assert!(
        err.contains(
            "CertificateSigningRequest plugin-nope not found in context plugin of KUBECONFIG="
        ),
        "{err}"
    );

    // --context picks another context of the same files; this one's server is down, and
    // the error says which context and server it tried.
    let err = failed(
        &kubectl(&["csr-approver", "check", "--context", "elsewhere"]),
        "--context elsewhere",
    );
    assert!(
        err.contains("context elsewhere of KUBECONFIG=") && err.contains("https://127.0.0.1:1/"),
        "{err}"
    );

    // --kubeconfig wins over KUBECONFIG, as for kubectl.
    let table = ok(
        &tokio::task::block_in_place(|| {
            dir.kubectl(
                &[
                    "csr-approver",
                    "check",
                    "--pending",
                    "--kubeconfig",
                    admin_kubeconfig.to_str().unwrap(),
                ],
                &[("KUBECONFIG", "/nonexistent/kubeconfig")],
            )
        }),
        "--kubeconfig with a broken KUBECONFIG",
    );
    assert!(row(&table, "plugin-join").is_some(), "{table}");

    // Neither: ~/.kube/config.
    let kube_dir = dir.home.path().join(".kube");
    std::fs::create_dir_all(&kube_dir).unwrap();
    std::fs::copy(&admin_kubeconfig, kube_dir.join("config")).unwrap();
    let table = ok(
        &tokio::task::block_in_place(|| dir.kubectl(&["csr-approver", "check", "--pending"], &[])),
        "check with ~/.kube/config only",
    );
    assert!(row(&table, "plugin-join").is_some(), "{table}");
}
