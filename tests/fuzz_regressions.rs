//! Replays every crash input the fuzz targets found (tests/fixtures/fuzz-regressions/)
//! through the fuzz harness itself, with every check on: no panic, no broken invariant,
//! and no approval of a crash input fed to `decide`. See docs/fuzzing.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use csr_approver::decision::Verdict;

#[allow(dead_code)] // the fuzz targets use more of it than the replay does
#[path = "../fuzz/src/harness.rs"]
mod harness;

use harness::Checks;

const TARGETS: [&str; 3] = ["request_decide", "policy_yaml", "normalize"];

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-regressions")
}

/// Every saved input, by target; fails on a file that names no target.
fn inputs() -> Vec<(&'static str, String, Vec<u8>)> {
    let dir = folder();
    assert!(
        dir.join("README.md").is_file(),
        "{} must exist and explain itself (README.md)",
        dir.display()
    );
    let mut inputs = Vec::new();
    let entries = std::fs::read_dir(&dir).expect("the regression folder is readable");
    for entry in entries {
        let path = entry.expect("a readable entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 file name")
            .to_string();
        if name == "README.md" {
            continue;
        }
        let target = TARGETS
            .iter()
            .find(|t| {
                name.strip_prefix(**t)
                    .is_some_and(|rest| rest.starts_with('-') && rest.len() > 1)
            })
            .unwrap_or_else(|| {
                panic!("{name}: a crash input is named <target>-<short-name>, target one of {TARGETS:?}")
            });
        let bytes = std::fs::read(&path).expect("a readable crash input");
        inputs.push((*target, name, bytes));
    }
    inputs.sort_by(|a, b| a.1.cmp(&b.1));
    inputs
}

#[test]
fn every_fuzz_crash_input_is_replayed_without_a_finding() {
    let inputs = inputs();
    let checks = Checks::all();
    let mut failures = Vec::new();
    for (target, name, bytes) in &inputs {
        let outcome = catch_unwind(AssertUnwindSafe(|| match *target {
            "request_decide" => {
                let decision = harness::request_decide(bytes, &checks);
                assert!(
                    decision.verdict != Verdict::Approve,
                    "a crash input was approved: {decision:?}"
                );
            }
            "policy_yaml" => harness::policy_yaml(bytes, &checks),
            "normalize" => harness::normalize(bytes, &checks),
            other => unreachable!("target {other}"),
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name}: {message}"));
        }
    }
    eprintln!(
        "replayed {} fuzz crash input(s) from {}",
        inputs.len(),
        folder().display()
    );
    assert!(
        failures.is_empty(),
        "{} of {} fuzz crash inputs still fail:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

/// The request seeds the fuzzer starts from (fuzz/corpus/request_decide) decode to the CSR
/// objects they were made for: the approvable ones are approved by the harness's scene, so
/// the fuzzer starts next to every approval path.
#[test]
fn request_seeds_reach_the_approval_paths() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request_decide");
    let checks = Checks::all();
    let mut approved = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("seed folder exists") {
        let path = entry.expect("readable").path();
        let bytes = std::fs::read(&path).expect("readable seed");
        seen += 1;
        let decision = harness::request_decide(&bytes, &checks);
        if decision.verdict == Verdict::Approve {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            approved.push(format!("{name}: {}", decision.reason));
        }
    }
    assert!(seen >= 10, "only {seen} request seeds");
    approved.sort();
    for expected in [
        "client-worker1-p256: NewNodeMachine",
        "client-worker1-rsa2048: NewNodeMachine",
        "client-worker1-ed25519-der: NewNodeMachine",
        "renewal-worker2-p256: ClientRenewal",
        "serving-worker2-p256: ServingAddressesVerified",
        "serving-worker2-rsa2048-der: ServingAddressesVerified",
        "client-worker3-inventory: NewNodeInventory",
    ] {
        assert!(
            approved.iter().any(|a| a == expected),
            "seed {expected} is not approved by the fuzz harness (approved: {approved:?})"
        );
    }
}

/// The name and address seeds (fuzz/corpus/normalize) hold every check of the `normalize`
/// target, so the invariants on disguised and embedded addresses are run in `cargo test`
/// too, not only while fuzzing.
#[test]
fn normalize_seeds_hold_every_check() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/normalize");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the normalize corpus is readable") {
        let path = entry.expect("a readable entry").path();
        let data = std::fs::read(&path).expect("a readable seed");
        harness::normalize(&data, &Checks::all());
        seen += 1;
    }
    assert!(seen >= 12, "only {seen} normalize seeds");
}
