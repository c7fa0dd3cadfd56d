//! A whole simulation: N nodes joining at a bounded concurrency, forgeries racing them once
//! the first two have joined, progress on stderr, and the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use csr_approver::inventory::CsrState;
use csr_approver::policy::{OPENSHIFT_MACHINE_GROUP, OPENSHIFT_NODE_BOOTSTRAPPER};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, PostParams};
use kube::{Client, Config};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::forge::Forgery;
use crate::report::{Approval, PhaseStats, SimulationReport, write_latencies};
use crate::request::node_ip;
use crate::sim::{Sim, Waited, impersonating};
use crate::watch::{self, AbortOnDrop, Waits};
use crate::{MACHINE_NAMESPACE, SimulateError};

#[derive(Debug, Clone)]
pub struct SimulateConfig {
    pub nodes: usize,
    pub forged: usize,
    pub prefix: String,
    pub concurrency: usize,
    pub timeout: Duration,
    /// Use Machines when the OpenShift Machine API is installed.
    pub machines: bool,
    /// Nodes already hold a client certificate: each submits only its serving CSR.
    pub serving_only: bool,
    /// Where to write every approved CSR's latency (one line each), if anywhere.
    pub latencies: Option<PathBuf>,
}

type Joined = Result<(Option<Approval>, Approval), String>;
type Forged = Result<(Forgery, String, Waited), String>;

pub async fn simulate(
    base: Config,
    config: SimulateConfig,
) -> Result<SimulationReport, SimulateError> {
    // Every forgery targets the first node; some also need a neighbour (an IP to steal).
    if config.forged > 0 && config.nodes < 2 {
        return Err(SimulateError::Failed(format!(
            "--forged {} needs at least 2 --nodes: the forgeries impersonate the first node and steal from the second",
            config.forged
        )));
    }
    let admin = Client::try_from(base.clone())?;
    let bootstrapper = impersonating(
        &base,
        OPENSHIFT_NODE_BOOTSTRAPPER,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:openshift-machine-config-operator",
        ],
    )?;
    let machine_api = if config.machines {
        machine_api(&admin).await?
    } else {
        None
    };
    let run_id = format!(
        "{}-{}",
        config.prefix,
        jiff::Timestamp::now().as_second() % 100_000
    );
    let waits = Arc::new(Waits::default());
    let _decisions = AbortOnDrop::spawn(watch::decisions(
        admin.clone(),
        run_id.clone(),
        waits.clone(),
    ));
    let _explanations = (config.forged > 0)
        .then(|| AbortOnDrop::spawn(watch::explanations(admin.clone(), waits.clone())));
    // Let the watch establish before the first CSR can be decided.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sim = Arc::new(Sim {
        admin,
        bootstrapper,
        base,
        run_id,
        waits,
        machine_api,
        timeout: config.timeout,
        serving_only: config.serving_only,
    });

    let started = Instant::now();
    eprintln!(
        "simulate: {} nodes joining ({} at a time){}{}",
        config.nodes,
        config.concurrency.max(1),
        if config.serving_only {
            ", serving CSRs only (client certificates already held)"
        } else {
            ""
        },
        match config.forged {
            0 => String::new(),
            n => format!(", {n} forged CSRs once the first two have joined"),
        }
    );
    let joined_so_far = Arc::new(AtomicUsize::new(0));
    let _progress = AbortOnDrop::spawn(report_progress(
        config.nodes,
        joined_so_far.clone(),
        started,
    ));
    // The forgeries impersonate the first node and steal from the second: they start as
    // soon as both have joined, and then race the rest of the join.
    let (first_two_done, first_two) = tokio::sync::watch::channel(0usize);
    let joins = spawn_joins(&sim, &config, joined_so_far, first_two_done);
    let forgeries: Vec<JoinHandle<Forged>> = (0..config.forged)
        .map(|index| {
            let sim = sim.clone();
            let mut first_two = first_two.clone();
            tokio::spawn(async move {
                let _ = first_two.wait_for(|n| *n >= 2).await;
                sim.forge(index).await
            })
        })
        .collect();

    let mut failures = Vec::new();
    let (client, serving): (Vec<_>, Vec<_>) =
        outcomes(joins, &mut failures).await.into_iter().unzip();
    let client: Vec<Approval> = client.into_iter().flatten().collect();
    let wall = started.elapsed();
    eprintln!(
        "simulate: {} of {} nodes joined in {:.1?}{}",
        serving.len(),
        config.nodes,
        wall,
        match config.forged {
            0 => String::new(),
            n => format!(
                "; {n} forged CSRs: each must stay unapproved, done when csr-approver explains it (a Warning Event) or denies it, at most {}",
                humantime::format_duration(config.timeout)
            ),
        }
    );
    let forged = outcomes(forgeries, &mut failures).await;
    let forged_approved = judge_forgeries(&sim.admin, forged, config.timeout).await;

    if let Some(path) = &config.latencies {
        write_latencies(path, &[("client", &client), ("serving", &serving)])
            .map_err(|e| SimulateError::Failed(format!("--latencies {}: {e}", path.display())))?;
    }
    let latencies =
        |approvals: &[Approval]| -> Vec<Duration> { approvals.iter().map(|a| a.latency).collect() };
    let mut phases = Vec::new();
    if !config.serving_only {
        phases.push(PhaseStats::of("client CSR → approved", latencies(&client)));
    }
    phases.push(PhaseStats::of(
        "serving CSR → approved",
        latencies(&serving),
    ));
    let joined = serving.len();
    let approvals = client.len() + serving.len();
    Ok(SimulationReport {
        nodes: config.nodes,
        joined,
        used_machines: sim.machine_api.is_some(),
        serving_only: config.serving_only,
        phases,
        wall_seconds: wall.as_secs_f64(),
        approvals_per_second: if wall.is_zero() {
            0.0
        } else {
            approvals as f64 / wall.as_secs_f64()
        },
        forged: config.forged,
        forged_approved,
        failures,
    })
}

/// The Machine API when it is installed (its namespace created), else `None`: the run then
/// relies on the policy's inventory.
async fn machine_api(admin: &Client) -> Result<Option<ApiResource>, SimulateError> {
    let Ok(group) = kube::discovery::group(admin, OPENSHIFT_MACHINE_GROUP).await else {
        return Ok(None);
    };
    let Some((resource, _)) = group.recommended_kind("Machine") else {
        return Ok(None);
    };
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(MACHINE_NAMESPACE.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => Ok(Some(resource)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Some(resource)),
        Err(e) => Err(e.into()),
    }
}

/// One task per node, `config.concurrency` at a time; `first_two_done` counts the first
/// two nodes as they finish (joined or not).
fn spawn_joins(
    sim: &Arc<Sim>,
    config: &SimulateConfig,
    joined_so_far: Arc<AtomicUsize>,
    first_two_done: tokio::sync::watch::Sender<usize>,
) -> Vec<JoinHandle<Joined>> {
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let first_two_done = Arc::new(first_two_done);
    (0..config.nodes)
        .map(|index| {
            let (sim, limit, done) = (sim.clone(), limit.clone(), first_two_done.clone());
            let joined_so_far = joined_so_far.clone();
            let name = format!("{}-{index}", sim.run_id);
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = sim.join(name, node_ip(index)).await;
                joined_so_far.fetch_add(usize::from(result.is_ok()), Ordering::Relaxed);
                if index < 2 {
                    done.send_modify(|n| *n += 1);
                }
                result
            })
        })
        .collect()
}

/// Awaits every task in order; what failed (or panicked) goes to `failures`.
async fn outcomes<T>(
    tasks: Vec<JoinHandle<Result<T, String>>>,
    failures: &mut Vec<String>,
) -> Vec<T> {
    let mut done = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(value)) => done.push(value),
            Ok(Err(failure)) => failures.push(failure),
            Err(join_error) => failures.push(join_error.to_string()),
        }
    }
    done
}

/// Reports how each forgery ended; returns those approved. A forgery is done once
/// explained; one approved after that (which no rule allows) is caught by reading them all
/// again after the whole run.
async fn judge_forgeries(
    admin: &Client,
    forged: Vec<(Forgery, String, Waited)>,
    timeout: Duration,
) -> Vec<String> {
    let mut approved = Vec::new();
    let mut explained = Vec::new();
    for (forgery, name, waited) in forged {
        let outcome = match &waited {
            Waited::Decided(CsrState::Approved | CsrState::Issued) => {
                approved.push(name.clone());
                "APPROVED — a forgery got through".to_string()
            }
            Waited::Decided(state) => state.as_str().to_string(),
            Waited::Explained(note) => format!("left Pending — {note}"),
            Waited::TimedOut => format!(
                "still Pending after {}, and nothing explained why",
                humantime::format_duration(timeout)
            ),
        };
        eprintln!("  {name} ({}): {outcome}", forgery.what());
        if !approved.contains(&name) {
            explained.push(name);
        }
    }
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    for name in explained {
        match csrs.get_opt(&name).await {
            Ok(Some(csr)) => {
                if matches!(
                    csr_approver::facts::csr_state(&csr),
                    CsrState::Approved | CsrState::Issued
                ) {
                    eprintln!("  {name}: APPROVED after it was explained");
                    approved.push(name);
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(csr = name, %error, "could not read a forged CSR again"),
        }
    }
    approved
}

/// Prints how far the join is every 2 s, while it changes: a run of thousands of nodes
/// (or one held up by an outage) would otherwise be silent until its report.
async fn report_progress(nodes: usize, joined: Arc<AtomicUsize>, started: Instant) {
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = joined.load(Ordering::Relaxed);
        if now != last && now < nodes {
            eprintln!(
                "simulate: {now} of {nodes} nodes joined ({:.0?})",
                started.elapsed()
            );
            last = now;
        }
    }
}
