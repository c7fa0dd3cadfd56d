//! The fault suite: on a real kube-apiserver + etcd, two controller replicas under the
//! ServiceAccount and RBAC of deploy/ while `csr-approver-simulate` joins 200 nodes (client
//! then serving CSR each, retrying through outages as kubelets do). Each scenario injects
//! one fault mid-join and asserts that every legitimate CSR is approved exactly once
//! (Approved condition, one Approved Event), that nothing forged is approved, and measures
//! the recovery: from the end of the fault (or, for a killed leader, the kill) to the next
//! approval. Each scenario prints one `fault-suite:` line with its figures, recorded in
//! docs/reliability.md.

#![cfg(feature = "tools")] // runs csr-approver-simulate
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, ListParams};
use scene::*;

const NODES: usize = 200;
/// Lease duration of the scene's replicas (tests/scene: `--lease-duration 4`).
const LEASE: Duration = Duration::from_secs(4);

fn openshift() -> SceneOptions {
    SceneOptions {
        machine_crds: true,
        policy: None,
    }
}

const IDENTITIES: [&str; 2] = ["replica-a", "replica-b"];

/// Two replicas, both ready, one of them leading.
async fn two_replicas(scene: &mut Scene) -> [usize; 2] {
    let a = scene.start_controller(IDENTITIES[0], &[]);
    let b = scene.start_controller(IDENTITIES[1], &[]);
    scene.wait_ready(a).await;
    scene.wait_ready(b).await;
    [a, b]
}

async fn leader_of(scene: &Scene, replicas: &[usize]) -> usize {
    wait_for(Duration::from_secs(20), || async {
        replicas
            .iter()
            .copied()
            .find(|r| metric(&scene.metrics(*r), "csr_approver_leader") == 1.0)
    })
    .await
    .expect("a replica leads")
}

/// When the number of approved CSRs of this run grew, sampled every 100 ms.
#[derive(Default)]
struct Progress {
    samples: Mutex<Vec<(Instant, usize)>>,
}

fn approved(csr: &CertificateSigningRequest) -> usize {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map_or(0, |c| c.iter().filter(|c| c.type_ == "Approved").count())
}

fn watch_progress(
    scene: &Scene,
    prefix: &'static str,
) -> (Arc<Progress>, tokio::task::JoinHandle<()>) {
    let progress = Arc::new(Progress::default());
    let api: Api<CertificateSigningRequest> = Api::all(scene.admin.clone());
    let task = tokio::spawn({
        let progress = progress.clone();
        async move {
            loop {
                // Errors during an outage are just missing samples.
                if let Ok(list) = api.list(&ListParams::default()).await {
                    let n = list
                        .items
                        .iter()
                        .filter(|c| {
                            c.metadata
                                .name
                                .as_deref()
                                .is_some_and(|n| n.starts_with(prefix))
                        })
                        .filter(|c| approved(c) > 0)
                        .count();
                    progress.samples.lock().unwrap().push((Instant::now(), n));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    (progress, task)
}

/// `csr-approver-simulate` as a separate process, as the admin.
fn start_join(scene: &Scene, prefix: &str, forged: usize, timeout: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_csr-approver-simulate"))
        .arg("--kubeconfig")
        .arg(scene.cp.kubeconfig_path())
        .args([
            "--nodes",
            &NODES.to_string(),
            "--forged",
            &forged.to_string(),
        ])
        .args([
            "--prefix",
            prefix,
            "--concurrency",
            "20",
            "--timeout",
            timeout,
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("simulate starts")
}

#[derive(Debug)]
struct Tally {
    /// When each Approved Event of the run was recorded, and by which replica.
    approvals: Vec<(jiff::Timestamp, String)>,
    legitimate: usize,
    approved_once: usize,
    lost: Vec<String>,
    doubled: Vec<String>,
    forged_approved: Vec<String>,
}

/// Counts, per CSR of the run, its Approved conditions and csr-approver's Approved Events.
async fn tally(scene: &Scene, prefix: &str) -> Tally {
    let csrs = Api::<CertificateSigningRequest>::all(scene.admin.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(scene.admin.clone(), "default");
    let mut approved_events: HashMap<String, i32> = HashMap::new();
    let mut approvals = Vec::new();
    for event in events.list(&ListParams::default()).await.unwrap().items {
        if event.reason.as_deref() == Some("Approved")
            && event.reporting_controller.as_deref() == Some("csr-approver")
            && let Some(name) = event.regarding.as_ref().and_then(|r| r.name.clone())
            && name.starts_with(prefix)
        {
            if let Some(at) = &event.event_time {
                approvals.push((at.0, event.reporting_instance.clone().unwrap_or_default()));
            }
            *approved_events.entry(name).or_default() += event.series.map_or(1, |s| s.count);
        }
    }
    let mut tally = Tally {
        approvals,
        legitimate: 0,
        approved_once: 0,
        lost: Vec::new(),
        doubled: Vec::new(),
        forged_approved: Vec::new(),
    };
    for csr in csrs {
        let name = csr.metadata.name.clone().unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let conditions = approved(&csr);
        if name.contains("-forged-") {
            if conditions > 0 {
                tally.forged_approved.push(name);
            }
            continue;
        }
        tally.legitimate += 1;
        let announced = approved_events.get(&name).copied().unwrap_or(0);
        match (conditions, announced) {
            (0, _) => tally.lost.push(name),
            (1, 0 | 1) => tally.approved_once += 1,
            _ => tally.doubled.push(format!(
                "{name} ({conditions} conditions, {announced} Events)"
            )),
        }
    }
    tally
}

/// One fault, injected once 40 of the run's CSRs are approved.
enum Fault {
    /// SIGKILL of this replica (the leader, with its identity); recovery counts from the
    /// kill to the first approval by another replica.
    KillLeader(usize, &'static str),
    /// kube-apiserver down this long, then restarted on the same etcd.
    RestartApiserver(Duration),
    /// etcd killed (SIGKILL) this long, then started again on its data.
    RestartEtcd(Duration),
    /// The ClusterRoleBinding of deploy/rbac.yaml deleted this long, then applied again.
    RevokeRbac(Duration),
    /// A policy that does not parse, pushed to the ConfigMap.
    InvalidPolicy,
    /// Nothing but the forgeries racing the join.
    Nothing,
}

/// Injects `fault`; returns the instant recovery is measured from.
async fn inject(scene: &mut Scene, fault: &Fault) -> jiff::Timestamp {
    inject_fault(scene, fault).await;
    jiff::Timestamp::now()
}

async fn inject_fault(scene: &mut Scene, fault: &Fault) {
    match fault {
        Fault::KillLeader(replica, _) => scene.kill_controller(*replica),
        Fault::RestartApiserver(downtime) => {
            scene.cp.stop_apiserver();
            tokio::time::sleep(*downtime).await;
            scene.cp.start_apiserver();
        }
        Fault::RestartEtcd(downtime) => {
            scene.cp.kill_etcd();
            tokio::time::sleep(*downtime).await;
            scene.cp.start_etcd();
        }
        Fault::RevokeRbac(downtime) => {
            Api::<ClusterRoleBinding>::all(scene.admin.clone())
                .delete("csr-approver", &DeleteParams::default())
                .await
                .expect("revoke the ClusterRoleBinding");
            tokio::time::sleep(*downtime).await;
            let rbac = format!("{}/deploy/rbac.yaml", env!("CARGO_MANIFEST_DIR"));
            let out = scene.cp.kubectl(&["apply", "-f", &rbac]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Fault::InvalidPolicy => {
            scene
                .set_policy("serving: {allowedIPRanges: [not-a-cidr]}\n")
                .await;
        }
        Fault::Nothing => {}
    }
}

/// Figures of one scenario.
struct Figures {
    recovery_seconds: f64,
}

/// Runs one scenario: the join of `NODES` nodes plus `forged` forgeries (each waited for
/// `timeout`), with `fault` injected mid-join.
async fn scenario(
    name: &str,
    scene: &mut Scene,
    forged: usize,
    timeout: &str,
    fault: Fault,
) -> Figures {
    let prefix: &'static str = Box::leak(format!("fs-{}", name.replace('_', "-")).into_boxed_str());
    let (progress, sampler) = watch_progress(scene, prefix);
    let started = Instant::now();
    let join = start_join(scene, prefix, forged, timeout);
    let reached = wait_for(Duration::from_secs(60), || async {
        let samples = progress.samples.lock().unwrap();
        samples.last().filter(|(_, n)| *n >= 40).map(|_| ())
    })
    .await;
    assert!(reached.is_some(), "{name}: the join never got going");
    let fault_started = jiff::Timestamp::now();
    let recovery_from = inject(scene, &fault).await;
    let fault_seconds = recovery_from.duration_since(fault_started).as_secs_f64();
    let output = tokio::time::timeout(Duration::from_secs(240), join.wait_with_output())
        .await
        .expect("simulate ends")
        .unwrap();
    // A failed simulation prints its report after an error line on stderr.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let printed = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .filter(|_| stdout.trim().is_empty())
        .unwrap_or(stdout.trim());
    let report: serde_json::Value = serde_json::from_str(printed).unwrap_or_else(|e| {
        panic!(
            "{name}: simulate printed no report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    sampler.abort();
    let tally = tally(scene, prefix).await;
    let killed = match &fault {
        Fault::KillLeader(_, identity) => Some(*identity),
        _ => None,
    };
    let recovery = tally
        .approvals
        .iter()
        .filter(|(at, by)| *at >= recovery_from && Some(by.as_str()) != killed)
        .map(|(at, _)| at.duration_since(recovery_from).as_secs_f64())
        .reduce(f64::min);
    println!(
        "fault-suite: {name}: {} legitimate CSRs, approved once {}, lost {}, doubled {}, forged approved {}/{forged}; fault {fault_seconds:.1} s, recovery {} s, whole join {:.1} s",
        tally.legitimate,
        tally.approved_once,
        tally.lost.len(),
        tally.doubled.len(),
        tally.forged_approved.len(),
        recovery.map_or("-".to_string(), |r| format!("{r:.1}")),
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(tally.legitimate, 2 * NODES, "{name}: {report}");
    assert!(
        tally.lost.is_empty(),
        "{name}: lost {:?}\n{report}",
        tally.lost
    );
    assert!(
        tally.doubled.is_empty(),
        "{name}: doubled {:?}",
        tally.doubled
    );
    assert!(
        tally.forged_approved.is_empty(),
        "{name}: forged approved {:?}",
        tally.forged_approved
    );
    assert_eq!(tally.approved_once, 2 * NODES, "{name}");
    assert_eq!(report["joined"], NODES, "{name}: {report}");
    let recovery_seconds =
        recovery.unwrap_or_else(|| panic!("{name}: nothing was approved after the fault ended"));
    Figures { recovery_seconds }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_taken_over_within_its_lease() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let replicas = two_replicas(&mut scene).await;
    let leader = leader_of(&scene, &replicas).await;
    let figures = scenario(
        "leader_sigkill",
        &mut scene,
        0,
        "120s",
        Fault::KillLeader(
            leader,
            IDENTITIES[replicas.iter().position(|r| *r == leader).unwrap()],
        ),
    )
    .await;
    assert!(
        figures.recovery_seconds <= (LEASE + Duration::from_secs(5)).as_secs_f64(),
        "takeover took {} s, more than the lease + 5 s",
        figures.recovery_seconds
    );
    let standby = replicas.into_iter().find(|r| *r != leader).unwrap();
    assert_eq!(metric(&scene.metrics(standby), "csr_approver_leader"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_apiserver_restart_mid_join_is_survived() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    two_replicas(&mut scene).await;
    let fault = Fault::RestartApiserver(Duration::from_secs(5));
    scenario("apiserver_restart", &mut scene, 0, "120s", fault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_restart_mid_join_is_survived() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    two_replicas(&mut scene).await;
    let fault = Fault::RestartEtcd(Duration::from_secs(5));
    scenario("etcd_restart", &mut scene, 0, "120s", fault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_cut_every_few_seconds_lose_nothing() {
    let _serial = SERIAL.lock().await;
    // The apiserver ends every watch after 4–8 s (--min-request-timeout): each replica's
    // CSR, Node, Machine and policy watches re-list several times during the join.
    let cp = harness::ControlPlane::start_with_apiserver_flags(&["--min-request-timeout=4"]);
    let mut scene = Scene::on(cp, openshift()).await;
    two_replicas(&mut scene).await;
    scenario("watches_cut", &mut scene, 0, "120s", Fault::Nothing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_restored_rbac_mid_join_is_survived() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    two_replicas(&mut scene).await;
    let fault = Fault::RevokeRbac(Duration::from_secs(5));
    scenario("rbac_revoked", &mut scene, 0, "120s", fault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_pushed_mid_join_keeps_the_last_good_one() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let replicas = two_replicas(&mut scene).await;
    scenario(
        "invalid_policy",
        &mut scene,
        0,
        "120s",
        Fault::InvalidPolicy,
    )
    .await;
    for replica in replicas {
        assert_eq!(
            metric(&scene.metrics(replica), "csr_approver_policy_valid"),
            0.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_forged_csrs_race_the_join_and_none_passes() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    two_replicas(&mut scene).await;
    // Forged CSRs are never decided: each is waited for 20 s only.
    scenario("forgeries", &mut scene, 200, "20s", Fault::Nothing).await;
}
