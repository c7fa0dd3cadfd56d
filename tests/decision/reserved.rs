//! Reserved names and addresses (`src/decision/reserved.rs`): never a node's, even when
//! the node's own kubelet reports them. Each row names why.

use csr_approver::decision::Reason;

use crate::builders::*;
use crate::scenes::*;
use crate::{Case, check};

/// worker-1 whose own kubelet reports `claimed` as one of its addresses: the reservation
/// must hold even for an address the node "owns".
fn worker1_reporting(claimed: &str) -> World {
    World::new().node(node(
        "worker-1",
        &[
            ("InternalIP", "10.0.0.11"),
            ("InternalDNS", claimed),
            ("InternalIP", claimed),
        ],
    ))
}

/// worker-1 asking for DNS name `name` beside its own IP; it reports the name.
fn reserved_name(name: &str, why: &str) -> Case {
    Case::new(
        name,
        worker1_reporting(name),
        serving("worker-1", w("worker-1").ip("10.0.0.11").dns(name)),
    )
    .waits(Reason::ReservedSan)
    .says(why)
}

/// worker-1 asking for IP `ip`, which it reports.
fn reserved_ip(ip: &str, why: &str) -> Case {
    Case::new(
        ip,
        worker1_reporting(ip),
        serving("worker-1", w("worker-1").ip(ip)),
    )
    .waits(Reason::ReservedSan)
    .says(why)
}

#[test]
fn reserved_names_are_never_a_nodes() {
    let api = "the API server's in-cluster name";
    let domain = "under the cluster domain cluster.local";
    check([
        reserved_name("localhost", "localhost"),
        reserved_name("api.localhost", "localhost"),
        reserved_name("kubernetes", api),
        reserved_name("kubernetes.default", api),
        reserved_name("kubernetes.default.svc", api),
        reserved_name("kubernetes.default.svc.cluster.local", "under .svc"),
        reserved_name("my-db.prod.svc", "under .svc"),
        reserved_name("anything.cluster.local", domain),
        reserved_name("cluster.local", domain),
        reserved_name("Kubernetes.Default.SVC.", api),
    ]);
}

#[test]
fn loopback_aliases_are_never_a_nodes() {
    let hosts = "loopback or /etc/hosts name";
    check([
        reserved_name("localhost.localdomain", hosts),
        reserved_name("localhost4.localdomain4", hosts),
        reserved_name("localhost6", hosts),
        reserved_name("localhost6.localdomain6", hosts),
        reserved_name("ip6-localhost", hosts),
        reserved_name("ip6-loopback", hosts),
        reserved_name("ip6-allnodes", hosts),
        reserved_name("LocalHost.LocalDomain.", hosts),
    ]);
}

#[test]
fn only_service_names_are_reserved_not_zones_named_svc() {
    let own = |name: &str| {
        Case::new(
            name,
            worker1_reporting(name),
            serving("worker-1", w("worker-1").ip("10.0.0.11").dns(name)),
        )
    };
    check([
        own("w1.svc.corp.example")
            .approves(Reason::ServingAddressesVerified)
            .says("w1.svc.corp.example"),
        own("worker-1.svc.example").approves(Reason::ServingAddressesVerified),
        own("svc.corp.example").approves(Reason::ServingAddressesVerified),
        reserved_name("db.prod.svc", "under .svc"),
        reserved_name("db.prod.svc.cluster.local", "under .svc.cluster.local"),
        reserved_name("svc.cluster.local", "under .svc.cluster.local"),
    ]);
}

#[test]
fn an_ipv4_address_embedded_in_ipv6_is_reserved_as_the_ipv4_address() {
    check([
        reserved_ip("64:ff9b::127.0.0.1", "NAT64 64:ff9b::/96 form of 127.0.0.1"),
        reserved_ip("64:ff9b::a9fe:a9fe", "link-local"),
        reserved_ip("64:ff9b:1::169.254.169.254", "local-use NAT64"),
        reserved_ip("64:ff9b::0.0.0.0", "unspecified"),
        reserved_ip("64:ff9b::255.255.255.255", "broadcast"),
        reserved_ip("2002:7f00:1::1", "6to4 2002::/16 form of 127.0.0.1"),
        reserved_ip("2002:a9fe:a9fe::10", "link-local"),
        reserved_ip("::127.0.0.1", "IPv4-compatible"),
        reserved_ip("::224.0.0.1", "multicast"),
    ]);
}

#[test]
fn the_kubernetes_service_ip_is_reserved_in_every_embedding() {
    let asks = |ip: &str| {
        Case::new(
            ip,
            worker1_reporting(ip),
            serving("worker-1", w("worker-1").ip(ip)),
        )
        .kubernetes_service_ip("172.30.0.1")
        .waits(Reason::ReservedSan)
        .says("kubernetes Service's ClusterIP")
    };
    check([
        asks("64:ff9b::172.30.0.1"),
        asks("64:ff9b:1::ac1e:1"),
        asks("2002:ac1e:1::1"),
        asks("::172.30.0.1"),
        asks("::ffff:172.30.0.1"),
    ]);
}

#[test]
fn the_cluster_domain_is_a_policy_field() {
    let own = || serving("worker-1", w("worker-1").dns("worker-1.corp.internal"));
    check([
        Case::new(
            "a custom cluster domain is reserved",
            worker1_reporting("worker-1.corp.internal")
                .policy_yaml("serving: {clusterDomain: corp.internal}"),
            own(),
        )
        .waits(Reason::ReservedSan)
        .says("under the cluster domain corp.internal"),
        Case::new(
            "outside it, the same shape of name is a node's",
            worker1_reporting("worker-1.corp.internal"),
            own(),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("worker-1.corp.internal"),
    ]);
}

#[test]
fn reserved_ips_are_never_a_nodes() {
    check([
        reserved_ip("0.0.0.0", "unspecified"),
        reserved_ip("0.1.2.3", "unspecified"),
        reserved_ip("::", "unspecified"),
        reserved_ip("127.0.0.1", "loopback"),
        reserved_ip("127.0.0.2", "loopback"),
        reserved_ip("::1", "loopback"),
        reserved_ip("::ffff:127.0.0.1", "loopback"),
        reserved_ip("169.254.169.254", "link-local"),
        reserved_ip("fe80::1", "link-local"),
        reserved_ip("224.0.0.1", "multicast"),
        reserved_ip("ff02::1", "multicast"),
        reserved_ip("255.255.255.255", "broadcast"),
    ]);
}

#[test]
fn loopback_is_allowed_only_by_the_development_switch() {
    let allow = "serving: {allowLoopback: true}";
    let world = worker1_reporting("127.0.0.2").policy_yaml(allow);
    let loopback = || serving("worker-1", w("worker-1").ip("127.0.0.2"));
    check([
        Case::new(
            "allowLoopback lets a loopback node have its address",
            world.clone(),
            loopback(),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("127.0.0.2"),
        Case::new(
            "allowLoopback does not turn off link-local",
            worker1_reporting("169.254.0.1").policy_yaml(allow),
            serving("worker-1", w("worker-1").ip("169.254.0.1")),
        )
        .waits(Reason::ReservedSan)
        .says("link-local"),
        Case::new(
            "allowLoopback does not turn off ownership",
            world.node(node("worker-2", &[("InternalIP", "127.0.0.2")])),
            loopback(),
        )
        .waits(Reason::AddressConflict)
        .says("worker-2"),
    ]);
}

#[test]
fn the_kubernetes_service_cluster_ip_is_never_a_nodes() {
    let world = worker1_reporting("172.30.0.1");
    let csr = || serving("worker-1", w("worker-1").ip("172.30.0.1"));
    check([
        Case::new(
            "an address the kubernetes Service does not hold",
            world.clone(),
            csr(),
        )
        .approves(Reason::ServingAddressesVerified),
        Case::new("the kubernetes Service's ClusterIP", world, csr())
            .kubernetes_service_ip("172.30.0.1")
            .waits(Reason::ReservedSan)
            .says("kubernetes Service"),
    ]);
}
