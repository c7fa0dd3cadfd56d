//! `scripts/demo.sh` as a new user runs it, on the simulator (`DEMO_SIMULATE=1`): with
//! `DEMO_KEEP=1` the controller, kube-apiserver and etcd stay up, and the one stop command
//! it prints stops all three (it used to leave the controller stopped and the control
//! plane running, naming another state directory); the forged CSRs end as soon as
//! csr-approver explains them, each with its reason (it used to wait out 30 s in
//! silence); and the Events say why each CSR was approved, too.
//!
//! Needs what the demo needs: kubectl (`$KUBECTL` or PATH), curl, openssl and the
//! control-plane binaries (scripts/control-plane-assets.sh, cached after the first build).

#![cfg(feature = "tools")] // runs csr-approver-simulate
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A loopback port nothing listens on now (and the one after it, for etcd's peer port).
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// The pid recorded in the state directory, if it names a running process.
fn running(state: &Path, name: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state.join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn alive(pid: u32) -> bool {
    // A process that exited but was not reaped yet is a zombie: gone for our purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| !s.trim_start().starts_with('Z'))
    })
}

/// Stops what the demo left if the test fails half-way.
struct Teardown(PathBuf);

impl Drop for Teardown {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = Command::new("bash")
                .arg(Path::new(REPO).join("scripts/dev-cluster.sh"))
                .arg("down")
                .env("CSR_APPROVER_DEV_DIR", &self.0)
                .output();
        }
    }
}

#[test]
fn demo_keep_leaves_everything_running_and_its_stop_command_stops_it_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("demo-state");
    let _teardown = Teardown(state.clone());
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(kubectl) = std::env::var_os("KUBECTL") {
        let bin = PathBuf::from(kubectl).parent().unwrap().to_path_buf();
        path =
            std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path))).unwrap();
    }
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(Path::new(REPO).join("scripts/demo.sh"))
        .env("PATH", path)
        .env("DEMO_SIMULATE", "1")
        .env("DEMO_KEEP", "1")
        .env("DEMO_BIN", env!("CARGO_BIN_EXE_csr-approver"))
        .env(
            "DEMO_SIMULATOR_BIN",
            env!("CARGO_BIN_EXE_csr-approver-simulate"),
        )
        .env("CSR_APPROVER_DEV_DIR", &state)
        .env("DEV_ETCD_PORT", free_port().to_string())
        .env("DEV_APISERVER_PORT", free_port().to_string())
        .env("DEMO_HTTP_PORT", free_port().to_string())
        .env_remove("KUBECONFIG")
        .output()
        .expect("bash runs the demo");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    eprintln!("demo (DEMO_KEEP=1, simulator) took {elapsed:.1?}");

    // Progress and reasons while the forgeries are decided, not 30 s of silence: the
    // simulator's timeout is 30 s, so a demo that waited it out takes longer than that.
    assert!(
        elapsed < Duration::from_secs(30),
        "the demo took {elapsed:?}: did it wait out the forged CSRs?\n{stdout}\n{stderr}"
    );
    for part in [
        "(system:masters in the subject): left Pending — NotApproved: BadOrganization",
        "(the API server's name): left Pending — NotApproved: ReservedSan",
        "forged CSRs submitted: 6, approved: 0 (good)",
    ] {
        assert!(
            stdout.contains(part) || stderr.contains(part),
            "no {part:?} in\n{stdout}\n{stderr}"
        );
    }
    // Why the approved ones were approved: their Normal Events are listed too.
    assert!(
        stdout.lines().any(|l| l.contains("-client")
            && l.contains("Approved")
            && l.contains("NewNodeMachine")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("ServingAddressesVerified")),
        "{stdout}"
    );
    // Not a terminal: no escape codes in the headings.
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");

    // Left running: the controller, kube-apiserver and etcd of this state directory.
    let pids: Vec<(&str, u32)> = ["csr-approver", "kube-apiserver", "etcd"]
        .into_iter()
        .map(|name| {
            let pid = running(&state, name)
                .unwrap_or_else(|| panic!("{name} is not running after DEMO_KEEP=1\n{stdout}"));
            (name, pid)
        })
        .collect();
    let stop = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stop everything: "))
        .unwrap_or_else(|| panic!("no stop command in\n{stdout}"));
    assert!(
        stop.contains(&format!("CSR_APPROVER_DEV_DIR={}", state.display())),
        "the stop command names another state directory: {stop}"
    );
    // As the user would: the command as printed, in a shell.
    let stopped = Command::new("bash").args(["-c", stop]).output().unwrap();
    assert!(
        stopped.status.success(),
        "{stop}: {}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|(_, pid)| alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (name, pid) in &pids {
        assert!(!alive(*pid), "{name} (pid {pid}) still runs after {stop}");
    }
    assert!(!state.exists(), "{} was not removed", state.display());
}
