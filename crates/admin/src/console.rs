//! The web console: its page and assets (built into the binary), and the sessions that sign a browser in.
//!
//! A browser signs in once with a token (`POST /console/session`) and then holds an opaque session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS) instead of the token. A session keeps the token it was
//! opened with and each request checks that token again, so revoking a tenant's token ends its sessions at
//! once. Writes made with the cookie must also carry the session's CSRF token in `X-CSRF-Token`, which only a
//! page of this origin can read (from the session answer); `SameSite=Strict` alone already keeps the cookie
//! off other sites' requests.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::Full;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "palisade_session";
/// The header a cookie-signed write carries its CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long is forgotten.
const IDLE: Duration = Duration::from_secs(60 * 60);
/// A session ends this long after sign-in, used or not.
const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at once; signing in past this forgets the least recently used.
const MAX_SESSIONS: usize = 1024;

/// What the console's pages may do: its own scripts, styles and API calls, and nothing else (no inline
/// script, no framing, no form posted anywhere).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The console's files, by path: built into the binary, so nothing is fetched from elsewhere.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("../console/index.html")),
    ("/console/console.js", "text/javascript; charset=utf-8", include_str!("../console/console.js")),
    ("/console/console.css", "text/css; charset=utf-8", include_str!("../console/console.css")),
    ("/console/icon.svg", "image/svg+xml", include_str!("../console/icon.svg")),
];

/// The console's page or asset at `path`, for a GET or HEAD.
pub(crate) fn asset(method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let (_, content_type, body) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    let mut answer = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    secure_headers(&mut answer);
    Some(answer)
}

/// Headers every console and API answer carries: no sniffing, no framing, no referrer.
pub(crate) fn secure_headers<B>(answer: &mut Response<B>) {
    let headers = answer.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token it signed in with, checked again on every request.
    pub(crate) token: String,
    /// What its writes must carry in `X-CSRF-Token`.
    pub(crate) csrf: String,
    opened: Instant,
    used: Instant,
}

/// The signed-in browsers, by session id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for `token`: its id (for the cookie) and the session.
    pub(crate) fn open(&self, token: &str) -> Result<(String, Session), getrandom::Error> {
        let (id, csrf) = (random_hex()?, random_hex()?);
        let now = Instant::now();
        let session = Session { token: token.to_string(), csrf, opened: now, used: now };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, s| live(s, now));
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open.iter().min_by_key(|(_, s)| s.used).map(|(id, _)| id.clone())
        {
            open.remove(&oldest);
        }
        open.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session `req`'s cookie names, marked used; an expired one is forgotten.
    pub(crate) fn of<B>(&self, req: &Request<B>) -> Option<(String, Session)> {
        let id = cookie(req, COOKIE)?;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match open.get_mut(id) {
            Some(session) if live(session, now) => {
                session.used = now;
                Some((id.to_string(), session.clone()))
            }
            Some(_) => {
                open.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session `id`.
    pub(crate) fn close(&self, id: &str) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}

fn live(session: &Session, now: Instant) -> bool {
    now.duration_since(session.used) < IDLE && now.duration_since(session.opened) < LIFETIME
}

/// The `Set-Cookie` value that gives the browser session `id` (`None`: ends it).
pub(crate) fn set_cookie(id: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match id {
        Some(id) => format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", LIFETIME.as_secs()),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    // Only hex digits and fixed text: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether `req` carries `session`'s CSRF token, compared in constant time.
pub(crate) fn carries_csrf<B>(req: &Request<B>, session: &Session) -> bool {
    req.headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| crate::api::same_secret(given.trim(), &session.csrf))
}

/// The value of cookie `name` in `req`'s `Cookie` fields (RFC 6265 §5.4: `name=value` pairs split by `;`).
fn cookie<'r, B>(req: &'r Request<B>, name: &str) -> Option<&'r str> {
    req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        line.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
    })
}

/// 32 random bytes in lower-case hex.
fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let req =
            Request::builder().header(header::COOKIE, "a=1; palisade_session=abc ; b=2").body(()).expect("request");
        assert_eq!(cookie(&req, COOKIE), Some("abc"));
        assert_eq!(cookie(&req, "b"), Some("2"));
        assert_eq!(cookie(&req, "c"), None);
    }

    #[test]
    fn sessions_open_find_and_close() {
        let sessions = Sessions::default();
        let (id, session) = sessions.open("secret").expect("random numbers");
        assert_eq!((id.len(), session.csrf.len()), (64, 64));
        let req = |id: &str| Request::builder().header(header::COOKIE, format!("{COOKIE}={id}")).body(()).expect("req");
        assert_eq!(sessions.of(&req(&id)).map(|(_, s)| s.token), Some("secret".to_string()));
        assert!(sessions.of(&req("nope")).is_none());
        sessions.close(&id);
        assert!(sessions.of(&req(&id)).is_none());
    }

    #[test]
    fn the_cookie_is_strict_and_http_only() {
        let cookie = set_cookie(Some("abc"), true);
        let cookie = cookie.to_str().expect("ascii");
        assert!(cookie.starts_with("palisade_session=abc; Path=/; HttpOnly; SameSite=Strict"), "{cookie}");
        assert!(cookie.ends_with("; Secure"), "{cookie}");
        assert!(!set_cookie(None, false).to_str().expect("ascii").contains("Secure"));
    }

    #[test]
    fn every_asset_is_served_with_the_policy() {
        for (path, _, _) in ASSETS {
            let answer = asset(&Method::GET, path).expect("asset");
            assert!(answer.headers().contains_key(header::CONTENT_SECURITY_POLICY), "{path}");
        }
        assert!(asset(&Method::POST, "/").is_none());
        assert!(asset(&Method::GET, "/console/missing.js").is_none());
    }
}
