//! Names and addresses that are never a node's, whoever claims them: the API server's
//! in-cluster names and Service IP, Service and cluster-domain names, localhost and the
//! other names `/etc/hosts` gives the loopback and multicast addresses, and IPs that
//! identify no host (unspecified, link-local, multicast, broadcast; loopback unless the
//! policy allows it for development clusters). An IPv6 address that embeds an IPv4
//! address (NAT64, 6to4, IPv4-compatible) is reserved when either is.
//! A serving certificate may moreover carry none of the API server's endpoints the
//! cluster records (kubeadm's `controlPlaneEndpoint` and `cluster-info` server,
//! OpenShift's API and ingress URLs and VIPs) nor the policy's `serving.reserved`, in any
//! form: a certificate for them, signed by the CA that clients trust for the API server,
//! would let a node pose as the API server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::inventory::{Inventory, NodeInfo};
use crate::policy::Policy;
use crate::vocabulary::{AddressValue, canonical_dns_name, embedded_ipv4};

/// The `default/kubernetes` Service's names, as pods resolve them.
const API_SERVER_NAMES: [&str; 3] = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"];

/// First labels of the names distributions' `/etc/hosts` gives the loopback address
/// (`localhost.localdomain`, `localhost6.localdomain6`, `ip6-localhost`, …) and IPv6
/// multicast groups (`ip6-allnodes`, …): resolved locally on every host, so a certificate
/// for one is a certificate for whatever host dials it. A bare-metal host without a DHCP
/// name reports `localhost.localdomain` as its name — shared by every such host.
const HOSTS_FILE_LABELS: [&str; 10] = [
    "localhost",
    "localhost4",
    "localhost6",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
];

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
    // An IPv6 form embedding an IPv4 address is reserved when the IPv4 address is.
    let embedded = match value {
        AddressValue::Ip(ip) => embedded_ipv4(*ip).map(|(v4, _)| AddressValue::Ip(v4.into())),
        _ => None,
    };
    let forms = || std::iter::once(value).chain(embedded.as_ref());
    if let Some(why) = forms().find_map(|form| reserved_by_policy(form, policy)) {
        return Some(why);
    }
    let source = forms().find_map(|form| inventory.api_server_endpoints().source_of(form))?;
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
    // `localhost` and anything under it (RFC 6761 §6.3); the /etc/hosts names with what
    // any domain after them.
    let first_label = name.split('.').next().unwrap_or(name);
    if under("localhost") || HOSTS_FILE_LABELS.contains(&first_label) {
        return Some(format!(
            "a loopback or /etc/hosts name ({first_label}), resolved locally on every host"
        ));
    }
    if API_SERVER_NAMES.contains(&name) {
        return Some("the API server's in-cluster name".to_string());
    }
    // What a pod's resolver completes to a Service: `<service>.<namespace>.svc` and names
    // under `svc.<cluster domain>` (below). A zone named `svc` elsewhere
    // (`w1.svc.corp.example`) is an ordinary domain.
    if name.ends_with(".svc") {
        return Some("a Service name (under .svc)".to_string());
    }
    match canonical_dns_name(cluster_domain) {
        Some(domain) if under(&format!("svc.{domain}")) => Some(format!(
            "a Service name (under .svc.{domain}, the cluster domain)"
        )),
        Some(domain) if under(&domain) => Some(format!("under the cluster domain {domain}")),
        Some(_) => None,
        // An unreadable cluster domain cannot be told apart: refuse rather than guess.
        None => Some(format!(
            "not checkable against cluster domain {cluster_domain:?}"
        )),
    }
}

/// `ip`, and the IPv4 address it embeds if any, each checked: a NAT64 or 6to4 form of a
/// reserved IPv4 address reaches that address.
fn reserved_ip(ip: IpAddr, inventory: &Inventory, allow_loopback: bool) -> Option<String> {
    if let Some(why) = reserved_as_written(ip, inventory, allow_loopback) {
        return Some(why);
    }
    let (v4, embedding) = embedded_ipv4(ip)?;
    reserved_as_written(IpAddr::V4(v4), inventory, allow_loopback)
        .map(|why| format!("the {embedding} form of {v4}, which is {why}"))
}

fn reserved_as_written(ip: IpAddr, inventory: &Inventory, allow_loopback: bool) -> Option<String> {
    let value = AddressValue::Ip(ip);
    if inventory
        .kubernetes_service_ips()
        .iter()
        .any(|service| AddressValue::Ip(*service).is_alias_of(&value))
    {
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
