#!/usr/bin/env python3
"""Assertions on rendered csr-approver manifests (called by scripts/test-manifests.sh).

Subcommands:
  compare KUSTOMIZE HELM            deploy/ and the chart (default values) say the same thing
  monitoring KUSTOMIZE_MON HELM     deploy/monitoring/ and the chart's monitoring objects agree
  non-default HELM                  the chart with ci/non-default-values.yaml honours them
  minimal HELM                      replicas=1, leader election off: no PDB, no Lease rights
  no-monitoring HELM                without monitoring.coreos.com/v1: no ServiceMonitor/Rule
  crds DIR KUSTOMIZE_MON            CRD fixtures parse and serve the kinds deploy/monitoring uses
  dockerfile REPO                   Dockerfile/.dockerignore invariants
  readme-values VALUES README       every value is in the chart README's table, and vice versa
  docs-metrics PROMRULE DOC [SRC]   every alert and metric (rules, src/metrics.rs) is in DOC
  extract-rules PROMETHEUSRULE OUT  write a PrometheusRule's spec as a plain rules file
  extract-policy RENDER OUT         write the policy.yaml of the rendered policy ConfigMap

Each assertion prints PASS/FAIL; the exit status is 1 if any failed.
"""

import fnmatch
import os
import re
import sys

import yaml

NAMESPACE = "csr-approver"
FAILED = []
PASSED = []


def check(name, ok, detail=""):
    if ok:
        PASSED.append(name)
        print(f"  PASS {name}")
    else:
        FAILED.append(name)
        print(f"  FAIL {name}")
        if detail:
            for line in str(detail).splitlines():
                print(f"       {line}")


def check_equal(name, left, right, left_name="kustomize", right_name="helm"):
    detail = ""
    if left != right:
        detail = (
            f"{left_name}:\n{yaml.safe_dump(left, sort_keys=True)}"
            f"{right_name}:\n{yaml.safe_dump(right, sort_keys=True)}"
        )
    check(name, left == right, detail)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind, name=None, namespace=None):
    found = [
        d
        for d in by_kind(docs, kind)
        if (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    if len(found) != 1:
        raise SystemExit(
            f"expected exactly one {kind} name={name} namespace={namespace}, found {len(found)}"
        )
    return found[0]


def rule_atoms(rules):
    """Expands RBAC rules into (group, resource, verb, resourceName) atoms, so that two rule
    lists granting the same rights compare equal however the rules are grouped."""
    atoms = set()
    for r in rules or []:
        names = r.get("resourceNames") or ["*"]
        for g in r.get("apiGroups") or [""]:
            for res in r.get("resources") or []:
                for v in r.get("verbs") or []:
                    for n in names:
                        atoms.add((g, res, v, n))
    return atoms


def rbac_view(docs, namespace):
    """What the controller's ServiceAccount may do, keyed by scope: 'cluster', 'own' (its
    namespace), or another namespace name. Only roles bound to that ServiceAccount count."""
    roles = {}
    for kind in ("ClusterRole", "Role"):
        for d in by_kind(docs, kind):
            key = (kind, d["metadata"].get("namespace"), d["metadata"]["name"])
            roles[key] = d.get("rules") or []
    view = {}
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for b in by_kind(docs, kind):
            subjects = b.get("subjects") or []
            if not any(
                s.get("kind") == "ServiceAccount" and s.get("namespace") == namespace
                for s in subjects
            ):
                continue
            ref = b["roleRef"]
            bns = b["metadata"].get("namespace")
            role_ns = None if ref["kind"] == "ClusterRole" else bns
            rules = roles.get((ref["kind"], role_ns, ref["name"]))
            if rules is None:
                check(f"{kind} {b['metadata']['name']} refers to an existing {ref['kind']}", False,
                      f"no {ref['kind']} {ref['name']} in namespace {role_ns}")
                continue
            scope = "cluster" if kind == "ClusterRoleBinding" else ("own" if bns == namespace else bns)
            view.setdefault(scope, set()).update(rule_atoms(rules))
    return view


def fmt_atoms(atoms):
    return "\n".join(" ".join(a) for a in sorted(atoms))


def deployment_parts(d):
    spec = d["spec"]
    pod = spec["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "csr-approver"]
    return spec, pod, c


def policy_of(docs, name="csr-approver-policy"):
    cm = one(docs, "ConfigMap", name=name)
    return yaml.safe_load(cm["data"]["policy.yaml"])


# --- subcommands ---------------------------------------------------------------------------

def cmd_compare(kustomize_path, helm_path):
    k, h = load(kustomize_path), load(helm_path)
    print(f"compare {kustomize_path} (kubectl kustomize deploy/) with {helm_path} (helm template)")

    # RBAC, as sets of granted rights per scope.
    kv, hv = rbac_view(k, NAMESPACE), rbac_view(h, NAMESPACE)
    check_equal("RBAC scopes are the same (cluster, own namespace, default)",
                sorted(kv), sorted(hv))
    for scope in sorted(set(kv) | set(hv)):
        a, b = kv.get(scope, set()), hv.get(scope, set())
        check(f"RBAC rules for scope {scope!r} are the same set", a == b,
              f"only in kustomize:\n{fmt_atoms(a - b)}\nonly in helm:\n{fmt_atoms(b - a)}")
    for scope, view in (("kustomize", kv), ("helm", hv)):
        cluster = view.get("cluster", set())
        signers = {a[3] for a in cluster if a[1] == "signers" and a[2] == "approve"}
        check(f"{scope}: approve only on the two kubelet signers",
              signers == {"kubernetes.io/kube-apiserver-client-kubelet",
                          "kubernetes.io/kubelet-serving"}, signers)
        wild = [a for s in view.values() for a in s if "*" in (a[0], a[1], a[2])]
        check(f"{scope}: no wildcard group/resource/verb", not wild, wild)
        writes = {a for s in view.values() for a in s
                  if a[2] in ("create", "update", "patch", "delete", "deletecollection")}
        allowed_writes = {
            ("certificatesigningrequests/approval", "update"),
            ("certificatesigningrequests/approval", "patch"),
            ("leases", "create"), ("leases", "update"), ("leases", "patch"),
            ("events", "create"), ("events", "patch"),
        }
        bad = [a for a in writes if (a[1], a[2]) not in allowed_writes]
        check(f"{scope}: writes only the approval subresource, its Lease and Events", not bad, bad)
        services = {a for s in view.values() for a in s if a[1] == "services"}
        check(f"{scope}: Services: only default/kubernetes, read-only (its ClusterIPs are never a node's)",
              services == {("", "services", v, "kubernetes") for v in ("get", "list", "watch")}
              and services <= view.get("default", set()), services)
        check(f"{scope}: Events in `default` are granted by a Role, not cluster-wide",
              not any(a[1] == "events" for a in cluster)
              and ("", "events", "create", "*") in view.get("default", set()),
              view.get("default"))

    kd = one(k, "Deployment", name="csr-approver")
    hd = one(h, "Deployment", name="csr-approver")
    (ks, kp, kc), (hs, hp, hc) = deployment_parts(kd), deployment_parts(hd)
    check_equal("Deployment replicas", ks.get("replicas"), hs.get("replicas"))
    check_equal("Deployment selector", ks["selector"], hs["selector"])
    check_equal("container ports", kc.get("ports"), hc.get("ports"))
    check_equal("liveness probe", kc.get("livenessProbe"), hc.get("livenessProbe"))
    check_equal("readiness probe", kc.get("readinessProbe"), hc.get("readinessProbe"))
    check_equal("container securityContext", kc.get("securityContext"), hc.get("securityContext"))
    check_equal("pod securityContext", kp.get("securityContext"), hp.get("securityContext"))
    check_equal("container env", kc.get("env"), hc.get("env"))
    check_equal("container args", kc.get("args"), hc.get("args"))
    check_equal("container resources", kc.get("resources"), hc.get("resources"))
    check_equal("image (repository:tag)", kc.get("image"), hc.get("image"))
    for field in ("serviceAccountName", "priorityClassName", "tolerations", "affinity",
                  "nodeSelector", "automountServiceAccountToken", "enableServiceLinks"):
        check_equal(f"pod {field}", kp.get(field), hp.get(field))

    # Restricted Pod Security, spelled out (both sides, since they are equal by now).
    sc = kc.get("securityContext") or {}
    check("securityContext is Pod Security 'restricted'",
          sc.get("allowPrivilegeEscalation") is False
          and sc.get("readOnlyRootFilesystem") is True
          and (sc.get("runAsNonRoot") or (kp.get("securityContext") or {}).get("runAsNonRoot"))
          and sc.get("capabilities", {}).get("drop") == ["ALL"]
          and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", sc)
    check("no fixed runAsUser (OpenShift restricted-v2 assigns the UID)",
          "runAsUser" not in sc and "runAsUser" not in (kp.get("securityContext") or {}))
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
           for e in kc.get("env") or []}
    check("env POD_NAME/POD_NAMESPACE from the downward API",
          env.get("POD_NAME") == "metadata.name" and env.get("POD_NAMESPACE") == "metadata.namespace",
          env)
    probes = (kc.get("livenessProbe", {}).get("httpGet", {}), kc.get("readinessProbe", {}).get("httpGet", {}))
    check("probes: /healthz and /readyz on port http",
          probes[0].get("path") == "/healthz" and probes[1].get("path") == "/readyz"
          and probes[0].get("port") == "http" and probes[1].get("port") == "http", probes)

    ksvc, hsvc = one(k, "Service", name="csr-approver"), one(h, "Service", name="csr-approver")
    check_equal("Service ports", ksvc["spec"]["ports"], hsvc["spec"]["ports"])
    check_equal("Service selector", ksvc["spec"]["selector"], hsvc["spec"]["selector"])
    check("Service selector selects the pods",
          all(kd["spec"]["template"]["metadata"]["labels"].get(key) == v
              for key, v in ksvc["spec"]["selector"].items()))
    kpdb, hpdb = one(k, "PodDisruptionBudget"), one(h, "PodDisruptionBudget")
    check_equal("PodDisruptionBudget spec", kpdb["spec"], hpdb["spec"])
    check_equal("policy ConfigMap policy.yaml (parsed)", policy_of(k), policy_of(h))
    check_equal("ServiceAccount names", [d["metadata"]["name"] for d in by_kind(k, "ServiceAccount")],
                [d["metadata"]["name"] for d in by_kind(h, "ServiceAccount")])

    # Names the Deployment passes must be the ones RBAC grants.
    args = kc.get("args") or []
    cm_arg = next(a.split("=", 1)[1] for a in args if a.startswith("--policy-configmap="))
    lease_arg = next(a.split("=", 1)[1] for a in args if a.startswith("--lease-name="))
    own = kv.get("own", set())
    check("RBAC: the policy ConfigMap named in args can be watched",
          {("", "configmaps", v, cm_arg) for v in ("get", "list", "watch")} <= own)
    check("RBAC: the Lease named in args can be read and renewed",
          {("coordination.k8s.io", "leases", v, lease_arg) for v in ("get", "update", "patch")} <= own
          and ("coordination.k8s.io", "leases", "create", "*") in own)

    ns = one(k, "Namespace", name=NAMESPACE)
    labels = ns["metadata"].get("labels", {})
    check("Namespace enforces Pod Security 'restricted'",
          labels.get("pod-security.kubernetes.io/enforce") == "restricted", labels)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        check(f"deploy/ has no {kind} (works without the Prometheus operator)", not by_kind(k, kind))


def cmd_monitoring(kustomize_mon_path, helm_path):
    k, h = load(kustomize_mon_path), load(helm_path)
    print(f"compare {kustomize_mon_path} (deploy/monitoring/) with {helm_path} (helm, monitoring API on)")
    kr, hr = one(k, "PrometheusRule"), one(h, "PrometheusRule")
    check_equal("PrometheusRule spec identical", kr["spec"], hr["spec"])
    alerts = {r.get("alert") for g in kr["spec"]["groups"] for r in g["rules"]}
    check_equal("the seven alerts exist", sorted(alerts),
                sorted(["CSRApproverPendingCSRTooOld", "CSRApproverFloodGuard",
                        "CSRApproverNewNodeRateLimited", "CSRApproverNodeRecoveryPending",
                        "CSRApproverPolicyInvalid", "CSRApproverNoLeader",
                        "CSRApproverWriteFailures"]))
    ks, hs = one(k, "ServiceMonitor"), one(h, "ServiceMonitor")
    check_equal("ServiceMonitor spec identical", ks["spec"], hs["spec"])
    check("ServiceMonitor scrapes port http at /metrics",
          ks["spec"]["endpoints"][0].get("port") == "http"
          and ks["spec"]["endpoints"][0].get("path") == "/metrics")
    check("monitoring objects live in the controller's namespace",
          all(d["metadata"].get("namespace") == NAMESPACE for d in k))


def cmd_non_default(helm_path):
    h = load(helm_path)
    print(f"non-default values: {helm_path}")
    d = one(h, "Deployment")
    spec, pod, c = deployment_parts(d)
    check_equal("replicas: 3", spec.get("replicas"), 3, "rendered", "expected")
    args = c.get("args") or []
    for a in ("--leader-election=true", "--lease-name=csr-approver-leader", "--lease-duration=30",
              "--log-format=text", "--policy-configmap=kubelet-csr-policy"):
        check(f"arg {a}", a in args, args)
    check_equal("image from repository:tag", c.get("image"),
                "registry.internal.example/platform/csr-approver:0.1.0-rc.1", "rendered", "expected")
    check_equal("imagePullPolicy", c.get("imagePullPolicy"), "Always", "rendered", "expected")
    check("extraEnv appended after the downward-API env",
          [e["name"] for e in c.get("env", [])] == ["POD_NAME", "POD_NAMESPACE", "RUST_LOG"], c.get("env"))
    check("no priorityClassName when set to empty", "priorityClassName" not in pod)
    check_equal("nodeSelector", pod.get("nodeSelector"), {"node-role.kubernetes.io/control-plane": ""},
                "rendered", "expected")
    check_equal("imagePullSecrets", pod.get("imagePullSecrets"), [{"name": "internal-registry"}],
                "rendered", "expected")
    check_equal("hostNetwork with its DNS policy", (pod.get("hostNetwork"), pod.get("dnsPolicy")),
                (True, "ClusterFirstWithHostNet"), "rendered", "expected")
    check("httpPort in --http-addr and the container port named http",
          "--http-addr=0.0.0.0:18080" in args
          and c.get("ports") == [{"name": "http", "containerPort": 18080, "protocol": "TCP"}], c.get("ports"))
    meta = d["spec"]["template"]["metadata"]
    check("podLabels and commonLabels on the pods",
          meta["labels"].get("cost-center") == "infra" and meta["labels"].get("team") == "platform",
          meta["labels"])
    check("podAnnotations", meta.get("annotations", {}).get("example.com/scrape") == "false", meta)
    check("commonLabels on every object",
          all(x["metadata"].get("labels", {}).get("team") == "platform" for x in h),
          [x["kind"] for x in h if x["metadata"].get("labels", {}).get("team") != "platform"])
    check_equal("resources", c.get("resources"),
                {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "256Mi"}},
                "rendered", "expected")
    check_equal("extraVolumes are the pod's volumes", pod.get("volumes"),
                [{"name": "kubelet-serving-ca", "configMap": {"name": "kubelet-serving-ca"}}],
                "rendered", "expected")
    check_equal("extraVolumeMounts are the container's mounts", c.get("volumeMounts"),
                [{"name": "kubelet-serving-ca", "mountPath": "/etc/csr-approver/kubelet-serving-ca",
                  "readOnly": True}], "rendered", "expected")

    policy = policy_of(h, "kubelet-csr-policy")
    check_equal("policy bootstrappers (list replaced, not merged)", policy["client"]["bootstrappers"],
                [{"group": "system:bootstrappers"}], "rendered", "expected")
    check_equal("policy inventory names", [e.get("name") or e.get("namePattern") for e in policy["inventory"]],
                ["worker-0.bm.example.com", "worker-1.bm.example.com", r"^worker-[0-9]+\.bm\.example\.com$"],
                "rendered", "expected")
    check("policy maps merged with defaults (client.renewals kept)", policy["client"].get("renewals") is True)
    check_equal("policy client.maxNewNodesPerHour", policy["client"].get("maxNewNodesPerHour"), 12,
                "rendered", "expected")
    check_equal("policy serving.clusterDomain and allowLoopback",
                (policy["serving"].get("clusterDomain"), policy["serving"].get("allowLoopback")),
                ("k8s.bm.example.com", True), "rendered", "expected")
    check_equal("policy machines (Cluster API trusted in its named namespace only)",
                (policy["machines"].get("apiGroups"),
                 policy["machines"].get("namespaces", {}).get("cluster.x-k8s.io")),
                (["cluster.x-k8s.io"], ["bm-workers"]), "rendered", "expected")
    check_equal("policy mode", policy["mode"], "dry-run", "rendered", "expected")
    check_equal("policy client.recovery (merged: all three fields set)", policy["client"].get("recovery"),
                {"enabled": True, "offlineFor": "1h", "window": "12h"}, "rendered", "expected")
    check_equal("policy serving KubeletCertificate with the mounted CA file",
                (policy["serving"].get("addressSources"), policy["serving"].get("kubeletServingCAFile")),
                (["Node", "KubeletCertificate"], "/etc/csr-approver/kubelet-serving-ca/ca-bundle.crt"),
                "rendered", "expected")

    view = rbac_view(h, NAMESPACE)
    own = view.get("own", set())
    check("RBAC follows the custom ConfigMap name",
          ("", "configmaps", "watch", "kubelet-csr-policy") in own
          and not any(a[1] == "configmaps" and a[3] == "csr-approver-policy" for a in own), fmt_atoms(own))
    check("RBAC follows the custom Lease name",
          ("coordination.k8s.io", "leases", "patch", "csr-approver-leader") in own, fmt_atoms(own))
    pdb = one(h, "PodDisruptionBudget")
    check_equal("PodDisruptionBudget minAvailable", pdb["spec"]["minAvailable"], 1, "rendered", "expected")
    sm, pr = one(h, "ServiceMonitor"), one(h, "PrometheusRule")
    check("ServiceMonitor rendered with its labels and interval",
          sm["metadata"]["labels"].get("release") == "prometheus"
          and sm["spec"]["endpoints"][0]["interval"] == "15s", sm)
    check("PrometheusRule rendered with its labels", pr["metadata"]["labels"].get("release") == "prometheus")


def cmd_minimal(helm_path):
    h = load(helm_path)
    print(f"replicas=1, leader election off: {helm_path}")
    _, _, c = deployment_parts(one(h, "Deployment"))
    args = c.get("args") or []
    check("--leader-election=false passed", "--leader-election=false" in args, args)
    check("no --lease-* flags without leader election",
          not any(a.startswith("--lease-") for a in args), args)
    check("no PodDisruptionBudget for a single replica (it would block drains)",
          not by_kind(h, "PodDisruptionBudget"))
    own = rbac_view(h, NAMESPACE).get("own", set())
    check("no Lease rights without leader election", not any(a[1] == "leases" for a in own),
          fmt_atoms(own))


def cmd_no_monitoring(helm_path):
    h = load(helm_path)
    print(f"no monitoring.coreos.com/v1 API: {helm_path}")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        check(f"no {kind} rendered", not by_kind(h, kind))


def cmd_crds(crd_dir, kustomize_mon_path):
    print(f"CRD fixtures in {crd_dir}")
    served = {}
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith((".yaml", ".yml")):
            continue
        for crd in load(os.path.join(crd_dir, name)):
            ok = crd.get("apiVersion") == "apiextensions.k8s.io/v1" and crd.get("kind") == "CustomResourceDefinition"
            spec = crd.get("spec", {})
            group, plural = spec.get("group"), spec.get("names", {}).get("plural")
            ok = ok and crd["metadata"]["name"] == f"{plural}.{group}"
            ok = ok and sum(1 for v in spec.get("versions", []) if v.get("storage")) == 1
            for v in spec.get("versions", []):
                schema = v.get("schema", {}).get("openAPIV3Schema", {})
                ok = ok and schema.get("type") == "object"
                ok = ok and schema.get("properties", {}).get("spec", {}).get("x-kubernetes-preserve-unknown-fields") is True
                if v.get("served"):
                    served[(group, v["name"], spec["names"]["kind"])] = spec.get("scope")
            check(f"{name}: valid minimal CRD {crd['metadata']['name']}", ok, crd["metadata"])
    for d in load(kustomize_mon_path):
        group, version = d["apiVersion"].split("/")
        check(f"CRD fixture serves {d['kind']} {d['apiVersion']} (Namespaced)",
              served.get((group, version, d["kind"])) == "Namespaced", served)


def dockerignore_allows(patterns, path):
    """Docker's rules, enough for an allow-list: the last matching pattern wins."""
    allowed = True
    for p in patterns:
        neg = p.startswith("!")
        pat = p[1:] if neg else p
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
            allowed = neg
    return allowed


def cmd_dockerfile(repo):
    print("Dockerfile")
    text = open(os.path.join(repo, "Dockerfile")).read()
    lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.strip().startswith("#")]
    patterns = [l.strip() for l in open(os.path.join(repo, ".dockerignore")) if l.strip() and not l.startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    check("multi-stage build (builder + runtime)", len(froms) >= 2, froms)
    check("cargo build --release --locked", any("cargo build --release --locked" in l for l in lines))
    # A cached dependency layer: manifests are copied and built before the sources.
    copy_lines = [l for l in lines if l.upper().startswith("COPY ") and "--from" not in l]
    idx_manifest = next((i for i, l in enumerate(lines) if l.startswith("COPY Cargo.toml Cargo.lock")), None)
    idx_src = next((i for i, l in enumerate(lines) if l.startswith("COPY src")), None)
    idx_first_build = next((i for i, l in enumerate(lines) if "cargo build" in l), None)
    check("dependency layer: Cargo.toml/Cargo.lock built before src/ is copied",
          None not in (idx_manifest, idx_src, idx_first_build) and idx_manifest < idx_first_build < idx_src)
    build_image = open(os.path.join(repo, "scripts", "build-image.sh")).read()
    for l in copy_lines:
        for src in l.split()[1:-1]:
            if src.startswith("--"):
                continue
            if src.startswith("target/"):
                # Not in the tree: scripts/build-image.sh stages it before building.
                check(f"COPY source {src} is staged by scripts/build-image.sh and let in by .dockerignore",
                      f"staged={src}" in build_image and dockerignore_allows(patterns, src))
                continue
            exists = os.path.exists(os.path.join(repo, src))
            check(f"COPY source {src} exists and is not excluded by .dockerignore",
                  exists and dockerignore_allows(patterns, src.rstrip("/")))
    # Every [[bench]]/[[bin]]/[[example]] declared with a path must reach the dependency stage.
    cargo = open(os.path.join(repo, "Cargo.toml")).read()
    for path in re.findall(r'^\s*path\s*=\s*"([^"]+)"', cargo, re.M):
        if path.startswith("src/"):
            continue  # stubbed in the dependency layer, copied after
        check(f"Cargo target {path} is copied into the dependency stage",
              any(path.startswith(s.rstrip("/") + "/") or path == s
                  for l in copy_lines for s in l.split()[1:-1]), copy_lines)
    benches = re.findall(r'^\[\[bench\]\]\s*\nname\s*=\s*"([^"]+)"', cargo, re.M)
    for b in benches:
        check(f"bench {b} is copied into the dependency stage (benches/)",
              any(l.startswith("COPY benches") for l in copy_lines))
    # Stages: the default (last) one must build offline, FROM scratch, with a static binary.
    stages = []  # (name, base) in order
    for f in froms:
        parts = f.split()
        stages.append((parts[3] if len(parts) >= 4 and parts[2].upper() == "AS" else None, parts[1]))
    names = {n for n, _ in stages if n}

    def root_base(base, seen=()):
        for n, b in stages:
            if n == base and n not in seen:
                return root_base(b, seen + (n,))
        return base
    default_name, default_base = stages[-1]
    check("default (last) stage is FROM scratch (directly or through a stage)",
          root_base(default_base) == "scratch", stages)
    default_lines = lines[max(i for i, l in enumerate(lines) if l.upper().startswith("FROM ")):]
    check("default stage copies the binary staged by scripts/build-image.sh, nothing else",
          [l for l in default_lines if l.upper().startswith(("COPY", "ADD", "RUN"))]
          == ["COPY target/static/csr-approver /usr/local/bin/csr-approver"], default_lines)
    needed, todo = set(), [default_base]
    while todo:
        b = todo.pop()
        if b in names and b not in needed:
            needed.add(b)
            todo.extend(base for n, base in stages if n == b)
    pulled = [b for n, b in stages if (n in needed or n == default_name)
              and b != "scratch" and b not in names]
    check("the default build pulls no base image (offline)", not pulled, pulled)
    check("static glibc binary: +crt-static in the Dockerfile's builder and in scripts/build-image.sh",
          "-C target-feature=+crt-static" in text and "-C target-feature=+crt-static" in build_image
          and "--target" in text)
    from_source = [b for n, b in stages if n == "from-source"]
    check("stage from-source builds on the shared runtime stage",
          len(from_source) == 1 and root_base(from_source[0]) == "scratch"
          and any(l.startswith("COPY --from=builder ") for l in lines), stages)
    check("runs as UID 65532", any(re.fullmatch(r"USER 65532(:65532)?", l) for l in lines))
    check('ENTRYPOINT ["csr-approver"]', 'ENTRYPOINT ["csr-approver"]' in lines)
    check('CMD ["run"]', 'CMD ["run"]' in lines)
    for label in ("title", "description", "version", "revision", "licenses"):
        check(f"OCI label org.opencontainers.image.{label}", f"org.opencontainers.image.{label}=" in text)
    check(".dockerignore excludes target/ (but the staged target/static/csr-approver) and .git",
          not dockerignore_allows(patterns, "target") and not dockerignore_allows(patterns, ".git")
          and not dockerignore_allows(patterns, "target/debug/csr-approver")
          and not dockerignore_allows(patterns, "target/static/x86_64-unknown-linux-gnu/release/csr-approver"))


# Values documented as one row although they are maps.
DOCUMENTED_WHOLE = {"resources", "podSecurityContext", "securityContext",
                    "policy.machines.namespaces"}  # keys are API groups, not values


def value_paths(tree, prefix=""):
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in DOCUMENTED_WHOLE:
            yield from value_paths(value, path + ".")
        else:
            yield path


def cmd_readme_values(values_path, readme_path):
    print(f"{readme_path} documents every value of {values_path}")
    values = yaml.safe_load(open(values_path))
    readme = open(readme_path).read()
    rows = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    paths = set(value_paths(values))
    for path in sorted(paths):
        check(f"value {path} has a row in the README table", path in rows)
    containers = {p.rsplit(".", 1)[0] for p in paths if "." in p}
    for row in sorted(rows - paths - containers):
        check(f"README row {row} is a value in values.yaml", False)
    # Defaults quoted in the table must be the real ones, for the scalar values.
    for path in sorted(paths & rows):
        node = values
        for part in path.split("."):
            node = node[part]
        if isinstance(node, (bool, int, str)):
            shown = {True: "true", False: "false"}.get(node, node) if isinstance(node, bool) else node
            shown = '""' if shown == "" else str(shown)
            row = re.search(rf"^\| `{re.escape(path)}` \| `([^`]*)` \|", readme, re.M)
            check(f"README default of {path} is {shown}", row is not None and row.group(1) == shown,
                  row.group(0) if row else "no backquoted default in the row")


def registered_metrics(src_path):
    """Metric names registered in src/metrics.rs: opts("x", ...) / HistogramOpts::new("x", ...)
    under the csr_approver prefix."""
    text = open(src_path).read()
    names = re.findall(r'(?:\bopts|HistogramOpts::new|Opts::new)\(\s*"([a-z_]+)"', text)
    return {f"csr_approver_{n}" for n in names}


def cmd_docs_metrics(promrule_path, doc_path, src_path=None):
    print(f"{doc_path} documents the alerts and metrics")
    doc = open(doc_path).read()
    (pr,) = [d for d in load(promrule_path) if d.get("kind") == "PrometheusRule"]
    documented = set(re.findall(r"^\| `(csr_approver_[a-z_]+)` \|", doc, re.M))
    used = set()
    for group in pr["spec"]["groups"]:
        for rule in group["rules"]:
            alert = rule.get("alert")
            if alert:
                check(f"alert {alert} has a section", re.search(rf"^### {alert}$", doc, re.M) is not None)
            used |= set(re.findall(r"csr_approver_[a-z_]+", rule["expr"]))
    for m in sorted(used):
        check(f"metric {m} used by an alert is in the metrics table", m in documented)
    if src_path and os.path.exists(src_path):
        registered = registered_metrics(src_path)
        check("src/metrics.rs registers metrics (parsed)", bool(registered), src_path)
        for m in sorted(registered):
            check(f"registered metric {m} is in the metrics table", m in documented)
        for m in sorted(used):
            check(f"metric {m} used by an alert is registered in {src_path}", m in registered)
        for m in sorted(documented - registered):
            check(f"documented metric {m} is registered in {src_path}", False)
    else:
        print(f"  (no {src_path}: metric names not cross-checked with the code)")


def cmd_extract_rules(path, out):
    (pr,) = [d for d in load(path) if d.get("kind") == "PrometheusRule"]
    with open(out, "w") as f:
        yaml.safe_dump(pr["spec"], f, sort_keys=False)


def cmd_extract_policy(path, out):
    (cm,) = [d for d in load(path) if d.get("kind") == "ConfigMap" and "policy.yaml" in d.get("data", {})]
    with open(out, "w") as f:
        f.write(cm["data"]["policy.yaml"])


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    commands = {
        "compare": cmd_compare,
        "monitoring": cmd_monitoring,
        "non-default": cmd_non_default,
        "minimal": cmd_minimal,
        "no-monitoring": cmd_no_monitoring,
        "crds": cmd_crds,
        "dockerfile": cmd_dockerfile,
        "readme-values": cmd_readme_values,
        "docs-metrics": cmd_docs_metrics,
        "extract-rules": cmd_extract_rules,
        "extract-policy": cmd_extract_policy,
    }
    if cmd not in commands:
        print(__doc__)
        return 2
    commands[cmd](*args)
    if cmd.startswith("extract"):
        return 0
    print(f"  -> {len(PASSED)} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
