//! Fail closed at start-up, end to end: the controller binary is started and killed again
//! and again against a real kube-apiserver holding thousands of Nodes, forged CSRs and a
//! policy that forbids what the built-in defaults would allow. Every start races the first
//! lists of its watches (the Node list is the slow one) against its first decisions; none
//! may write, nor explain, anything the cluster's state and policy forbid.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::time::{Duration, Instant};

use builders::Request;
use scene::*;

/// Enough Nodes that listing them takes the controller a noticeable while.
const NODES: usize = 3000;
/// Starts per scenario that are killed soon after (then one more that runs to the end).
const RESTARTS: u64 = 20;
/// The Node that exists already, and a Machine (without nodeRef) that names it: only the
/// Node cache stands between its forged client CSR and an approval.
const TAKEN: &str = "node-01234";
const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];
const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];

/// CSR names: a bootstrapper asking for an existing Node; a legitimate-looking join (its
/// Machine has no Node yet); a registered node's serving CSR for its own address.
const FORGED: &str = "forged-existing-node";
const JOIN: &str = "join-legit-1";
const SERVING: &str = "serving-own-1";

/// A scene with `NODES` Nodes, the Machines, and the three CSRs, with `policy` in its
/// ConfigMap before any controller starts.
async fn crowded_scene(policy: &'static str) -> Scene {
    let scene = Scene::new(SceneOptions {
        machine_crds: true,
        policy: Some(policy),
    })
    .await;
    let begin = Instant::now();
    let names = (0..NODES).map(|i| format!("node-{i:05}")).collect();
    scene.create_nodes(names, 64).await;
    eprintln!("{NODES} Nodes created in {:?}", begin.elapsed());

    scene.create_machine(TAKEN, &[("InternalDNS", TAKEN)]).await;
    scene
        .create_csr(
            &scene.bootstrapper(),
            FORGED,
            CLIENT_SIGNER,
            &CLIENT_USAGES,
            Request::node(TAKEN).pem(),
        )
        .await;
    scene
        .create_machine("legit-1", &[("InternalDNS", "legit-1")])
        .await;
    scene
        .create_csr(
            &scene.bootstrapper(),
            JOIN,
            CLIENT_SIGNER,
            &CLIENT_USAGES,
            Request::node("legit-1").pem(),
        )
        .await;
    scene
        .register_node(
            "own-1",
            &[("InternalIP", "10.0.7.2"), ("Hostname", "own-1")],
        )
        .await;
    scene
        .create_csr(
            &scene.node_client("own-1"),
            SERVING,
            SERVING_SIGNER,
            &SERVING_USAGES,
            Request::node("own-1").dns("own-1").ip("10.0.7.2").pem(),
        )
        .await;
    scene
}

/// Starts the controller `RESTARTS` times, killing each soon after start (between 0.1 and
/// 1.5 s, spread over the runs, so kills land before, during and after the first lists),
/// and checks after each that nothing was written. Two starts in three run without leader
/// election, so the race is not hidden behind winning the Lease.
async fn restart_and_kill(scene: &mut Scene) {
    let begin = Instant::now();
    for i in 0..RESTARTS {
        let delay = Duration::from_millis(100 + (i * 373) % 1400);
        let extra: &[&str] = if i % 3 == 0 {
            &[]
        } else {
            &["--leader-election=false"]
        };
        let c = scene.start_controller("restarted", extra);
        tokio::time::sleep(delay).await;
        scene.kill_controller(c);
        let written = scene.decided_csrs().await;
        assert!(
            written.is_empty(),
            "start {i} (killed after {delay:?}) wrote {written:?}\n{}",
            scene.controller_log(c)
        );
    }
    eprintln!("{RESTARTS} starts killed early in {:?}", begin.elapsed());
}

/// Waits for an Event about CSR `name` of `type_`/`reason` whose note contains `note`.
async fn wait_event(scene: &Scene, name: &str, type_: &str, reason: &str, note: &str) -> bool {
    wait_for(Duration::from_secs(20), || async {
        scene
            .events_about("default", name)
            .await
            .iter()
            .any(|(t, r, n)| t == type_ && r == reason && n.contains(note))
            .then_some(())
    })
    .await
    .is_some()
}

async fn assert_nothing_written(scene: &Scene, c: usize) {
    let written = scene.decided_csrs().await;
    assert!(
        written.is_empty(),
        "wrote {written:?}\n{}",
        scene.controller_log(c)
    );
}

async fn assert_never_announced_approved(scene: &Scene, name: &str) {
    let events = scene.events_about("default", name).await;
    assert!(
        !events.iter().any(|(_, r, _)| r == "Approved"),
        "{name} was announced as approved: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_under_a_dry_run_policy_never_write() {
    let _serial = SERIAL.lock().await;
    let mut scene = crowded_scene("mode: dry-run\n").await;
    restart_and_kill(&mut scene).await;

    // The last start runs on: it decides (in dry-run) once every watch has listed.
    let c = scene.start_controller("final", &["--leader-election=false"]);
    scene.wait_ready(c).await;
    assert!(
        wait_event(
            &scene,
            JOIN,
            "Normal",
            "Approved",
            "[dry-run: nothing written]"
        )
        .await,
        "{}",
        scene.controller_log(c)
    );
    assert!(
        wait_event(
            &scene,
            FORGED,
            "Warning",
            "NotApproved",
            "NodeAlreadyExists"
        )
        .await,
        "{}",
        scene.controller_log(c)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_nothing_written(&scene, c).await;
    // No start, even one killed early, judged the forged CSR with an empty Node cache.
    assert_never_announced_approved(&scene, FORGED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_under_an_invalid_policy_write_nothing_until_a_valid_one() {
    let _serial = SERIAL.lock().await;
    let invalid = "deny: true\nserving: {allowedIPRanges: [not-a-cidr]}\n";
    let mut scene = crowded_scene(invalid).await;
    restart_and_kill(&mut scene).await;

    let c = scene.start_controller("final", &["--leader-election=false"]);
    let rejected = wait_for(Duration::from_secs(20), || async {
        let metrics = scene.metrics(c);
        (metric(
            &metrics,
            "csr_approver_policy_reloads_total{result=\"invalid\"}",
        ) >= 1.0)
            .then_some(metrics)
    })
    .await;
    let metrics = rejected.unwrap_or_else(|| panic!("{}", scene.controller_log(c)));
    assert_eq!(metric(&metrics, "csr_approver_policy_valid "), 0.0);
    let warned = wait_for(Duration::from_secs(10), || async {
        scene
            .events_about(NAMESPACE, "csr-approver-policy")
            .await
            .iter()
            .any(|(t, r, n)| {
                t == "Warning"
                    && r == "InvalidPolicy"
                    && n.contains("serving.allowedIPRanges[0]")
                    && n.contains("no policy is in force")
            })
            .then_some(())
    })
    .await;
    assert!(warned.is_some(), "{}", scene.controller_log(c));
    // Long enough for every watch to have listed: still not ready, nothing decided.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(scene.readyz(c), Some(503), "{}", scene.controller_log(c));
    assert!(
        scene
            .controller_log(c)
            .contains("serving.allowedIPRanges[0]"),
        "the log names the field\n{}",
        scene.controller_log(c)
    );
    assert_nothing_written(&scene, c).await;
    for name in [FORGED, JOIN, SERVING] {
        let events = scene.events_about("default", name).await;
        assert!(
            events.is_empty(),
            "{name}: no decision, no Event: {events:?}"
        );
    }
    assert_eq!(
        metric(&scene.metrics(c), "csr_approver_decisions_total"),
        0.0
    );

    // A valid policy makes it ready, and it decides as that policy says.
    scene.set_policy("deny: false\n").await;
    scene.wait_ready(c).await;
    for name in [JOIN, SERVING] {
        assert_eq!(
            scene
                .wait_condition(name, Duration::from_secs(20))
                .await
                .as_deref(),
            Some("Approved"),
            "{name}\n{}",
            scene.controller_log(c)
        );
    }
    assert!(
        wait_event(
            &scene,
            FORGED,
            "Warning",
            "NotApproved",
            "NodeAlreadyExists"
        )
        .await,
        "{}",
        scene.controller_log(c)
    );
    assert_eq!(scene.condition(FORGED).await, None);
    assert_never_announced_approved(&scene, FORGED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_under_a_disabled_signer_and_a_fence_never_write() {
    let _serial = SERIAL.lock().await;
    let policy = "client: {enabled: false}\nserving: {allowedIPRanges: [192.168.0.0/16]}\n";
    let mut scene = crowded_scene(policy).await;
    restart_and_kill(&mut scene).await;

    let c = scene.start_controller("final", &["--leader-election=false"]);
    scene.wait_ready(c).await;
    assert!(
        wait_event(&scene, SERVING, "Warning", "NotApproved", "SanOutsideFence").await,
        "{}",
        scene.controller_log(c)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_nothing_written(&scene, c).await;
    // Client CSRs are not ours under this policy: no Event either.
    for name in [FORGED, JOIN] {
        let events = scene.events_about("default", name).await;
        assert!(events.is_empty(), "{name}: {events:?}");
    }
}
