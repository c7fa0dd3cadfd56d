//! Arbitrary UTF-8 as a policy document: Policy::from_yaml never panics, and a policy that
//! parses re-serialises to YAML that parses again.
#![no_main]

use csr_approver_fuzz::harness::{Checks, policy_yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    policy_yaml(data, Checks::from_env());
});
