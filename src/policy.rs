//! The approval policy (DESIGN §4): a YAML document, every field optional with safe
//! defaults. Parsing validates as it goes, so an invalid value is reported with its field
//! path and a `Policy` value is always usable.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::request::{KeyAlgorithm, RSA_MIN_VERIFIABLE_BITS};
pub use crate::vocabulary::is_dns1123_subdomain;
use crate::vocabulary::{AddressValue, canonical_dns_name, canonical_ip, normalize_dns_name};

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

    pub fn matches(&self, username: &str, groups: &[String]) -> bool {
        let in_group = |g: &String| groups.iter().any(|have| have == g);
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

/// `auto` = Machines awaiting or just past their join + named inventory hosts + a margin,
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
    /// `joining`: Machines not yet linked or created within the last hour, plus named
    /// inventory hosts.
    pub fn limit(self, joining: usize) -> usize {
        match self {
            MaxNewNodes::Fixed(n) => n as usize,
            MaxNewNodes::Auto => joining + AUTO_NEW_NODES_MARGIN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum AddressSource {
    Machine,
    Node,
    /// The serving certificate the kubelet presents today, verified against
    /// `serving.kubeletServingCAFile`: renewals keep the addresses it already holds.
    KubeletCertificate,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServingPolicy {
    pub enabled: bool,
    pub address_sources: Vec<AddressSource>,
    #[serde(rename = "allowedIPRanges")]
    pub allowed_ip_ranges: Vec<Cidr>,
    pub dns_name_patterns: Vec<AnchoredRegex>,
    pub max_expiration_seconds: u32,
    /// The cluster's DNS domain: no name under it is ever a node's.
    pub cluster_domain: String,
    /// Loopback IP SANs (127.0.0.0/8, ::1) are refused unless this is set, for development
    /// clusters whose nodes live on loopback addresses.
    pub allow_loopback: bool,
    /// The CA bundle (PEM) that signs kubelet serving certificates, read at each probe
    /// (so a rotated CA mounted from a ConfigMap is followed) when `addressSources` lists
    /// `KubeletCertificate`.
    #[serde(rename = "kubeletServingCAFile")]
    pub kubelet_serving_ca_file: String,
}

/// Where a Pod finds its cluster's CA: on kubeadm clusters it also signs kubelet serving
/// certificates. OpenShift has its own (`openshift-config-managed/kubelet-serving-ca`).
pub const DEFAULT_KUBELET_SERVING_CA_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

impl Default for ServingPolicy {
    fn default() -> Self {
        ServingPolicy {
            enabled: true,
            address_sources: vec![AddressSource::Machine, AddressSource::Node],
            allowed_ip_ranges: Vec::new(),
            dns_name_patterns: Vec::new(),
            max_expiration_seconds: DEFAULT_MAX_EXPIRATION_SECONDS,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            allow_loopback: false,
            kubelet_serving_ca_file: DEFAULT_KUBELET_SERVING_CA_FILE.to_string(),
        }
    }
}

pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

pub const OPENSHIFT_MACHINE_GROUP: &str = "machine.openshift.io";
pub const CLUSTER_API_MACHINE_GROUP: &str = "cluster.x-k8s.io";

/// Where OpenShift's machine API keeps its Machines; the only namespace trusted for it
/// unless the policy names others.
pub const OPENSHIFT_MACHINE_NAMESPACE: &str = "openshift-machine-api";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MachinePolicy {
    pub api_groups: Vec<String>,
    /// API group → the namespaces whose Machines are trusted. Anyone who may create a
    /// Machine in a namespace could otherwise vouch for a node, so nothing is trusted by
    /// default but `machine.openshift.io` in `openshift-machine-api`.
    pub namespaces: BTreeMap<String, Vec<String>>,
}

impl Default for MachinePolicy {
    fn default() -> Self {
        MachinePolicy {
            api_groups: vec![OPENSHIFT_MACHINE_GROUP.to_string()],
            namespaces: BTreeMap::new(),
        }
    }
}

impl MachinePolicy {
    /// The namespaces trusted for `api_group`: as configured, else the OpenShift default.
    pub fn namespaces_of(&self, api_group: &str) -> &[String] {
        static OPENSHIFT: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec![OPENSHIFT_MACHINE_NAMESPACE.to_string()]);
        match self.namespaces.get(api_group) {
            Some(namespaces) => namespaces,
            None if api_group == OPENSHIFT_MACHINE_GROUP => &OPENSHIFT,
            None => &[],
        }
    }

    pub fn admits(&self, api_group: &str, namespace: &str) -> bool {
        self.api_groups.iter().any(|g| g == api_group)
            && self.namespaces_of(api_group).iter().any(|n| n == namespace)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        for (index, group) in self.api_groups.iter().enumerate() {
            if group != OPENSHIFT_MACHINE_GROUP && group != CLUSTER_API_MACHINE_GROUP {
                return Err(PolicyError {
                    path: format!("machines.apiGroups[{index}]"),
                    message: format!(
                        "unknown Machine API group {group:?} (expected {OPENSHIFT_MACHINE_GROUP} or {CLUSTER_API_MACHINE_GROUP})"
                    ),
                });
            }
            if self.namespaces_of(group).is_empty() {
                return Err(PolicyError {
                    path: format!("machines.namespaces.{group}"),
                    message: format!(
                        "API group {group} is trusted but no namespace is named for its Machines; list the namespaces whose Machines may vouch for nodes"
                    ),
                });
            }
        }
        for (group, namespaces) in &self.namespaces {
            if namespaces.iter().any(|n| n.is_empty() || n == "*") {
                return Err(PolicyError {
                    path: format!("machines.namespaces.{group}"),
                    message:
                        "name each namespace; \"\" and \"*\" (every namespace) are not accepted"
                            .to_string(),
                });
            }
        }
        Ok(())
    }
}

/// A bare-metal/UPI host expected to join. Exactly one of `name` or `namePattern`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawInventoryEntry")]
pub struct InventoryEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "namePattern", skip_serializing_if = "Option::is_none")]
    pub name_pattern: Option<AnchoredRegex>,
    /// Addresses owned by the host named `name`: IPs and DNS names its serving CSR may carry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressValue>,
    /// A fence: IP SANs of matching nodes must fall inside these ranges.
    #[serde(rename = "ipRanges", skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<Cidr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawInventoryEntry {
    name: Option<String>,
    name_pattern: Option<AnchoredRegex>,
    #[serde(default)]
    addresses: Vec<AddressValue>,
    #[serde(default, rename = "ipRanges")]
    ip_ranges: Vec<Cidr>,
}

impl TryFrom<RawInventoryEntry> for InventoryEntry {
    type Error = String;
    fn try_from(raw: RawInventoryEntry) -> Result<Self, String> {
        let name = match (raw.name, &raw.name_pattern) {
            (Some(n), None) => {
                let normalized = normalize_dns_name(&n);
                if !is_dns1123_subdomain(&normalized) {
                    return Err(format!("`name` {n:?} is not a valid DNS-1123 node name"));
                }
                Some(normalized)
            }
            (None, Some(_)) => {
                if !raw.addresses.is_empty() {
                    return Err(
                        "`addresses` belong to one host: use them with `name`, not `namePattern`"
                            .to_string(),
                    );
                }
                None
            }
            (Some(_), Some(_)) => return Err("set either `name` or `namePattern`, not both".into()),
            (None, None) => return Err("needs `name` or `namePattern`".into()),
        };
        Ok(InventoryEntry {
            name,
            name_pattern: raw.name_pattern,
            addresses: raw.addresses,
            ip_ranges: raw.ip_ranges,
        })
    }
}

impl InventoryEntry {
    /// `node` must already be normalised.
    pub fn matches(&self, node: &str) -> bool {
        match (&self.name, &self.name_pattern) {
            (Some(name), _) => name == node,
            (None, Some(pattern)) => pattern.is_match(node),
            (None, None) => false,
        }
    }

    pub fn describe(&self) -> String {
        match (&self.name, &self.name_pattern) {
            (Some(name), _) => format!("inventory entry {name}"),
            (None, Some(p)) => format!("inventory pattern {}", p.as_written()),
            (None, None) => "empty inventory entry".to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KeyPolicy {
    #[serde(rename = "minRSABits", deserialize_with = "min_rsa_bits")]
    pub min_rsa_bits: usize,
    /// Key types accepted: RSA, ECDSA-P256, ECDSA-P384, Ed25519.
    pub types: Vec<KeyType>,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            min_rsa_bits: RSA_MIN_VERIFIABLE_BITS,
            types: vec![
                KeyType::Rsa,
                KeyType::EcdsaP256,
                KeyType::EcdsaP384,
                KeyType::Ed25519,
            ],
        }
    }
}

fn min_rsa_bits<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let bits = usize::deserialize(d)?;
    if bits < RSA_MIN_VERIFIABLE_BITS {
        return Err(de::Error::custom(format!(
            "{bits} is below {RSA_MIN_VERIFIABLE_BITS}, the smallest RSA key whose signature can be verified"
        )));
    }
    Ok(bits)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum KeyType {
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
    Ed25519,
}

impl KeyType {
    pub fn of(key: KeyAlgorithm) -> Self {
        match key {
            KeyAlgorithm::Rsa { .. } => KeyType::Rsa,
            KeyAlgorithm::EcdsaP256 => KeyType::EcdsaP256,
            KeyAlgorithm::EcdsaP384 => KeyType::EcdsaP384,
            KeyAlgorithm::Ed25519 => KeyType::Ed25519,
        }
    }
}

/// A duration written as `90s`, `30m`, `2h`; never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim_start().starts_with('-') {
            return Err(de::Error::custom(format!("duration {text:?} is negative")));
        }
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!("invalid duration {text:?}: {e} (use e.g. 30m, 2h)"))
            })
    }
}

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical_ip(ip))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let net = IpNet::from_str(text.trim()).map_err(|_| {
            de::Error::custom(format!(
                "invalid CIDR {text:?} (expected e.g. 10.0.0.0/8 or fd00::/8)"
            ))
        })?;
        if net.trunc() != net {
            return Err(de::Error::custom(format!(
                "CIDR {text:?} has host bits set; did you mean {}?",
                net.trunc()
            )));
        }
        Ok(Cidr(net))
    }
}

/// A regular expression that matches whole values only. It must be written anchored
/// (`^…$`) so that its meaning is visible in the policy, and it is compiled as `^(?:…)$`
/// whatever it contains, so that `^a|b$` means "a or b", not "starts with a or ends with b".
#[derive(Debug, Clone)]
pub struct AnchoredRegex {
    written: String,
    compiled: Regex,
}

impl AnchoredRegex {
    pub fn new(written: &str) -> Result<AnchoredRegex, String> {
        if !written.starts_with('^') || !written.ends_with('$') || written.ends_with("\\$") {
            return Err(format!(
                "pattern {written:?} must be anchored: start with ^ and end with $"
            ));
        }
        let full = format!("^(?:{written})$");
        Regex::new(&full)
            .map(|compiled| AnchoredRegex {
                written: written.to_string(),
                compiled,
            })
            .map_err(|e| format!("invalid regular expression {written:?}: {e}"))
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.compiled.is_match(value)
    }

    /// The pattern as the policy wrote it.
    pub fn as_written(&self) -> &str {
        &self.written
    }

    /// The pattern as it is matched.
    pub fn as_compiled(&self) -> &str {
        self.compiled.as_str()
    }
}

impl Serialize for AnchoredRegex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for AnchoredRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AnchoredRegex::new(&text).map_err(de::Error::custom)
    }
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
    fn validate(&self) -> Result<(), PolicyError> {
        self.machines.validate()?;
        if canonical_dns_name(&self.serving.cluster_domain).is_none() {
            return Err(PolicyError {
                path: "serving.clusterDomain".to_string(),
                message: format!("{:?} is not a DNS name", self.serving.cluster_domain),
            });
        }
        let recovery = &self.client.recovery;
        if recovery.enabled && recovery.offline_for.0 < MIN_RECOVERY_OFFLINE {
            return Err(PolicyError {
                path: "client.recovery.offlineFor".to_string(),
                message: format!(
                    "{} is shorter than {}: a kubelet renews its Lease every 10 s, and a node that missed a few renewals may be alive",
                    humantime::format_duration(recovery.offline_for.0),
                    humantime::format_duration(MIN_RECOVERY_OFFLINE)
                ),
            });
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
