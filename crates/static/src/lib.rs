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

mod conditional;
mod path;

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use palisade_http::{Body, Fault, Handler, HandlerError, RequestBody, RequestContext, empty_body, full_body};
use tokio::io::AsyncReadExt;

use conditional::{RangeRequest, Validators, range_request};

/// Files at most this large are read in one go; larger ones are streamed.
const READ_WHOLE_LIMIT: u64 = 256 << 10;
/// Chunk size when streaming large files.
const STREAM_CHUNK: usize = 64 << 10;

/// A directory served as static files.
#[derive(Clone)]
pub struct StaticDir {
    root: Arc<cap_std::fs::Dir>,
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
        Ok(StaticDir { root: Arc::new(dir) })
    }

    /// Answers one request whose route-relative path is `relative`.
    fn serve(&self, method: &Method, uri: &http::Uri, relative: &str, headers: &http::HeaderMap) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = Fault::BadRequest.response("method not allowed");
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let Ok(rel) = path::relative_path(relative) else {
            return Fault::BadRequest.response("invalid path");
        };
        let (file, meta, served_path) = match self.open_file(&rel) {
            Ok(Opened::File(f, m)) => (f, m, rel),
            Ok(Opened::Dir) => {
                if !uri.path().ends_with('/') {
                    return redirect_to_dir(uri);
                }
                let index = rel.join("index.html");
                match self.open_file(&index) {
                    Ok(Opened::File(f, m)) => (f, m, index),
                    _ => return Fault::NotFound.response("not found"),
                }
            }
            Err(e) => {
                tracing::debug!(path = %rel.display(), error = %e, "static file not served");
                return Fault::NotFound.response("not found");
            }
        };
        respond(method, headers, file, &meta, &served_path)
    }

    fn open_file(&self, rel: &Path) -> io::Result<Opened> {
        let target = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        let file = self.root.open(target)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Ok(Opened::Dir);
        }
        if !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "not a regular file"));
        }
        Ok(Opened::File(
            file.into_std(),
            FileMeta { len: meta.len(), modified: meta.modified().ok().map(cap_std::time::SystemTime::into_std) },
        ))
    }
}

enum Opened {
    File(std::fs::File, FileMeta),
    Dir,
}

struct FileMeta {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn redirect_to_dir(uri: &http::Uri) -> Response<Body> {
    let mut location = format!("{}/", uri.path());
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
    file: std::fs::File,
    meta: &FileMeta,
    path: &Path,
) -> Response<Body> {
    let validators = Validators::new(meta.len, meta.modified);
    let mut response = Response::new(empty_body());
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&validators.etag) {
        headers.insert(header::ETAG, v);
    }
    if let Some(m) = validators.modified
        && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m))
    {
        headers.insert(header::LAST_MODIFIED, v);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    if validators.not_modified(req_headers) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    headers.insert(header::CONTENT_TYPE, content_type(path));

    let range = match range_request(req_headers, meta.len, &validators) {
        RangeRequest::Full => 0..=meta.len.saturating_sub(1),
        RangeRequest::Partial(r) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start(), r.end(), meta.len)) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        RangeRequest::Unsatisfiable => {
            let mut r = Fault::BadRequest.response("range not satisfiable");
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.len)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let len = if meta.len == 0 { 0 } else { range.end() - range.start() + 1 };
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if method == Method::HEAD || len == 0 {
        return response;
    }
    *response.body_mut() = match file_body(file, *range.start(), len) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "static file read failed");
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
