//! The checks every kubelet CSR passes, client or serving, before its own family's rules:
//!
//! 1. The key type is one `keys.types` allows, and an RSA key has at least
//!    `keys.minRSABits` bits (`UnsupportedKey`, `WeakKey`).
//! 2. `spec.expirationSeconds`, when set, is at most the signer's `maxExpirationSeconds`
//!    (`ExpirationTooLong`).
//! 3. The subject O is exactly `system:nodes` (`BadOrganization`).
//! 4. The requested extensions are only subjectAltName, and keyUsage and extendedKeyUsage
//!    that agree with `spec.usages` and the signer (`ForbiddenExtension`).
//! 5. The subject has exactly one CN, `system:node:<name>`, with a valid node name exactly
//!    as written, not a reserved one and not an IPv4 address in disguise
//!    (`BadCommonName`).
//!
//! Parsing (canonical DER, one PEM block, a signature that verifies) happens before, in
//! `request`. Also here: small helpers the rule families share.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use jiff::SignedDuration;

use super::{CsrFacts, Reason, Refusal, refuse, reserved};
use crate::inventory::{Inventory, MachineInfo};
use crate::policy::{KeyType, Policy};
use crate::request::{KeyAlgorithm, ParsedRequest, RequestedExtension};
use crate::vocabulary::{
    AddressValue, NODE_USER_PREFIX, NODES_GROUP, Signer, inet_aton, is_dns1123_subdomain,
};

pub(super) fn check_common(
    csr: &CsrFacts,
    request: &ParsedRequest,
    policy: &Policy,
    signer: Signer,
) -> Result<(), Refusal> {
    let key_type = KeyType::of(request.key);
    if !policy.keys.types.contains(&key_type) {
        return Err(refuse(
            Reason::UnsupportedKey,
            format!("key type {} is not allowed by keys.types", request.key),
        ));
    }
    if let KeyAlgorithm::Rsa { bits } = request.key
        && bits < policy.keys.min_rsa_bits
    {
        return Err(refuse(
            Reason::WeakKey,
            format!(
                "RSA key of {bits} bits is below keys.minRSABits {}",
                policy.keys.min_rsa_bits
            ),
        ));
    }
    let max = match signer {
        Signer::Client => policy.client.max_expiration_seconds,
        Signer::Serving => policy.serving.max_expiration_seconds,
    };
    let field = signer.policy_section();
    if let Some(seconds) = csr.expiration_seconds
        && seconds > i64::from(max)
    {
        return Err(refuse(
            Reason::ExpirationTooLong,
            format!("spec.expirationSeconds {seconds} exceeds {field}.maxExpirationSeconds {max}"),
        ));
    }
    if request.organizations != [NODES_GROUP] {
        return Err(refuse(
            Reason::BadOrganization,
            format!(
                "subject O is {:?}, expected exactly [\"{NODES_GROUP}\"]",
                request.organizations
            ),
        ));
    }
    check_extensions(csr, request, signer)
}

/// Rule 4: the request asks for what a kubelet asks for and nothing more. Kubelets (Go's
/// `x509.CreateCertificateRequest` from the certificate manager's template) request a
/// subjectAltName for serving and no extension at all for client certificates; other
/// clients may add keyUsage and extendedKeyUsage, allowed only where they say what
/// `spec.usages` says. Anything else — basicConstraints of any value, nameConstraints,
/// unknown OIDs, critical or not — is refused: kube-controller-manager's signer ignores
/// them, but approval is the policy boundary and another signer may copy them.
fn check_extensions(
    csr: &CsrFacts,
    request: &ParsedRequest,
    signer: Signer,
) -> Result<(), Refusal> {
    let usages = usage_set(csr);
    let purpose = match signer {
        Signer::Client => "client auth",
        Signer::Serving => "server auth",
    };
    let allowed_bits = ["digital signature", "key encipherment"];
    for extension in &request.extensions {
        let refused: Vec<&str> = match extension {
            RequestedExtension::KeyUsage(bits) => bits
                .iter()
                .map(String::as_str)
                .filter(|bit| !allowed_bits.contains(bit) || !usages.contains(bit))
                .collect(),
            RequestedExtension::ExtendedKeyUsage(purposes) => purposes
                .iter()
                .map(String::as_str)
                .filter(|p| *p != purpose || !usages.contains(p))
                .collect(),
            RequestedExtension::Other { .. } => {
                return Err(refuse(
                    Reason::ForbiddenExtension,
                    format!(
                        "the request asks for extension {extension}; a kubelet asks only for subjectAltName, keyUsage and extendedKeyUsage that agree with spec.usages"
                    ),
                ));
            }
        };
        if !refused.is_empty() {
            return Err(refuse(
                Reason::ForbiddenExtension,
                format!(
                    "the request asks for {extension}: [{}] not allowed, spec.usages is {:?}; a {} certificate has only digital signature, key encipherment (when spec.usages has it) and {purpose}",
                    refused.join(", "),
                    csr.usages,
                    signer.short_name()
                ),
            ));
        }
    }
    Ok(())
}

/// The node name from the subject CN `system:node:<name>`, which must be a valid node name
/// exactly as written (the apiserver will create the Node under this name).
pub(super) fn node_name_from_subject(
    request: &ParsedRequest,
    inventory: &Inventory,
    policy: &Policy,
) -> Result<String, Refusal> {
    let [cn] = request.common_names.as_slice() else {
        return Err(refuse(
            Reason::BadCommonName,
            format!(
                "subject has {} CNs {:?}, expected exactly one system:node:<name>",
                request.common_names.len(),
                request.common_names
            ),
        ));
    };
    match cn.strip_prefix(NODE_USER_PREFIX) {
        Some(name) if is_dns1123_subdomain(name) => {
            match why_not_a_node_name(name, inventory, policy) {
                Some(why) => Err(refuse(
                    Reason::BadCommonName,
                    format!("subject CN {cn:?}: node name {name} is {why}; never a node's"),
                )),
                None => Ok(name.to_string()),
            }
        }
        Some(name) => Err(refuse(
            Reason::BadCommonName,
            format!("subject CN {cn:?}: node name {name:?} is not a valid lowercase DNS-1123 name"),
        )),
        None => Err(refuse(
            Reason::BadCommonName,
            format!("subject CN {cn:?} does not start with {NODE_USER_PREFIX}"),
        )),
    }
}

/// Why a valid DNS-1123 node name is still never a node's: a reserved name, or a name
/// resolvers read as an IPv4 address. A node named by its IP in the one form every reader
/// reads alike (`10.0.0.5`: some installers name nodes so) is read as that IP and must not
/// be a reserved one; any other form `inet_aton` reads as an address (`10.1`, `0xa000005`,
/// `010.0.0.5`, `167772165`) is an address in disguise, refused as DNS SANs are.
fn why_not_a_node_name(name: &str, inventory: &Inventory, policy: &Policy) -> Option<String> {
    if let Some(why) =
        reserved::why_reserved(&AddressValue::Dns(name.to_string()), inventory, policy)
    {
        return Some(why);
    }
    let ip = inet_aton(name)?;
    if name.parse::<Ipv4Addr>() != Ok(ip) {
        return Some(format!(
            "the IPv4 address {ip} written in a form only some resolvers read as one"
        ));
    }
    reserved::why_reserved(&AddressValue::Ip(IpAddr::V4(ip)), inventory, policy)
}

pub(super) fn usage_set(csr: &CsrFacts) -> BTreeSet<&str> {
    csr.usages.iter().map(String::as_str).collect()
}

pub(super) fn check_nodes_group(csr: &CsrFacts) -> Result<(), Refusal> {
    if csr.groups.iter().any(|g| g == NODES_GROUP) {
        Ok(())
    } else {
        Err(refuse(
            Reason::MissingNodesGroup,
            format!(
                "requester {} is not in group {NODES_GROUP} (groups {:?})",
                csr.username, csr.groups
            ),
        ))
    }
}

/// The Machines the policy watches that name host `node` or are linked to Node `node`.
pub(super) fn admitted_machines<'a>(
    inventory: &'a Inventory,
    policy: &'a Policy,
    node: &'a str,
) -> impl Iterator<Item = &'a MachineInfo> {
    inventory
        .machines_for_node(node)
        .filter(|m| policy.machines.admits(&m.api_group, &m.namespace))
}

/// `delta` (from an instant to now) is at most `window`; instants in the future count.
pub(super) fn within(delta: SignedDuration, window: Duration) -> bool {
    Duration::try_from(delta).map_or(true, |d| d <= window)
}

pub(super) fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
