//! Percent-escapes in a URI path, in the normal form routing uses (RFC 3986 section 6.2.2.2): routes are
//! written down in it ([`crate::normalise_route_path`]), and the server brings every request path to it
//! before routing.

use std::borrow::Cow;

/// A path holds `%2F` or `%5C`: no normal form keeps an encoded separator apart from a real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an encoded '/' or '\\' in the path")]
pub struct EncodedSeparator;

/// Decodes `%XX` where it stands for an unreserved character (letters, digits, `-._~`), leaving every other
/// escape as it is (with upper-case hex digits, the form RFC 3986 recommends), and anything that is not an
/// escape (a lone `%`) too. Borrowed when nothing changes. Requests are routed on this form (with dot-segments
/// removed), and routes are written down in it.
pub fn decode_unreserved(path: &str) -> Result<Cow<'_, str>, EncodedSeparator> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let escape =
            (bytes[i] == b'%').then(|| Some((hex(*bytes.get(i + 1)?)? << 4) | hex(*bytes.get(i + 2)?)?)).flatten();
        match escape {
            Some(b'/' | b'\\') => return Err(EncodedSeparator),
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
                changed = true;
                i += 3;
            }
            Some(b) => {
                out.push_str(&format!("%{b:02X}"));
                changed |= path[i + 1..i + 3] != format!("{b:02X}");
                i += 3;
            }
            None => {
                // Not an escape (or a lone '%'): copied as it is, a char at a time.
                let c = path[i..].chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8().max(1);
            }
        }
    }
    Ok(if changed { Cow::Owned(out) } else { Cow::Borrowed(path) })
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}
