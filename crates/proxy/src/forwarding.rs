//! The headers a proxy changes: hop-by-hop fields removed both ways (RFC 9110 §7.6.1), the client's address,
//! scheme and host passed on (`X-Forwarded-*`, `Forwarded` from RFC 7239), and `Via` added.

use std::cell::RefCell;
use std::net::IpAddr;

use bytes::Bytes;

use http::Version;
use http::header::{self, Entry, GetAll, HeaderMap, HeaderName, HeaderValue, OccupiedEntry};

/// Whether a field describes one connection, never forwarded whatever `Connection` lists. (A match on the
/// name, not a constant array of names: such an array is built and dropped again wherever it is used.)
fn is_hop_by_hop(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"te" | b"trailer" | b"transfer-encoding" | b"upgrade"
    )
}

/// [`is_hop_by_hop`] for a field's name. The standard names compare as small integers and the two others as
/// bytes, with no name spelled out; the custom ones are statics, so no value is built and dropped per call.
/// The same seven names as [`is_hop_by_hop`] (a test holds the two lists together).
fn is_hop_by_hop_name(name: &HeaderName) -> bool {
    static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

/// [`is_hop_by_hop`] for a `Connection` token, in any case.
fn names_hop_by_hop(token: &[u8]) -> bool {
    let mut lower = [0u8; "transfer-encoding".len()];
    let Some(lower) = lower.get_mut(..token.len()) else { return false };
    lower.copy_from_slice(token);
    lower.make_ascii_lowercase();
    is_hop_by_hop(lower)
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the proxy knows about the client side of one request.
pub(crate) struct Client<'a> {
    /// The client's address.
    pub(crate) addr: IpAddr,
    /// Whether the request arrived over TLS.
    pub(crate) secure: bool,
    /// The host the client asked for (`Host`, or the HTTP/2 `:authority`).
    pub(crate) host: Option<&'a HeaderValue>,
    /// The client's HTTP version, for `Via`.
    pub(crate) version: Version,
}

/// Whether a request asks to switch protocols (`Connection: upgrade` with an `Upgrade` field, HTTP/1.1 only):
/// the protocols it names, to pass on.
pub(crate) fn requested_upgrade(headers: &HeaderMap, version: Version) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    (version == Version::HTTP_11
        && tokens(&headers.get_all(header::CONNECTION)).any(|t| t.eq_ignore_ascii_case("upgrade")))
    .then(|| upgrade.clone())
}

/// Rewrites a request's headers for the upstream. `upgrade` is what [`requested_upgrade`] found;
/// `keep_te_trailers` keeps `TE: trailers` (meaningful to HTTP/2 upstreams, e.g. gRPC).
pub(crate) fn request(
    headers: &mut HeaderMap,
    client: &Client<'_>,
    upgrade: Option<HeaderValue>,
    preserve_host: bool,
    keep_te_trailers: bool,
) {
    let te_trailers =
        keep_te_trailers && headers.get_all(header::TE).iter().any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    remove_hop_by_hop(headers);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocols) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocols);
    }
    match client.host {
        // HTTP/2 clients send `:authority` instead of `Host`.
        Some(host) if preserve_host => {
            headers.entry(header::HOST).or_insert_with(|| host.clone());
        }
        _ => {
            headers.remove(header::HOST);
        }
    }

    let proto = if client.secure { "https" } else { "http" };
    if let Some(added) = Added::for_client(client, proto) {
        append(headers, X_FORWARDED_FOR, added.for_);
        append(headers, header::FORWARDED, added.forwarded);
    }
    // The edge is where the scheme and host are known first hand: what a client claims is replaced.
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match client.host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    append(headers, header::VIA, HeaderValue::from_static(via(client.version)));
}

/// The `X-Forwarded-For` and `Forwarded` values added for one client.
#[derive(Clone)]
struct Added {
    for_: HeaderValue,
    forwarded: HeaderValue,
}

/// [`Added`] for the last client this thread forwarded for, and who that was.
struct LastClient {
    addr: IpAddr,
    secure: bool,
    host: Option<HeaderValue>,
    added: Added,
}

thread_local! {
    static LAST_CLIENT: RefCell<Option<LastClient>> = const { RefCell::new(None) };
}

impl Added {
    /// The values for `client`, reused while consecutive requests on this thread come from the same client,
    /// scheme and host (as the requests of one keep-alive or HTTP/2 connection do): writing and checking them
    /// cost more than the rest of the rewrite. `None` only if they would not be valid field values.
    fn for_client(client: &Client<'_>, proto: &'static str) -> Option<Added> {
        LAST_CLIENT.with_borrow_mut(|last| {
            if let Some(last) = last
                && last.addr == client.addr
                && last.secure == client.secure
                && last.host.as_ref() == client.host
            {
                return Some(last.added.clone());
            }
            let added = Added::new(client, proto)?;
            *last = Some(LastClient {
                addr: client.addr,
                secure: client.secure,
                host: client.host.cloned(),
                added: added.clone(),
            });
            Some(added)
        })
    }

    /// Writes the values: `Forwarded` first, `X-Forwarded-For` being the address within it, shared rather than
    /// copied.
    fn new(client: &Client<'_>, proto: &'static str) -> Option<Added> {
        let addr = client.addr.to_canonical();
        let mut forwarded = String::with_capacity(64);
        forwarded.push_str("for=");
        let bracketed = addr.is_ipv6();
        if bracketed {
            forwarded.push_str("\"[");
        }
        let addr_at = forwarded.len();
        push_address(&mut forwarded, addr);
        let addr_end = forwarded.len();
        if bracketed {
            forwarded.push_str("]\"");
        }
        forwarded.push_str(";proto=");
        forwarded.push_str(proto);
        if let Some(host) = client.host.and_then(|h| h.to_str().ok()) {
            forwarded.push_str(";host=");
            push_quoted_if_needed(&mut forwarded, host);
        }
        let forwarded = Bytes::from(forwarded);
        Some(Added {
            for_: HeaderValue::from_maybe_shared(forwarded.slice(addr_at..addr_end)).ok()?,
            forwarded: HeaderValue::from_maybe_shared(forwarded).ok()?,
        })
    }
}

/// Writes an address the way `Display` does, without the formatting machinery for IPv4 (every request
/// writes one).
fn push_address(out: &mut String, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Rewrites an upstream's response headers for the client; `upgrading` keeps `Connection` and `Upgrade` on a
/// 101 answer to an upgrade request.
pub(crate) fn response(headers: &mut HeaderMap, version: Version, upgrading: bool) {
    let upgrade = upgrading.then(|| headers.get(header::UPGRADE).cloned()).flatten();
    remove_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    append(headers, header::VIA, HeaderValue::from_static(via(version)));
}

/// Removes the fixed hop-by-hop fields and every field `Connection` names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry `Connection: keep-alive` or `close` (or nothing) and no other field of the kind: then
    // the fields present are looked at once and only those found are removed (a removal costs a hash and a
    // probe), with no allocation and no token parsing. A `Connection` naming other fields takes the general way.
    let mut close = false;
    let only_fixed = headers.get_all(header::CONNECTION).iter().all(|value| {
        let token = value.as_bytes().trim_ascii();
        let is_close = token.eq_ignore_ascii_case(b"close");
        close |= is_close;
        is_close || names_hop_by_hop(token)
    });
    if !only_fixed {
        let connection = headers.get_all(header::CONNECTION);
        let named: Vec<&str> = tokens(&connection).collect();
        let found: Vec<HeaderName> = headers
            .keys()
            .filter(|k| is_hop_by_hop_name(k) || named.iter().any(|t| t.eq_ignore_ascii_case(k.as_str())))
            .cloned()
            .collect();
        for name in &found {
            headers.remove(name);
        }
        return;
    }
    // At most the seven fixed names and `close`.
    let mut found = [const { None::<HeaderName> }; 8];
    let named = |k: &&HeaderName| is_hop_by_hop_name(k) || (close && k.as_str() == "close");
    for (slot, name) in found.iter_mut().zip(headers.keys().filter(named)) {
        *slot = Some(name.clone());
    }
    for name in found.iter().flatten() {
        headers.remove(name);
    }
}

/// The comma-separated tokens of every `Connection` field.
fn tokens<'a>(connection: &GetAll<'a, HeaderValue>) -> impl Iterator<Item = &'a str> + use<'a> {
    connection
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Appends `value` to a list field, folding the lines already there into one.
fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    match headers.entry(name) {
        Entry::Vacant(slot) => {
            slot.insert(value);
        }
        Entry::Occupied(mut slot) => {
            if let Ok(value) = value.to_str() {
                fold(&mut slot, value);
            }
        }
    }
}

/// Replaces a field's lines with one: their values and `value`, comma-separated.
fn fold(slot: &mut OccupiedEntry<'_, HeaderValue>, value: &str) {
    let mut list: Vec<&str> = slot.iter().filter_map(|v| v.to_str().ok()).collect();
    list.push(value);
    if let Ok(joined) = HeaderValue::try_from(list.join(", ")) {
        slot.insert(joined);
    }
}

fn via(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9 palisade",
        Version::HTTP_10 => "1.0 palisade",
        Version::HTTP_2 => "2 palisade",
        Version::HTTP_3 => "3 palisade",
        _ => "1.1 palisade",
    }
}

/// Appends an RFC 7239 value to `out`: a token as is, anything else as a quoted string.
fn push_quoted_if_needed(out: &mut String, value: &str) {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !value.is_empty() && value.bytes().all(token) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    fn client(host: &HeaderValue) -> Client<'_> {
        Client { addr: "192.0.2.7".parse().unwrap(), secure: true, host: Some(host), version: Version::HTTP_11 }
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("connection", "close"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ]);
        let host = HeaderValue::from_static("alice.test");
        request(&mut h, &client(&host), None, true, false);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-connection",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn names_and_connection_tokens_agree_on_what_is_hop_by_hop() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "close",
            "host",
            "content-length",
            "x-kept",
        ] {
            assert_eq!(is_hop_by_hop_name(&HeaderName::from_static(name)), is_hop_by_hop(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn connection_naming_only_fixed_fields_or_close() {
        let mut h =
            headers(&[("connection", " Keep-Alive "), ("keep-alive", "timeout=5"), ("close", "1"), ("x-kept", "1")]);
        response(&mut h, Version::HTTP_11, false);
        assert!(!h.contains_key("connection") && !h.contains_key("keep-alive"));
        assert!(h.contains_key("close") && h.contains_key("x-kept"), "a field Connection does not name was removed");
        let mut h = headers(&[("connection", "CLOSE"), ("connection", "te"), ("close", "1"), ("te", "x")]);
        response(&mut h, Version::HTTP_11, false);
        assert!(!h.contains_key("close") && !h.contains_key("te") && !h.contains_key("connection"), "{h:?}");
    }

    #[test]
    fn forwarding_fields_are_appended_or_replaced() {
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "203.0.113.2"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil.test"),
            ("forwarded", "for=203.0.113.1"),
            ("via", "1.0 corp-proxy"),
        ]);
        let host = HeaderValue::from_static("alice.test:8443");
        request(&mut h, &client(&host), None, true, false);
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 203.0.113.2, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "alice.test:8443");
        assert_eq!(h["forwarded"], "for=203.0.113.1, for=192.0.2.7;proto=https;host=\"alice.test:8443\"");
        assert_eq!(h["via"], "1.0 corp-proxy, 1.1 palisade");
        assert_eq!(h["host"], "alice.test:8443");
    }

    #[test]
    fn ipv6_clients_are_bracketed_and_mapped_v4_is_plain() {
        let host = HeaderValue::from_static("a.test");
        let mut c = client(&host);
        c.addr = "2001:db8::1".parse().unwrap();
        let mut h = HeaderMap::new();
        request(&mut h, &c, None, true, false);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=https;host=a.test");
        c.addr = "::ffff:192.0.2.9".parse().unwrap();
        let mut h = HeaderMap::new();
        request(&mut h, &c, None, true, false);
        assert_eq!(h["x-forwarded-for"], "192.0.2.9");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for addr in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "1.20.3.199", "192.0.2.7", "2001:db8::1", "::1"] {
            let mut out = String::new();
            push_address(&mut out, addr.parse().unwrap());
            assert_eq!(out, addr);
        }
    }

    #[test]
    fn host_is_kept_or_left_to_the_upstream_address() {
        let host = HeaderValue::from_static("alice.test");
        let mut h = HeaderMap::new();
        request(&mut h, &client(&host), None, true, false);
        assert_eq!(h["host"], "alice.test");
        let mut h = headers(&[("host", "alice.test")]);
        request(&mut h, &client(&host), None, false, false);
        assert!(!h.contains_key("host"));
    }

    #[test]
    fn upgrades_and_te_trailers_survive_when_asked() {
        let h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let upgrade = requested_upgrade(&h, Version::HTTP_11);
        assert_eq!(upgrade.as_ref().map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        assert!(requested_upgrade(&h, Version::HTTP_2).is_none());
        assert!(requested_upgrade(&headers(&[("upgrade", "websocket")]), Version::HTTP_11).is_none());

        let host = HeaderValue::from_static("a.test");
        let mut h = headers(&[("connection", "Upgrade, te"), ("upgrade", "websocket"), ("te", "trailers")]);
        request(&mut h, &client(&host), upgrade, true, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["te"], "trailers");

        let mut r = headers(&[("connection", "upgrade"), ("upgrade", "websocket"), ("keep-alive", "1")]);
        response(&mut r, Version::HTTP_11, true);
        assert_eq!([&r["connection"], &r["upgrade"], &r["via"]], ["upgrade", "websocket", "1.1 palisade"]);
        assert!(!r.contains_key("keep-alive"));
        let mut r = headers(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        response(&mut r, Version::HTTP_2, false);
        assert!(!r.contains_key("upgrade") && !r.contains_key("connection"));
        assert_eq!(r["via"], "2 palisade");
    }
}
