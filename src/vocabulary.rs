//! The words every layer shares: the two kubelet signers, node identities, and how names
//! and addresses are read and compared. One reading everywhere, so that the watch, the
//! policy, the decision and `check` cannot disagree on whether two names are the same.
//! Nothing here reads the cluster, the policy or the clock.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Node identities are users `system:node:<name>`; the CN of a kubelet certificate.
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// Signer names and groups that nearly every kubelet CSR carries: the cache keeps these
/// once, as static text, instead of once per CSR summary of thousands.
const COMMON_CSR_WORDS: [&str; 9] = [
    CLIENT_SIGNER,
    SERVING_SIGNER,
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/legacy-unknown",
    NODES_GROUP,
    "system:authenticated",
    "system:bootstrappers",
    "system:serviceaccounts",
    "system:serviceaccounts:openshift-machine-config-operator",
];

/// `text` as the static copy when it is one of the common signer names or groups, else
/// as written (owned).
pub fn common_or_owned(text: &str) -> Cow<'static, str> {
    match COMMON_CSR_WORDS.iter().find(|word| **word == text) {
        Some(word) => Cow::Borrowed(word),
        None => Cow::Owned(text.to_string()),
    }
}

/// The two signers csr-approver decides for; every other signer is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signer {
    /// Kubelet client certificates: a node's identity towards the API server.
    Client,
    /// Kubelet serving certificates: the kubelet's own TLS endpoint.
    Serving,
}

impl Signer {
    pub const ALL: [Signer; 2] = [Signer::Client, Signer::Serving];

    /// The kubelet signer named `signer_name`, if it is one.
    pub fn of(signer_name: &str) -> Option<Signer> {
        match signer_name {
            CLIENT_SIGNER => Some(Signer::Client),
            SERVING_SIGNER => Some(Signer::Serving),
            _ => None,
        }
    }

    /// `spec.signerName`.
    pub fn name(self) -> &'static str {
        match self {
            Signer::Client => CLIENT_SIGNER,
            Signer::Serving => SERVING_SIGNER,
        }
    }

    /// The policy section that configures it.
    pub fn policy_section(self) -> &'static str {
        match self {
            Signer::Client => "client",
            Signer::Serving => "serving",
        }
    }

    /// For narrow table columns.
    pub fn short_name(self) -> &'static str {
        match self {
            Signer::Client => "kubelet-client",
            Signer::Serving => "kubelet-serving",
        }
    }
}

pub fn is_kubelet_signer(signer_name: &str) -> bool {
    Signer::of(signer_name).is_some()
}

/// The node a subject CN `system:node:<name>` names, if the name is valid exactly as
/// written (the apiserver will create the Node under this name: nothing is normalised).
pub fn node_name_from_cn(cn: &str) -> Option<&str> {
    cn.strip_prefix(NODE_USER_PREFIX)
        .filter(|name| is_dns1123_subdomain(name))
}

/// RFC 1123 subdomain as Kubernetes validates object names: lowercase alphanumerics and
/// `-`, labels of at most 63 characters separated by dots, at most 253 in all.
pub fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Lowercase, without one trailing dot: how DNS names and node names compare. Nothing else
/// is forgiven — no whitespace trimmed, no run of dots dropped — so that a name that only
/// becomes valid by being "cleaned up" stays invalid (see `canonical_dns_name`).
pub fn normalize_dns_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The canonical form of a DNS name, if it is a valid DNS-1123 subdomain once lower-cased
/// and stripped of one trailing dot, and not an IP literal in disguise; `None` for anything
/// else (whitespace, empty labels, underscores, wildcards, over-long labels).
///
/// A name whose last label is all digits (`10.0.0.11.`, `010.0.0.11`) is refused: no
/// top-level domain is numeric (RFC 3696 §2), so such a name is only ever an address
/// written as a name — which some resolvers and TLS stacks read as the address, and which
/// would otherwise compare unequal to that same address.
pub fn canonical_dns_name(name: &str) -> Option<String> {
    let normalized = normalize_dns_name(name);
    let numeric_tld = normalized
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    (is_dns1123_subdomain(&normalized) && !numeric_tld).then_some(normalized)
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry, so `::ffff:10.0.0.1`
/// cannot slip past a check written for `10.0.0.1` or the other way round.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// An address as every rule compares it: a SAN, a status address, a policy inventory
/// address, a name in a kubelet's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressValue {
    Ip(IpAddr),
    Dns(String),
    /// Neither an IP nor a valid DNS name, as written: evidence of nothing, and equal to no
    /// SAN (SANs are validated before they are compared).
    Invalid(String),
}

impl fmt::Display for AddressValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressValue::Ip(ip) => ip.fmt(f),
            AddressValue::Dns(d) => f.write_str(d),
            AddressValue::Invalid(raw) => write!(f, "{raw:?} (invalid)"),
        }
    }
}

impl AddressValue {
    /// Reads an address canonically: IPs as parsed (IPv4-mapped IPv6 as IPv4), names
    /// lower-cased without one trailing dot; anything else is kept as `Invalid`.
    pub fn parse(raw: &str) -> AddressValue {
        AddressValue::parse_valid(raw).unwrap_or_else(|| AddressValue::Invalid(raw.to_string()))
    }

    /// As `parse`, for input that must be valid (the policy): `None` instead of `Invalid`.
    pub fn parse_valid(raw: &str) -> Option<AddressValue> {
        match IpAddr::from_str(raw) {
            Ok(ip) => Some(AddressValue::Ip(canonical_ip(ip))),
            Err(_) => canonical_dns_name(raw).map(AddressValue::Dns),
        }
    }
}

impl serde::Serialize for AddressValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AddressValue::Invalid(raw) => s.serialize_str(raw),
            valid => s.collect_str(valid),
        }
    }
}

/// Reads only valid addresses: a policy that names an invalid one is refused.
impl<'de> serde::Deserialize<'de> for AddressValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AddressValue::parse_valid(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is neither an IP address nor a DNS name"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_words_are_the_static_copy_and_anything_else_is_kept_exactly() {
        for word in COMMON_CSR_WORDS {
            // As the API's JSON gives it: another copy of the text.
            let written = String::from(word);
            let kept = common_or_owned(&written);
            assert!(matches!(kept, Cow::Borrowed(_)), "{word}");
            assert_eq!(kept, word);
        }
        // Near misses are other words: kept as written, never the common one.
        for other in [
            "system:nodes ",
            "System:nodes",
            "kubernetes.io/kubelet-serving/x",
            "",
        ] {
            let kept = common_or_owned(other);
            assert!(matches!(kept, Cow::Owned(_)), "{other:?}");
            assert_eq!(kept, other);
        }
    }
}
