//! Static files for a route: `static = "www"` serves files under `www`, below the route's prefix.
//!
//! Safety comes from two layers: request paths are decoded once and refused if they contain `..`, NUL or
//! backslash ([`path`]); and every open goes through a [`cap_std::fs::Dir`] for the root, which refuses any path
//! or symlink that resolves outside it, without a window between check and open. No directory listings;
//! `index.html` is served for a directory, and a directory requested without its trailing slash is redirected.
//!
//! HTTP semantics: `GET` and `HEAD` (others get 405), `Content-Type` from the extension, strong `ETag` and
//! `Last-Modified`, `304` for `If-None-Match` / `If-Modified-Since`, single byte ranges with `206`, `416` and
//! `If-Range`.
//!
//! Speed: an open-file cache ([`cache`]) keeps what a path is, with small files' contents and their headers
//! formatted, for a second; a hit costs no system call.

mod cache;
mod path;

/// Entry points for the fuzz targets in `fuzz/` (built only by `cargo fuzz`).
#[cfg(fuzzing)]
pub mod fuzzing {
    /// Decodes a request path into a path below the root; checks the promise that it never escapes.
    pub fn relative_path(request_path: &str) {
        if let Ok(p) = crate::path::relative_path(request_path) {
            let p = std::path::Path::new(&*p);
            assert!(!p.is_absolute());
            assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))), "{p:?}");
        }
    }
}

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use cap_std::fs::OpenOptionsExt as _;
use futures::StreamExt;
use futures::future::BoxFuture;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use palisade_http::{Body, Fault, Handler, HandlerError, RequestBody, RequestContext, empty_body, full_body};
use tokio::io::AsyncReadExt;

use cache::{Cached, FileCache};
use palisade_http::{RangeRequest, Validators, range_request};

/// Files at most this large are read in one go; larger ones are streamed.
const READ_WHOLE_LIMIT: u64 = 256 << 10;
/// Chunk size when streaming large files.
const STREAM_CHUNK: usize = 64 << 10;

/// A directory served as static files.
#[derive(Clone)]
pub struct StaticDir {
    root: Arc<cap_std::fs::Dir>,
    cache: Arc<FileCache>,
    dotfiles: bool,
}

impl std::fmt::Debug for StaticDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticDir").finish_non_exhaustive()
    }
}

impl StaticDir {
    /// Opens `root` for serving. Fails if it is not a readable directory.
    pub fn open(root: &Path) -> io::Result<StaticDir> {
        let dir = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        Ok(StaticDir { root: Arc::new(dir), cache: Arc::default(), dotfiles: false })
    }

    /// Whether names starting with `.` (`.git`, `.env`, `.htpasswd`) are served. By default they are not, and
    /// answer 404 as if absent, except `.well-known` (RFC 8615: `security.txt`, ACME challenges).
    pub fn with_dotfiles(mut self, allowed: bool) -> StaticDir {
        self.dotfiles = allowed;
        self
    }

    /// Answers one request whose route-relative path is `relative`.
    fn serve(&self, method: &Method, uri: &http::Uri, relative: &str, headers: &http::HeaderMap) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = Fault::MethodNotAllowed.response("method not allowed");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let Ok(rel) = path::relative_path(relative) else {
            return Fault::BadRequest.response("invalid path");
        };
        if !self.dotfiles && path::names_a_dotfile(&rel) {
            return Fault::NotFound.response("not found");
        }
        let (entry, file) = match self.lookup(&rel) {
            Ok((Cached::File(entry), file)) => (entry, file),
            Ok((Cached::Dir, _)) => {
                if !uri.path().ends_with('/') {
                    return redirect_to_dir(uri);
                }
                let index = if rel.is_empty() { "index.html".into() } else { format!("{rel}/index.html") };
                match self.lookup(&index) {
                    Ok((Cached::File(entry), file)) => (entry, file),
                    _ => return Fault::NotFound.response("not found"),
                }
            }
            Err(e) => {
                tracing::debug!(path = %rel, error = %e, "static file not served");
                return Fault::NotFound.response("not found");
            }
        };
        respond(method, headers, &entry, file)
    }

    /// What `rel` is: from the cache, or opened through the confined root (and cached when it fits). A file too
    /// large to cache comes with its open handle, to be streamed.
    fn lookup(&self, rel: &str) -> io::Result<(Cached, Option<std::fs::File>)> {
        if let Some(hit) = self.cache.get(rel) {
            return Ok((hit, None));
        }
        let target = Path::new(if rel.is_empty() { "." } else { rel });
        // Opened without blocking: opening a FIFO for reading would otherwise wait, on this worker, for a
        // writer that never comes. Reads of a regular file do not care.
        let mut options = cap_std::fs::OpenOptions::new();
        options.read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits().cast_signed());
        let file = self.root.open_with(target, &options)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            self.cache.put(rel, Cached::Dir);
            return Ok((Cached::Dir, None));
        }
        if !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "not a regular file"));
        }
        let mut file = file.into_std();
        let modified = meta.modified().ok().map(cap_std::time::SystemTime::into_std);
        if meta.len() > cache::MAX_FILE {
            return Ok((Cached::File(Arc::new(FileEntry::new(target, meta.len(), modified, None))), Some(file)));
        }
        let mut content = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut content)?;
        let entry = Arc::new(FileEntry::new(target, content.len() as u64, modified, Some(Bytes::from(content))));
        self.cache.put(rel, Cached::File(entry.clone()));
        Ok((Cached::File(entry), None))
    }
}

/// A regular file as its responses need it: validators and headers formatted once, and a small file's contents.
pub(crate) struct FileEntry {
    len: u64,
    validators: Validators,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    content_type: HeaderValue,
    /// `Content-Length` of the whole file.
    full_length: HeaderValue,
    /// The whole file, when it is at most [`cache::MAX_FILE`]; larger files are streamed from disk.
    content: Option<Bytes>,
}

impl FileEntry {
    fn new(path: &Path, len: u64, modified: Option<std::time::SystemTime>, content: Option<Bytes>) -> FileEntry {
        let validators = Validators::of_file(len, modified);
        FileEntry {
            len,
            etag: validators.etag.as_deref().and_then(|e| HeaderValue::from_str(e).ok()),
            last_modified: validators.modified.and_then(|m| HeaderValue::from_str(&httpdate::fmt_http_date(m)).ok()),
            validators,
            content_type: content_type(path),
            full_length: HeaderValue::from(len),
            content,
        }
    }
}

/// A status the error vocabulary has no fault for, with its one line of text.
fn plain_status(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(full_body(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn redirect_to_dir(uri: &http::Uri) -> Response<Body> {
    // One leading slash: `//evil.example/` would be a network-path reference to another host.
    let mut location = format!("/{}/", uri.path().trim_start_matches('/'));
    if let Some(q) = uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let mut r = Response::new(empty_body());
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml" | "svg+xml");
    let value = if textual { format!("{mime}; charset=utf-8") } else { mime.to_string() };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

fn respond(
    method: &Method,
    req_headers: &http::HeaderMap,
    entry: &FileEntry,
    file: Option<std::fs::File>,
) -> Response<Body> {
    let mut response = Response::new(empty_body());
    let headers = response.headers_mut();
    if let Some(v) = &entry.etag {
        headers.insert(header::ETAG, v.clone());
    }
    if let Some(v) = &entry.last_modified {
        headers.insert(header::LAST_MODIFIED, v.clone());
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    if entry.validators.precondition_failed(req_headers) {
        return plain_status(StatusCode::PRECONDITION_FAILED, "412 precondition failed\n");
    }
    if entry.validators.not_modified(req_headers) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    headers.insert(header::CONTENT_TYPE, entry.content_type.clone());

    let (range, whole) = match range_request(req_headers, entry.len, &entry.validators) {
        RangeRequest::Full => (0..=entry.len.saturating_sub(1), true),
        RangeRequest::Partial(r) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start(), r.end(), entry.len)) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            (r, false)
        }
        RangeRequest::Unsatisfiable => {
            let mut r = plain_status(StatusCode::RANGE_NOT_SATISFIABLE, "416 range not satisfiable\n");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", entry.len)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let len = if entry.len == 0 { 0 } else { range.end() - range.start() + 1 };
    // The whole file's length is formatted once, when it is cached.
    let length = if whole { entry.full_length.clone() } else { HeaderValue::from(len) };
    response.headers_mut().insert(header::CONTENT_LENGTH, length);
    if method == Method::HEAD || len == 0 {
        return response;
    }
    let body = match (&entry.content, file) {
        (Some(content), _) => usize::try_from(*range.start())
            .ok()
            .zip(usize::try_from(*range.end()).ok())
            .and_then(|(start, end)| content.get(start..=end).map(|_| full_body(content.slice(start..=end))))
            .ok_or_else(|| io::Error::other("range outside the cached file")),
        (None, Some(file)) => file_body(file, *range.start(), len),
        (None, None) => Err(io::Error::other("file neither cached nor open")),
    };
    *response.body_mut() = match body {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "static file read failed");
            return Fault::Internal.response("internal error");
        }
    };
    response
}

/// `len` bytes of `file` from `start`: read at once when small, streamed when large.
fn file_body(mut file: std::fs::File, start: u64, len: u64) -> io::Result<Body> {
    file.seek(SeekFrom::Start(start))?;
    if len <= READ_WHOLE_LIMIT {
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(len).read_to_end(&mut buf)?;
        return Ok(full_body(buf));
    }
    let reader = tokio::fs::File::from_std(file).take(len);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, STREAM_CHUNK)
        .map(|chunk| chunk.map(|b: Bytes| http_body::Frame::data(b)).map_err(Into::into));
    Ok(StreamBody::new(stream).boxed_unsync())
}

impl Handler for StaticDir {
    fn handle(
        &self,
        request: http::Request<RequestBody>,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<Response<Body>, HandlerError>> {
        let relative = context.path_below_route(request.uri().path());
        let response = self.serve(request.method(), request.uri(), relative, request.headers());
        Box::pin(std::future::ready(Ok(response)))
    }
}
