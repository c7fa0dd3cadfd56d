//! The checks every kubelet CSR passes, client or serving, before its own family's rules:
//!
//! 1. The key type is one `keys.types` allows, and an RSA key has at least
//!    `keys.minRSABits` bits (`UnsupportedKey`, `WeakKey`).
//! 2. `spec.expirationSeconds`, when set, is at most the signer's `maxExpirationSeconds`
//!    (`ExpirationTooLong`).
//! 3. The subject O is exactly `system:nodes` (`BadOrganization`).
//! 4. The subject has exactly one CN, `system:node:<name>`, with a valid node name exactly
//!    as written and not a reserved one (`BadCommonName`).
//!
//! Parsing (canonical DER, one PEM block, a signature that verifies) happens before, in
//! `request`. Also here: small helpers the rule families share.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use jiff::SignedDuration;

use super::{CsrFacts, Reason, Refusal, refuse, reserved};
use crate::inventory::{Inventory, MachineInfo};
use crate::policy::{KeyType, Policy};
use crate::request::{KeyAlgorithm, ParsedRequest};
use crate::vocabulary::{
    AddressValue, NODE_USER_PREFIX, NODES_GROUP, Signer, is_dns1123_subdomain,
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
            match reserved::why_reserved(&AddressValue::Dns(name.to_string()), inventory, policy) {
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
