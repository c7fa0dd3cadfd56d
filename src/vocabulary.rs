//! The words every layer shares: the two kubelet signers, node identities, and how names
//! and addresses are read and compared. One reading everywhere, so that the watch, the
//! policy, the decision and `check` cannot disagree on whether two names are the same.
//! Nothing here reads the cluster, the policy or the clock.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
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
/// A name whose last label is a number — decimal (`10.0.0.11.`, `010.0.0.11`, `167772161`)
/// or `0x` hexadecimal (`10.0.0.0x33`, `0xa000033`) — is refused: no top-level domain is
/// numeric (RFC 3696 §2), and such a name is what `inet_aton`, `getaddrinfo` and the
/// WHATWG URL host parser read as an IPv4 address (see [`inet_aton`]): an address written
/// as a name, which would otherwise compare unequal to that same address. Refusing on the
/// last label alone covers every form those readers accept (they need every part numeric,
/// so the last one is) and some they refuse (`999.1.1.1`, `w1.0x1`), which are no host's
/// name either.
pub fn canonical_dns_name(name: &str) -> Option<String> {
    let normalized = normalize_dns_name(name);
    let numeric_tld = normalized.rsplit('.').next().is_some_and(is_numeric_label);
    (is_dns1123_subdomain(&normalized) && !numeric_tld).then_some(normalized)
}

/// A label the WHATWG "ends in a number" check takes for a number: decimal digits (octal
/// when they start with `0`), or `0x`/`0X` and hexadecimal digits, possibly none.
fn is_numeric_label(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The IPv4 address the C library's `inet_aton` (and so `getaddrinfo`, `ping`, `curl`)
/// reads `text` as, if any: one to four dot-separated parts, each decimal, `0`-prefixed
/// octal or `0x`-prefixed hexadecimal; the last part fills the remaining bytes (`10.1` is
/// 10.0.0.1, `167772161` is 10.0.0.1, `0xa.0.0.041` is 10.0.0.33). Read strictly as glibc
/// does otherwise: no sign, no empty part, no trailing dot, every part in range.
pub fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(inet_aton_part(part)?);
    }
    let (last, leading) = values.split_last()?;
    let mut address: u32 = 0;
    for (i, value) in leading.iter().enumerate() {
        let byte = u8::try_from(*value).ok()?;
        address |= u32::from(byte) << (24 - 8 * i);
    }
    // The last part fills the bytes the leading ones left: 32, 24, 16 or 8 bits.
    let room = 32 - 8 * leading.len();
    if room < 32 && *last >= 1u64 << room {
        return None;
    }
    let last = u32::try_from(*last).ok()?;
    Some(Ipv4Addr::from(address | last))
}

/// One part of an `inet_aton` address, in the base its prefix says.
fn inet_aton_part(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            // glibc reads a bare `0x` as 0.
            if hex.is_empty() {
                return Some(0);
            }
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    // Longer than any 32-bit value in any base: out of range (and no overflow below).
    if digits.trim_start_matches('0').len() > 11 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry, so `::ffff:10.0.0.1`
/// cannot slip past a check written for `10.0.0.1` or the other way round. Other IPv6
/// forms that embed an IPv4 address stay as written (see [`embedded_ipv4`]).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// An IPv6 form that carries an IPv4 address in some of its bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// NAT64 well-known prefix `64:ff9b::/96` (RFC 6052): the last 32 bits.
    Nat64,
    /// NAT64 local-use prefix `64:ff9b:1::/48` (RFC 8215), read as a /96 (the last 32
    /// bits), as operators deploy it.
    Nat64LocalUse,
    /// 6to4 `2002::/16` (RFC 3056): bits 16..48.
    SixToFour,
    /// Deprecated IPv4-compatible `::a.b.c.d` (RFC 4291 §2.5.5.1), not `::` or `::1`.
    Ipv4Compatible,
}

impl fmt::Display for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Embedding::Nat64 => "NAT64 64:ff9b::/96",
            Embedding::Nat64LocalUse => "local-use NAT64 64:ff9b:1::/48",
            Embedding::SixToFour => "6to4 2002::/16",
            Embedding::Ipv4Compatible => "IPv4-compatible ::/96",
        })
    }
}

/// The IPv4 address `ip` embeds and how, if it is one of the forms translators, tunnels
/// and old stacks route to that IPv4 address. Such a form is an *alias* of the IPv4
/// address for conflicts and reservations: whoever claims one claims the other.
///
/// Not read: the other RFC 6052 prefix lengths (/32 … /64, where the IPv4 address is split
/// around bits 64..72) inside the local-use /48, whose length the address alone does not
/// tell; Teredo (its client address is obfuscated and belongs to a NAT, not a host);
/// ISATAP interface identifiers. These are compared as written, like any IPv6 address.
pub fn embedded_ipv4(ip: IpAddr) -> Option<(Ipv4Addr, Embedding)> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    let segments = v6.segments();
    let octets = v6.octets();
    let last32 = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    let embedding = match segments {
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Embedding::Nat64,
        [0x64, 0xff9b, 1, ..] => Embedding::Nat64LocalUse,
        [0x2002, ..] => {
            let carried = Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]);
            return Some((carried, Embedding::SixToFour));
        }
        [0, 0, 0, 0, 0, 0, _, _] if u32::from(last32) > 1 => Embedding::Ipv4Compatible,
        _ => return None,
    };
    Some((last32, embedding))
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

    /// What this address denotes for conflicts and reservations: the IPv4 address an IPv6
    /// form embeds ([`embedded_ipv4`]), else itself. Ownership still compares the exact
    /// form: a node owns `64:ff9b::a00:21` only if a source lists that form.
    pub fn denoted(&self) -> Cow<'_, AddressValue> {
        match self {
            AddressValue::Ip(ip) => match embedded_ipv4(*ip) {
                Some((v4, _)) => Cow::Owned(AddressValue::Ip(IpAddr::V4(v4))),
                None => Cow::Borrowed(self),
            },
            _ => Cow::Borrowed(self),
        }
    }

    /// Whether the two denote the same address: equal, or one embeds the other's IPv4
    /// address, or both embed the same one.
    pub fn is_alias_of(&self, other: &AddressValue) -> bool {
        self.denoted() == other.denoted()
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
    fn inet_aton_reads_every_form_glibc_reads() {
        let ten = Ipv4Addr::new(10, 0, 0, 33);
        for form in [
            "10.0.0.33",
            "10.0.0.0x21",
            "10.0.0.041",
            "0xa.0.0.33",
            "0xa000021",
            "0XA000021",
            "012.0.0.33",
            "10.0.33",
            "10.33",
            "167772193",
            "0x0a.0x00.0x00.0x21",
        ] {
            assert_eq!(inet_aton(form), Some(ten), "{form}");
        }
        assert_eq!(inet_aton("0x"), Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(inet_aton("4294967295"), Some(Ipv4Addr::BROADCAST));
        for not in [
            "",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "08",
            "1.2.3.4.",
            ".1.2.3",
            "1..2",
            "-1",
            "+1",
            "0xg",
            "a.b.c.d",
            "99999999999999999999",
        ] {
            assert_eq!(inet_aton(not), None, "{not:?}");
        }
    }

    #[test]
    fn every_name_inet_aton_reads_as_an_address_is_no_dns_name() {
        for name in [
            "10.0.0.33",
            "10.0.0.0x21",
            "0xa000021",
            "012.0.0.33",
            "10.33",
            "167772193",
            "0x",
            "1.2.3.4.",
            "256.0.0.1",
        ] {
            assert_eq!(canonical_dns_name(name), None, "{name}");
        }
        for name in [
            "0x1.example",
            "w1.svc.corp.example",
            "ip-10-0-0-33.ec2.internal",
            "a1",
        ] {
            assert!(canonical_dns_name(name).is_some(), "{name}");
        }
    }

    #[test]
    fn ipv6_forms_embedding_ipv4_denote_the_ipv4_address() {
        let ten = AddressValue::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 33)));
        for form in [
            "64:ff9b::10.0.0.33",
            "64:ff9b:1::a00:21",
            "64:ff9b:1:abcd::a00:21",
            "2002:a00:21::",
            "2002:a00:21:5::1",
            "::10.0.0.33",
            "::ffff:10.0.0.33",
        ] {
            let value = AddressValue::parse(form);
            assert!(value.is_alias_of(&ten), "{form}");
            assert!(ten.is_alias_of(&value), "{form}");
        }
        for other in [
            "64:ff9b:2::a00:21",
            "2001:db8::a00:21",
            "fd00::a00:21",
            "::",
            "::1",
        ] {
            let value = AddressValue::parse(other);
            assert_eq!(*value.denoted(), value, "{other}");
        }
    }

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
