//! Where the cluster is, found as kubectl finds it: `--kubeconfig`, else `$KUBECONFIG`
//! (a list of files, merged), else `~/.kube/config`, else the in-cluster service account;
//! `--context` picks the context.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use crate::Error;

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
    pub(super) fn describe_source(&self) -> String {
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
