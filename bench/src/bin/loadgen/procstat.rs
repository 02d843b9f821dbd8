//! What /proc says about a phase: each watched process's CPU time, split by thread group, its
//! context switches, and the whole machine's CPU shares (so idle time and the client's own cost
//! show up next to the servers').

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf only reads a constant of the system; no pointers involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// utime + stime from a `/proc/…/stat` line, in clock ticks.
fn stat_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat_ticks(&stat)? as f64 / clock_ticks_per_s())
}

pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&s, field)
}

fn status_field(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Which part of a process a thread belongs to, by its name: the async runtime's workers, the
/// Kafka client's threads (librdkafka's `rdk:*` and rdkafka's delivery-report poller), or other.
pub fn thread_group(comm: &str) -> &'static str {
    if comm.starts_with("tokio-rt-worker") {
        "runtime"
    } else if comm.starts_with("rdk:") || comm.starts_with("producer pollin") {
        "librdkafka"
    } else {
        "other"
    }
}

/// CPU ticks and context switches (voluntary + involuntary) of one thread group.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Group {
    pub ticks: u64,
    pub switches: u64,
}

/// A process's threads, summed by [`thread_group`]. Threads that exit during a phase take their
/// counts with them: the groups are for reading shares, the process total is [`cpu_seconds`].
pub fn thread_groups(pid: u32) -> BTreeMap<&'static str, Group> {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return groups;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let (Some(comm), Some(stat), Some(status)) = (read("comm"), read("stat"), read("status"))
        else {
            continue;
        };
        let g: &mut Group = groups.entry(thread_group(comm.trim_end())).or_default();
        g.ticks += stat_ticks(&stat).unwrap_or(0);
        g.switches += status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0)
            + status_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
    }
    groups
}

/// Per request and per second figures of each group between two samples of one process.
pub fn groups_json(
    before: &BTreeMap<&'static str, Group>,
    after: &BTreeMap<&'static str, Group>,
    answers: u64,
    elapsed_s: f64,
) -> Value {
    let hz = clock_ticks_per_s();
    let mut out = Map::new();
    for (name, a) in after {
        let b = before.get(name).copied().unwrap_or_default();
        let cpu_s = a.ticks.saturating_sub(b.ticks) as f64 / hz;
        out.insert(
            (*name).to_string(),
            json!({
                "cpu_us_per_req": (answers > 0).then(|| cpu_s * 1e6 / answers as f64),
                "switches_per_s": a.switches.saturating_sub(b.switches) as f64 / elapsed_s,
            }),
        );
    }
    Value::Object(out)
}

/// The machine's `cpu` line of /proc/stat (user, nice, system, idle, iowait, irq, softirq,
/// steal) and its context switch count.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub ticks: [u64; 8],
    pub ctxt: u64,
}

pub fn machine() -> Option<Machine> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_proc_stat(text: &str) -> Option<Machine> {
    let cpu = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut ticks = [0u64; 8];
    for (slot, v) in ticks.iter_mut().zip(cpu.split_whitespace().skip(1)) {
        *slot = v.parse().ok()?;
    }
    let ctxt = text
        .lines()
        .find_map(|l| l.strip_prefix("ctxt "))?
        .trim()
        .parse()
        .ok()?;
    Some(Machine { ticks, ctxt })
}

/// Shares of all CPUs' time between two samples, in percent, and context switches per second.
pub fn machine_json(before: &Machine, after: &Machine, elapsed_s: f64) -> Value {
    let d: Vec<f64> = before
        .ticks
        .iter()
        .zip(after.ticks)
        .map(|(b, a)| a.saturating_sub(*b) as f64)
        .collect();
    let total: f64 = d.iter().sum::<f64>().max(1.0);
    let pct = |v: f64| (v * 1000.0 / total).round() / 10.0;
    json!({
        "user_pct": pct(d[0] + d[1]),
        "system_pct": pct(d[2]),
        "idle_pct": pct(d[3] + d[4]),
        "irq_softirq_pct": pct(d[5] + d[6]),
        "steal_pct": pct(d[7]),
        "ctxt_per_s": after.ctxt.saturating_sub(before.ctxt) as f64 / elapsed_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_grouped_by_their_names() {
        assert_eq!(thread_group("tokio-rt-worker"), "runtime");
        assert_eq!(thread_group("rdk:broker1"), "librdkafka");
        assert_eq!(thread_group("rdk:main"), "librdkafka");
        assert_eq!(thread_group("producer pollin"), "librdkafka");
        assert_eq!(thread_group("qikchat-bridge"), "other");
    }

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (producer (x) y) S 1 1 1 0 -1 4194368 100 0 0 0 250 75 0 0 20 0 9 0 1";
        assert_eq!(stat_ticks(stat), Some(325));
    }

    #[test]
    fn machine_shares_add_idle_and_iowait_and_count_switches_per_second() {
        let a = parse_proc_stat("cpu  100 0 50 800 0 0 50 0 0 0\ncpu0 1 2\nctxt 1000\n").unwrap();
        let b = parse_proc_stat("cpu  200 0 100 1500 100 0 100 0 0 0\nctxt 3000\n").unwrap();
        let m = machine_json(&a, &b, 2.0);
        // 1000 ticks in all: user 100, system 50, idle 700 + iowait 100, softirq 50.
        assert_eq!(m["user_pct"], 10.0);
        assert_eq!(m["system_pct"], 5.0);
        assert_eq!(m["idle_pct"], 80.0);
        assert_eq!(m["irq_softirq_pct"], 5.0);
        assert_eq!(m["ctxt_per_s"], 1000.0);
    }

    #[test]
    fn this_process_has_a_thread_group_and_the_machine_a_sample() {
        let groups = thread_groups(std::process::id());
        assert!(!groups.is_empty(), "no threads read from /proc");
        assert!(machine().is_some());
    }
}
