//! The benchmark floor (`bench/join-storm.sh`): the least a kubelet-CSR approver can do on
//! the same client stack as csr-approver (kube 5, rustls, tokio). One watcher on
//! CertificateSigningRequests; every pending CSR of the two kubelet signers is approved at
//! once through the `/approval` subresource, up to [`APPROVALS_AT_ONCE`] side by side (as
//! many as csr-approver writes serving verdicts). No checks, no caches of Nodes or
//! Machines, no Events, no metrics, no leader election. Never run this on a real cluster.
//!
//!   cargo build --release --example approve_everything
//!   target/release/examples/approve_everything --kubeconfig admin.kubeconfig
//!
//! Runs until SIGTERM or ctrl-c; prints how many CSRs it approved on exit.

use std::cell::Cell;
use std::path::PathBuf;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};

/// Approvals in flight at once: csr-approver's reconciles at once, so that the floor is
/// never slower for approving one CSR at a time.
const APPROVALS_AT_ONCE: usize = 8;

const SIGNERS: [&str; 2] = [
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
];

fn kubeconfig_arg() -> anyhow::Result<PathBuf> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kubeconfig" => path = args.next().map(PathBuf::from),
            _ => match arg.strip_prefix("--kubeconfig=") {
                Some(value) => path = Some(PathBuf::from(value)),
                None => anyhow::bail!("usage: approve_everything --kubeconfig PATH"),
            },
        }
    }
    path.ok_or_else(|| anyhow::anyhow!("usage: approve_everything --kubeconfig PATH"))
}

fn pending(csr: &CertificateSigningRequest) -> bool {
    let decided = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
        });
    !decided && SIGNERS.contains(&csr.spec.signer_name.as_str())
}

async fn approve(
    api: &Api<CertificateSigningRequest>,
    csr: CertificateSigningRequest,
) -> Result<(), kube::Error> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let mut desired = csr;
    desired
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".to_string(),
            status: "True".to_string(),
            reason: Some("ApproveEverything".to_string()),
            message: Some("benchmark floor: approved without any check".to_string()),
            last_update_time: Some(Time(jiff::Timestamp::now())),
            ..Default::default()
        });
    api.replace_subresource("approval", &name, &PostParams::default(), &desired)
        .await
        .map(|_| ())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}

// One thread, as csr-approver runs: the floor must be the least an approver can spend, and on
// a multi-threaded runtime both spent a share of their CPU waking each other's threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let path = kubeconfig_arg()?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)?;
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await?;
    let client = Client::try_from(config)?;
    let api: Api<CertificateSigningRequest> = Api::all(client);

    let (approved, errors) = (Cell::new(0u64), Cell::new(0u64));
    let pending_csrs = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|event| async move {
            match event {
                Ok(csr) if pending(&csr) => Some(csr),
                Ok(_) => None,
                Err(error) => {
                    eprintln!("approve_everything: watch: {error}");
                    None
                }
            }
        });
    let approvals = pending_csrs.for_each_concurrent(APPROVALS_AT_ONCE, |csr| {
        let (api, approved, errors) = (&api, &approved, &errors);
        async move {
            match approve(api, csr).await {
                Ok(()) => approved.set(approved.get() + 1),
                // 409: a stale copy (already approved); anything else: count it.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => {
                    errors.set(errors.get() + 1);
                    eprintln!("approve_everything: approve: {error}");
                }
            }
        }
    });
    eprintln!("approve_everything: watching CertificateSigningRequests");
    tokio::select! {
        () = shutdown_signal() => {},
        () = approvals => {},
    }
    let (approved, errors) = (approved.get(), errors.get());
    eprintln!("approve_everything: approved {approved} CSRs, {errors} errors");
    Ok(())
}
