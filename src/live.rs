//! `csr-approver check` against a live cluster: answers "why is this CSR still Pending?"
//! read-only, with the same inventory and policy the controller would use. The cluster is
//! found as kubectl finds it (`--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`,
//! else in-cluster; `--context` or the current context), because as a kubectl/oc plugin
//! (`kubectl csr-approver check`) it receives none of kubectl's own flags.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Node, Service};
use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use crate::approval;
use crate::check::{self, Evaluation, WriteError};
use crate::cluster::KubernetesService;
use crate::decision::CsrFacts;
use crate::facts;
use crate::inventory::CsrState;
use crate::policy::Policy;
use crate::policy_watch::policy_from_configmap;
use crate::vocabulary::is_kubelet_signer;
use crate::{Error, Result};

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
        let target = resolve_cluster(
            self.kubeconfig.as_deref(),
            self.context.as_deref(),
            &Environment::current(),
        )
        .await?;
        let client = kube::Client::try_from(target.config.clone())
            .map_err(|e| Error::Cluster(format!("{target}: cannot build a client: {e}")))?;
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

    async fn cluster_policy(
        &self,
        client: &kube::Client,
        target: &ClusterTarget,
    ) -> Result<(Policy, String)> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        let found = api
            .get_opt(&self.policy_configmap)
            .await
            .map_err(read_error("the policy ConfigMap", target))?;
        match found {
            None => Ok((
                Policy::default(),
                format!(
                    "# no ConfigMap {}/{}: built-in default policy\n",
                    self.namespace, self.policy_configmap
                ),
            )),
            Some(cm) => policy_from_configmap(&cm).map(|p| (p, String::new())).map_err(|message| {
                Error::Cluster(format!(
                    "ConfigMap {}/{} holds an invalid policy ({message}); the controller keeps its last good policy (at start-up it has none and approves nothing). Pass --policy FILE to evaluate with a file",
                    self.namespace, self.policy_configmap
                ))
            }),
        }
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

/// What decides where the cluster is, read from the process once and passed in, so the
/// lookup order is one function of its inputs.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$KUBECONFIG`: one path or a list (`:`-separated on Unix).
    pub kubeconfig: Option<OsString>,
    pub home: Option<PathBuf>,
}

impl Environment {
    pub fn current() -> Environment {
        Environment {
            kubeconfig: std::env::var_os("KUBECONFIG"),
            home: std::env::home_dir(),
        }
    }

    fn home_kubeconfig(&self) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(".kube").join("config"))
    }

    fn describe_home_kubeconfig(&self) -> String {
        self.home_kubeconfig().map_or_else(
            || "~/.kube/config (no home directory)".to_string(),
            |p| p.display().to_string(),
        )
    }
}

/// Where the kubeconfig came from, as error messages name it.
#[derive(Debug, Clone)]
pub enum ConfigOrigin {
    /// `--kubeconfig FILE`
    Flag(PathBuf),
    /// `$KUBECONFIG` (all the files of the list that exist, merged)
    Env(OsString),
    /// `~/.kube/config`
    Home(PathBuf),
    /// The Pod's ServiceAccount
    InCluster,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::Flag(path) => write!(f, "--kubeconfig {}", path.display()),
            ConfigOrigin::Env(value) => write!(f, "KUBECONFIG={}", value.to_string_lossy()),
            ConfigOrigin::Home(path) => write!(f, "{}", path.display()),
            ConfigOrigin::InCluster => f.write_str("the in-cluster ServiceAccount"),
        }
    }
}

/// The cluster a live check reads, and how it was found.
pub struct ClusterTarget {
    pub config: kube::Config,
    pub origin: ConfigOrigin,
    /// The kubeconfig context used; none in-cluster.
    pub context: Option<String>,
}

impl ClusterTarget {
    /// Where the server's address came from: the context and kubeconfig, or in-cluster.
    fn describe_source(&self) -> String {
        match &self.context {
            Some(context) => format!("context {context} of {}", self.origin),
            None => self.origin.to_string(),
        }
    }
}

impl fmt::Display for ClusterTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(context) => write!(
                f,
                "context {context} of {} ({})",
                self.origin, self.config.cluster_url
            ),
            None => write!(f, "{} ({})", self.origin, self.config.cluster_url),
        }
    }
}

/// Why no cluster could be read; every message names the file, variable or context.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("kubeconfig {} (from --kubeconfig) does not exist", path.display())]
    FlagFileMissing { path: PathBuf },
    #[error("KUBECONFIG={}: no such file (none of the listed files exists)", value.to_string_lossy())]
    EnvFilesMissing { value: OsString },
    #[error("{}: not a readable kubeconfig: {source}", path.display())]
    Read {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("{origin}: cannot merge {} with the files before it: {source}", path.display())]
    Merge {
        origin: ConfigOrigin,
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("{origin}: context {context:?} not found (contexts: {available})")]
    UnknownContext {
        origin: ConfigOrigin,
        context: String,
        available: String,
    },
    #[error("{origin}: no current-context is set; pass --context NAME (contexts: {available})")]
    NoCurrentContext {
        origin: ConfigOrigin,
        available: String,
    },
    #[error("{origin}, context {context}: {source}")]
    Load {
        origin: ConfigOrigin,
        context: String,
        source: KubeconfigError,
    },
    #[error(
        "--context {context} needs a kubeconfig, and there is none: KUBECONFIG is unset or empty and {home} does not exist"
    )]
    ContextWithoutKubeconfig { context: String, home: String },
    #[error(
        "no cluster to read: KUBECONFIG is unset or empty, {home} does not exist, and this is not a Pod (in-cluster: {source}); pass --kubeconfig FILE, or give CSR manifest files to check them offline"
    )]
    NoConfig {
        home: String,
        source: kube::config::InClusterError,
    },
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Cluster(e.to_string())
    }
}

/// kubectl's lookup: `--kubeconfig` (that one file), else `$KUBECONFIG` (a list, merged,
/// the first file to set a value winning), else `~/.kube/config`, else in-cluster; then
/// `context`, or the kubeconfig's current context.
pub async fn resolve_cluster(
    flag: Option<&Path>,
    context: Option<&str>,
    env: &Environment,
) -> Result<ClusterTarget, ConfigError> {
    let Some((kubeconfig, origin)) = find_kubeconfig(flag, env)? else {
        let home = env.describe_home_kubeconfig();
        if let Some(context) = context {
            return Err(ConfigError::ContextWithoutKubeconfig {
                context: context.to_string(),
                home,
            });
        }
        let config =
            kube::Config::incluster().map_err(|source| ConfigError::NoConfig { home, source })?;
        return Ok(ClusterTarget {
            config,
            origin: ConfigOrigin::InCluster,
            context: None,
        });
    };
    let available = match kubeconfig.contexts.as_slice() {
        [] => "none".to_string(),
        contexts => contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let chosen = context
        .map(str::to_string)
        .or_else(|| kubeconfig.current_context.clone());
    let Some(name) = chosen else {
        return Err(ConfigError::NoCurrentContext { origin, available });
    };
    if !kubeconfig.contexts.iter().any(|c| c.name == name) {
        return Err(ConfigError::UnknownContext {
            origin,
            context: name,
            available,
        });
    }
    let options = KubeConfigOptions {
        context: Some(name.clone()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| ConfigError::Load {
            origin: origin.clone(),
            context: name.clone(),
            source,
        })?;
    Ok(ClusterTarget {
        config,
        origin,
        context: Some(name),
    })
}

fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, ConfigError> {
    let mut kubeconfig = Kubeconfig::read_from(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // An empty current-context is unset for kubectl; merged first it would hide a later
    // file's.
    if kubeconfig.current_context.as_deref() == Some("") {
        kubeconfig.current_context = None;
    }
    Ok(kubeconfig)
}

fn find_kubeconfig(
    flag: Option<&Path>,
    env: &Environment,
) -> Result<Option<(Kubeconfig, ConfigOrigin)>, ConfigError> {
    if let Some(path) = flag {
        if !path.exists() {
            return Err(ConfigError::FlagFileMissing {
                path: path.to_path_buf(),
            });
        }
        let kubeconfig = read_kubeconfig(path)?;
        return Ok(Some((kubeconfig, ConfigOrigin::Flag(path.to_path_buf()))));
    }
    if let Some(value) = env.kubeconfig.as_ref() {
        let paths: Vec<PathBuf> = std::env::split_paths(value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        // An empty KUBECONFIG counts as unset, as for kubectl.
        if !paths.is_empty() {
            let origin = ConfigOrigin::Env(value.clone());
            // kubectl skips the listed files that do not exist. When none does, an error
            // naming the variable beats falling back to another cluster the user did not
            // name.
            let mut merged: Option<Kubeconfig> = None;
            for path in paths.iter().filter(|p| p.exists()) {
                let next = read_kubeconfig(path)?;
                merged = Some(match merged {
                    None => next,
                    Some(first) => first.merge(next).map_err(|source| ConfigError::Merge {
                        origin: origin.clone(),
                        path: path.clone(),
                        source,
                    })?,
                });
            }
            return match merged {
                Some(kubeconfig) => Ok(Some((kubeconfig, origin))),
                None => Err(ConfigError::EnvFilesMissing {
                    value: value.clone(),
                }),
            };
        }
    }
    match env.home_kubeconfig().filter(|p| p.exists()) {
        Some(path) => {
            let kubeconfig = read_kubeconfig(&path)?;
            Ok(Some((kubeconfig, ConfigOrigin::Home(path))))
        }
        None => Ok(None),
    }
}
