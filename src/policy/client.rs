//! `client`: who may ask for a node identity, and the limits on new ones.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::{HumanDuration, OPENSHIFT_NODE_BOOTSTRAPPER, PolicyError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClientPolicy {
    pub enabled: bool,
    pub bootstrappers: Vec<Bootstrapper>,
    pub renewals: bool,
    pub join_window: HumanDuration,
    pub allow_duplicates: bool,
    pub max_pending: MaxPending,
    /// Cap on approvals of new node identities per hour (a stolen bootstrap credential
    /// plus a name pattern would otherwise mint identities without limit).
    pub max_new_nodes_per_hour: MaxNewNodes,
    pub max_expiration_seconds: u32,
    /// Guarded automatic certificate recovery (off by default): see `RecoveryPolicy`.
    pub recovery: RecoveryPolicy,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy {
            enabled: true,
            bootstrappers: vec![Bootstrapper::openshift_node_bootstrapper()],
            renewals: true,
            join_window: HumanDuration(Duration::from_secs(2 * 3600)),
            allow_duplicates: false,
            max_pending: MaxPending::Auto,
            max_new_nodes_per_hour: MaxNewNodes::Auto,
            max_expiration_seconds: DEFAULT_MAX_EXPIRATION_SECONDS,
            recovery: RecoveryPolicy::default(),
        }
    }
}

/// When a bootstrapper may get a new client certificate for a Node that exists: the node
/// was off longer than its certificate lives and fell back to its bootstrap credential.
/// Off by default — the bootstrap credential sits on every node, so whoever holds it can
/// ask for any offline node's identity (SECURITY.md); without it an admin approves these
/// by hand and nothing is ever denied.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RecoveryPolicy {
    pub enabled: bool,
    /// How long the Node's Lease must have gone unrenewed: the node is really offline.
    pub offline_for: HumanDuration,
    /// At most one bootstrapper-requested identity per node in this window.
    pub window: HumanDuration,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy {
            enabled: false,
            offline_for: HumanDuration(Duration::from_secs(10 * 60)),
            window: HumanDuration(Duration::from_secs(24 * 3600)),
        }
    }
}

/// The shortest `client.recovery.offlineFor` accepted: the node lifecycle controller
/// itself waits 40 s before it calls a node unreachable.
pub const MIN_RECOVERY_OFFLINE: Duration = Duration::from_secs(60);

/// The shortest `client.recovery.window` accepted while recovery is on: the hourly cap
/// (`client.maxNewNodesPerHour`) counts identities over an hour, and a shorter window
/// would let one node be recovered again and again within it.
pub const MIN_RECOVERY_WINDOW: Duration = Duration::from_secs(3600);

/// The shortest `client.joinWindow` accepted: a host's first boot, from its Machine's
/// creation to its kubelet's CSR, takes minutes, and the duplicate rule looks back this
/// far; shorter, the one-identity rule forgets an approval while its host still boots.
pub const MIN_JOIN_WINDOW: Duration = Duration::from_secs(600);

/// Groups that hold every identity, every service account, or every node: a bootstrapper
/// `group` entry naming one lets anyone in it mint node identities. A `groups` list under
/// a `username` only narrows that user, so these are accepted there (the OpenShift default
/// requires `system:serviceaccounts`).
/// Admin groups are here too: an admin approves by hand, and a leaked admin credential
/// must not mint node identities with no decision recorded in its name (SECURITY.md).
pub const EVERYONE_GROUPS: [(&str, &str); 6] = [
    ("system:authenticated", "every authenticated identity"),
    ("system:unauthenticated", "every anonymous request"),
    (
        "system:serviceaccounts",
        "every service account of every namespace",
    ),
    (
        "system:nodes",
        "every node, which could then mint other nodes' identities",
    ),
    ("system:masters", "every cluster admin certificate"),
    ("system:cluster-admins", "every OpenShift cluster admin"),
];

/// Users that are everyone (anonymous requests) or an admin.
pub const EVERYONE_USERS: [(&str, &str); 2] = [
    ("system:anonymous", "every unauthenticated request"),
    ("system:admin", "the cluster admin, who approves by hand"),
];

impl ClientPolicy {
    /// Settings that would switch a rule off while looking like a setting of it.
    pub(super) fn validate(&self) -> Result<(), PolicyError> {
        let error = |path: String, message: String| Err(PolicyError { path, message });
        let join_window = self.join_window.0;
        if join_window < MIN_JOIN_WINDOW {
            return error(
                "client.joinWindow".to_string(),
                format!(
                    "{} is shorter than {}: no host joins that fast, and the one-identity-per-host rule would forget an approval while its host still boots",
                    humantime::format_duration(join_window),
                    humantime::format_duration(MIN_JOIN_WINDOW)
                ),
            );
        }
        for (index, bootstrapper) in self.bootstrappers.iter().enumerate() {
            if let Some(group) = &bootstrapper.group
                && let Some((_, who)) = EVERYONE_GROUPS.iter().find(|(g, _)| g == group)
            {
                return error(
                    format!("client.bootstrappers[{index}].group"),
                    format!(
                        "{group} is {who}: as a bootstrapper it lets any of them ask for a node identity; name the bootstrap user or its own group (kubeadm: system:bootstrappers)"
                    ),
                );
            }
            if let Some(user) = &bootstrapper.username
                && let Some((_, who)) = EVERYONE_USERS.iter().find(|(u, _)| u == user)
            {
                return error(
                    format!("client.bootstrappers[{index}].username"),
                    format!("{user} is {who}: never a bootstrapper; name the bootstrap user"),
                );
            }
        }
        self.recovery.validate()
    }
}

impl RecoveryPolicy {
    fn validate(&self) -> Result<(), PolicyError> {
        let window = self.window.0;
        if window.is_zero() {
            return Err(PolicyError {
                path: "client.recovery.window".to_string(),
                message: "0s makes \"one recovery per node per window\" no rule at all; give a window of at least 1h".to_string(),
            });
        }
        if !self.enabled {
            return Ok(());
        }
        if self.offline_for.0 < MIN_RECOVERY_OFFLINE {
            return Err(PolicyError {
                path: "client.recovery.offlineFor".to_string(),
                message: format!(
                    "{} is shorter than {}: a kubelet renews its Lease every 10 s, and a node that missed a few renewals may be alive",
                    humantime::format_duration(self.offline_for.0),
                    humantime::format_duration(MIN_RECOVERY_OFFLINE)
                ),
            });
        }
        let minimum = MIN_RECOVERY_WINDOW.max(self.offline_for.0);
        if window < minimum {
            return Err(PolicyError {
                path: "client.recovery.window".to_string(),
                message: format!(
                    "{} is shorter than {} (at least 1h, and at least client.recovery.offlineFor): within a shorter window the same node could be recovered again and again, once per window, while the hourly cap and the Lease check still count the first",
                    humantime::format_duration(window),
                    humantime::format_duration(minimum)
                ),
            });
        }
        Ok(())
    }
}

/// 366 days, the longest a kubelet certificate is normally issued for.
pub const DEFAULT_MAX_EXPIRATION_SECONDS: u32 = 31_622_400;

/// Who may ask for a new node's client certificate. Exactly one of `username` or `group`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[serde(try_from = "RawBootstrapper")]
pub struct Bootstrapper {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// With `username`: groups the requester must also be in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBootstrapper {
    username: Option<String>,
    group: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

impl TryFrom<RawBootstrapper> for Bootstrapper {
    type Error = String;
    fn try_from(raw: RawBootstrapper) -> Result<Self, String> {
        match (&raw.username, &raw.group) {
            (Some(u), None) if !u.is_empty() => {}
            (None, Some(g)) if !g.is_empty() => {
                if !raw.groups.is_empty() {
                    return Err("`groups` is only valid together with `username`".to_string());
                }
            }
            (Some(_), Some(_)) => {
                return Err("set either `username` or `group`, not both".to_string());
            }
            _ => return Err("needs a non-empty `username` or `group`".to_string()),
        }
        Ok(Bootstrapper {
            username: raw.username,
            group: raw.group,
            groups: raw.groups,
        })
    }
}

impl Bootstrapper {
    pub fn openshift_node_bootstrapper() -> Self {
        Bootstrapper {
            username: Some(OPENSHIFT_NODE_BOOTSTRAPPER.to_string()),
            group: None,
            groups: vec![
                "system:serviceaccounts".to_string(),
                "system:serviceaccounts:openshift-machine-config-operator".to_string(),
            ],
        }
    }

    pub fn matches(&self, username: &str, groups: &[impl AsRef<str>]) -> bool {
        let in_group = |g: &String| groups.iter().any(|have| have.as_ref() == g);
        match (&self.username, &self.group) {
            (Some(u), _) => u == username && self.groups.iter().all(in_group),
            (None, Some(g)) => in_group(g),
            (None, None) => false,
        }
    }
}

impl fmt::Display for Bootstrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.username, &self.group) {
            (Some(u), _) => write!(f, "user {u}"),
            (None, Some(g)) => write!(f, "group {g}"),
            (None, None) => f.write_str("nobody"),
        }
    }
}

/// `auto` = max(Machines, Nodes, inventory entries) + 100, or a fixed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxPending {
    Auto,
    Fixed(u32),
}

impl<'de> Deserialize<'de> for MaxPending {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Word(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected `auto` or a non-negative integer"))?
        {
            Raw::Number(n) => Ok(MaxPending::Fixed(n)),
            Raw::Word(w) if w == "auto" => Ok(MaxPending::Auto),
            Raw::Word(w) => Err(de::Error::custom(format!(
                "expected `auto` or a non-negative integer, got {w:?}"
            ))),
        }
    }
}

/// Written as the policy reads it (`auto` or a number), so a serialised policy parses back.
impl Serialize for MaxPending {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxPending::Auto => s.serialize_str("auto"),
            MaxPending::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

/// The headroom `maxPending: auto` allows above the number of known machines.
pub const AUTO_MAX_PENDING_HEADROOM: usize = 100;

impl MaxPending {
    pub fn limit(self, machines: usize, nodes: usize, inventory: usize) -> usize {
        match self {
            MaxPending::Fixed(n) => n as usize,
            MaxPending::Auto => machines.max(nodes).max(inventory) + AUTO_MAX_PENDING_HEADROOM,
        }
    }
}

/// `auto` = Machines that can still vouch or just joined + named inventory hosts + a margin,
/// or a fixed number per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxNewNodes {
    Auto,
    Fixed(u32),
}

impl<'de> Deserialize<'de> for MaxNewNodes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match MaxPending::deserialize(d)? {
            MaxPending::Auto => Ok(MaxNewNodes::Auto),
            MaxPending::Fixed(n) => Ok(MaxNewNodes::Fixed(n)),
        }
    }
}

impl Serialize for MaxNewNodes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxNewNodes::Auto => MaxPending::Auto.serialize(s),
            MaxNewNodes::Fixed(n) => MaxPending::Fixed(*n).serialize(s),
        }
    }
}

/// The margin `maxNewNodesPerHour: auto` allows above the hosts known to be joining.
pub const AUTO_NEW_NODES_MARGIN: usize = 10;

impl MaxNewNodes {
    /// `joining`: trusted Machines that can still vouch (not linked, created within
    /// `client.joinWindow`) or were created within the last hour, plus named inventory hosts.
    pub fn limit(self, joining: usize) -> usize {
        match self {
            MaxNewNodes::Fixed(n) => n as usize,
            MaxNewNodes::Auto => joining + AUTO_NEW_NODES_MARGIN,
        }
    }
}
