//! Names and addresses that are never a node's, whoever claims them: the API server's
//! in-cluster names and Service IP, Service and cluster-domain names, localhost, and IPs
//! that identify no host (unspecified, link-local, multicast, broadcast; loopback unless
//! the policy allows it for development clusters).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::inventory::Inventory;
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
