//! Names and addresses that are never a node's, whoever claims them: the API server's
//! in-cluster names and Service IP, Service and cluster-domain names, localhost, and IPs
//! that identify no host (unspecified, link-local, multicast, broadcast; loopback unless
//! the policy allows it for development clusters). A serving certificate may moreover
//! carry none of the API server's endpoints the cluster records (kubeadm's
//! `controlPlaneEndpoint` and `cluster-info` server, OpenShift's API and ingress URLs and
//! VIPs) nor the policy's `serving.reserved`: a certificate for them, signed by the CA
//! that clients trust for the API server, would let a node pose as the API server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::inventory::{Inventory, NodeInfo};
use crate::policy::Policy;
use crate::vocabulary::{AddressValue, canonical_dns_name};

/// The `default/kubernetes` Service's names, as pods resolve them.
const API_SERVER_NAMES: [&str; 3] = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"];

/// Why `value` may never be certified for a node, or `None` when it may.
pub fn why_reserved(
    value: &AddressValue,
    inventory: &Inventory,
    policy: &Policy,
) -> Option<String> {
    match value {
        AddressValue::Dns(name) => reserved_name(name, &policy.serving.cluster_domain),
        AddressValue::Ip(ip) => reserved_ip(*ip, inventory, policy.serving.allow_loopback),
        AddressValue::Invalid(_) => Some("not a valid address".to_string()),
    }
}

/// Why serving SAN `value` may never be certified for `node`, or `None` when it may: what
/// [`why_reserved`] says, then the API server's endpoints and `serving.reserved`.
///
/// One exception, for the API server's endpoint addresses only: a control-plane node (a
/// label its kubelet cannot set) keeps an address its own Node status lists. Single-node
/// OpenShift serves the API on its node's IP, and a kubeadm cluster without a
/// `controlPlaneEndpoint` records its first control-plane node's IP as the server. A
/// worker that writes the VIP into its own status stays refused.
pub fn why_reserved_san(
    value: &AddressValue,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Option<String> {
    if let Some(why) = why_reserved(value, inventory, policy) {
        return Some(why);
    }
    if let Some(why) = reserved_by_policy(value, policy) {
        return Some(why);
    }
    let source = inventory.api_server_endpoints().source_of(value)?;
    if inventory
        .node(node)
        .is_some_and(|own| own_control_plane_address(own, value))
    {
        return None;
    }
    Some(source.describe().to_string())
}

/// Whether `value` is one of control-plane node `node`'s own status addresses (names as
/// well as IPs: a control-plane host may be the endpoint under its own name).
fn own_control_plane_address(node: &NodeInfo, value: &AddressValue) -> bool {
    node.control_plane
        && (node.addresses.iter().any(|a| a.value == *value)
            || matches!(value, AddressValue::Dns(name) if **name == *node.name))
}

fn reserved_by_policy(value: &AddressValue, policy: &Policy) -> Option<String> {
    let reserved = &policy.serving.reserved;
    match value {
        AddressValue::Dns(name) => reserved
            .names
            .iter()
            .find(|r| r.matches(name))
            .map(|r| format!("reserved by serving.reserved.names ({})", r.as_written())),
        AddressValue::Ip(ip) => reserved
            .ip_ranges
            .iter()
            .find(|range| range.contains(*ip))
            .map(|range| format!("reserved by serving.reserved.ipRanges ({range})")),
        AddressValue::Invalid(_) => None,
    }
}

fn reserved_name(name: &str, cluster_domain: &str) -> Option<String> {
    let under = |domain: &str| name == domain || name.ends_with(&format!(".{domain}"));
    if under("localhost") {
        return Some("localhost".to_string());
    }
    if API_SERVER_NAMES.contains(&name) {
        return Some("the API server's in-cluster name".to_string());
    }
    if name.ends_with(".svc") || name.contains(".svc.") {
        return Some("a Service name (under .svc)".to_string());
    }
    match canonical_dns_name(cluster_domain) {
        Some(domain) if under(&domain) => Some(format!("under the cluster domain {domain}")),
        Some(_) => None,
        // An unreadable cluster domain cannot be told apart: refuse rather than guess.
        None => Some(format!(
            "not checkable against cluster domain {cluster_domain:?}"
        )),
    }
}

fn reserved_ip(ip: IpAddr, inventory: &Inventory, allow_loopback: bool) -> Option<String> {
    if inventory.kubernetes_service_ips().contains(&ip) {
        return Some("the kubernetes Service's ClusterIP".to_string());
    }
    let why = match ip {
        IpAddr::V4(v4) => reserved_v4(v4, allow_loopback),
        IpAddr::V6(v6) => reserved_v6(v6, allow_loopback),
    };
    why.map(str::to_string)
}

fn reserved_v4(ip: Ipv4Addr, allow_loopback: bool) -> Option<&'static str> {
    if ip.octets()[0] == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if ip.is_loopback() && !allow_loopback {
        Some("loopback (set serving.allowLoopback for development clusters)")
    } else if ip.is_link_local() {
        Some("link-local (169.254.0.0/16)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

fn reserved_v6(ip: Ipv6Addr, allow_loopback: bool) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("unspecified (::)")
    } else if ip.is_loopback() && !allow_loopback {
        Some("loopback (set serving.allowLoopback for development clusters)")
    } else if ip.is_unicast_link_local() {
        Some("link-local (fe80::/10)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}
