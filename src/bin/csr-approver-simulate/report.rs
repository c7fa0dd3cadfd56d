//! What a simulation reports: per-phase approval latency, throughput, and the forgeries
//! that got through (there must be none).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// One CSR approved: how long after its `create`, and when (the wall clock, so a script can
/// relate it to when it started an approver).
#[derive(Debug, Clone, Copy)]
pub struct Approval {
    pub latency: Duration,
    pub at: SystemTime,
}

/// Writes one line per approved CSR, `<phase> <create→Approved ms> <approved at, Unix ms>`
/// (for latency CDFs; `--latencies FILE`).
pub fn write_latencies(path: &Path, phases: &[(&str, &[Approval])]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (phase, approvals) in phases {
        for approval in *approvals {
            let at = approval
                .at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            writeln!(
                out,
                "{phase} {:.3} {}",
                approval.latency.as_secs_f64() * 1000.0,
                at.as_millis()
            )?;
        }
    }
    out.flush()
}

/// Latency percentiles of one phase, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseStats {
    pub phase: &'static str,
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl PhaseStats {
    pub fn of(phase: &'static str, mut samples: Vec<Duration>) -> PhaseStats {
        samples.sort();
        // Nearest rank: the smallest sample at or above the quantile.
        let pick = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index].as_secs_f64() * 1000.0
        };
        PhaseStats {
            phase,
            count: samples.len(),
            p50_ms: pick(0.50),
            p95_ms: pick(0.95),
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    pub nodes: usize,
    pub joined: usize,
    pub used_machines: bool,
    /// Only serving CSRs were submitted (`--serving-only`): `phases` has only that one.
    pub serving_only: bool,
    pub phases: Vec<PhaseStats>,
    pub wall_seconds: f64,
    pub approvals_per_second: f64,
    pub forged: usize,
    pub forged_approved: Vec<String>,
    pub failures: Vec<String>,
}

impl SimulationReport {
    pub fn succeeded(&self) -> bool {
        self.forged_approved.is_empty() && self.failures.is_empty() && self.joined == self.nodes
    }

    pub fn render_table(&self) -> String {
        let mut out = format!(
            "{} of {} nodes joined in {:.2}s ({:.1} approvals/s){}\n\n",
            self.joined,
            self.nodes,
            self.wall_seconds,
            self.approvals_per_second,
            if self.used_machines {
                ", with Machines"
            } else {
                ", inventory only (no Machine API)"
            }
        );
        out.push_str(&format!(
            "{:<28} {:>6} {:>10} {:>10} {:>10} {:>10}\n",
            "PHASE", "COUNT", "P50 ms", "P95 ms", "P99 ms", "MAX ms"
        ));
        for p in &self.phases {
            out.push_str(&format!(
                "{:<28} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1}\n",
                p.phase, p.count, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms
            ));
        }
        out.push_str(&format!(
            "\nforged CSRs submitted: {}, approved: {}{}\n",
            self.forged,
            self.forged_approved.len(),
            if self.forged_approved.is_empty() {
                " (good)".to_string()
            } else {
                format!(" — {:?}", self.forged_approved)
            }
        ));
        for failure in &self.failures {
            out.push_str(&format!("FAILED: {failure}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_one_line_per_csr() -> std::io::Result<()> {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let approval = |micros| Approval {
            latency: Duration::from_micros(micros),
            at,
        };
        let path = std::env::temp_dir().join(format!("latencies-{}.txt", std::process::id()));
        write_latencies(
            &path,
            &[
                ("client", &[approval(1500)]),
                ("serving", &[approval(250), approval(2_000_000)]),
            ],
        )?;
        let text = std::fs::read_to_string(&path)?;
        std::fs::remove_file(&path)?;
        assert_eq!(
            text,
            "client 1.500 1700000000123\nserving 0.250 1700000000123\nserving 2000.000 1700000000123\n"
        );
        Ok(())
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let stats = PhaseStats::of("phase", samples);
        assert_eq!(
            (
                stats.count,
                stats.p50_ms,
                stats.p95_ms,
                stats.p99_ms,
                stats.max_ms
            ),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(PhaseStats::of("none", Vec::new()).max_ms, 0.0);
    }
}
