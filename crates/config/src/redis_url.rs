//! The Redis URLs `[cluster] redis` and `[kv] backend` accept: `redis://HOST:PORT/DB`, or
//! `redis+sentinel://HOST:PORT,HOST:PORT,.../MASTER[/DB]` for the master a set of Sentinels monitors.
//!
//! Only their shape is checked here (this crate does no networking and links no Redis client); the server
//! reads them again with the client's own parser (palisade-redis), which accepts what passes here.

/// What a Sentinel URL starts with.
const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// What a plain URL starts with.
const PLAIN_SCHEME: &str = "redis://";

/// Both forms, for messages.
pub(crate) const FORMS: &str =
    "a redis:// URL (redis://HOST:PORT/DB) or a Sentinel one (redis+sentinel://HOST:PORT,HOST:PORT,.../MASTER)";

/// Whether `url` looks like one of the two forms at all (to tell a malformed Redis URL from something else).
pub(crate) fn is_redis_url(url: &str) -> bool {
    url.starts_with(PLAIN_SCHEME) || url.starts_with(SENTINEL_SCHEME)
}

/// `Ok` for a `redis://` URL with something after the scheme, or a well-formed Sentinel URL; otherwise
/// what is wrong, to show the operator.
pub(crate) fn check(url: &str) -> Result<(), String> {
    if let Some(rest) = url.strip_prefix(PLAIN_SCHEME) {
        return if rest.is_empty() { Err(format!("{url:?} names no server; {FORMS}")) } else { Ok(()) };
    }
    let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else { return Err(format!("{url:?} is not {FORMS}")) };
    if rest.contains(['@', '?', '#']) {
        return Err(format!("{url:?}: passwords, `?` options and `#` fragments are not supported in a Sentinel URL"));
    }
    let (addresses, path) = rest.split_once('/').unwrap_or((rest, ""));
    if addresses.is_empty() {
        return Err(format!("{url:?} names no Sentinel: write redis+sentinel://HOST:PORT,HOST:PORT/MASTER"));
    }
    if let Some(bad) = addresses.split(',').find(|address| !is_sentinel_address(address)) {
        return Err(format!("{url:?}: the Sentinel {bad:?} is not HOST:PORT with a port from 1 to 65535"));
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    let (master, db) = path.split_once('/').unwrap_or((path, ""));
    if master.is_empty() || master.contains(char::is_whitespace) {
        return Err(format!(
            "{url:?} names no master: write redis+sentinel://HOST:PORT,.../MASTER (the name in `sentinel monitor`)"
        ));
    }
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("{url:?}: {db:?} after the master's name is not a database number"));
    }
    Ok(())
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with a port (if written) from 1 to 65535.
fn is_sentinel_address(written: &str) -> bool {
    let (host, port) = if let Some(bracketed) = written.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else { return false };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return false,
            },
        }
    } else {
        match written.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (written, None),
        }
    };
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|p| p != 0));
    !host.is_empty() && !host.contains(['[', ']', ' ', '/']) && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_forms() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://cache",
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster",
            "redis+sentinel://s1,s2:26380/mymaster/0",
            "redis+sentinel://[::1]:26379/mymaster/2/",
        ] {
            assert_eq!(check(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn refuses_malformed_urls_saying_why() {
        for (url, says) in [
            ("10.0.0.5:6379", "is not a redis:// URL"),
            ("redis://", "names no server"),
            ("redis+sentinel://", "names no Sentinel"),
            ("redis+sentinel:///mymaster", "names no Sentinel"),
            ("redis+sentinel://h:26379", "names no master"),
            ("redis+sentinel://h:26379/", "names no master"),
            ("redis+sentinel://h:port/m", "\"h:port\" is not HOST:PORT"),
            ("redis+sentinel://h:0/m", "\"h:0\" is not HOST:PORT"),
            ("redis+sentinel://h:1,,h:2/m", "\"\" is not HOST:PORT"),
            ("redis+sentinel://[::1/m", "is not HOST:PORT"),
            ("redis+sentinel://h:1/m/x", "\"x\" after the master's name"),
            ("redis+sentinel://h:1/m/0/1", "after the master's name"),
            ("redis+sentinel://h:1/m?password=x", "not supported"),
        ] {
            let problem = check(url).expect_err(url);
            assert!(problem.contains(says), "{url}: {problem}");
        }
    }
}
