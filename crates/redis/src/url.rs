//! `redis+sentinel://HOST:PORT,HOST:PORT,.../MASTER[/DB]`: the Sentinels to ask, and which master.

use crate::LinkError;

/// The scheme of a Sentinel URL.
pub(crate) const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// The port Sentinels listen on unless told otherwise, used for an address written without one.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A parsed Sentinel URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The Sentinels, as (host, port), in the order written: they are asked in that order.
    pub sentinels: Vec<(String, u16)>,
    /// The name the Sentinels monitor the master under (`sentinel monitor NAME ...`).
    pub master_name: String,
    /// The database to select on the master (0 unless written).
    pub db: i64,
}

/// Parses `redis+sentinel://HOST[:PORT],HOST[:PORT],.../MASTER[/DB]` (an IPv6 host in brackets, a port left
/// out is 26379, a trailing `/` allowed). Credentials, `?` options and `#` fragments are refused rather than
/// silently ignored.
pub fn parse_sentinel_url(url: &str) -> Result<SentinelUrl, LinkError> {
    let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else { return Err(LinkError::Scheme(url.to_string())) };
    if rest.contains(['@', '?', '#']) {
        return Err(LinkError::Unsupported(url.to_string()));
    }
    let (addresses, path) = rest.split_once('/').unwrap_or((rest, ""));
    if addresses.is_empty() {
        return Err(LinkError::NoSentinel(url.to_string()));
    }
    let sentinels = addresses
        .split(',')
        .map(|address| {
            sentinel_address(address)
                .ok_or_else(|| LinkError::BadAddress { url: url.to_string(), address: address.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let (master_name, db) = path.split_once('/').unwrap_or((path, ""));
    if master_name.is_empty() || master_name.contains(char::is_whitespace) {
        return Err(LinkError::NoMasterName(url.to_string()));
    }
    let db = match db {
        "" => 0,
        written => written
            .parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| LinkError::BadDatabase { url: url.to_string(), rest: written.to_string() })?,
    };
    Ok(SentinelUrl { sentinels, master_name: master_name.to_string(), db })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` if empty or the port is not 1-65535.
fn sentinel_address(written: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(bracketed) = written.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match written.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (written, None),
        }
    };
    if host.is_empty() || host.contains(['[', ']', ' ', '/']) {
        return None;
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(port) => port.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinels(list: &[(&str, u16)]) -> Vec<(String, u16)> {
        list.iter().map(|(h, p)| (h.to_string(), *p)).collect()
    }

    #[test]
    fn parses_sentinels_master_and_database() {
        let url = parse_sentinel_url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-c/mymaster/3").unwrap();
        assert_eq!(url.sentinels, sentinels(&[("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-c", 26379)]));
        assert_eq!(url.master_name, "mymaster");
        assert_eq!(url.db, 3);

        let url = parse_sentinel_url("redis+sentinel://[::1]:5000,[fe80::1]/cache/").unwrap();
        assert_eq!(url.sentinels, sentinels(&[("::1", 5000), ("fe80::1", 26379)]));
        assert_eq!((url.master_name.as_str(), url.db), ("cache", 0));
        assert_eq!(parse_sentinel_url("redis+sentinel://h:1/m/0/").unwrap().db, 0);
    }

    #[test]
    fn refuses_malformed_urls_with_the_reason() {
        type Expected = fn(&LinkError) -> bool;
        let cases: &[(&str, Expected)] = &[
            ("redis://h:1/m", |e| matches!(e, LinkError::Scheme(_))),
            ("redis+sentinel:///mymaster", |e| matches!(e, LinkError::NoSentinel(_))),
            ("redis+sentinel://", |e| matches!(e, LinkError::NoSentinel(_))),
            ("redis+sentinel://h:26379", |e| matches!(e, LinkError::NoMasterName(_))),
            ("redis+sentinel://h:26379/", |e| matches!(e, LinkError::NoMasterName(_))),
            ("redis+sentinel://h:26379//0", |e| matches!(e, LinkError::NoMasterName(_))),
            (
                "redis+sentinel://h:port/m",
                |e| matches!(e, LinkError::BadAddress { address, .. } if address == "h:port"),
            ),
            ("redis+sentinel://h:0/m", |e| matches!(e, LinkError::BadAddress { .. })),
            ("redis+sentinel://h:70000/m", |e| matches!(e, LinkError::BadAddress { .. })),
            (
                "redis+sentinel://h:1,,h:2/m",
                |e| matches!(e, LinkError::BadAddress { address, .. } if address.is_empty()),
            ),
            ("redis+sentinel://h:1:2/m", |e| matches!(e, LinkError::BadAddress { .. })),
            ("redis+sentinel://[::1/m", |e| matches!(e, LinkError::BadAddress { .. })),
            ("redis+sentinel://h:1/m/x", |e| matches!(e, LinkError::BadDatabase { rest, .. } if rest == "x")),
            ("redis+sentinel://h:1/m/-1", |e| matches!(e, LinkError::BadDatabase { .. })),
            ("redis+sentinel://h:1/m/0/1", |e| matches!(e, LinkError::BadDatabase { .. })),
            ("redis+sentinel://:pw@h:1/m", |e| matches!(e, LinkError::Unsupported(_))),
            ("redis+sentinel://h:1/m?password=x", |e| matches!(e, LinkError::Unsupported(_))),
        ];
        for (url, expected) in cases {
            let error = parse_sentinel_url(url).expect_err(url);
            assert!(expected(&error), "{url}: {error}");
            assert!(error.to_string().contains(url), "{url}: the message names the URL: {error}");
        }
    }
}
