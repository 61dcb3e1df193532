//! The web console: its page and assets (built into the binary), and the sessions that sign a browser in.
//!
//! A browser signs in once with a token (`POST /console/session`) and then holds an opaque session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` and `__Host-` over HTTPS) instead of the token, plus a second
//! secret, the session's CSRF token, which the sign-in answer gives the page and every request must carry in
//! `X-CSRF-Token`. The cookie alone is worth nothing: cookies are not kept apart by port, so a tenant's app
//! served on another port of the same host name receives it; the CSRF token lives in the page's
//! `sessionStorage`, which is kept apart by origin, and is never sent back by the server after sign-in. A
//! session keeps the token it was opened with and each request checks that token again, so revoking a
//! tenant's token ends its sessions at once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::Full;

/// The session cookie's name over plain HTTP.
const COOKIE: &str = "palisade_session";
/// Its name over HTTPS: the `__Host-` prefix makes browsers refuse it unless it is `Secure`, for `/` and
/// without `Domain`, so a sibling host cannot set one (RFC 6265bis §4.1.3.2).
const SECURE_COOKIE: &str = "__Host-palisade_session";
/// The header a cookie-signed write carries its CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long is forgotten.
const IDLE: Duration = Duration::from_secs(60 * 60);
/// A session ends this long after sign-in, used or not.
const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at once; signing in past this forgets the least recently used.
const MAX_SESSIONS: usize = 1024;
/// Sessions one token may hold; signing in past this forgets that token's least recently used (so that one
/// token's holder cannot push everyone else's sessions out).
const MAX_SESSIONS_PER_TOKEN: usize = 16;

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
    /// Whether the listener speaks HTTPS: the cookie is then `Secure` and `__Host-`.
    secure: bool,
}

/// What a request shows of a session.
#[derive(Debug)]
pub(crate) enum Presented {
    /// No session cookie (or an unknown or expired one, or several).
    Nothing,
    /// A live session's cookie without its CSRF token in `X-CSRF-Token`.
    WithoutItsToken,
    /// A live session, with its id.
    Session(String, Session),
}

impl Sessions {
    /// No sessions yet; `secure` when the listener speaks HTTPS.
    pub(crate) fn new(secure: bool) -> Sessions {
        Sessions { open: Mutex::default(), secure }
    }

    fn cookie_name(&self) -> &'static str {
        if self.secure { SECURE_COOKIE } else { COOKIE }
    }

    /// Opens a session for `token`: its id (for the cookie) and the session.
    pub(crate) fn open(&self, token: &str) -> Result<(String, Session), getrandom::Error> {
        let (id, csrf) = (random_hex()?, random_hex()?);
        let now = Instant::now();
        let session = Session { token: token.to_string(), csrf, opened: now, used: now };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, s| live(s, now));
        let least_used = |open: &HashMap<String, Session>, same_token: bool| {
            let candidates = open.iter().filter(|(_, s)| !same_token || s.token == token);
            candidates.min_by_key(|(_, s)| s.used).map(|(id, _)| id.clone())
        };
        if open.values().filter(|s| s.token == token).count() >= MAX_SESSIONS_PER_TOKEN
            && let Some(oldest) = least_used(&open, true)
        {
            open.remove(&oldest);
        }
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = least_used(&open, false)
        {
            open.remove(&oldest);
        }
        open.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session `req`'s cookie names, if it carries that session's CSRF token too (then marked used);
    /// an expired one is forgotten.
    pub(crate) fn of<B>(&self, req: &Request<B>) -> Presented {
        let Some(id) = cookie(req, self.cookie_name()) else { return Presented::Nothing };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match open.get_mut(id) {
            Some(session) if live(session, now) => {
                if !carries_csrf(req, session) {
                    return Presented::WithoutItsToken;
                }
                session.used = now;
                Presented::Session(id.to_string(), session.clone())
            }
            Some(_) => {
                open.remove(id);
                Presented::Nothing
            }
            None => Presented::Nothing,
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

impl Sessions {
    /// The `Set-Cookie` value that gives the browser session `id` (`None`: ends it).
    pub(crate) fn set_cookie(&self, id: Option<&str>) -> HeaderValue {
        let (name, secure) = (self.cookie_name(), if self.secure { "; Secure" } else { "" });
        let value = match id {
            Some(id) => {
                format!("{name}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", LIFETIME.as_secs())
            }
            None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
        };
        // Only hex digits and fixed text: always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Whether `req` carries `session`'s CSRF token, compared in constant time.
fn carries_csrf<B>(req: &Request<B>, session: &Session) -> bool {
    req.headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| crate::api::same_secret(given.trim(), &session.csrf))
}

/// The value of cookie `name` in `req`'s `Cookie` fields (RFC 6265 §5.4: `name=value` pairs split by `;`), if
/// it is there exactly once: two are a page elsewhere on this host setting its own beside ours (cookie
/// tossing), and neither is trusted.
fn cookie<'r, B>(req: &'r Request<B>, name: &str) -> Option<&'r str> {
    let mut values = req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|line| {
        line.split(';').filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
    });
    let first = values.next()?;
    values.next().is_none().then_some(first)
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
        let tossed = Request::builder()
            .header(header::COOKIE, "palisade_session=theirs")
            .header(header::COOKIE, "palisade_session=ours")
            .body(())
            .expect("request");
        assert_eq!(cookie(&tossed, COOKIE), None, "two values: neither is trusted");
    }

    fn with(id: &str, csrf: Option<&str>) -> Request<()> {
        let mut req = Request::builder().header(header::COOKIE, format!("{COOKIE}={id}"));
        if let Some(csrf) = csrf {
            req = req.header(CSRF_HEADER, csrf);
        }
        req.body(()).expect("request")
    }

    #[test]
    fn a_session_needs_its_cookie_and_its_csrf_token() {
        let sessions = Sessions::new(false);
        let (id, session) = sessions.open("secret").expect("random numbers");
        assert_eq!((id.len(), session.csrf.len()), (64, 64));
        let found = |p: Presented| match p {
            Presented::Session(_, s) => Some(s.token),
            _ => None,
        };
        assert_eq!(found(sessions.of(&with(&id, Some(&session.csrf)))), Some("secret".to_string()));
        assert!(matches!(sessions.of(&with(&id, None)), Presented::WithoutItsToken));
        assert!(matches!(sessions.of(&with(&id, Some("0123"))), Presented::WithoutItsToken));
        assert!(matches!(sessions.of(&with("nope", Some(&session.csrf))), Presented::Nothing));
        sessions.close(&id);
        assert!(matches!(sessions.of(&with(&id, Some(&session.csrf))), Presented::Nothing));
    }

    #[test]
    fn one_token_cannot_push_out_the_others_sessions() {
        let sessions = Sessions::new(false);
        let (operator, session) = sessions.open("operator").expect("random numbers");
        for _ in 0..MAX_SESSIONS_PER_TOKEN + 5 {
            sessions.open("tenant").expect("random numbers");
        }
        assert!(matches!(sessions.of(&with(&operator, Some(&session.csrf))), Presented::Session(..)));
        let open = sessions.open.lock().expect("lock");
        assert_eq!(open.values().filter(|s| s.token == "tenant").count(), MAX_SESSIONS_PER_TOKEN);
    }

    #[test]
    fn the_cookie_is_strict_and_http_only() {
        let cookie = Sessions::new(true).set_cookie(Some("abc"));
        let cookie = cookie.to_str().expect("ascii");
        assert!(cookie.starts_with("__Host-palisade_session=abc; Path=/; HttpOnly; SameSite=Strict"), "{cookie}");
        assert!(cookie.ends_with("; Secure"), "{cookie}");
        let plain = Sessions::new(false).set_cookie(None);
        assert!(plain.to_str().expect("ascii").starts_with("palisade_session=; "));
        assert!(!plain.to_str().expect("ascii").contains("Secure"));
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
