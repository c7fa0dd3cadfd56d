//! The container image that ships, built from the repository's `Dockerfile` by
//! `scripts/build-image.sh` (FROM scratch + the static binary) and run with podman: its
//! contents and configuration, its CLI, and the controller running in it exactly as in a Pod
//! — in-cluster configuration from `KUBERNETES_SERVICE_HOST`/`_PORT` and a mounted
//! ServiceAccount token, the args of `deploy/deployment.yaml`, a read-only root filesystem,
//! no capabilities — until it is Ready, approves a CSR, and stops cleanly on SIGTERM.
//!
//! The image is `$CSR_APPROVER_IMAGE` when set (scripts/test.sh builds it first); otherwise
//! these tests build it with `scripts/build-image.sh`, which installs podman from Debian if
//! it is missing (as root) and makes a release build (minutes when cold). Without an image
//! they fail, saying why — unless `CSR_APPROVER_IMAGE=skip` (scripts/test.sh sets it when
//! there is no podman and no root to install it), which they say on stderr.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use builders::Request;
use harness::process::Supervised;
use scene::*;

/// podman cannot raise these limits here (no CAP_SYS_RESOURCE); set them explicitly.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run podman {args:?}: {e}"))
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The image under test: `$CSR_APPROVER_IMAGE`, or built now by scripts/build-image.sh;
/// `None` when `CSR_APPROVER_IMAGE=skip`.
fn image() -> Option<&'static str> {
    static IMAGE: OnceLock<String> = OnceLock::new();
    if std::env::var("CSR_APPROVER_IMAGE").is_ok_and(|i| i == "skip") {
        eprintln!("SKIPPED: CSR_APPROVER_IMAGE=skip (no podman, and not root to install it)");
        return None;
    }
    let image = IMAGE.get_or_init(|| {
        if let Some(image) = std::env::var("CSR_APPROVER_IMAGE")
            .ok()
            .filter(|i| !i.is_empty())
        {
            ok(
                podman(&["image", "inspect", "--format", "{{.Id}}", &image]),
                &format!("CSR_APPROVER_IMAGE={image}: podman image inspect"),
            );
            return image;
        }
        let begin = Instant::now();
        let out = Command::new("bash")
            .arg(repo("scripts/build-image.sh"))
            .output()
            .expect("run scripts/build-image.sh");
        let stdout = ok(
            out,
            "scripts/build-image.sh (set CSR_APPROVER_IMAGE to use a built image)",
        );
        let image = stdout.lines().last().unwrap_or_default().trim().to_string();
        assert!(!image.is_empty(), "scripts/build-image.sh printed no image");
        eprintln!("built {image} in {:.0?}", begin.elapsed());
        image
    });
    Some(image)
}

/// Removes the container when the test ends, however it ends (the podman client being
/// killed does not stop a container).
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.0]);
    }
}

#[test]
fn the_image_is_the_static_binary_on_an_empty_base() {
    let Some(image) = image() else { return };
    let inspect: serde_json::Value = serde_json::from_str(&ok(
        podman(&["image", "inspect", image]),
        "podman image inspect",
    ))
    .unwrap();
    let inspect = &inspect[0];
    let config = &inspect["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["csr-approver"]),
        "{config}"
    );
    assert_eq!(config["Cmd"], serde_json::json!(["run"]), "{config}");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "csr-approver");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_ne!(
        labels["org.opencontainers.image.revision"], "unknown",
        "{labels}"
    );
    // FROM scratch: one layer, holding the binary and nothing else.
    assert_eq!(
        inspect["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "{}",
        inspect["RootFS"]
    );
    let root = ok(podman(&["image", "mount", image]), "podman image mount");
    let root = Path::new(root.trim());
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let binary = std::fs::read(root.join("usr/local/bin/csr-approver"));
    let _ = podman(&["image", "unmount", image]);
    assert_eq!(files, ["usr/local/bin/csr-approver"]);
    // Static: a 64-bit little-endian ELF executable without a PT_INTERP program header
    // (nothing for the kernel to hand it to: there is no ld-linux in the image).
    let binary = binary.unwrap();
    assert_eq!(&binary[..6], b"\x7fELF\x02\x01", "64-bit little-endian ELF");
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([binary[o], binary[o + 1]]));
    let phoff =
        usize::try_from(u64::from_le_bytes(binary[0x20..0x28].try_into().unwrap())).unwrap();
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    let types: Vec<u32> = (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(binary[o..o + 4].try_into().unwrap())
        })
        .collect();
    assert!(
        phnum > 0 && !types.contains(&PT_INTERP),
        "program headers {types:?}"
    );

    let mut args = vec!["run", "--rm"];
    args.extend(ULIMITS);
    args.extend([image, "--version"]);
    let version = ok(podman(&args), "podman run IMAGE --version");
    assert_eq!(
        version.trim(),
        format!("csr-approver {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The simulator's label on everything it creates: in its code, nowhere in the product's.
const SIMULATOR_LABEL: &[u8] = b"csr-approver.io/simulation";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The join simulator impersonates nodes and creates Machines and Nodes: a tool for the
/// demo, tests and benchmarks (`csr-approver-simulate`), which the image must not ship —
/// neither as a subcommand nor as code linked into the binary.
#[test]
fn the_image_has_no_simulator() {
    let Some(image) = image() else { return };
    let mut args = vec!["run", "--rm"];
    args.extend(ULIMITS);
    args.extend([image, "simulate", "--help"]);
    let out = podman(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("unrecognized subcommand 'simulate'"),
        "the image's csr-approver has a simulate subcommand ({}):\n{}\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let root = ok(podman(&["image", "mount", image]), "podman image mount");
    let binary = std::fs::read(Path::new(root.trim()).join("usr/local/bin/csr-approver"));
    let _ = podman(&["image", "unmount", image]);
    assert!(
        !contains(&binary.unwrap(), SIMULATOR_LABEL),
        "the image's binary holds the simulator's code"
    );
}

/// The same for the binary the tests run: the simulator is a binary of its own.
#[test]
fn the_controller_binary_has_no_simulator() {
    let bin = env!("CARGO_BIN_EXE_csr-approver");
    let out = Command::new(bin)
        .args(["simulate", "--help"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("unrecognized subcommand 'simulate'"),
        "csr-approver has a simulate subcommand: {stderr}"
    );
    assert!(!contains(&std::fs::read(bin).unwrap(), SIMULATOR_LABEL));
    // The check would see it: the simulator's own binary holds the label.
    #[cfg(feature = "tools")]
    assert!(contains(
        &std::fs::read(env!("CARGO_BIN_EXE_csr-approver-simulate")).unwrap(),
        SIMULATOR_LABEL
    ));
}

/// `args` of the csr-approver container in deploy/deployment.yaml.
fn deployment_args() -> Vec<String> {
    let text = std::fs::read_to_string(repo("deploy/deployment.yaml")).unwrap();
    let deployment: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_the_controller_in_cluster() {
    let Some(image) = image() else { return };
    let _serial = SERIAL.lock().await;
    let scene = Scene::new(SceneOptions {
        machine_crds: true,
        policy: None,
    })
    .await;

    // What the kubelet mounts for the Pod's ServiceAccount (the token is the one the
    // scene minted for csr-approver/csr-approver, so deploy/rbac.yaml is all it may do).
    let kubeconfig: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&scene.controller_kubeconfig).unwrap())
            .unwrap();
    let token = kubeconfig["users"][0]["user"]["token"].as_str().unwrap();
    let sa = scene.cp.dir().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), token).unwrap();
    std::fs::write(sa.join("ca.crt"), scene.cp.ca_pem()).unwrap();
    std::fs::write(sa.join("namespace"), NAMESPACE).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sa, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["token", "ca.crt", "namespace"] {
            std::fs::set_permissions(sa.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    // An IP address, as KUBERNETES_SERVICE_HOST always is in a Pod.
    let api_port = scene
        .cp
        .server_url()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let http_port = free_port();

    // The Deployment's args, listening on loopback (host network) instead of 0.0.0.0:8080.
    let args: Vec<String> = deployment_args()
        .into_iter()
        .map(|a| {
            if a.starts_with("--http-addr=") {
                format!("--http-addr=127.0.0.1:{http_port}")
            } else {
                a
            }
        })
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");

    let name = format!("csr-approver-image-test-{}", std::process::id());
    let mount = format!(
        "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
        sa.display()
    );
    let mut podman_args: Vec<String> = [
        "run",
        "--rm",
        "--name",
        &name,
        "--network",
        "host",
        "--read-only",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        // Never outlives a crashed test for long.
        "--timeout",
        "600",
        "--env",
        "KUBERNETES_SERVICE_HOST=127.0.0.1",
        "--env",
        &format!("KUBERNETES_SERVICE_PORT={api_port}"),
        "--env",
        &format!("POD_NAME={name}"),
        "--env",
        &format!("POD_NAMESPACE={NAMESPACE}"),
        "--volume",
        &mount,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    podman_args.extend(ULIMITS.iter().map(|s| s.to_string()));
    podman_args.push(image.to_string());
    podman_args.extend(args);

    let _container = Container(name.clone());
    let mut run = Supervised::spawn(
        "csr-approver-container",
        Path::new("podman"),
        &podman_args,
        scene.cp.dir(),
        None,
    )
    .expect("podman run starts");
    let log =
        |run: &Supervised| format!("{}\n{}", run.exited().unwrap_or_default(), run.log_tail(40));

    let ready = wait_for(Duration::from_secs(60), || async {
        http_get(http_port, "/readyz").filter(|(code, _)| *code == 200)
    })
    .await;
    assert!(ready.is_some(), "never ready:\n{}", log(&run));

    let user = ok(podman(&["top", &name, "user", "group"]), "podman top");
    assert!(
        user.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().eq(["65532", "65532"])),
        "runs as 65532:65532: {user}"
    );

    // It acts: a Machine vouches for worker-1, whose client CSR it approves.
    scene
        .create_machine(
            "worker-1",
            &[("InternalDNS", "worker-1"), ("InternalIP", "10.0.0.11")],
        )
        .await;
    scene
        .create_csr(
            &scene.bootstrapper(),
            "worker-1-client",
            CLIENT_SIGNER,
            &["digital signature", "client auth"],
            Request::node("worker-1").pem(),
        )
        .await;
    assert_eq!(
        scene
            .wait_condition("worker-1-client", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        log(&run)
    );
    let metrics = http_get(http_port, "/metrics").unwrap().1;
    assert_eq!(metric(&metrics, "csr_approver_leader "), 1.0, "{metrics}");

    // SIGTERM (what the kubelet sends) stops it cleanly and promptly, although it is PID 1.
    let begin = Instant::now();
    ok(podman(&["stop", "--time", "20", &name]), "podman stop");
    let stopped = begin.elapsed();
    let exit = wait_for(Duration::from_secs(10), || async { run.exited() }).await;
    assert!(
        stopped < Duration::from_secs(15),
        "took {stopped:?} to stop (SIGKILL after 20 s):\n{}",
        log(&run)
    );
    assert_eq!(
        exit.as_deref(),
        Some("csr-approver-container exited with status 0"),
        "{}",
        log(&run)
    );
    run.stop();
}
