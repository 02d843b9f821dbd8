//! The standard `process_*` metrics, with CPU time to the clock tick instead of the whole second.
//!
//! The prometheus crate's collector keeps `process_cpu_seconds_total` as an integer counter
//! (tikv/rust-prometheus#451, #560), so at the bridge's usual load `rate()` of it reads 0 for a
//! while and then a whole second at once: a CPU panel or alert on it is wrong at low load. Its
//! other families are integers by nature and are kept as they are.

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::{Counter, MetricFamily};

const CPU_SECONDS: &str = "process_cpu_seconds_total";

/// The crate's process collector, whose CPU counter is overwritten with the exact value.
pub struct Process {
    inner: ProcessCollector,
    ticks_per_second: f64,
}

impl Process {
    pub fn for_self() -> Process {
        Process {
            inner: ProcessCollector::for_self(),
            ticks_per_second: procfs::ticks_per_second() as f64,
        }
    }

    /// User and system time of every thread so far, in seconds (`None` if `/proc` cannot be
    /// read, when the crate's own value is left).
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
        Some((stat.utime + stat.stime) as f64 / self.ticks_per_second)
    }
}

impl Collector for Process {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.inner.collect();
        if let Some(seconds) = self.cpu_seconds() {
            for family in families.iter_mut().filter(|f| f.name() == CPU_SECONDS) {
                for metric in family.mut_metric() {
                    let mut counter = Counter::default();
                    counter.set_value(seconds);
                    metric.set_counter(counter);
                }
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks() -> u64 {
        let stat = procfs::process::Process::myself().unwrap().stat().unwrap();
        stat.utime + stat.stime
    }

    #[test]
    fn cpu_seconds_are_exported_to_the_clock_tick_not_rounded_down_to_the_second() {
        let per_second = procfs::ticks_per_second();
        // Busy until the process's CPU time is not a whole number of seconds, where the
        // crate's integer counter and the exact value differ.
        let mut x = 0u64;
        while ticks().is_multiple_of(per_second) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let before = ticks();
        let families = Process::for_self().collect();
        let after = ticks();

        let cpu = families.iter().find(|f| f.name() == CPU_SECONDS).unwrap();
        let value = cpu.get_metric()[0].get_counter().get_value();
        assert!(
            value >= before as f64 / per_second as f64 && value <= after as f64 / per_second as f64,
            "{value} s is not between {before} and {after} ticks at {per_second}/s"
        );
        for other in ["process_resident_memory_bytes", "process_open_fds"] {
            assert!(families.iter().any(|f| f.name() == other), "{other} kept");
        }
    }
}
