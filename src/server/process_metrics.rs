//! Metrics of the server process itself, under Prometheus' standard
//! names. Only resident memory for now: the soak run compares it after
//! warm-up and at the end to find leaks.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the process's figures at each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Absent where the platform does not say: no made-up zero.
        if let Some(bytes) = resident_memory_bytes() {
            let gauge = ConstGauge::new(bytes as f64);
            gauge.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// `VmRSS` of /proc/self/status, which is in kB: /proc/self/statm counts
/// pages, and the page size would need libc.
#[cfg(target_os = "linux")]
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

#[cfg(not(target_os = "linux"))]
pub fn resident_memory_bytes() -> Option<u64> {
    None
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\twgserve\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_resident_memory() {
        assert!(resident_memory_bytes().is_some_and(|bytes| bytes > 0));
    }
}
