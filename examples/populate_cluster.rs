//! Fills a (test) cluster with Nodes and OpenShift Machines for `bench/steady-state-rss.sh`:
//! N registered workers, each a Node with addresses, capacity, conditions, node info and a
//! list of images (roughly the shape and size of a real kubelet's Node, ~4 KiB of JSON),
//! and a Machine in `openshift-machine-api` with addresses and a `nodeRef` to it.
//!
//!   cargo build --release --example populate_cluster
//!   target/release/examples/populate_cluster --kubeconfig admin.kubeconfig --nodes 5000
//!
//! Flags: `--nodes N` (default 5000), `--machines M` (default N; Machines i < M are linked
//! to Node i), `--approved-csrs K` (default 0: K decided `kubernetes.io/kubelet-serving`
//! CSRs `<prefix>-<i>-serving` for node i, with a real request and an `Approved` condition
//! set through `/approval`, as a cluster keeps them until they are garbage-collected),
//! `--prefix P` (default `steady`), `--concurrency C` (default 32).
//! The Machine CRD must be installed. Idempotent: objects that exist are left alone.
//! Everything created is labelled `csr-approver.io/bench=steady-state`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde_json::json;

// The simulator's PKCS#10 requests (the same key type and subject as a kubelet's).
#[allow(dead_code)] // node_ip: the simulator's address plan, not this one's
#[path = "../src/bin/csr-approver-simulate/request.rs"]
mod request;

const MACHINE_NAMESPACE: &str = "openshift-machine-api";
const BENCH_LABEL: (&str, &str) = ("csr-approver.io/bench", "steady-state");

struct Args {
    kubeconfig: PathBuf,
    nodes: usize,
    machines: Option<usize>,
    approved_csrs: usize,
    prefix: String,
    concurrency: usize,
}

const USAGE: &str = "usage: populate_cluster --kubeconfig PATH [--nodes N] [--machines M] [--approved-csrs K] [--prefix P] [--concurrency C]";

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut kubeconfig = None;
    let mut parsed = Args {
        kubeconfig: PathBuf::new(),
        nodes: 5000,
        machines: None,
        approved_csrs: 0,
        prefix: "steady".to_string(),
        concurrency: 32,
    };
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{flag}: missing value\n{USAGE}"))
        };
        match flag.as_str() {
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--nodes" => parsed.nodes = value()?.parse()?,
            "--machines" => parsed.machines = Some(value()?.parse()?),
            "--approved-csrs" => parsed.approved_csrs = value()?.parse()?,
            "--prefix" => parsed.prefix = value()?,
            "--concurrency" => parsed.concurrency = value()?.parse::<usize>()?.max(1),
            _ => anyhow::bail!("unknown argument {flag}\n{USAGE}"),
        }
    }
    parsed.kubeconfig = kubeconfig.ok_or_else(|| anyhow::anyhow!(USAGE))?;
    Ok(parsed)
}

fn ip(index: usize) -> Ipv4Addr {
    let i = index as u32 + 1;
    Ipv4Addr::new(10, 100 + ((i >> 16) & 0x1f) as u8, (i >> 8) as u8, i as u8)
}

/// A Node roughly as a kubelet registers and reports it.
fn node(name: &str, ip: Ipv4Addr) -> anyhow::Result<Node> {
    let images: Vec<_> = (0..20)
        .map(|i| {
            json!({
                "names": [
                    format!("quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:{i:064x}"),
                ],
                "sizeBytes": 400_000_000 + i * 1_000_000,
            })
        })
        .collect();
    let condition = |type_: &str, status: &str, reason: &str| {
        json!({
            "type": type_, "status": status, "reason": reason,
            "message": format!("kubelet reports {type_}={status}"),
            "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        })
    };
    let resources = json!({
        "cpu": "16", "memory": "65843860Ki", "pods": "250",
        "ephemeral-storage": "125293548Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
    });
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "node-role.kubernetes.io/worker": "",
                "node.openshift.io/os_id": "rhcos",
                BENCH_LABEL.0: BENCH_LABEL.1,
            },
            "annotations": {
                "machine.openshift.io/machine": format!("{MACHINE_NAMESPACE}/{name}"),
                "machineconfiguration.openshift.io/currentConfig": "rendered-worker-0123456789abcdef0123456789abcdef",
                "machineconfiguration.openshift.io/desiredConfig": "rendered-worker-0123456789abcdef0123456789abcdef",
                "machineconfiguration.openshift.io/state": "Done",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"providerID": format!("baremetal:///{name}")},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": ip.to_string()},
                {"type": "Hostname", "address": name},
            ],
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                condition("Ready", "True", "KubeletReady"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", ip.to_bits()),
                "systemUUID": format!("{:08x}-0000-4000-8000-000000000000", ip.to_bits()),
                "bootID": format!("{:08x}-1111-4000-8000-000000000000", ip.to_bits()),
                "kernelVersion": "5.14.0-427.13.1.el9_4.x86_64",
                "osImage": "Red Hat Enterprise Linux CoreOS 418.94",
                "containerRuntimeVersion": "cri-o://1.31.0",
                "kubeletVersion": "v1.31.0",
                "kubeProxyVersion": "v1.31.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": images,
        },
    }))?)
}

async fn ensure_node(api: &Api<Node>, name: String, ip: Ipv4Addr) -> anyhow::Result<()> {
    let wanted = node(&name, ip)?;
    let created = match api.create(&PostParams::default(), &wanted).await {
        Ok(created) => created,
        Err(kube::Error::Api(s)) if s.code == 409 => api.get(&name).await?,
        Err(e) => return Err(e.into()),
    };
    // Nodes take status on create; patch it if this apiserver dropped it.
    let has_addresses = created
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .is_some_and(|a| !a.is_empty());
    if !has_addresses {
        let status = json!({"status": wanted.status});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await?;
    }
    Ok(())
}

async fn ensure_machine(
    api: &Api<DynamicObject>,
    resource: &ApiResource,
    name: String,
    ip: Ipv4Addr,
    linked: bool,
) -> anyhow::Result<()> {
    let mut machine = DynamicObject::new(&name, resource).within(MACHINE_NAMESPACE);
    machine.metadata.labels = Some(
        [
            ("machine.openshift.io/cluster-api-cluster", "bench"),
            ("machine.openshift.io/cluster-api-machine-role", "worker"),
            ("machine.openshift.io/cluster-api-machine-type", "worker"),
            BENCH_LABEL,
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
    );
    machine.data = json!({"spec": {"providerID": format!("baremetal:///{name}")}});
    match api.create(&PostParams::default(), &machine).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let mut status = json!({
        "addresses": [
            {"type": "InternalIP", "address": ip.to_string()},
            {"type": "InternalDNS", "address": name},
            {"type": "Hostname", "address": name},
        ],
        "phase": "Running",
    });
    if linked {
        status["nodeRef"] = json!({"kind": "Node", "name": name});
    }
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}

/// Node `name`'s serving CSR (its name and IP as SANs), approved; left alone if it exists
/// and is decided.
async fn ensure_approved_csr(
    api: &Api<CertificateSigningRequest>,
    name: String,
    ip: Ipv4Addr,
) -> anyhow::Result<()> {
    let csr_name = format!("{name}-serving");
    let pem = request::csr_pem(&name, std::slice::from_ref(&name), &[ip], "system:nodes")?;
    let wanted = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(csr_name.clone()),
            labels: Some(
                [BENCH_LABEL]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
            ),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem),
            signer_name: "kubernetes.io/kubelet-serving".to_string(),
            usages: Some(vec!["digital signature".into(), "server auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let mut csr = match api.create(&PostParams::default(), &wanted).await {
        Ok(created) => created,
        Err(kube::Error::Api(s)) if s.code == 409 => api.get(&csr_name).await?,
        Err(e) => return Err(e.into()),
    };
    let conditions = csr
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    if conditions
        .iter()
        .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
    {
        return Ok(());
    }
    conditions.push(CertificateSigningRequestCondition {
        type_: "Approved".to_string(),
        status: "True".to_string(),
        reason: Some("PopulateCluster".to_string()),
        message: Some("benchmark fixture: approved when created".to_string()),
        last_update_time: Some(Time(jiff::Timestamp::now())),
        ..Default::default()
    });
    api.replace_subresource("approval", &csr_name, &PostParams::default(), &csr)
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await?;
    let client = Client::try_from(config)?;
    let started = Instant::now();

    let nodes: Api<Node> = Api::all(client.clone());
    let results: Vec<anyhow::Result<()>> = futures::stream::iter((0..args.nodes).map(|i| {
        let nodes = nodes.clone();
        let name = format!("{}-{i}", args.prefix);
        async move { ensure_node(&nodes, name, ip(i)).await }
    }))
    .buffer_unordered(args.concurrency)
    .collect()
    .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    eprintln!(
        "populate_cluster: {} Nodes in {:.1}s",
        args.nodes,
        started.elapsed().as_secs_f64()
    );

    let machines = args.machines.unwrap_or(args.nodes);
    if machines > 0 {
        let started = Instant::now();
        let group = kube::discovery::group(&client, "machine.openshift.io").await?;
        let (resource, _) = group.recommended_kind("Machine").ok_or_else(|| {
            anyhow::anyhow!("the Machine CRD (machine.openshift.io) is not installed")
        })?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": MACHINE_NAMESPACE}}))?;
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), MACHINE_NAMESPACE, &resource);
        let results: Vec<anyhow::Result<()>> = futures::stream::iter((0..machines).map(|i| {
            let (api, resource) = (api.clone(), resource.clone());
            let name = format!("{}-{i}", args.prefix);
            let linked = i < args.nodes;
            async move { ensure_machine(&api, &resource, name, ip(i), linked).await }
        }))
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        eprintln!(
            "populate_cluster: {machines} Machines in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }

    if args.approved_csrs > 0 {
        let started = Instant::now();
        let api: Api<CertificateSigningRequest> = Api::all(client.clone());
        let results: Vec<anyhow::Result<()>> =
            futures::stream::iter((0..args.approved_csrs).map(|i| {
                let api = api.clone();
                let name = format!("{}-{i}", args.prefix);
                async move { ensure_approved_csr(&api, name, ip(i)).await }
            }))
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        eprintln!(
            "populate_cluster: {} approved serving CSRs in {:.1}s",
            args.approved_csrs,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
