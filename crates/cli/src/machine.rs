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

/// Descriptors palisade keeps for itself beside client connections: listeners, upstream and Redis connections,
/// the compile cache, the key-value store, log and data files.
const RESERVED_DESCRIPTORS: u64 = 512;

/// Raises this process's soft limit on open descriptors to its hard limit, as nginx (`worker_rlimit_nofile`)
/// and Go do: the usual soft limit of 1,024 is far below what a server holding thousands of connections
/// needs. Returns the limit now in force (`None`: unlimited, or it cannot be read).
pub(crate) fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(from = ?limit.current, to = ?limit.maximum, "raised the open-descriptor limit"),
            Err(e) => tracing::warn!("cannot raise the open-descriptor limit from {:?}: {e}", limit.current),
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Something worth saying at start-up: a warning, or only information.
pub(crate) struct Note {
    pub(crate) warning: bool,
    pub(crate) text: String,
}

/// Holds the connection limits to what `descriptors` allow: `max_connections` at most the descriptors left
/// beside palisade's own (lowering the default is information, lowering a configured value a warning), and a
/// warning when one client address may take them all. Returns what it found, to be logged.
pub(crate) fn fit_connections(traffic: &mut palisade_config::TrafficLimits, descriptors: Option<u64>) -> Vec<Note> {
    let defaults = palisade_config::TrafficLimits::default();
    let mut said = Vec::new();
    if let Some(descriptors) = descriptors {
        let room = u32::try_from(descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(64)).unwrap_or(u32::MAX);
        if traffic.max_connections > room {
            let warning = traffic.max_connections != defaults.max_connections;
            let text = format!(
                "max_connections lowered from {} to {room}: the process may open {descriptors} descriptors (raise \
                 the hard limit, e.g. LimitNOFILE= in a systemd unit, to allow more)",
                traffic.max_connections
            );
            said.push(Note { warning, text });
            traffic.max_connections = room;
        }
    }
    if traffic.max_connections_per_ip >= traffic.max_connections {
        let text = format!(
            "max_connections_per_ip ({}) is not below max_connections ({}): one client address can take every \
             connection",
            traffic.max_connections_per_ip, traffic.max_connections
        );
        said.push(Note { warning: true, text });
    }
    said
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
    fn connection_limits_fit_the_descriptors() {
        let mut t = palisade_config::TrafficLimits::default();
        assert!(fit_connections(&mut t, Some(1_048_576)).is_empty(), "the defaults fit a raised limit");
        let said = fit_connections(&mut t, Some(1024));
        assert_eq!(t.max_connections, 512);
        assert!(said[0].text.contains("lowered from 20000 to 512") && !said[0].warning, "the default: information");
        assert!(said[1].text.contains("one client address can take every connection") && said[1].warning);
        t.max_connections = 1000;
        assert!(fit_connections(&mut t, Some(1024))[0].warning, "a configured value lowered: a warning");
        let mut t = palisade_config::TrafficLimits::default();
        assert!(fit_connections(&mut t, None).is_empty(), "unlimited");
        assert!(raise_descriptor_limit().is_some_and(|n| n >= 64));
    }

    #[test]
    fn reads_memtotal() {
        let meminfo = "MemTotal:       24596348 kB\nMemFree:        23000000 kB\n";
        assert_eq!(meminfo_total(meminfo), Some(24_596_348 * 1024));
        assert_eq!(meminfo_total("nothing"), None);
        let guest = default_guest_memory();
        assert!(guest >= 16 << 20, "half of this machine's memory: {guest}");
    }
}
