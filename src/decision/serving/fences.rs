//! The fences (rule 8): ranges and patterns every SAN must lie inside, whoever owns it.

use super::San;
use crate::decision::common::join;
use crate::decision::{Reason, Refusal, refuse};
use crate::policy::{InventoryEntry, Policy};
use crate::vocabulary::AddressValue;

pub(super) fn check_fences(
    sans: &[San],
    node: &str,
    policy: &Policy,
    entries: &[&InventoryEntry],
) -> Result<(), Refusal> {
    let ranges = &policy.serving.allowed_ip_ranges;
    let patterns = &policy.serving.dns_name_patterns;
    for san in sans {
        match &san.value {
            AddressValue::Ip(ip) => {
                if !ranges.is_empty() && !ranges.iter().any(|r| r.contains(*ip)) {
                    return Err(refuse(
                        Reason::SanOutsideFence,
                        format!(
                            "IP SAN {ip} is outside serving.allowedIPRanges [{}]",
                            join(ranges)
                        ),
                    ));
                }
                for entry in entries.iter().filter(|e| !e.ip_ranges.is_empty()) {
                    if !entry.ip_ranges.iter().any(|r| r.contains(*ip)) {
                        return Err(refuse(
                            Reason::SanOutsideFence,
                            format!(
                                "IP SAN {ip} of node {node} is outside the ipRanges [{}] of {}",
                                join(&entry.ip_ranges),
                                entry.describe()
                            ),
                        ));
                    }
                }
            }
            AddressValue::Dns(name) => {
                if !patterns.is_empty() && !patterns.iter().any(|p| p.is_match(name)) {
                    return Err(refuse(
                        Reason::SanOutsideFence,
                        format!(
                            "DNS SAN {name} matches none of serving.dnsNamePatterns [{}]",
                            patterns
                                .iter()
                                .map(|p| p.as_written())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            AddressValue::Invalid(raw) => {
                return Err(refuse(
                    Reason::MalformedSan,
                    format!("SAN {raw:?} is not a valid address"),
                ));
            }
        }
    }
    Ok(())
}
