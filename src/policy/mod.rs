//! The approval policy (`docs/design.md` §4): a YAML document, every field optional with safe
//! defaults. Parsing validates as it goes, so an invalid value is reported with its field
//! path and a `Policy` value is always usable.

use serde::de::{self};
use serde::{Deserialize, Serialize};

use crate::vocabulary::canonical_dns_name;

mod client;
mod keys;
mod machines;
mod serving;
mod values;

pub use client::*;
pub use keys::*;
pub use machines::*;
pub use serving::*;
pub use values::*;

/// The OpenShift service account that submits client CSRs for new nodes.
pub const OPENSHIFT_NODE_BOOTSTRAPPER: &str =
    "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper";

#[derive(Debug, thiserror::Error)]
#[error("policy field `{path}`: {message}")]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Policy {
    pub mode: Mode,
    pub deny: bool,
    pub client: ClientPolicy,
    pub serving: ServingPolicy,
    pub machines: MachinePolicy,
    pub inventory: Vec<InventoryEntry>,
    pub keys: KeyPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::Enforce,
            deny: false,
            client: ClientPolicy::default(),
            serving: ServingPolicy::default(),
            machines: MachinePolicy::default(),
            inventory: Vec::new(),
            keys: KeyPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Mode {
    #[serde(rename = "enforce")]
    Enforce,
    /// Decide, log, record Events and metrics, but never write an approval or denial.
    #[serde(rename = "dry-run")]
    DryRun,
}

impl Policy {
    /// Parses a policy document. Errors name the field path, e.g.
    /// `serving.allowedIPRanges[0]`.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        if text.trim().is_empty() {
            return Ok(Policy::default());
        }
        let mut path = String::from("(document)");
        let mut message = String::new();
        let result = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize::<_, Policy>(de).map_err(|e| {
                path = e.path().to_string();
                message = e.inner().to_string();
                // A repeated key fails while the next key is read, so the path ends in `?`
                // and serde-saphyr's message is about its own options: name the key
                // instead, at the path where it is repeated.
                if let serde_saphyr::Error::DuplicateMappingKey {
                    key: Some(key),
                    location,
                } = e.inner().without_snippet()
                {
                    let parent = path
                        .strip_suffix('?')
                        .unwrap_or(&path)
                        .trim_end_matches('.');
                    path = match parent {
                        "" => key.clone(),
                        parent => format!("{parent}.{key}"),
                    };
                    message = format!(
                        "`{key}` is given twice in the same mapping (again at line {}, column {}); keep one",
                        location.line(),
                        location.column()
                    );
                }
                <serde_saphyr::Error as de::Error>::custom(e.to_string())
            })
        });
        match result {
            Ok(policy) => policy.validate().map(|()| policy),
            Err(e) => {
                if message.is_empty() {
                    message = e.to_string();
                }
                if path == "." || path.is_empty() {
                    path = "(document)".to_string();
                }
                Err(PolicyError { path, message })
            }
        }
    }

    /// Rules between fields, checked after parsing.
    pub(super) fn validate(&self) -> Result<(), PolicyError> {
        self.machines.validate()?;
        if canonical_dns_name(&self.serving.cluster_domain).is_none() {
            return Err(PolicyError {
                path: "serving.clusterDomain".to_string(),
                message: format!("{:?} is not a DNS name", self.serving.cluster_domain),
            });
        }
        self.client.validate()?;
        self.serving.validate()?;
        for (index, entry) in self.inventory.iter().enumerate() {
            entry.validate(index)?;
        }
        if self
            .serving
            .address_sources
            .contains(&AddressSource::KubeletCertificate)
            && !self.serving.kubelet_serving_ca_file.starts_with('/')
        {
            return Err(PolicyError {
                path: "serving.kubeletServingCAFile".to_string(),
                message: format!(
                    "{:?} is not an absolute path; addressSources lists KubeletCertificate, which needs the CA that signs kubelet serving certificates",
                    self.serving.kubelet_serving_ca_file
                ),
            });
        }
        Ok(())
    }

    /// How each pattern is matched, as `policy validate` reports it.
    pub fn pattern_readings(&self) -> Vec<String> {
        let serving = self
            .serving
            .dns_name_patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("serving.dnsNamePatterns[{i}]"), p));
        let inventory = self.inventory.iter().enumerate().filter_map(|(i, e)| {
            e.name_pattern
                .as_ref()
                .map(|p| (format!("inventory[{i}].namePattern"), p))
        });
        serving
            .chain(inventory)
            .map(|(path, p)| {
                format!(
                    "{path}: {:?} matches whole names only, as {}",
                    p.as_written(),
                    p.as_compiled()
                )
            })
            .collect()
    }

    pub fn is_dry_run(&self) -> bool {
        self.mode == Mode::DryRun
    }
}
