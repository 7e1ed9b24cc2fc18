//! This process's resources for `/metrics`, with Prometheus' standard names: resident and
//! virtual memory, CPU seconds, open and maximum file descriptors, start time. From `/proc`
//! (the `procfs` crate) on Linux; elsewhere none are reported.

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time: f64,
}

/// Reads this process's figures now; `None` where they cannot be read.
#[cfg(target_os = "linux")]
pub fn read() -> Option<ProcessStats> {
    let me = procfs::process::Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let page = procfs::page_size();
    let boot = procfs::boot_time_secs().ok()? as f64;
    let open_fds = me.fd_count().ok()? as u64;
    let max_fds = me
        .limits()
        .ok()
        .and_then(|l| match l.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(v) => Some(v),
            procfs::process::LimitValue::Unlimited => None,
        });
    Some(ProcessStats {
        resident_bytes: stat.rss * page,
        virtual_bytes: stat.vsize,
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        open_fds,
        max_fds,
        start_time: boot + stat.starttime as f64 / ticks,
    })
}

/// Reads this process's figures now; `None` where they cannot be read.
#[cfg(not(target_os = "linux"))]
pub fn read() -> Option<ProcessStats> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn this_process_has_memory_cpu_and_files() {
        let s = super::read().expect("/proc is readable");
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.open_fds >= 3, "{s:?}");
        assert!(s.start_time > 1_600_000_000.0, "{s:?}");
    }
}
