//! The demo with real kubelets (run by `scripts/demo.sh` as root on Linux): csr-approver's
//! image installed with its Helm chart as a Pod on a real node, real kubelets joining through
//! it, and forged requests refused — shown with kubectl.
//!
//!   DEMO_NODES=2 cargo run --example real_nodes_demo    # needs root, the assets below
//!
//! It reuses the test harness (tests/harness: the control plane, `RealNode`, the chart
//! install of tests/real_node_pod.rs), so the demo and the tests run the same nodes with the
//! same configuration. Needs `CSR_APPROVER_NODE_ASSETS` (scripts/node-assets.sh),
//! `CSR_APPROVER_IMAGE_ARCHIVE` (scripts/build-image.sh --save) and `HELM`
//! (scripts/tools.sh --env); scripts/demo.sh provides them. `DEMO_KEEP=1` keeps everything
//! running until Ctrl-C. Everything stops and is removed when it exits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a demo: a failure ends it with the reason

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use harness::node::{BOOTSTRAPPERS_GROUP, KUBEADM_TOKEN_GROUP, RealNode};
use harness::pod::{self, Workloads};
use harness::{ControlPlane, KUBELET_CLIENT_SIGNER, Options};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, PostParams};

fn say(what: &str) {
    // Bold for a person at a terminal; a log file or a pipe gets plain text.
    let bold = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if bold {
        println!("\n\x1b[1m==> {what}\x1b[0m");
    } else {
        println!("\n==> {what}");
    }
}

/// `kubectl <args>` with the demo's kubeconfig, its output shown as a user sees it.
fn kubectl(cp: &ControlPlane, args: &[&str]) {
    println!("$ kubectl {}", args.join(" "));
    let out = cp.kubectl(args);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

async fn wait<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "demo: {what} after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn client_csr_of(admin: &Client, node: &RealNode) -> String {
    let api: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let user = node.bootstrap_user();
    wait("no client CSR", Duration::from_secs(60), || {
        let (api, user) = (api.clone(), user.clone());
        async move {
            api.list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|c| {
                    c.spec.signer_name == KUBELET_CLIENT_SIGNER
                        && c.spec.username.as_deref() == Some(user.as_str())
                })?
                .metadata
                .name
        }
    })
    .await
}

/// Waits until Node `name` is Ready, and says so (the join is quiet otherwise).
async fn ready(admin: &Client, name: &str, begin: Instant) {
    let nodes: Api<Node> = Api::all(admin.clone());
    wait(
        &format!("Node {name} not Ready"),
        Duration::from_secs(90),
        || {
            let nodes = nodes.clone();
            async move {
                let node = nodes.get(name).await.ok()?;
                node.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
                    .then_some(())
            }
        },
    )
    .await;
    println!("  {name} Ready ({:.1?} after the start)", begin.elapsed());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let workers: u8 = std::env::var("DEMO_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2)
        .clamp(1, 8);
    if let Some(why) = harness::node::unsupported() {
        eprintln!("demo: {why}");
        std::process::exit(2);
    }
    let image = pod::image_archive()
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("an image (CSR_APPROVER_IMAGE=skip is for the tests)");
    let begin = Instant::now();
    let names: Vec<String> = (1..=workers).map(|i| format!("worker-{i}")).collect();
    let ip = |i: u8| Ipv4Addr::new(127, 0, 0, 30 + i);
    let hosts: Vec<(String, Ipv4Addr)> = std::iter::once("control-0".to_owned())
        .chain(names.clone())
        .enumerate()
        .map(|(i, name)| (name, ip(i as u8)))
        .collect();
    let policy = harness::node::inventory_policy(
        &hosts
            .iter()
            .map(|(name, ip)| (name.as_str(), *ip))
            .collect::<Vec<_>>(),
    );

    say(
        "a local control plane: kube-apiserver + etcd, kube-controller-manager (CSR signers only, no approver)",
    );
    let cp = ControlPlane::start_with(Options { real_nodes: true });
    let admin = cp.admin_client();
    let _workloads = Workloads::start(&cp);

    say(
        "control-0 joins: the cluster's first node, its client CSR approved by hand (nothing runs an approver yet)",
    );
    let control = RealNode::start(&cp, "control-0", ip(0)).await;
    let csr = client_csr_of(&admin, &control).await;
    println!("$ kubectl certificate approve {csr}");
    pod::approve_by_hand(&admin, &csr).await.unwrap();

    say(&format!(
        "the image {} (scripts/build-image.sh) into control-0's containerd, then helm install",
        image.reference
    ));
    pod::import_image(&control, &image.archive).unwrap_or_else(|e| panic!("{e}"));
    let http_port = pod::free_host_port();
    let values = pod::chart_values(&cp, &image, "control-0", http_port, &policy);
    println!(
        "$ helm install csr-approver charts/csr-approver -n csr-approver --create-namespace \\\n    \
         --set hostNetwork=true,image.pullPolicy=Never,nodeSelector.kubernetes\\.io/hostname=control-0 ... (policy: inventory of {} hosts)",
        workers + 1
    );
    let installed = pod::helm_install(&cp, &values).unwrap_or_else(|e| panic!("{e}"));
    print!("{installed}");
    let pod_name = pod::wait_pod_ready(&admin, Duration::from_secs(90))
        .await
        .unwrap_or_else(|| panic!("the csr-approver Pod is not Ready"));
    kubectl(&cp, &["get", "pods", "-n", "csr-approver", "-o", "wide"]);
    println!("(csr-approver in Pod {pod_name} now approves control-0's serving CSR)");

    say(&format!(
        "{workers} worker kubelet(s) join from nothing: client CSR → Node → serving CSR, approved by the Pod"
    ));
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        nodes.push(RealNode::start(&cp, name, ip(i as u8 + 1)).await);
    }
    ready(&admin, "control-0", begin).await;
    for name in &names {
        ready(&admin, name, begin).await;
    }
    println!("all Ready {:.1?} after the start", begin.elapsed());

    say(
        "forged requests: real kubelets with a name nobody expects and with an existing node's name, a forged CSR",
    );
    let stranger = RealNode::start(&cp, "stranger", Ipv4Addr::new(127, 0, 0, 60)).await;
    let impostor = RealNode::start(&cp, &names[0], Ipv4Addr::new(127, 0, 0, 61)).await;
    let forger = cp.impersonating_client(
        "system:bootstrap:forged",
        &[BOOTSTRAPPERS_GROUP, KUBEADM_TOKEN_GROUP],
    );
    Api::<CertificateSigningRequest>::all(forger)
        .create(
            &PostParams::default(),
            &harness::kubelet_client_csr("forged-intruder", "intruder"),
        )
        .await
        .unwrap();
    let refused = [
        client_csr_of(&admin, &stranger).await,
        client_csr_of(&admin, &impostor).await,
        "forged-intruder".to_owned(),
    ];
    // Until csr-approver has said why, for each; each is shown as it comes.
    println!(
        "waiting for csr-approver to explain the {} refused CSRs (a Warning Event each)",
        refused.len()
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(admin.clone(), "default");
    let mut explained = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while explained.len() < refused.len() {
        assert!(
            Instant::now() < deadline,
            "demo: no Warning Event for {:?} after 30s",
            refused
                .iter()
                .filter(|c| !explained.contains(*c))
                .collect::<Vec<_>>()
        );
        let list = events
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        for csr in &refused {
            if explained.contains(csr) {
                continue;
            }
            let warning = list.iter().find(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(csr.as_str())
            });
            if let Some(event) = warning {
                println!(
                    "  {csr}: left Pending — {}: {}",
                    event.reason.as_deref().unwrap_or_default(),
                    event.note.as_deref().unwrap_or_default()
                );
                explained.insert(csr.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    say("kubectl get nodes");
    kubectl(&cp, &["get", "nodes", "-o", "wide"]);
    say("kubectl get csr");
    kubectl(
        &cp,
        &["get", "csr", "--sort-by=.metadata.creationTimestamp"],
    );
    say("the Events csr-approver (in the Pod) recorded: why each CSR was approved or left Pending");
    kubectl(
        &cp,
        &[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector=involvedObject.kind=CertificateSigningRequest",
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "custom-columns=CSR:.involvedObject.name,TYPE:.type,REASON:.reason,BY:.reportingInstance,MESSAGE:.message",
        ],
    );
    say("kubectl logs (through control-0's kubelet, its serving certificate verified)");
    kubectl(&cp, &["logs", "-n", "csr-approver", &pod_name, "--tail=3"]);

    if std::env::var_os("DEMO_KEEP").is_some_and(|v| v != "0") {
        println!(
            "\nleft running: export KUBECONFIG={}  (Ctrl-C stops and removes everything)",
            cp.kubeconfig_path().display()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    say("tearing down");
    drop((stranger, impostor, nodes, control));
}
