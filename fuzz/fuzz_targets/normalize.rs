//! Name and IP normalisation (normalize_dns_name, TypedAddress::new, canonical_ip,
//! is_dns1123_subdomain): never panics, idempotent, and equal across IPv4 / IPv4-mapped /
//! long and short IPv6 forms.
#![no_main]

use csr_approver_fuzz::harness::{Checks, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    normalize(data, Checks::from_env());
});
