//! `csr-approver check` against a live cluster: answers "why is this CSR still Pending?"
//! read-only, with the same inventory and policy the controller would use. The cluster is
//! found as kubectl finds it (`--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`,
//! else in-cluster; `--context` or the current context), because as a kubectl/oc plugin
//! (`kubectl csr-approver check`) it receives none of kubectl's own flags.

use std::fmt::Write as _;
use std::path::PathBuf;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Node, Service};
use kube::api::{Api, DynamicObject, ListParams};

use crate::approval;
use crate::check::{self, Evaluation, WriteError};
use crate::cluster::{self, KubernetesService};
use crate::decision::CsrFacts;
use crate::facts;
use crate::hygiene::HygieneReport;
use crate::identity::NodeIdentity;
use crate::inventory::{CsrState, EndpointSource};
use crate::policy::Policy;
use crate::policy_watch::policy_from_configmap;
use crate::vocabulary::{AddressValue, is_kubelet_signer};
use crate::{Error, Result};

mod expiry;
mod kubeconfig;

pub use expiry::LiveExpiry;
pub use kubeconfig::{ClusterTarget, ConfigError, ConfigOrigin, Environment, resolve_cluster};

pub struct LiveCheck {
    /// `--kubeconfig`: this file only, as kubectl's flag means; else the kubectl lookup.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: this context instead of the kubeconfig's current one.
    pub context: Option<String>,
    pub namespace: String,
    pub policy_configmap: String,
    /// A policy file overriding the ConfigMap.
    pub policy: Option<Policy>,
    pub names: Vec<String>,
    pub pending_only: bool,
}

/// The API server's endpoints the cluster records, read as the controller's watches read
/// them: an absent object records nothing, one that cannot be read or parsed is an error.
async fn api_server_endpoints(
    client: &kube::Client,
    target: &ClusterTarget,
) -> Result<Vec<(EndpointSource, Vec<AddressValue>)>> {
    let mut found = Vec::new();
    let kubeadm = [
        (
            cluster::CLUSTER_INFO,
            EndpointSource::ClusterInfo,
            cluster::read_cluster_info as fn(&ConfigMap) -> _,
        ),
        (
            cluster::KUBEADM_CONFIG,
            EndpointSource::KubeadmConfig,
            cluster::read_kubeadm_config,
        ),
    ];
    for ((namespace, name), source, read) in kubeadm {
        let what = format!("ConfigMap {namespace}/{name}");
        let object = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(read_error(&what, target))?;
        if let Some(object) = object {
            let values = read(&object).map_err(|why| Error::Cluster(format!("{what}: {why}")))?;
            found.push((source, values));
        }
    }
    let infrastructure =
        Api::<DynamicObject>::all_with(client.clone(), &cluster::infrastructure_resource())
            .get_opt(cluster::INFRASTRUCTURE_NAME)
            .await;
    let what = "Infrastructure cluster";
    match infrastructure {
        Ok(Some(object)) => {
            let values = cluster::read_infrastructure(&object)
                .map_err(|why| Error::Cluster(format!("{what}: {why}")))?;
            found.push((EndpointSource::Infrastructure, values));
        }
        Ok(None) => {}
        // No such API (not OpenShift): nothing to reserve.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => return Err(read_error(what, target)(error)),
    }
    Ok(found)
}

fn read_error<'a>(what: &'a str, cluster: &'a ClusterTarget) -> impl Fn(kube::Error) -> Error + 'a {
    move |e| match connect_failure(&e) {
        // kube says only "ServiceError: client error (Connect)": say which server could not
        // be reached, from where it was configured, and why.
        Some(cause) => Error::Cluster(format!(
            "the API server {} ({}) is unreachable: {cause} (reading {what}). Is the cluster up, and is this the context you meant? (--context NAME picks another; --kubeconfig FILE another file)",
            cluster.config.cluster_url,
            cluster.describe_source(),
        )),
        None => Error::Cluster(format!("reading {what} from {cluster}: {e}")),
    }
}

/// Why a request never reached the API server (refused, no such host, TLS handshake,
/// timeout): the innermost cause of a client error, which is where the reason is. `None`
/// for an answer from the server (403, 404, …).
/// The cluster kubectl would talk to (`--kubeconfig`, `--context`, else as kubectl finds
/// it), and a client for it.
pub(crate) async fn connect(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<(ClusterTarget, kube::Client)> {
    let target = resolve_cluster(kubeconfig, context, &Environment::current()).await?;
    let client = kube::Client::try_from(target.config.clone())
        .map_err(|e| Error::Cluster(format!("{target}: cannot build a client: {e}")))?;
    Ok((target, client))
}

fn connect_failure(error: &kube::Error) -> Option<String> {
    if !matches!(error, kube::Error::Service(_) | kube::Error::HyperError(_)) {
        return None;
    }
    let mut innermost: &(dyn std::error::Error + 'static) = match error {
        kube::Error::Service(source) => source.as_ref(),
        kube::Error::HyperError(source) => source,
        _ => return None,
    };
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    Some(innermost.to_string())
}

impl LiveCheck {
    /// Evaluates the selected CSRs; the note says where the policy came from.
    pub async fn evaluate(self, now: Timestamp) -> Result<(Vec<Evaluation>, String)> {
        let (target, client) = connect(self.kubeconfig.as_deref(), self.context.as_deref()).await?;
        let api_error = |what| read_error(what, &target);
        let (policy, note) = match self.policy {
            Some(policy) => (policy, String::new()),
            None => self.cluster_policy(&client, &target).await?,
        };
        let csrs = Api::<CertificateSigningRequest>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api_error("CertificateSigningRequests"))?
            .items;
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api_error("Nodes"))?
            .items;
        let mut machines = Vec::new();
        // A failed discovery is an error, not "no Machines": Machine evidence decides.
        let machine_apis = crate::cluster::discover_machine_apis(&client)
            .await
            .map_err(|e| {
                Error::Cluster(format!("discovering the Machine APIs of {target}: {e}"))
            })?;
        for resource in machine_apis {
            let list = Api::<DynamicObject>::all_with(client.clone(), &resource)
                .list(&ListParams::default())
                .await
                .map_err(api_error("Machines"))?;
            machines.extend(
                list.items
                    .iter()
                    .filter_map(|m| facts::machine_info_from_object(m, &resource)),
            );
        }
        let kubernetes_service =
            Api::<Service>::namespaced(client.clone(), KubernetesService::NAMESPACE)
                .get_opt(KubernetesService::NAME)
                .await
                .map_err(api_error("Service default/kubernetes"))?;
        // The record of identities minted decides duplicates and recoveries; the controller
        // decides nothing without it, and neither does this check.
        let identities = Api::<NodeIdentity>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api_error(
                "NodeIdentities (csr-approver decides nothing without them: install the chart's CRD)",
            ))?
            .items;
        let endpoints = api_server_endpoints(&client, &target).await?;
        let all: Vec<(CsrFacts, Option<String>)> = csrs
            .iter()
            .map(|c| (facts::csr_facts(c), c.metadata.uid.clone()))
            .collect();
        let mut inventory = check::build_inventory(
            &nodes,
            machines,
            all.iter().map(|(facts, _)| facts),
            kubernetes_service.as_ref(),
        );
        inventory.replace_identities(identities);
        for (source, values) in endpoints {
            inventory.set_api_server_endpoints(source, values);
        }
        let mut targets: Vec<&(CsrFacts, Option<String>)> = all
            .iter()
            .filter(|(c, _)| {
                if self.names.is_empty() {
                    is_kubelet_signer(&c.signer_name)
                } else {
                    self.names.contains(&c.name)
                }
            })
            .filter(|(c, _)| !self.pending_only || c.state == CsrState::Pending)
            .collect();
        for name in &self.names {
            if !all.iter().any(|(c, _)| c.name == *name) {
                // A mistyped file name lands here too (anything that is not a file is a
                // CSR name): say so, or "not found" reads like a cluster problem.
                let file_hint = if [".yaml", ".yml", ".json"].iter().any(|s| name.ends_with(s)) {
                    " (and no file of that name exists: to check manifests offline, give existing files)"
                } else {
                    ""
                };
                return Err(Error::Cluster(format!(
                    "CertificateSigningRequest {name} not found in {target}{file_hint}"
                )));
            }
        }
        targets.sort_by_key(|(c, _)| c.created);
        // What the controller would read on demand (a node's Lease, a kubelet's current
        // certificate), read the same way, so the answer is the controller's.
        let target_facts = || targets.iter().map(|(facts, _)| facts);
        for evaluation in check::evaluate(target_facts(), &inventory, &policy, now) {
            if let Some(wanted) = &evaluation.decision.wants {
                let service_ips = inventory.kubernetes_service_ips().to_vec();
                crate::gather::read(&client, wanted, &policy, &service_ips)
                    .await
                    .record(inventory.observations_mut());
            }
        }
        let mut evaluations = check::evaluate(target_facts(), &inventory, &policy, now);
        let mut note = note;
        // Why an APPROVE is not happening: the controller's last failure to write it.
        match last_write_errors(&client).await {
            Ok(errors) => {
                for (evaluation, (csr, uid)) in evaluations.iter_mut().zip(&targets) {
                    if csr.state == CsrState::Pending {
                        evaluation.last_write_error = latest_for(&errors, &csr.name, uid);
                    }
                }
            }
            Err(error) => {
                let _ = writeln!(
                    note,
                    "# cannot read Events in namespace default ({error}): last write errors not shown"
                );
            }
        }
        Ok((evaluations, note))
    }

    /// `check --hygiene`: every CSR of the cluster summarised by cause, with the policy
    /// in force (its bootstrappers say which requesters are known); the note says where the
    /// policy came from.
    pub async fn hygiene(self, now: Timestamp) -> Result<(HygieneReport, String)> {
        let (target, client) = connect(self.kubeconfig.as_deref(), self.context.as_deref()).await?;
        let (policy, note) = match &self.policy {
            Some(policy) => (policy.clone(), String::new()),
            None => self.cluster_policy(&client, &target).await?,
        };
        let csrs = Api::<CertificateSigningRequest>::all(client)
            .list(&ListParams::default())
            .await
            .map_err(read_error("CertificateSigningRequests", &target))?
            .items;
        let summaries: Vec<_> = csrs.iter().map(facts::cached_csr_summary).collect();
        Ok((HygieneReport::new(&summaries, Some(&policy), now), note))
    }

    async fn cluster_policy(
        &self,
        client: &kube::Client,
        target: &ClusterTarget,
    ) -> Result<(Policy, String)> {
        cluster_policy(client, target, &self.namespace, &self.policy_configmap).await
    }
}

/// The policy of the ConfigMap `namespace/name`, or the built-in default when there is
/// none; the note says so.
async fn cluster_policy(
    client: &kube::Client,
    target: &ClusterTarget,
    namespace: &str,
    name: &str,
) -> Result<(Policy, String)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let found = api
        .get_opt(name)
        .await
        .map_err(read_error("the policy ConfigMap", target))?;
    match found {
        None => Ok((
            Policy::default(),
            format!("# no ConfigMap {namespace}/{name}: built-in default policy\n"),
        )),
        Some(cm) => policy_from_configmap(&cm).map(|p| (p, String::new())).map_err(|message| {
            Error::Cluster(format!(
                "ConfigMap {namespace}/{name} holds an invalid policy ({message}); the controller keeps its last good policy (at start-up it has none and approves nothing). Pass --policy FILE to evaluate with a file"
            ))
        }),
    }
}

/// A csr-approver `ApprovalFailed` Event about a CSR.
struct FailureEvent {
    name: String,
    uid: Option<String>,
    error: WriteError,
}

/// Every `ApprovalFailed` Event csr-approver published about a CSR, from `default` (where
/// Events about cluster-scoped objects are recorded): one list for all CSRs.
async fn last_write_errors(client: &kube::Client) -> Result<Vec<FailureEvent>, kube::Error> {
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let selector = format!(
        "involvedObject.kind=CertificateSigningRequest,reason={}",
        approval::FAILURE_REASON
    );
    let list = events
        .list(&ListParams::default().fields(&selector))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.reporting_component.as_deref() == Some(approval::CONTROLLER))
        .filter_map(|e| {
            // The last occurrence: a series' last, else when it was created.
            let at = e
                .series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .or(e.event_time.as_ref())
                .map(|t| t.0)
                .or(e.last_timestamp.as_ref().map(|t| t.0));
            Some(FailureEvent {
                name: e.involved_object.name?,
                uid: e.involved_object.uid,
                error: WriteError {
                    at,
                    message: e.message.unwrap_or_default(),
                },
            })
        })
        .collect())
}

/// The latest failure about this CSR (a CSR re-created under its name is another request).
fn latest_for(events: &[FailureEvent], name: &str, uid: &Option<String>) -> Option<WriteError> {
    events
        .iter()
        .filter(|e| e.name == name)
        .filter(|e| e.uid.is_none() || e.uid == *uid)
        .max_by_key(|e| e.error.at)
        .map(|e| e.error.clone())
}
