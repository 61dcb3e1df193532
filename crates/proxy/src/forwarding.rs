//! The headers a proxy changes: hop-by-hop fields removed both ways (RFC 9110 §7.6.1), the client's address,
//! scheme and host passed on (`X-Forwarded-*`, `Forwarded` from RFC 7239), and `Via` added.
//!
//! Each message's fields are looked over once ([`Fields`]); every later step then costs a hash only where a
//! field is removed or added, none to learn whether it is there.

use std::cell::RefCell;
use std::net::IpAddr;

use bytes::Bytes;

use http::Version;
use http::header::{self, Entry, GetAll, HeaderMap, HeaderName, HeaderValue, OccupiedEntry};

/// The fields [`Fields`] notes, one bit each. The first seven are the hop-by-hop fields removed from every
/// message whatever `Connection` lists, in the order of [`HOP_BY_HOP_NAMES`].
mod bit {
    pub(super) const CONNECTION: u16 = 1 << 0;
    pub(super) const KEEP_ALIVE: u16 = 1 << 1;
    pub(super) const PROXY_CONNECTION: u16 = 1 << 2;
    pub(super) const TE: u16 = 1 << 3;
    pub(super) const TRAILER: u16 = 1 << 4;
    pub(super) const TRANSFER_ENCODING: u16 = 1 << 5;
    pub(super) const UPGRADE: u16 = 1 << 6;
    /// The seven above.
    pub(super) const HOP_BY_HOP: u16 = (1 << 7) - 1;
    pub(super) const HOST: u16 = 1 << 7;
    pub(super) const X_FORWARDED_FOR: u16 = 1 << 8;
    pub(super) const FORWARDED: u16 = 1 << 9;
    pub(super) const VIA: u16 = 1 << 10;
    pub(super) const X_FORWARDED_HOST: u16 = 1 << 11;
}

/// The hop-by-hop fields, in the order of their bits.
static HOP_BY_HOP_NAMES: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The bit of a field [`Fields`] notes, 0 for any other. (Names are lower case.)
fn bit_of(name: &[u8]) -> u16 {
    match name {
        b"connection" => bit::CONNECTION,
        b"keep-alive" => bit::KEEP_ALIVE,
        b"proxy-connection" => bit::PROXY_CONNECTION,
        b"te" => bit::TE,
        b"trailer" => bit::TRAILER,
        b"transfer-encoding" => bit::TRANSFER_ENCODING,
        b"upgrade" => bit::UPGRADE,
        b"host" => bit::HOST,
        b"x-forwarded-for" => bit::X_FORWARDED_FOR,
        b"forwarded" => bit::FORWARDED,
        b"via" => bit::VIA,
        b"x-forwarded-host" => bit::X_FORWARDED_HOST,
        _ => 0,
    }
}

/// Whether a `Connection` token, in any case, names a field removed anyway.
fn names_hop_by_hop(token: &[u8]) -> bool {
    let mut lower = [0u8; "transfer-encoding".len()];
    let Some(lower) = lower.get_mut(..token.len()) else { return false };
    lower.copy_from_slice(token);
    lower.make_ascii_lowercase();
    bit_of(lower) & bit::HOP_BY_HOP != 0
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What one look over a message's fields found.
pub(crate) struct Fields {
    /// Which of the fields with a [`bit`] are present.
    present: u16,
    /// `Connection` lists `close` (a field of that name is then hop-by-hop too).
    close: bool,
    /// `Connection` lists `upgrade`.
    upgrade: bool,
    /// `Connection` names fields other than the fixed hop-by-hop ones.
    names_others: bool,
    /// The first `Host` value.
    host: Option<HeaderValue>,
}

impl Fields {
    /// Looks over `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Fields {
        let mut fields = Fields { present: 0, close: false, upgrade: false, names_others: false, host: None };
        for (name, value) in headers {
            let bit = bit_of(name.as_str().as_bytes());
            fields.present |= bit;
            if bit == bit::CONNECTION {
                for token in value_tokens(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        fields.close = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        fields.upgrade = true;
                    } else if !names_hop_by_hop(token) {
                        fields.names_others = true;
                    }
                }
            } else if bit == bit::HOST && fields.host.is_none() {
                fields.host = Some(value.clone());
            }
        }
        fields
    }

    fn has(&self, bit: u16) -> bool {
        self.present & bit != 0
    }

    /// The first `Host` value, taken.
    pub(crate) fn take_host(&mut self) -> Option<HeaderValue> {
        self.host.take()
    }
}

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
pub(crate) fn requested_upgrade(headers: &HeaderMap, fields: &Fields, version: Version) -> Option<HeaderValue> {
    if !fields.upgrade || !fields.has(bit::UPGRADE) || version != Version::HTTP_11 {
        return None;
    }
    headers.get(header::UPGRADE).cloned()
}

/// Rewrites a request's headers for the upstream; `fields` is what [`Fields::of`] found in them. `upgrade` is
/// what [`requested_upgrade`] found; `keep_te_trailers` keeps `TE: trailers` (meaningful to HTTP/2 upstreams,
/// e.g. gRPC). Afterwards `Host` is present exactly when `preserve_host` and `client.host` is some.
pub(crate) fn request(
    headers: &mut HeaderMap,
    mut fields: Fields,
    client: &Client<'_>,
    upgrade: Option<HeaderValue>,
    preserve_host: bool,
    keep_te_trailers: bool,
) {
    let te_trailers = keep_te_trailers
        && fields.has(bit::TE)
        && headers.get_all(header::TE).iter().any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    remove_hop_by_hop(headers, &mut fields);
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
            if !fields.has(bit::HOST) {
                headers.insert(header::HOST, host.clone());
            }
        }
        _ => {
            if fields.has(bit::HOST) {
                headers.remove(header::HOST);
            }
        }
    }

    let proto = if client.secure { "https" } else { "http" };
    if let Some(added) = Added::for_client(client, proto) {
        append(headers, X_FORWARDED_FOR, added.for_, fields.has(bit::X_FORWARDED_FOR));
        append(headers, header::FORWARDED, added.forwarded, fields.has(bit::FORWARDED));
    }
    // The edge is where the scheme and host are known first hand: what a client claims is replaced.
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match client.host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        None => {
            if fields.has(bit::X_FORWARDED_HOST) {
                headers.remove(X_FORWARDED_HOST);
            }
        }
    }
    append(headers, header::VIA, HeaderValue::from_static(via(client.version)), fields.has(bit::VIA));
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
    let mut fields = Fields::of(headers);
    let upgrade = (upgrading && fields.has(bit::UPGRADE)).then(|| headers.get(header::UPGRADE).cloned()).flatten();
    remove_hop_by_hop(headers, &mut fields);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    append(headers, header::VIA, HeaderValue::from_static(via(version)), fields.has(bit::VIA));
}

/// Removes the fixed hop-by-hop fields and every field `Connection` names, and clears the bits of the fields
/// removed.
fn remove_hop_by_hop(headers: &mut HeaderMap, fields: &mut Fields) {
    // `Connection` naming other fields: every field is compared with its tokens.
    if fields.names_others {
        let connection = headers.get_all(header::CONNECTION);
        let named: Vec<&[u8]> = tokens(&connection).collect();
        let found: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                bit_of(k.as_str().as_bytes()) & bit::HOP_BY_HOP != 0
                    || named.iter().any(|t| t.eq_ignore_ascii_case(k.as_str().as_bytes()))
            })
            .cloned()
            .collect();
        for name in &found {
            headers.remove(name);
            fields.present &= !bit_of(name.as_str().as_bytes());
        }
        return;
    }
    // The usual case: `Connection` lists `keep-alive` or `close` (or is absent). Only the fields present are
    // removed (a removal costs a hash and a probe), with no allocation.
    for (i, name) in HOP_BY_HOP_NAMES.iter().enumerate() {
        if fields.present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    fields.present &= !bit::HOP_BY_HOP;
    if fields.close {
        headers.remove("close");
    }
}

/// The comma-separated tokens of every `Connection` field.
fn tokens<'a>(connection: &GetAll<'a, HeaderValue>) -> impl Iterator<Item = &'a [u8]> + use<'a> {
    connection.iter().flat_map(value_tokens)
}

/// The comma-separated tokens of one `Connection` field; none if it is not visible ASCII (no field name is
/// anything else). Split as bytes: a `str` split searches for a `char`, several times the cost here.
fn value_tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    let visible = value.to_str().ok().map(str::as_bytes);
    visible.into_iter().flat_map(|v| v.split(|&b| b == b',')).map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// Appends `value` to a list field (`present`: whether the field is there), folding the lines already there
/// into one.
fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue, present: bool) {
    if !present {
        headers.insert(name, value);
        return;
    }
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

    fn rewrite(h: &mut HeaderMap, client: &Client<'_>, upgrade: Option<HeaderValue>, preserve: bool, te: bool) {
        let fields = Fields::of(h);
        request(h, fields, client, upgrade, preserve, te);
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
        rewrite(&mut h, &client(&host), None, true, false);
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
    fn the_hop_by_hop_names_match_their_bits_and_tokens_in_any_case() {
        for (i, name) in HOP_BY_HOP_NAMES.iter().enumerate() {
            assert_eq!(bit_of(name.as_str().as_bytes()), 1 << i, "{name}");
            assert!(names_hop_by_hop(name.as_str().to_ascii_uppercase().as_bytes()), "{name}");
        }
        for other in ["close", "host", "via", "content-length", "x-kept", "transfer-encodings", ""] {
            assert!(!names_hop_by_hop(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn fields_connection_names_are_removed_and_host_and_forwarding_fields_rewritten_after() {
        let host = HeaderValue::from_static("alice.test");
        let mut h = headers(&[
            ("connection", "host, via, x-forwarded-for"),
            ("host", "alice.test"),
            ("via", "1.0 hop"),
            ("x-forwarded-for", "203.0.113.1"),
        ]);
        rewrite(&mut h, &client(&host), None, true, false);
        assert_eq!(h["host"], "alice.test");
        assert_eq!(h["via"], "1.1 palisade");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert!(!h.contains_key("connection"));
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
    fn a_connection_field_that_is_not_ascii_names_nothing() {
        let mut h = headers(&[("close", "1"), ("keep-alive", "timeout=5"), ("x-kept", "1")]);
        h.append(header::CONNECTION, HeaderValue::from_bytes("close, x-kept, caf\u{e9}".as_bytes()).unwrap());
        response(&mut h, Version::HTTP_11, false);
        assert!(!h.contains_key("connection") && !h.contains_key("keep-alive"), "{h:?}");
        assert!(h.contains_key("close") && h.contains_key("x-kept"), "{h:?}");
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
        rewrite(&mut h, &client(&host), None, true, false);
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
        rewrite(&mut h, &c, None, true, false);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=https;host=a.test");
        c.addr = "::ffff:192.0.2.9".parse().unwrap();
        let mut h = HeaderMap::new();
        rewrite(&mut h, &c, None, true, false);
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
        rewrite(&mut h, &client(&host), None, true, false);
        assert_eq!(h["host"], "alice.test");
        let mut h = headers(&[("host", "alice.test")]);
        rewrite(&mut h, &client(&host), None, false, false);
        assert!(!h.contains_key("host"));
    }

    #[test]
    fn upgrades_and_te_trailers_survive_when_asked() {
        let h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let upgrade = requested_upgrade(&h, &Fields::of(&h), Version::HTTP_11);
        assert_eq!(upgrade.as_ref().map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        assert!(requested_upgrade(&h, &Fields::of(&h), Version::HTTP_2).is_none());
        let h = headers(&[("upgrade", "websocket")]);
        assert!(requested_upgrade(&h, &Fields::of(&h), Version::HTTP_11).is_none());

        let host = HeaderValue::from_static("a.test");
        let mut h = headers(&[("connection", "Upgrade, te"), ("upgrade", "websocket"), ("te", "trailers")]);
        rewrite(&mut h, &client(&host), upgrade, true, true);
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
