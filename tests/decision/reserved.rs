//! Reserved names and addresses (`src/decision/reserved.rs`): never a node's, even when
//! the node's own kubelet reports them. Each row names why.

use csr_approver::decision::Reason;
use csr_approver::inventory::EndpointSource;

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

/// The kubeadm API VIP (cluster-info's server) and controlPlaneEndpoint name, and OpenShift's
/// API names and VIPs: a node certified for one could pose as the API server to every
/// kubelet and kubeconfig that trusts the cluster CA.
#[test]
fn the_api_servers_own_endpoints_are_never_a_workers() {
    use EndpointSource::*;
    let vip = || serving("worker-1", w("worker-1").ip("10.0.0.11").ip("192.168.10.5"));
    let name = |n: &str| serving("worker-1", w("worker-1").ip("10.0.0.11").dns(n));
    check([
        Case::new(
            "kubeadm: the API VIP in cluster-info, which the worker writes into its status",
            worker1_reporting("192.168.10.5"),
            vip(),
        )
        .api_server_endpoint(ClusterInfo, "192.168.10.5")
        .waits(Reason::ReservedSan)
        .says("kube-public/cluster-info"),
        Case::new(
            "kubeadm: the controlPlaneEndpoint name",
            worker1_reporting("k8s-api.corp.example"),
            name("k8s-api.corp.example"),
        )
        .api_server_endpoint(KubeadmConfig, "k8s-api.corp.example")
        .waits(Reason::ReservedSan)
        .says("controlPlaneEndpoint"),
        Case::new(
            "OpenShift: api-int, and the ingress VIP",
            worker1_reporting("api-int.ocp.example.com"),
            name("api-int.ocp.example.com"),
        )
        .api_server_endpoint(Infrastructure, "api.ocp.example.com")
        .api_server_endpoint(Infrastructure, "api-int.ocp.example.com")
        .waits(Reason::ReservedSan)
        .says("OpenShift Infrastructure"),
        Case::new(
            "OpenShift: the ingress VIP",
            worker1_reporting("192.168.10.5"),
            vip(),
        )
        .api_server_endpoint(Infrastructure, "192.168.10.5")
        .waits(Reason::ReservedSan)
        .says("OpenShift Infrastructure"),
        Case::new(
            "an address no source records stays the worker's",
            worker1_reporting("192.168.10.5"),
            vip(),
        )
        .api_server_endpoint(ClusterInfo, "192.168.10.6")
        .approves(Reason::ServingAddressesVerified),
    ]);
}

/// Single-node OpenShift serves the API on its node's IP, and kubeadm without a
/// controlPlaneEndpoint records the first control-plane node's IP: a control-plane node
/// (a label its kubelet cannot set) keeps its own status address. A worker does not.
#[test]
fn a_control_plane_node_keeps_its_own_address_that_is_the_api_endpoint() {
    use EndpointSource::*;
    let sno = || {
        World::new().node(control_plane(node(
            "sno-1",
            &[("InternalIP", "192.168.10.5"), ("Hostname", "sno-1")],
        )))
    };
    let own_ip = || serving("sno-1", w("sno-1").dns("sno-1").ip("192.168.10.5"));
    check([
        Case::new("SNO: the API VIP is the node's own IP", sno(), own_ip())
            .api_server_endpoint(Infrastructure, "192.168.10.5")
            .approves(Reason::ServingAddressesVerified),
        Case::new(
            "kubeadm: cluster-info's server is the first control-plane node's IP",
            sno(),
            own_ip(),
        )
        .api_server_endpoint(ClusterInfo, "192.168.10.5")
        .approves(Reason::ServingAddressesVerified),
        Case::new(
            "the control-plane node may not take a VIP its status does not list",
            sno(),
            serving("sno-1", w("sno-1").ip("192.168.10.5").ip("192.168.10.7")),
        )
        .api_server_endpoint(Infrastructure, "192.168.10.7")
        .waits(Reason::ReservedSan)
        .says("192.168.10.7"),
        Case::new(
            "nor the API name, which its status does not list",
            sno(),
            serving("sno-1", w("sno-1").dns("api-int.sno.example.com")),
        )
        .api_server_endpoint(Infrastructure, "api-int.sno.example.com")
        .waits(Reason::ReservedSan),
        Case::new(
            "a worker reporting the VIP as its own is no control-plane node",
            worker1_reporting("192.168.10.5"),
            vip_for_worker(),
        )
        .api_server_endpoint(Infrastructure, "192.168.10.5")
        .waits(Reason::ReservedSan),
    ]);
}

fn vip_for_worker() -> crate::builders::Csr {
    serving("worker-1", w("worker-1").ip("192.168.10.5"))
}

/// `serving.reserved`: load balancers and ingress VIPs csr-approver cannot read.
#[test]
fn the_policy_reserves_more_names_and_ranges() {
    let policy = "serving: {reserved: {names: [lb.corp.example, '*.apps.corp.example'], ipRanges: [192.168.20.0/24]}}";
    check([
        Case::new(
            "a reserved name",
            worker1_reporting("lb.corp.example").policy_yaml(policy),
            serving("worker-1", w("worker-1").dns("lb.corp.example")),
        )
        .waits(Reason::ReservedSan)
        .says("serving.reserved.names (lb.corp.example)"),
        Case::new(
            "a name under a reserved domain",
            worker1_reporting("console.apps.corp.example").policy_yaml(policy),
            serving("worker-1", w("worker-1").dns("console.apps.corp.example")),
        )
        .waits(Reason::ReservedSan)
        .says("*.apps.corp.example"),
        Case::new(
            "an address in a reserved range, even a control-plane node's own",
            World::new()
                .node(control_plane(node(
                    "worker-1",
                    &[("InternalIP", "192.168.20.9")],
                )))
                .policy_yaml(policy),
            serving("worker-1", w("worker-1").ip("192.168.20.9")),
        )
        .waits(Reason::ReservedSan)
        .says("serving.reserved.ipRanges (192.168.20.0/24)"),
        Case::new(
            "outside them, the worker's own",
            worker1_reporting("192.168.21.9").policy_yaml(policy),
            serving("worker-1", w("worker-1").ip("192.168.21.9")),
        )
        .approves(Reason::ServingAddressesVerified),
    ]);
}
