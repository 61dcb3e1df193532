//! What the machine gives this process, for defaults that depend on it.

/// Default `[server] max_guest_memory`: half the memory this process may use (the machine's, or its
/// control group's limit if lower), so guests flooding memory can never take the rest from the server itself
/// and from whatever else runs there. 1 GiB when neither can be read.
pub(crate) fn default_guest_memory() -> u64 {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| meminfo_total(&m));
    let group = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok().and_then(|v| v.trim().parse::<u64>().ok()));
    match (machine, group) {
        (Some(m), Some(g)) => m.min(g) / 2,
        (Some(only), None) | (None, Some(only)) => only / 2,
        (None, None) => 1 << 30,
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memtotal() {
        let meminfo = "MemTotal:       24596348 kB\nMemFree:        23000000 kB\n";
        assert_eq!(meminfo_total(meminfo), Some(24_596_348 * 1024));
        assert_eq!(meminfo_total("nothing"), None);
        let guest = default_guest_memory();
        assert!(guest >= 16 << 20, "half of this machine's memory: {guest}");
    }
}
