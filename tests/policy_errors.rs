//! The policy format: defaults, every accepted field, and every kind of error, each naming
//! the field path.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use csr_approver::policy::{AddressSource, MaxNewNodes, MaxPending, Mode, Policy};

fn error_of(yaml: &str) -> (String, String) {
    let err = Policy::from_yaml(yaml).expect_err("policy must be rejected");
    (err.path, err.message)
}

#[track_caller]
fn assert_rejected(yaml: &str, path: &str, message_part: &str) {
    let (p, m) = error_of(yaml);
    assert_eq!(p, path, "path for {yaml:?} (message: {m})");
    assert!(
        m.contains(message_part),
        "message {m:?} should mention {message_part:?}"
    );
}

#[test]
fn empty_document_gives_safe_defaults() {
    let p = Policy::from_yaml("").expect("valid");
    assert_eq!(p.mode, Mode::Enforce);
    assert!(!p.deny);
    assert!(p.client.enabled && p.client.renewals && !p.client.allow_duplicates);
    assert_eq!(p.client.join_window.0.as_secs(), 7200);
    assert_eq!(p.client.max_pending, MaxPending::Auto);
    assert_eq!(p.client.bootstrappers.len(), 1);
    assert_eq!(
        p.client.bootstrappers[0].username.as_deref(),
        Some("system:serviceaccount:openshift-machine-config-operator:node-bootstrapper")
    );
    assert_eq!(
        p.serving.address_sources,
        [AddressSource::Machine, AddressSource::Node]
    );
    assert_eq!(p.serving.max_expiration_seconds, 31_622_400);
    assert_eq!(p.keys.min_rsa_bits, 2048);
    assert!(p.inventory.is_empty());
    assert_eq!(p.client.max_new_nodes_per_hour, MaxNewNodes::Auto);
    assert_eq!(p.serving.cluster_domain, "cluster.local");
    assert!(!p.serving.allow_loopback);
    assert_eq!(
        p.serving.kubelet_certificate_max_age.0.as_secs(),
        30 * 24 * 3600
    );
    // Machines: only OpenShift's, only from openshift-machine-api.
    assert_eq!(p.machines.api_groups, ["machine.openshift.io"]);
    assert!(
        p.machines
            .admits("machine.openshift.io", "openshift-machine-api")
    );
    assert!(!p.machines.admits("machine.openshift.io", "default"));
    assert!(
        !p.machines
            .admits("cluster.x-k8s.io", "openshift-machine-api")
    );
}

#[test]
fn machine_namespaces_are_named_per_api_group() {
    let p = Policy::from_yaml(
        "machines: {apiGroups: [machine.openshift.io, cluster.x-k8s.io], namespaces: {cluster.x-k8s.io: [capi]}}",
    )
    .expect("valid");
    assert!(p.machines.admits("cluster.x-k8s.io", "capi"));
    assert!(!p.machines.admits("cluster.x-k8s.io", "other"));
    // OpenShift keeps its default when not named.
    assert!(
        p.machines
            .admits("machine.openshift.io", "openshift-machine-api")
    );
}

#[test]
fn a_trusted_api_group_without_namespaces_is_rejected() {
    assert_rejected(
        "machines: {apiGroups: [cluster.x-k8s.io]}",
        "machines.namespaces.cluster.x-k8s.io",
        "no namespace is named",
    );
}

#[test]
fn every_namespace_wildcards_are_rejected() {
    assert_rejected(
        "machines: {namespaces: {machine.openshift.io: ['']}}",
        "machines.namespaces.machine.openshift.io",
        "not accepted",
    );
    assert_rejected(
        "machines: {namespaces: {machine.openshift.io: ['*']}}",
        "machines.namespaces.machine.openshift.io",
        "not accepted",
    );
}

#[test]
fn unknown_machine_api_group_is_rejected() {
    assert_rejected(
        "machines: {apiGroups: [machines.example.com]}",
        "machines.apiGroups[0]",
        "unknown Machine API group",
    );
}

#[test]
fn the_old_all_namespaces_field_is_rejected() {
    assert_rejected(
        "machines: {namespace: \"\"}",
        "machines.namespace",
        "unknown field",
    );
}

#[test]
fn invalid_cluster_domain_is_rejected() {
    assert_rejected(
        "serving: {clusterDomain: 'cluster..local'}",
        "serving.clusterDomain",
        "not a DNS name",
    );
}

#[test]
fn max_new_nodes_per_hour_is_auto_or_a_number() {
    let p = Policy::from_yaml("client: {maxNewNodesPerHour: 25}").expect("valid");
    assert_eq!(p.client.max_new_nodes_per_hour, MaxNewNodes::Fixed(25));
    assert_rejected(
        "client: {maxNewNodesPerHour: lots}",
        "client.maxNewNodesPerHour",
        "expected `auto`",
    );
}

#[test]
fn patterns_are_compiled_for_whole_names() {
    let p = Policy::from_yaml(
        "serving: {dnsNamePatterns: ['^a|b$']}\ninventory: [{namePattern: '^w-[0-9]+$'}]",
    )
    .expect("valid");
    let readings = p.pattern_readings();
    assert_eq!(
        readings,
        [
            "serving.dnsNamePatterns[0]: \"^a|b$\" matches whole names only, as ^(?:^a|b$)$",
            "inventory[0].namePattern: \"^w-[0-9]+$\" matches whole names only, as ^(?:^w-[0-9]+$)$",
        ]
    );
    let pattern = &p.serving.dns_name_patterns[0];
    assert!(pattern.is_match("a") && pattern.is_match("b"));
    assert!(!pattern.is_match("ab") && !pattern.is_match("a.evil") && !pattern.is_match("evil.b"));
}

#[test]
fn inventory_names_and_addresses_are_not_trimmed_into_validity() {
    assert_rejected(
        "inventory: [{name: ' worker-1'}]",
        "inventory[0]",
        "not a valid DNS-1123 node name",
    );
    assert_rejected(
        "inventory: [{name: worker-1, addresses: [' 10.0.0.1']}]",
        "inventory[0].addresses[0]",
        "neither an IP address nor a DNS name",
    );
}

#[test]
fn the_design_example_parses() {
    let yaml = r#"
mode: enforce
deny: false
client:
  enabled: true
  bootstrappers:
    - username: system:serviceaccount:openshift-machine-config-operator:node-bootstrapper
    - group: system:bootstrappers
  renewals: true
  joinWindow: 2h
  allowDuplicates: false
  maxPending: auto
  maxNewNodesPerHour: 50
serving:
  enabled: true
  addressSources: [Machine, Node]
  allowedIPRanges: [10.0.0.0/8, fd00::/8]
  dnsNamePatterns: ['^worker-[0-9]+\.example\.com$']
  maxExpirationSeconds: 31622400
  clusterDomain: cluster.local
  allowLoopback: false
machines:
  apiGroups: [machine.openshift.io, cluster.x-k8s.io]
  namespaces:
    cluster.x-k8s.io: [capi-workers]
inventory:
  - name: worker-0.example.com
    addresses: [10.1.101.50]
  - namePattern: '^worker-[0-9]+\.example\.com$'
    ipRanges: [10.1.101.0/24]
keys:
  minRSABits: 2048
"#;
    let p = Policy::from_yaml(yaml).expect("design example is valid");
    assert_eq!(p.client.bootstrappers.len(), 2);
    assert_eq!(p.serving.allowed_ip_ranges.len(), 2);
    assert_eq!(p.inventory.len(), 2);
}

#[test]
fn dry_run_mode_and_fixed_max_pending_parse() {
    let p = Policy::from_yaml("mode: dry-run\nclient: {maxPending: 250}").expect("valid");
    assert!(p.is_dry_run());
    assert_eq!(p.client.max_pending, MaxPending::Fixed(250));
}

#[test]
fn unknown_top_level_field_is_named() {
    assert_rejected("denny: true", "denny", "unknown field `denny`");
}

#[test]
fn unknown_nested_field_is_named_with_its_path() {
    assert_rejected(
        "client: {joinWindwo: 1h}",
        "client.joinWindwo",
        "unknown field `joinWindwo`",
    );
}

#[test]
fn unknown_inventory_field_is_named() {
    assert_rejected(
        "inventory: [{name: a, adresses: [10.0.0.1]}]",
        "inventory[0].adresses",
        "line 1",
    );
}

#[test]
fn bad_mode_is_rejected() {
    assert_rejected("mode: yolo", "mode", "yolo");
}

#[test]
fn bad_boolean_is_rejected() {
    assert_rejected("deny: maybe", "deny", "");
}

#[test]
fn bad_cidr_is_rejected_with_index() {
    assert_rejected(
        "serving: {allowedIPRanges: [10.0.0.0/8, 10.0.0.300/24]}",
        "serving.allowedIPRanges[1]",
        "invalid CIDR",
    );
}

#[test]
fn cidr_without_prefix_is_rejected() {
    assert_rejected(
        "serving: {allowedIPRanges: [10.0.0.1]}",
        "serving.allowedIPRanges[0]",
        "invalid CIDR",
    );
}

#[test]
fn cidr_with_host_bits_is_rejected() {
    assert_rejected(
        "serving: {allowedIPRanges: [10.0.0.1/8]}",
        "serving.allowedIPRanges[0]",
        "host bits",
    );
}

#[test]
fn bad_inventory_ip_range_is_rejected() {
    assert_rejected(
        "inventory: [{namePattern: '^a$', ipRanges: [nope]}]",
        "inventory[0].ipRanges[0]",
        "invalid CIDR",
    );
}

#[test]
fn unanchored_dns_pattern_is_rejected() {
    assert_rejected(
        "serving: {dnsNamePatterns: ['worker-.*']}",
        "serving.dnsNamePatterns[0]",
        "anchored",
    );
}

#[test]
fn half_anchored_pattern_is_rejected() {
    assert_rejected(
        "serving: {dnsNamePatterns: ['^worker-.*']}",
        "serving.dnsNamePatterns[0]",
        "anchored",
    );
}

#[test]
fn escaped_dollar_is_not_an_anchor() {
    assert_rejected(
        r"inventory: [{namePattern: '^worker\$'}]",
        "inventory[0].namePattern",
        "anchored",
    );
}

#[test]
fn invalid_regex_is_rejected() {
    assert_rejected(
        "inventory: [{namePattern: '^worker-[0-9$'}]",
        "inventory[0].namePattern",
        "invalid regular expression",
    );
}

#[test]
fn negative_duration_is_rejected() {
    assert_rejected("client: {joinWindow: -1h}", "client.joinWindow", "negative");
}

#[test]
fn unparseable_duration_is_rejected() {
    assert_rejected(
        "client: {joinWindow: soon}",
        "client.joinWindow",
        "invalid duration",
    );
}

#[test]
fn negative_max_pending_is_rejected() {
    assert_rejected(
        "client: {maxPending: -5}",
        "client.maxPending",
        "non-negative",
    );
}

#[test]
fn word_max_pending_other_than_auto_is_rejected() {
    assert_rejected("client: {maxPending: lots}", "client.maxPending", "lots");
}

#[test]
fn negative_expiration_is_rejected() {
    assert_rejected(
        "serving: {maxExpirationSeconds: -1}",
        "serving.maxExpirationSeconds",
        "",
    );
}

#[test]
fn rsa_floor_below_2048_is_rejected() {
    assert_rejected("keys: {minRSABits: 1024}", "keys.minRSABits", "below 2048");
}

#[test]
fn unknown_key_type_is_rejected() {
    assert_rejected("keys: {types: [DSA]}", "keys.types[0]", "DSA");
}

#[test]
fn unknown_address_source_is_rejected() {
    assert_rejected(
        "serving: {addressSources: [Machine, DNS]}",
        "serving.addressSources[1]",
        "DNS",
    );
}

#[test]
fn bootstrapper_with_both_username_and_group_is_rejected() {
    assert_rejected(
        "client: {bootstrappers: [{username: a, group: b}]}",
        "client.bootstrappers[0]",
        "either",
    );
}

#[test]
fn empty_bootstrapper_is_rejected() {
    assert_rejected(
        "client: {bootstrappers: [{}]}",
        "client.bootstrappers[0]",
        "username",
    );
}

#[test]
fn groups_with_group_bootstrapper_is_rejected() {
    assert_rejected(
        "client: {bootstrappers: [{group: g, groups: [x]}]}",
        "client.bootstrappers[0]",
        "only valid together with `username`",
    );
}

#[test]
fn inventory_entry_needs_a_name_or_pattern() {
    assert_rejected(
        "inventory: [{addresses: [10.0.0.1]}]",
        "inventory[0]",
        "needs `name` or `namePattern`",
    );
}

#[test]
fn inventory_entry_with_name_and_pattern_is_rejected() {
    assert_rejected(
        "inventory: [{name: a, namePattern: '^a$'}]",
        "inventory[0]",
        "not both",
    );
}

#[test]
fn inventory_pattern_with_addresses_is_rejected() {
    assert_rejected(
        "inventory: [{namePattern: '^a$', addresses: [10.0.0.1]}]",
        "inventory[0]",
        "addresses",
    );
}

#[test]
fn inventory_name_must_be_a_node_name() {
    assert_rejected(
        "inventory: [{name: 'worker_1'}]",
        "inventory[0]",
        "DNS-1123",
    );
}

#[test]
fn inventory_address_must_be_ip_or_dns() {
    assert_rejected(
        "inventory: [{name: a, addresses: ['not an address!']}]",
        "inventory[0].addresses[0]",
        "neither an IP",
    );
}

#[test]
fn not_yaml_is_rejected() {
    let (_, message) = error_of("client: [unclosed");
    assert!(!message.is_empty());
}

#[test]
fn a_list_instead_of_a_map_is_rejected() {
    let (path, _) = error_of("- mode: enforce");
    assert_eq!(path, "(document)");
}

#[test]
fn a_serialised_policy_parses_back_to_the_same_policy() {
    // Found by the policy_yaml fuzz target: `auto` was written back as `Auto`.
    for yaml in [
        "",
        "client: {maxPending: 7, maxNewNodesPerHour: 3}",
        "serving: {dnsNamePatterns: ['^a|b$']}\nmachines: {apiGroups: [cluster.x-k8s.io], namespaces: {cluster.x-k8s.io: [capi]}}",
    ] {
        let policy = Policy::from_yaml(yaml).expect("valid");
        let written = serde_saphyr::to_string(&policy).expect("serialises");
        let again = Policy::from_yaml(&written)
            .unwrap_or_else(|e| panic!("{yaml:?} written as\n{written}\ndoes not parse back: {e}"));
        assert_eq!(serde_saphyr::to_string(&again).unwrap(), written);
    }
}

#[test]
fn inventory_addresses_that_are_ip_literals_in_disguise_are_rejected() {
    assert_rejected(
        "inventory: [{name: worker-1, addresses: ['10.0.0.1.']}]",
        "inventory[0].addresses[0]",
        "neither an IP address nor a DNS name",
    );
}

#[test]
fn a_duplicate_key_is_named_with_its_path() {
    // serde-saphyr's own message names no field (`?`) and points at its options.
    assert_rejected(
        "client:\n  joinWindow: 1h\n  joinWindow: 2h\n",
        "client.joinWindow",
        "`joinWindow` is given twice in the same mapping (again at line 3, column 3)",
    );
    assert_rejected("deny: true\ndeny: false\n", "deny", "given twice");
    assert_rejected(
        "inventory:\n  - name: a\n    name: b\n",
        "inventory[0].name",
        "given twice",
    );
    let (_, message) = error_of("deny: true\ndeny: false\n");
    assert!(!message.contains("DuplicateKeyPolicy"), "{message}");
}

#[test]
fn a_recovery_window_that_forgets_is_rejected() {
    assert_rejected(
        "client: {recovery: {window: 0s}}",
        "client.recovery.window",
        "0s",
    );
    assert_rejected(
        "client: {recovery: {enabled: true, window: 30m}}",
        "client.recovery.window",
        "shorter than 1h",
    );
    assert_rejected(
        "client: {recovery: {enabled: true, offlineFor: 6h, window: 2h}}",
        "client.recovery.window",
        "client.recovery.offlineFor",
    );
    for ok in [
        "client: {recovery: {enabled: true, window: 1h}}",
        "client: {recovery: {enabled: true, offlineFor: 2h, window: 2h}}",
        // Off, a short window decides nothing.
        "client: {recovery: {window: 10m}}",
    ] {
        Policy::from_yaml(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
}

/// §8: a bound on how long the kubelet's own certificate renews its addresses that
/// bounds nothing (0s), or hardly anything (over a year), is refused, naming the field.
#[test]
fn a_kubelet_certificate_max_age_that_bounds_nothing_is_rejected() {
    let field = "serving.kubeletCertificateMaxAge";
    assert_rejected(
        "serving: {kubeletCertificateMaxAge: 0s}",
        field,
        "0s bounds nothing",
    );
    assert_rejected(
        "serving: {addressSources: [Node, KubeletCertificate], kubeletCertificateMaxAge: 0s}",
        field,
        "0s bounds nothing",
    );
    assert_rejected(
        "serving: {kubeletCertificateMaxAge: 30m}",
        field,
        "shorter than 1h",
    );
    assert_rejected(
        "serving: {kubeletCertificateMaxAge: 9000h}",
        field,
        "longer than 8760h",
    );
    let (path, message) = error_of("serving: {kubeletCertificateMaxAge: -1h}");
    assert!(path.starts_with(field), "{path}");
    assert!(message.contains("negative"), "{message}");
    for ok in ["1h", "720h", "8760h", "30d"] {
        let yaml = format!(
            "serving: {{addressSources: [Node, KubeletCertificate], kubeletCertificateMaxAge: {ok}}}"
        );
        Policy::from_yaml(&yaml).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
}

#[test]
fn a_join_window_too_short_to_join_in_is_rejected() {
    assert_rejected("client: {joinWindow: 0s}", "client.joinWindow", "0s");
    assert_rejected(
        "client: {joinWindow: 5m}",
        "client.joinWindow",
        "shorter than 10m",
    );
    Policy::from_yaml("client: {joinWindow: 10m}").expect("valid");
}

#[test]
fn bootstrappers_that_mean_everyone_are_rejected() {
    for group in [
        "system:authenticated",
        "system:unauthenticated",
        "system:serviceaccounts",
        "system:nodes",
        "system:masters",
        "system:cluster-admins",
    ] {
        assert_rejected(
            &format!("client: {{bootstrappers: [{{username: u}}, {{group: '{group}'}}]}}"),
            "client.bootstrappers[1].group",
            group,
        );
    }
    for user in ["system:anonymous", "system:admin"] {
        assert_rejected(
            &format!("client: {{bootstrappers: [{{username: '{user}'}}]}}"),
            "client.bootstrappers[0].username",
            user,
        );
    }
    // Narrowing a named user by such a group is what the OpenShift default does.
    for ok in [
        "client: {bootstrappers: [{group: 'system:bootstrappers'}]}",
        "client: {bootstrappers: [{group: 'system:serviceaccounts:openshift-machine-config-operator'}]}",
        "client: {bootstrappers: [{username: u, groups: ['system:authenticated', 'system:serviceaccounts']}]}",
    ] {
        Policy::from_yaml(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
}

#[test]
fn an_inventory_pattern_matching_every_name_is_rejected() {
    for pattern in ["^.*$", "^.+$", "^[a-z0-9.-]+$", "^[^/]*$"] {
        assert_rejected(
            &format!("inventory: [{{name: a}}, {{namePattern: '{pattern}'}}]"),
            "inventory[1].namePattern",
            "every",
        );
    }
    Policy::from_yaml("inventory: [{namePattern: '^worker-[0-9]+$'}]").expect("valid");
}

#[test]
fn serving_reserved_names_and_ranges_are_validated_with_their_path() {
    let p = Policy::from_yaml(
        "serving: {reserved: {names: [LB.Example.com., '*.apps.example.com'], ipRanges: [192.168.10.0/28]}}",
    )
    .expect("valid");
    assert!(p.serving.reserved.names[0].matches("lb.example.com"));
    assert!(p.serving.reserved.names[1].matches("console.apps.example.com"));
    assert_eq!(p.serving.reserved.ip_ranges.len(), 1);
    assert!(Policy::default().serving.reserved.names.is_empty());
    assert_rejected(
        "serving: {reserved: {names: [ok.example.com, 'bad_name.example.com']}}",
        "serving.reserved.names[1]",
        "not a DNS name",
    );
    assert_rejected(
        "serving: {reserved: {names: ['*']}}",
        "serving.reserved.names[0]",
        "*.<domain>",
    );
    assert_rejected(
        "serving: {reserved: {ipRanges: [192.168.10.1/24]}}",
        "serving.reserved.ipRanges[0]",
        "",
    );
    assert_rejected(
        "serving: {reserved: {ranges: []}}",
        "serving.reserved.ranges",
        "unknown field",
    );
}
