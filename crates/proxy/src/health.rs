//! Active health checks: every upstream's `health` path, requested every `health_interval`.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Uri, Version, header};
use http_body_util::BodyExt;
use palisade_config::HealthCheck;
use palisade_http::empty_body;

use crate::upstreams::Upstreams;
use crate::{HttpClient, MAX_HEALTH_BODY};

/// Checks every upstream now and then every `check.interval`, until the task is aborted.
pub(crate) async fn check_forever(
    upstreams: Arc<Upstreams>,
    client: HttpClient,
    check: HealthCheck,
    version: Version,
    timeout: Duration,
) {
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let checks = (0..upstreams.len()).map(|i| {
            let (upstreams, client, path) = (upstreams.clone(), client.clone(), check.path.as_str());
            async move {
                let Some(authority) = upstreams.get(i).map(|u| u.authority.clone()) else { return };
                match check_one(&client, &authority, path, version, timeout).await {
                    Ok(()) => upstreams.set_healthy(i, true, ""),
                    Err(why) => upstreams.set_healthy(i, false, &why),
                }
            }
        });
        futures::future::join_all(checks).await;
    }
}

/// One GET of `path`: healthy on a 2xx or 3xx answer within `timeout`.
async fn check_one(
    client: &HttpClient,
    authority: &http::uri::Authority,
    path: &str,
    version: Version,
    timeout: Duration,
) -> Result<(), String> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| e.to_string())?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .version(version)
        .header(header::USER_AGENT, "palisade-health-check")
        .body(empty_body())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| crate::describe(&e))?;
        let status = response.status();
        // Read the (small) body so the connection can be reused.
        let _ = http_body_util::Limited::new(response.into_body(), MAX_HEALTH_BODY).collect().await;
        if status.is_success() || status.is_redirection() { Ok(()) } else { Err(format!("status {status}")) }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("no answer within {timeout:?}"))?
}
