//! The controller end to end on a real kube-apiserver + etcd, running as its own binary
//! under the ServiceAccount and RBAC of deploy/. Kubelets are played through impersonation,
//! so the apiserver records requesters exactly as for real nodes.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::time::{Duration, Instant};

use builders::Request;
use scene::*;

const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];
const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(15);

fn openshift() -> SceneOptions {
    SceneOptions {
        machine_crds: true,
        policy: None,
    }
}

async fn serving_request(scene: &Scene, csr: &str, node: &str, ip: &str) {
    let pem = Request::node(node).dns(node).ip(ip).pem();
    scene
        .create_csr(
            &scene.node_client(node),
            csr,
            SERVING_SIGNER,
            &SERVING_USAGES,
            pem,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_joins_client_then_serving() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;

    scene
        .create_machine(
            "worker-1",
            &[("InternalDNS", "worker-1"), ("InternalIP", "10.0.0.11")],
        )
        .await;
    scene.join_request("worker-1-client", "worker-1").await;
    assert_eq!(
        scene
            .wait_condition("worker-1-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        scene.controller_log(c)
    );
    let approved = scene.csr("worker-1-client").await;
    let condition = approved.status.unwrap().conditions.unwrap().remove(0);
    assert_eq!(condition.reason.as_deref(), Some("AutoApproved"));
    assert!(
        condition
            .message
            .unwrap()
            .contains("Machine openshift-machine-api/worker-1")
    );

    scene
        .register_node(
            "worker-1",
            &[("InternalIP", "10.0.0.11"), ("Hostname", "worker-1")],
        )
        .await;
    scene.link_machine("worker-1", "worker-1").await;
    serving_request(&scene, "worker-1-serving", "worker-1", "10.0.0.11").await;
    assert_eq!(
        scene
            .wait_condition("worker-1-serving", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        scene.controller_log(c)
    );

    let client_events = scene.events_about("default", "worker-1-client").await;
    assert!(
        !client_events.iter().any(|(t, _, _)| t == "Warning"),
        "an approved CSR gets no Warning: {client_events:?}"
    );
    let events = scene.events_about("default", "worker-1-serving").await;
    assert!(
        events.iter().any(|(t, r, n)| t == "Normal"
            && r == "Approved"
            && n.contains("ServingAddressesVerified")),
        "{events:?}"
    );
    let metrics = scene.metrics(c);
    assert_eq!(
        metric(
            &metrics,
            "csr_approver_approval_latency_seconds_count{signer=\"kubernetes.io/kube-apiserver-client-kubelet\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "csr_approver_approval_latency_seconds_count{signer=\"kubernetes.io/kubelet-serving\"}"
        ),
        1.0
    );
    assert_eq!(metric(&metrics, "csr_approver_leader "), 1.0);
    assert_eq!(metric(&metrics, "csr_approver_policy_valid "), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_before_the_node_waits_then_is_approved_when_the_node_appears() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;

    scene
        .create_machine(
            "worker-2",
            &[("InternalDNS", "worker-2"), ("InternalIP", "10.0.0.12")],
        )
        .await;
    scene.join_request("worker-2-client", "worker-2").await;
    assert_eq!(
        scene
            .wait_condition("worker-2-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved")
    );
    serving_request(&scene, "worker-2-serving", "worker-2", "10.0.0.12").await;
    let waiting = wait_for(Duration::from_secs(10), || async {
        let events = scene.events_about("default", "worker-2-serving").await;
        events
            .iter()
            .any(|(t, r, n)| {
                t == "Warning" && r == "NotApproved" && n.contains("NodeNotRegistered")
            })
            .then_some(())
    })
    .await;
    assert!(
        waiting.is_some(),
        "a Warning NotApproved/NodeNotRegistered Event explains the wait"
    );
    assert_eq!(scene.condition("worker-2-serving").await, None);

    let registered = Instant::now();
    scene
        .register_node(
            "worker-2",
            &[("InternalIP", "10.0.0.12"), ("Hostname", "worker-2")],
        )
        .await;
    assert_eq!(
        scene
            .wait_condition("worker-2-serving", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved")
    );
    let latency = registered.elapsed();
    eprintln!("serving CSR approved {latency:?} after its Node was registered");
    // The requeue fallback is 30 s: anything near a second proves the Node watch triggered it.
    assert!(latency < Duration::from_secs(2), "took {latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_metal_without_machine_api_joins_through_the_inventory() {
    let _serial = SERIAL.lock().await;
    let policy = "inventory:\n  - name: metal-1\n    addresses: [10.1.0.21]\n";
    let mut scene = Scene::new(SceneOptions {
        machine_crds: false,
        policy: Some(policy),
    })
    .await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;

    scene.join_request("metal-1-client", "metal-1").await;
    assert_eq!(
        scene
            .wait_condition("metal-1-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        scene.controller_log(c)
    );
    scene
        .register_node(
            "metal-1",
            &[("InternalIP", "10.1.0.21"), ("Hostname", "metal-1")],
        )
        .await;
    serving_request(&scene, "metal-1-serving", "metal-1", "10.1.0.21").await;
    assert_eq!(
        scene
            .wait_condition("metal-1-serving", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved")
    );
    // A host not in the inventory waits.
    scene.join_request("metal-9-client", "metal-9").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(scene.condition("metal-9-client").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_csrs_stay_pending_then_are_denied_and_bad_policy_is_rejected() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;
    scene
        .create_machine(
            "worker-3",
            &[("InternalDNS", "worker-3"), ("InternalIP", "10.0.0.13")],
        )
        .await;
    scene
        .register_node(
            "worker-4",
            &[("InternalIP", "10.0.0.14"), ("Hostname", "worker-4")],
        )
        .await;

    // A stranger allowed to create CSRs (as kubeadm's bootstrappers are) asks for worker-3.
    harness::bind_cluster_role(
        &scene.admin,
        "mallory-csr",
        "system:node-bootstrapper",
        vec![k8s_openapi::api::rbac::v1::Subject {
            kind: "User".into(),
            name: "mallory".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mallory = scene.cp.impersonating_client("mallory", &[]);
    scene
        .create_csr(
            &mallory,
            "forged-requester",
            CLIENT_SIGNER,
            &CLIENT_USAGES,
            Request::node("worker-3").pem(),
        )
        .await;
    // system:masters in the subject.
    scene
        .create_csr(
            &scene.bootstrapper(),
            "forged-masters",
            CLIENT_SIGNER,
            &CLIENT_USAGES,
            Request::node("worker-3").org(Some("system:masters")).pem(),
        )
        .await;
    // The bootstrapper asking for a node that already exists.
    scene.join_request("forged-existing", "worker-4").await;
    // worker-4 asking for a serving certificate with someone else's IP.
    serving_request(&scene, "forged-san", "worker-4", "10.0.0.99").await;
    // worker-4 asking for the API server's in-cluster name.
    scene
        .create_csr(
            &scene.node_client("worker-4"),
            "forged-reserved",
            SERVING_SIGNER,
            &SERVING_USAGES,
            Request::node("worker-4")
                .dns("kubernetes.default.svc")
                .ip("10.0.0.14")
                .pem(),
        )
        .await;

    let forged = [
        "forged-requester",
        "forged-masters",
        "forged-existing",
        "forged-san",
        "forged-reserved",
    ];
    let explained = wait_for(Duration::from_secs(15), || async {
        for name in forged {
            let events = scene.events_about("default", name).await;
            if !events
                .iter()
                .any(|(t, r, _)| t == "Warning" && r == "NotApproved")
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(
        explained.is_some(),
        "every forged CSR gets a Warning Event\n{}",
        scene.controller_log(c)
    );
    for name in forged {
        assert_eq!(
            scene.condition(name).await,
            None,
            "{name} must stay pending"
        );
    }
    let reasons: Vec<String> = {
        let mut all = Vec::new();
        for name in forged {
            all.push(scene.events_about("default", name).await.remove(0).2);
        }
        all
    };
    assert!(reasons[0].starts_with("UnknownRequester"), "{reasons:?}");
    assert!(reasons[1].starts_with("BadOrganization"), "{reasons:?}");
    assert!(reasons[2].starts_with("NodeAlreadyExists"), "{reasons:?}");
    assert!(reasons[3].starts_with("ForeignSan"), "{reasons:?}");
    assert!(reasons[4].starts_with("ReservedSan"), "{reasons:?}");

    // Re-deciding with the same outcome adds no Event: a policy update re-reconciles all.
    scene
        .set_policy("deny: false  # unchanged, but a new ConfigMap revision\n")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in forged {
        assert_eq!(
            scene.event_occurrences("default", name).await,
            1,
            "{name}: one Event for one decision"
        );
    }

    // Hot reload: deny: true takes effect without a restart, on what is forged whatever the
    // cluster holds (system:masters, a reserved name) — never on a CSR an admin may approve
    // by hand (a requester the policy does not list, an existing node's identity as a node
    // recovering after its client certificate expired asks, an address no status lists),
    // which no denial may race.
    scene.set_policy("deny: true\n").await;
    for name in ["forged-masters", "forged-reserved"] {
        assert_eq!(
            scene
                .wait_condition(name, APPROVAL_TIMEOUT)
                .await
                .as_deref(),
            Some("Denied"),
            "{name}\n{}",
            scene.controller_log(c)
        );
    }
    for name in ["forged-requester", "forged-existing", "forged-san"] {
        assert_eq!(
            scene.condition(name).await,
            None,
            "{name} stays pending for an admin under deny: true"
        );
    }
    // Still approves what is legitimate.
    scene.join_request("worker-3-client", "worker-3").await;
    assert_eq!(
        scene
            .wait_condition("worker-3-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved")
    );

    // An invalid update is rejected, explained, and the last good policy (deny) stays.
    scene
        .set_policy("deny: true\nserving: {allowedIPRanges: [not-a-cidr]}\n")
        .await;
    let rejected = wait_for(Duration::from_secs(10), || async {
        (metric(&scene.metrics(c), "csr_approver_policy_valid ") == 0.0).then_some(())
    })
    .await;
    assert!(rejected.is_some(), "policy_valid drops to 0");
    let warned = wait_for(Duration::from_secs(10), || async {
        let events = scene.events_about(NAMESPACE, "csr-approver-policy").await;
        events
            .iter()
            .any(|(t, r, n)| {
                t == "Warning" && r == "InvalidPolicy" && n.contains("serving.allowedIPRanges[0]")
            })
            .then_some(())
    })
    .await;
    assert!(
        warned.is_some(),
        "a Warning InvalidPolicy Event on the ConfigMap names the field\n{}",
        scene.controller_log(c)
    );
    scene
        .create_csr(
            &scene.bootstrapper(),
            "forged-after-bad-policy",
            CLIENT_SIGNER,
            &CLIENT_USAGES,
            Request::node("worker-3").org(Some("system:masters")).pem(),
        )
        .await;
    assert_eq!(
        scene
            .wait_condition("forged-after-bad-policy", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Denied")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_explains_but_writes_nothing() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(SceneOptions {
        machine_crds: true,
        policy: Some("mode: dry-run\n"),
    })
    .await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;
    scene
        .create_machine("worker-5", &[("InternalDNS", "worker-5")])
        .await;
    scene.join_request("worker-5-client", "worker-5").await;
    let explained = wait_for(Duration::from_secs(15), || async {
        let events = scene.events_about("default", "worker-5-client").await;
        events
            .iter()
            .any(|(t, r, n)| t == "Normal" && r == "Approved" && n.contains("dry-run"))
            .then_some(())
    })
    .await;
    assert!(explained.is_some(), "{}", scene.controller_log(c));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        scene.condition("worker-5-client").await,
        None,
        "dry-run must not approve"
    );
    let metrics = scene.metrics(c);
    assert_eq!(
        metric(
            &metrics,
            "csr_approver_decisions_total{reason=\"NewNodeMachine\""
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_the_standby_takes_over() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let a = scene.start_controller("replica-a", &[]);
    scene.wait_ready(a).await;
    let leader_a = wait_for(Duration::from_secs(15), || async {
        (metric(&scene.metrics(a), "csr_approver_leader ") == 1.0).then_some(())
    })
    .await;
    assert!(leader_a.is_some(), "{}", scene.controller_log(a));
    let b = scene.start_controller("replica-b", &[]);
    scene.wait_ready(b).await;
    assert_eq!(
        metric(&scene.metrics(b), "csr_approver_leader "),
        0.0,
        "the second replica stands by"
    );

    scene
        .create_machine("worker-6", &[("InternalDNS", "worker-6")])
        .await;
    scene.join_request("worker-6-client", "worker-6").await;
    assert_eq!(
        scene
            .wait_condition("worker-6-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved")
    );
    let decided_by_b = metric(&scene.metrics(b), "csr_approver_decisions_total");
    assert_eq!(decided_by_b, 0.0, "the standby decides nothing");

    scene.kill_controller(a);
    scene
        .create_machine("worker-7", &[("InternalDNS", "worker-7")])
        .await;
    scene.join_request("worker-7-client", "worker-7").await;
    // Lease duration 4 s: the standby must take over within a few lease periods.
    assert_eq!(
        scene
            .wait_condition("worker-7-client", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        scene.controller_log(b)
    );
    assert_eq!(metric(&scene.metrics(b), "csr_approver_leader "), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_writing_and_releases_the_lease() {
    use k8s_openapi::api::coordination::v1::Lease;
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let a = scene.start_controller("replica-term", &[]);
    scene.wait_ready(a).await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(scene.admin.clone(), NAMESPACE);
    let holder = || async {
        leases
            .get_opt("csr-approver")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    let held = wait_for(Duration::from_secs(15), || async {
        holder().await.filter(|h| h == "replica-term")
    })
    .await;
    assert!(
        held.is_some(),
        "the replica takes the Lease\n{}",
        scene.controller_log(a)
    );

    scene.terminate_controller("replica-term");
    let exited = wait_for(Duration::from_secs(10), || async {
        scene.controller_exit(a)
    })
    .await;
    assert_eq!(
        exited.as_deref(),
        Some("replica-term exited with status 0"),
        "{}",
        scene.controller_log(a)
    );
    assert_eq!(
        holder().await,
        None,
        "the Lease is released on SIGTERM, not left to expire"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_explains_the_clusters_pending_csrs_read_only() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::new(openshift()).await;
    scene
        .create_machine("worker-8", &[("InternalDNS", "worker-8")])
        .await;
    scene.join_request("worker-8-client", "worker-8").await;
    scene
        .create_csr(
            &scene.bootstrapper(),
            "worker-8-forged",
            CLIENT_SIGNER,
            &CLIENT_USAGES,
            Request::node("worker-8").org(Some("system:masters")).pem(),
        )
        .await;
    let kubeconfig = scene.cp.kubeconfig_path().to_str().unwrap().to_string();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--kubeconfig",
            kubeconfig.as_str(),
            "-o",
            "json",
            "--pending",
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_csr-approver"))
            .args(&args)
            .output()
            .unwrap()
    };
    let out = check(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["verdict"].as_str().unwrap(),
                l["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("worker-8-client", "approve", "NewNodeMachine"),
            ("worker-8-forged", "wait", "BadOrganization")
        ]
    );
    assert_eq!(
        scene.condition("worker-8-client").await,
        None,
        "check writes nothing"
    );

    // Unknown CSR names are errors.
    let out = check(&["no-such-csr"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-csr not found"));
    // An invalid policy ConfigMap is reported as such, not silently replaced by defaults.
    scene.set_policy("serving: {allowedIPRanges: [nope]}").await;
    let out = check(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid policy") && err.contains("serving.allowedIPRanges[0]"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apiserver_restart_mid_join_is_survived() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;
    scene
        .create_machine(
            "worker-9",
            &[("InternalDNS", "worker-9"), ("InternalIP", "10.0.0.19")],
        )
        .await;
    scene.join_request("worker-9-client", "worker-9").await;
    assert_eq!(
        scene
            .wait_condition("worker-9-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved")
    );

    // The control plane goes away between the client and the serving CSR.
    let outage = Instant::now();
    tokio::task::block_in_place(|| scene.cp.restart_apiserver(Duration::from_secs(3)));
    eprintln!("apiserver back after {:?}", outage.elapsed());
    scene
        .register_node(
            "worker-9",
            &[("InternalIP", "10.0.0.19"), ("Hostname", "worker-9")],
        )
        .await;
    let submitted = Instant::now();
    serving_request(&scene, "worker-9-serving", "worker-9", "10.0.0.19").await;
    // Watches retry at most 2 s apart: recovery is bounded by that, not by a 30 s backoff
    // (a restarted apiserver may answer 403 and 410 a few times while its caches fill).
    // Under 20 s: sooner than the 30 s requeue, so it is the watches that recovered.
    let approved = scene
        .wait_condition("worker-9-serving", Duration::from_secs(20))
        .await;
    eprintln!(
        "serving CSR decided {:?} after submission",
        submitted.elapsed()
    );
    assert_eq!(
        approved.as_deref(),
        Some("Approved"),
        "the controller re-establishes its watches after the outage\n{}",
        scene.controller_log(c)
    );
    assert!(
        scene.controller_exit(c).is_none(),
        "the controller rode out the outage"
    );
}

/// The scenes' `--lease-duration` (see `Scene::start_controller`).
const LEASE: Duration = Duration::from_secs(4);

/// `csr_approver_leader` as the replica reports it; None when /metrics does not answer (an
/// empty page must not read as 0).
fn leader_gauge(scene: &Scene, index: usize) -> Option<f64> {
    let metrics = scene.metrics(index);
    metrics
        .lines()
        .any(|l| l.starts_with("csr_approver_leader "))
        .then(|| metric(&metrics, "csr_approver_leader "))
}

async fn wait_leader_gauge(scene: &Scene, index: usize, value: f64, timeout: Duration) -> bool {
    wait_for(timeout, || async {
        (leader_gauge(scene, index) == Some(value)).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_is_fenced_until_it_renews_again() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let c = scene.start_controller("replica-fenced", &[]);
    scene.wait_ready(c).await;
    assert!(
        wait_leader_gauge(&scene, c, 1.0, Duration::from_secs(15)).await,
        "{}",
        scene.controller_log(c)
    );

    // etcd stops answering: the API server takes requests and holds them, so renewals
    // neither succeed nor fail — they hang. For three leases.
    scene.cp.pause_etcd();
    let paused = Instant::now();
    let fenced = wait_for(LEASE * 2, || async {
        (leader_gauge(&scene, c) == Some(0.0)).then(|| paused.elapsed())
    })
    .await;
    let Some(fenced) = fenced else {
        scene.cp.resume_etcd();
        panic!(
            "still reporting leader {:?} into an etcd outage, beyond its {LEASE:?} lease\n{}",
            paused.elapsed(),
            scene.controller_log(c)
        );
    };
    eprintln!("fenced {fenced:?} after etcd stopped");
    // The last renewal was sent before the pause: fenced before that Lease could expire.
    assert!(
        fenced < LEASE,
        "fenced only {fenced:?} into the outage\n{}",
        scene.controller_log(c)
    );
    // No renewal, no leadership: it stays fenced however long the outage lasts.
    while paused.elapsed() < LEASE * 3 {
        assert_eq!(
            leader_gauge(&scene, c),
            Some(0.0),
            "{:?} into the outage",
            paused.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        scene.controller_log(c).contains("fenced"),
        "the log says so\n{}",
        scene.controller_log(c)
    );
    scene.cp.resume_etcd();
    let resumed = Instant::now();

    // Renewed again: leader, and it approves.
    assert!(
        wait_leader_gauge(&scene, c, 1.0, Duration::from_secs(30)).await,
        "not leading again after the outage\n{}",
        scene.controller_log(c)
    );
    eprintln!("leading again {:?} after etcd resumed", resumed.elapsed());
    scene
        .create_machine("worker-20", &[("InternalDNS", "worker-20")])
        .await;
    scene.join_request("worker-20-client", "worker-20").await;
    assert_eq!(
        scene
            .wait_condition("worker-20-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        scene.controller_log(c)
    );
    assert!(scene.controller_exit(c).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_the_apiserver_waits_alive_and_not_ready() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    tokio::task::block_in_place(|| scene.cp.stop_apiserver());
    let c = scene.start_controller("replica-early", &[]);
    let port = scene.controller_port(c);
    // The probes answer although nothing else does.
    let alive = wait_for(Duration::from_secs(10), || async move {
        http_get(port, "/healthz").filter(|(code, _)| *code == 200)
    })
    .await;
    assert!(alive.is_some(), "{}", scene.controller_log(c));
    // Longer than a lease and many retries: alive, not ready, saying why.
    let outage = Instant::now();
    while outage.elapsed() < LEASE * 2 {
        assert_eq!(
            scene.controller_exit(c),
            None,
            "exited without an API server\n{}",
            scene.controller_log(c)
        );
        assert_eq!(http_get(port, "/healthz").map(|(code, _)| code), Some(200));
        let (code, body) = http_get(port, "/readyz").unwrap();
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("the API server"), "{body}");
        assert_eq!(leader_gauge(&scene, c), Some(0.0));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    tokio::task::block_in_place(|| scene.cp.start_apiserver());
    let started = Instant::now();
    scene.wait_ready(c).await;
    eprintln!("ready {:?} after the API server", started.elapsed());
    assert!(
        wait_leader_gauge(&scene, c, 1.0, Duration::from_secs(15)).await,
        "{}",
        scene.controller_log(c)
    );
    // The Machine API was found (a start-up without it would have skipped it for good).
    scene
        .create_machine("worker-21", &[("InternalDNS", "worker-21")])
        .await;
    scene.join_request("worker-21-client", "worker-21").await;
    assert_eq!(
        scene
            .wait_condition("worker-21-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        scene.controller_log(c)
    );
    let approved = scene.csr("worker-21-client").await;
    let condition = approved.status.unwrap().conditions.unwrap().remove(0);
    assert!(
        condition
            .message
            .unwrap()
            .contains("Machine openshift-machine-api/worker-21")
    );
}

/// A TCP proxy in front of kube-apiserver whose traffic the test can hold: a network
/// partition for the replicas behind it. Connections stay open and nothing gets through —
/// requests hang, as behind a dropped route — until healed, when what was held flows on.
struct Partition {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Partition {
    async fn start(upstream: std::net::SocketAddr) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, open) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let open = open.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::join!(
                        pump(from_client, to_server, open.clone()),
                        pump(from_server, to_client, open)
                    );
                });
            }
        });
        Partition { addr, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn heal(&self) {
        self.cut.send_replace(false);
    }
}

async fn pump(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: tokio::sync::watch::Receiver<bool>,
) {
    // Readiness-based I/O (tokio's `io-util` is not among the crate's features). Dropping
    // `to` on return shuts its direction down, as the peer did.
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if cut.wait_for(|cut| !*cut).await.is_err() || from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        // Bytes read just as the cut came are held too.
        if cut.wait_for(|cut| !*cut).await.is_err() {
            return;
        }
        let mut written = 0;
        while written < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buffer[written..n]) {
                Ok(k) => written += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_fenced_before_the_standby_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let upstream = scene
        .cp
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let partition = Partition::start(upstream).await;
    let behind_proxy = scene.controller_kubeconfig_for(&format!("https://{}", partition.addr));
    let a = scene.start_controller_with("replica-cut-off", &behind_proxy, &[]);
    scene.wait_ready(a).await;
    assert!(
        wait_leader_gauge(&scene, a, 1.0, Duration::from_secs(15)).await,
        "{}",
        scene.controller_log(a)
    );
    let b = scene.start_controller("replica-b", &[]);
    scene.wait_ready(b).await;
    assert_eq!(
        leader_gauge(&scene, b),
        Some(0.0),
        "the second replica stands by"
    );

    // The leader loses the API server; the standby and everyone else still reach it.
    partition.cut();
    let cut = Instant::now();
    // Both gauges sampled together, so the order of the two moments is what happened.
    let (mut fenced, mut took_over) = (None, None);
    while (fenced.is_none() || took_over.is_none()) && cut.elapsed() < LEASE * 4 {
        let (gauge_a, gauge_b) = (leader_gauge(&scene, a), leader_gauge(&scene, b));
        if fenced.is_none() && gauge_a == Some(0.0) {
            fenced = Some(cut.elapsed());
        }
        if took_over.is_none() && gauge_b == Some(1.0) {
            took_over = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("partitioned leader fenced after {fenced:?}, standby leading after {took_over:?}");
    let (Some(fenced), Some(took_over)) = (fenced, took_over) else {
        panic!(
            "fenced {fenced:?}, taken over {took_over:?}\n{}\n{}",
            scene.controller_log(a),
            scene.controller_log(b)
        );
    };
    assert!(fenced < LEASE, "fenced only after {fenced:?}");
    assert!(
        fenced < took_over,
        "two writers at once: the standby led {took_over:?} after the cut, the old leader fenced {fenced:?}"
    );

    // The new leader approves; the old one decides nothing.
    scene
        .create_machine("worker-22", &[("InternalDNS", "worker-22")])
        .await;
    scene.join_request("worker-22-client", "worker-22").await;
    assert_eq!(
        scene
            .wait_condition("worker-22-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        scene.controller_log(b)
    );

    // Healed: the old leader's held requests arrive late — a renewal conditional on a
    // resourceVersion that is gone, refused — and it finds the Lease taken: it stands by.
    partition.heal();
    let healed = Instant::now();
    while healed.elapsed() < LEASE * 2 {
        assert_eq!(
            leader_gauge(&scene, a),
            Some(0.0),
            "{:?} after healing",
            healed.elapsed()
        );
        assert_eq!(
            leader_gauge(&scene, b),
            Some(1.0),
            "{:?} after healing",
            healed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lease = kube::Api::<Lease>::namespaced(scene.admin.clone(), NAMESPACE)
        .get("csr-approver")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("replica-b")
    );
    assert_eq!(
        metric(&scene.metrics(a), "csr_approver_decisions_total"),
        0.0,
        "the old leader decided nothing\n{}",
        scene.controller_log(a)
    );
    assert!(scene.controller_exit(a).is_none() && scene.controller_exit(b).is_none());
}

/// What a signer that refuses leaves behind — an approval with a `Failed` condition,
/// written through `/status` as kube-controller-manager's signer writes it (this control
/// plane runs none, so the test writes it in its place) — is found by `check --hygiene`
/// live and counted by the controller's gauge; a CSR left pending becomes
/// `pending_too_long` once past the kubelet's wait (`--now`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hygiene_finds_an_approval_the_signer_refused_live_and_in_the_gauge() {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use kube::api::{Api, Patch, PatchParams};

    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;
    scene
        .create_machine("worker-6", &[("InternalDNS", "worker-6")])
        .await;
    scene.join_request("worker-6-client", "worker-6").await;
    assert_eq!(
        scene
            .wait_condition("worker-6-client", APPROVAL_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved")
    );
    // No Machine vouches for worker-66: its request stays pending.
    scene.join_request("worker-66-client", "worker-66").await;

    let approved = scene.csr("worker-6-client").await;
    let mut conditions =
        serde_json::to_value(approved.status.and_then(|s| s.conditions).unwrap()).unwrap();
    conditions.as_array_mut().unwrap().push(serde_json::json!({
        "type": "Failed",
        "status": "True",
        "reason": "SignerValidationFailure",
        "message": "the signer refuses this request",
        "lastUpdateTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }));
    Api::<CertificateSigningRequest>::all(scene.admin.clone())
        .patch_status(
            "worker-6-client",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"conditions": conditions}})),
        )
        .await
        .unwrap();

    let kubeconfig = scene.cp.kubeconfig_path().to_str().unwrap().to_string();
    let hygiene = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--hygiene",
            "--kubeconfig",
            &kubeconfig,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_csr-approver"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["count"] != 0)
            .map(|l| {
                format!(
                    "{} {} {}",
                    l["cause"].as_str().unwrap(),
                    l["count"],
                    l["examples"][0].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(hygiene(&[]), ["signer_failed 1 worker-6-client"]);
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2)).to_string();
    assert_eq!(
        hygiene(&["--now", &later]),
        [
            "signer_failed 1 worker-6-client",
            "pending_too_long 1 worker-66-client"
        ],
        "past the bootstrap's hour"
    );

    let gauge = wait_for(Duration::from_secs(10), || async {
        let value = metric(
            &scene.metrics(c),
            "csr_approver_stale_csrs{cause=\"signer_failed\"}",
        );
        (value == 1.0).then_some(value)
    })
    .await;
    assert_eq!(gauge, Some(1.0), "{}", scene.metrics(c));
}
