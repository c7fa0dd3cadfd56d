//! Arbitrary bytes as `spec.request` (PEM, or DER wrapped in PEM), with the CSR object's
//! signer, requester, groups, usages and times chosen by `arbitrary`: parse_request and
//! decide never panic, and an approval implies a valid request for `system:node:<name>`.
#![no_main]

use csr_approver_fuzz::harness::{Checks, request_decide};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    request_decide(data, Checks::from_env());
});
