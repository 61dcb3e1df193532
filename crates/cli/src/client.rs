//! `palisade deploy` and `palisade apps`: the admin API's client side, and the call every client command makes.

use std::path::PathBuf;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::admin::read_token;

/// Where the admin API is and how to authenticate.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    /// The admin API's URL (`[admin] listen`).
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    admin: String,
    /// A file holding the bearer token (default: the PALISADE_ADMIN_TOKEN environment variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// For an https:// admin URL: the PEM file of the CA that signed the admin listener's certificate.
    #[arg(long)]
    cacert: Option<PathBuf>,
}

/// `palisade deploy`: upload a `.wasm` as a tenant's app.
#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The tenant (as named in the server's configuration).
    #[arg(long)]
    tenant: String,
    /// The app's name within the tenant; deploying the same name again replaces it.
    #[arg(long)]
    name: String,
    /// The route path to serve it at (default: /NAME).
    #[arg(long)]
    route: Option<String>,
    /// Put its answers behind the tenant's HTTP cache (as `cache = true` on a configured route).
    #[arg(long)]
    cache: bool,
    /// The component or CGI module.
    app: PathBuf,
}

/// `palisade apps`: list tenants, their routes and deployed apps.
#[derive(Debug, clap::Args)]
pub(crate) struct AppsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.app).with_context(|| format!("reading {}", args.app.display()))?;
    // Encoded as path segments: a name like `x?route=/` must not become part of the query.
    let mut path = format!(
        "/v1/tenants/{}/apps/{}",
        utf8_percent_encode(&args.tenant, SEGMENT),
        utf8_percent_encode(&args.name, SEGMENT)
    );
    let mut query = Vec::new();
    if let Some(route) = &args.route {
        query.push(format!("route={}", utf8_percent_encode(route, QUERY_VALUE)));
    }
    if args.cache {
        query.push("cache=true".to_string());
    }
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let (status, body) = call(&args.admin, Method::PUT, &path, wasm.into())?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status != StatusCode::CREATED {
        anyhow::bail!("deploy refused ({status}): {}", message(&answer, &body));
    }
    println!(
        "deployed {}/{} version {} at {} (sha256 {})",
        args.tenant,
        args.name,
        answer["version"],
        answer["route"].as_str().unwrap_or("?"),
        answer["sha256"].as_str().unwrap_or("?")
    );
    Ok(())
}

pub(crate) fn apps(args: AppsArgs) -> anyhow::Result<()> {
    let path = match &args.tenant {
        Some(t) => format!("/v1/tenants/{}", utf8_percent_encode(t, SEGMENT)),
        None => "/v1/tenants".to_string(),
    };
    let (status, body) = call(&args.admin, Method::GET, &path, Bytes::new())?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status != StatusCode::OK {
        anyhow::bail!("{status}: {}", message(&answer, &body));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let tenants = match answer.get("tenants").and_then(|t| t.as_array()) {
        Some(list) => list.clone(),
        None => vec![answer],
    };
    println!("{:<16} {:<24} {:<10} {:<9} TARGET", "TENANT", "ROUTE", "KIND", "VERSION");
    for t in &tenants {
        let name = t["name"].as_str().unwrap_or("?");
        for r in t["routes"].as_array().into_iter().flatten() {
            let (path, kind, target) = (&r["path"], &r["kind"], &r["target"]);
            let (path, kind, target) =
                (path.as_str().unwrap_or("?"), kind.as_str().unwrap_or("?"), target.as_str().unwrap_or("?"));
            println!("{name:<16} {path:<24} {kind:<10} {:<9} {target}", "config");
        }
        for a in t["apps"].as_array().into_iter().flatten() {
            let sha = a["sha256"].as_str().unwrap_or("?");
            println!(
                "{name:<16} {:<24} {:<10} {:<9} app {} (sha256 {}…)",
                a["route"].as_str().unwrap_or("?"),
                a["kind"].as_str().unwrap_or("?"),
                a["version"].to_string(),
                a["name"].as_str().unwrap_or("?"),
                sha.get(..12).unwrap_or(sha)
            );
        }
    }
    Ok(())
}

pub(crate) fn message(answer: &serde_json::Value, body: &[u8]) -> String {
    answer["error"].as_str().map_or_else(|| String::from_utf8_lossy(body).trim().to_string(), str::to_string)
}

/// What a route needs encoded in a query value: all but unreserved characters and `/`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// What a name needs encoded as a path segment: all but unreserved characters.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// How long the admin API has to accept a connection, and to answer once connected (an upload included).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The host to connect to for an authority's host: an IPv6 literal without its brackets.
fn connect_host(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// One request to the admin API over HTTP/1.1, in TLS for an https:// URL.
pub(crate) fn call(admin: &AdminArgs, method: Method, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
    let token = read_token(admin.token_file.as_deref())?;
    let base: Uri = admin.admin.parse().with_context(|| format!("--admin {:?} is not a URL", admin.admin))?;
    let tls = match base.scheme_str() {
        Some("http") => None,
        Some("https") => {
            let ca = admin.cacert.as_deref().context(
                "an https:// admin URL needs --cacert FILE: the CA that signed the admin listener's certificate",
            )?;
            Some(palisade_tls::client_trusting(ca)?)
        }
        _ => anyhow::bail!("--admin must be an http:// or https:// URL, like http://127.0.0.1:9901"),
    };
    let authority = base.authority().context("--admin needs a host and port")?.clone();
    let port = authority.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
    let mut request = Request::builder().method(method).uri(path).header(header::HOST, authority.as_str());
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Full::new(body))?;
    crate::serve::block_on(async move {
        let connect = tokio::net::TcpStream::connect((connect_host(authority.host()), port));
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| anyhow::anyhow!("the admin API at {authority} did not accept within {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("connecting to the admin API at {authority}"))?;
        let exchange = async {
            match tls {
                None => exchange(stream, request).await,
                Some(connector) => {
                    let name = palisade_tls::ServerName::try_from(connect_host(authority.host()).to_string())
                        .with_context(|| format!("{} cannot be a TLS server name", authority.host()))?;
                    let stream =
                        connector.connect(name, stream).await.context("the TLS handshake with the admin API")?;
                    exchange(stream, request).await
                }
            }
        };
        tokio::time::timeout(ANSWER_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("the admin API at {authority} did not answer within {ANSWER_TIMEOUT:?}"))?
    })
}

/// Sends `request` over `stream` with HTTP/1.1 and reads the whole answer.
async fn exchange<IO>(stream: IO, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.context("sending the request")?;
    let status = response.status();
    let body = response.into_body().collect().await.context("reading the answer")?.to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_path_segments_and_ipv6_hosts_lose_their_brackets() {
        assert_eq!(utf8_percent_encode("x?route=/", SEGMENT).to_string(), "x%3Froute%3D%2F");
        assert_eq!(utf8_percent_encode("my-app_1.v2~", SEGMENT).to_string(), "my-app_1.v2~");
        assert_eq!(connect_host("[::1]"), "::1");
        assert_eq!(connect_host("127.0.0.1"), "127.0.0.1");
    }
}
