//! `log_lines_dropped_total`, read from the log writer at each scrape.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Metric, MetricFamily, MetricType};

/// A counter owned by the log writer ([`crate::telemetry::lines_dropped`]), not by a handle of
/// the registry's: shown as it is, so concurrent scrapes cannot count a drop twice.
pub struct LogLinesDropped {
    desc: Desc,
}

impl LogLinesDropped {
    pub fn new(name: String) -> prometheus::Result<LogLinesDropped> {
        let help = "Log lines dropped because stderr did not take them in time (a log reader that fell behind) or lost to a failed write";
        Ok(LogLinesDropped {
            desc: Desc::new(name, help.to_string(), Vec::new(), Default::default())?,
        })
    }
}

impl Collector for LogLinesDropped {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut counter = Counter::default();
        counter.set_value(crate::telemetry::lines_dropped() as f64);
        let mut metric = Metric::default();
        metric.set_counter(counter);
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::COUNTER);
        family.mut_metric().push(metric);
        vec![family]
    }
}
