//! Process and machine figures from /proc: a process's resident memory and
//! CPU time (the server's with `--pid`, and the client's own), and the CPU
//! time the hypervisor stole from this machine.

/// A process's resident memory and CPU time at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcSample {
    pub(crate) rss_kib: u64,
    pub(crate) cpu_s: f64,
}

/// Reads VmRSS from /proc/WHO/status and the CPU time of the process; `who`
/// is a pid or `self`.
pub(crate) fn sample_proc(who: &str) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let rss_kib = rss.trim().trim_end_matches("kB").trim().parse().ok()?;
    let cpu_s =
        cpu_ns_of_threads(who).map_or_else(|| cpu_ticks_s(who), |ns| Some(ns as f64 / 1e9))?;
    Some(ProcSample { rss_kib, cpu_s })
}

/// CPU time in nanoseconds summed over the live threads (the first field of
/// each /proc/WHO/task/TID/schedstat). Clock ticks (10 ms) would make a
/// short run's CPU per delivery mostly rounding; a thread that exits during
/// the run takes its time with it, which the servers measured here do not do.
fn cpu_ns_of_threads(who: &str) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{who}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// utime + stime of all threads, dead ones included, from /proc/WHO/stat:
/// for kernels without schedstat.
fn cpu_ticks_s(who: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses, so fields
    // are counted from the last ')': field 3 is then index 0, utime (14) is 11.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// Seconds of CPU time the hypervisor gave other guests ("steal", summed
/// over this machine's CPUs, from /proc/stat): on a VM, a run with much of
/// it had its server or client held back by the host.
pub(crate) fn steal_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: u64 = cpu.split_whitespace().nth(7)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}
