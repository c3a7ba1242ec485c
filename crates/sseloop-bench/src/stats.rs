//! Process and machine figures from /proc: a process's resident memory and
//! CPU time, in total and per thread (the server's processes with `--pid`,
//! and the client's own), and the CPU time the hypervisor stole from this
//! machine.

use std::collections::HashMap;

/// A process's resident memory and CPU time at one moment.
#[derive(Debug, Clone)]
pub(crate) struct ProcSample {
    pub(crate) pid: u32,
    pub(crate) rss_kib: u64,
    pub(crate) cpu_s: f64,
    /// Each live thread's CPU time; empty where the kernel keeps no
    /// schedstat (then `cpu_s` comes from clock ticks).
    pub(crate) threads: Vec<ThreadSample>,
}

/// One thread's name and CPU time at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ThreadSample {
    pub(crate) tid: u32,
    /// Its `comm`, as the thread named itself (at most 15 bytes).
    pub(crate) name: String,
    pub(crate) cpu_ns: u64,
}

/// Reads VmRSS from /proc/WHO/status and the CPU time of the process and
/// of each of its threads; `who` is a pid or `self`.
pub(crate) fn sample_proc(who: &str) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name));
    let rss = field("VmRSS:")?;
    let rss_kib = rss.trim().trim_end_matches("kB").trim().parse().ok()?;
    let pid = field("Pid:")?.trim().parse().ok()?;
    let threads = threads(who).unwrap_or_default();
    let cpu_s = if threads.is_empty() {
        cpu_ticks_s(who)?
    } else {
        threads.iter().map(|t| t.cpu_ns).sum::<u64>() as f64 / 1e9
    };
    Some(ProcSample {
        pid,
        rss_kib,
        cpu_s,
        threads,
    })
}

/// Samples every process of `pids`, in that order; `None` when one cannot
/// be read (it has exited).
pub(crate) fn sample_procs(pids: &[u32]) -> Option<Vec<ProcSample>> {
    pids.iter().map(|p| sample_proc(&p.to_string())).collect()
}

/// The live threads with their CPU time in nanoseconds (the first field of
/// each /proc/WHO/task/TID/schedstat), by thread id. Clock ticks (10 ms)
/// would make a short run's CPU per delivery mostly rounding; a thread that
/// exits during the run takes its time with it, which the servers measured
/// here do not do.
fn threads(who: &str) -> Option<Vec<ThreadSample>> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{who}/task")).ok()? {
        let path = task.ok()?.path();
        let tid = path.file_name()?.to_str()?.parse().ok()?;
        // A thread may end between the listing and these reads: skip it.
        let (Ok(stat), Ok(comm)) = (
            std::fs::read_to_string(path.join("schedstat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue;
        };
        let cpu_ns = stat.split_whitespace().next()?.parse().ok()?;
        let name = comm.trim_end_matches('\n').to_string();
        threads.push(ThreadSample { tid, name, cpu_ns });
    }
    threads.sort_by_key(|t| t.tid);
    Some(threads)
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

/// One server thread's CPU time in the connect phase and over the run.
#[derive(Debug, PartialEq)]
pub(crate) struct ThreadRun {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) name: String,
    /// `None` for a thread that started after the connect phase began.
    pub(crate) connecting_ns: Option<u64>,
    pub(crate) run_ns: u64,
}

/// Each thread alive at the end, in process order then thread id, with
/// the CPU time it took between the samples: before connecting,
/// connected, and at the end. A thread born later counts from zero; one
/// that ended before the last sample is not listed (nor counted in the
/// process's total).
pub(crate) fn thread_runs(
    before: &[ProcSample],
    connected: &[ProcSample],
    end: &[ProcSample],
) -> Vec<ThreadRun> {
    let index = |samples: &[ProcSample]| -> HashMap<(u32, u32), u64> {
        let threads = samples
            .iter()
            .flat_map(|p| p.threads.iter().map(|t| (p.pid, t)));
        threads.map(|(pid, t)| ((pid, t.tid), t.cpu_ns)).collect()
    };
    let (before, connected) = (index(before), index(connected));
    let mut runs = Vec::new();
    for p in end {
        for t in &p.threads {
            let key = (p.pid, t.tid);
            let at_connect = connected.get(&key).copied();
            runs.push(ThreadRun {
                pid: p.pid,
                tid: t.tid,
                name: t.name.clone(),
                connecting_ns: at_connect
                    .map(|c| c.saturating_sub(*before.get(&key).unwrap_or(&0))),
                run_ns: t.cpu_ns.saturating_sub(at_connect.unwrap_or(0)),
            });
        }
    }
    runs
}

/// The machine's CPU time so far, summed over its CPUs, from /proc/stat.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MachineCpu {
    /// Seconds the hypervisor gave other guests ("steal"): on a VM, a run
    /// with much of it had its server or client held back by the host.
    pub(crate) steal_s: f64,
    /// Seconds some process or the kernel ran (user, nice, system, irq,
    /// softirq): less the server's and the client's own, what the rest of
    /// the machine took during a run.
    pub(crate) busy_s: f64,
}

pub(crate) fn machine_cpu() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // user nice system idle iowait irq softirq steal ...
    let field = |i: usize| ticks.get(i).copied();
    let busy = field(0)? + field(1)? + field(2)? + field(5)? + field(6)?;
    Some(MachineCpu {
        steal_s: field(7)? as f64 / hz,
        busy_s: busy as f64 / hz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, threads: &[(u32, &str, u64)]) -> ProcSample {
        let threads: Vec<ThreadSample> = threads
            .iter()
            .map(|&(tid, name, cpu_ns)| ThreadSample {
                tid,
                name: name.into(),
                cpu_ns,
            })
            .collect();
        let cpu_s = threads.iter().map(|t| t.cpu_ns).sum::<u64>() as f64 / 1e9;
        ProcSample {
            pid,
            rss_kib: 1,
            cpu_s,
            threads,
        }
    }

    #[test]
    fn this_process_lists_its_named_threads() {
        let sample = sample_proc("self").expect("/proc/self");
        assert_eq!(sample.pid, std::process::id());
        let busy = std::thread::Builder::new()
            .name("stats-probe".into())
            .spawn(|| sample_proc("self").expect("/proc/self"))
            .unwrap()
            .join()
            .unwrap();
        assert!(
            busy.threads.iter().any(|t| t.name == "stats-probe"),
            "{busy:?}"
        );
    }

    #[test]
    fn thread_runs_take_each_threads_share_between_samples() {
        let before = [proc(7, &[(7, "main", 100)]), proc(9, &[(9, "w", 5)])];
        let connected = [
            proc(7, &[(7, "main", 150), (8, "loop", 10), (11, "gone", 3)]),
            proc(9, &[(9, "w", 5)]),
        ];
        // Thread 8 was born while connecting, thread 10 during the run;
        // thread 11 is gone by the end.
        let end = [
            proc(7, &[(7, "main", 400), (8, "loop", 310), (10, "late", 20)]),
            proc(9, &[(9, "w", 45)]),
        ];
        let runs = thread_runs(&before, &connected, &end);
        let got: Vec<_> = runs
            .iter()
            .map(|r| (r.pid, r.tid, r.name.as_str(), r.connecting_ns, r.run_ns))
            .collect();
        assert_eq!(
            got,
            [
                (7, 7, "main", Some(50), 250),
                (7, 8, "loop", Some(10), 300),
                (7, 10, "late", None, 20),
                (9, 9, "w", Some(0), 40),
            ]
        );
    }
}
