//! Active health checks: every upstream's `health` path, requested every `health_interval`.

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Request, header};
use http_body_util::BodyExt;
use palisade_config::HealthCheck;
use palisade_http::empty_body;

use crate::Shared;

/// How much of a health check's answer is read (so its connection can be reused).
const MAX_HEALTH_BODY: usize = 64 * 1024;

/// Checks every upstream now and then every `check.interval`, until the task is aborted.
pub(crate) async fn check_forever(shared: Arc<Shared>, check: HealthCheck, timeout: Duration) {
    // Parsed once: every check of every upstream requests the same target.
    let path = PathAndQuery::try_from(check.path.as_str()).map_err(|e| format!("health check path: {e}"));
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let checks = (0..shared.upstreams.len()).map(|i| {
            let (shared, path) = (shared.clone(), path.clone());
            async move {
                let result = tokio::time::timeout(timeout, check_one(&shared, i, path, timeout))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                match result {
                    Ok(()) => shared.upstreams.set_healthy(i, true, ""),
                    Err(why) => shared.upstreams.set_healthy(i, false, &why),
                }
            }
        });
        futures::future::join_all(checks).await;
    }
}

/// One GET of `path` on upstream `index`, its answer due `within` from when a connection is taken: healthy on
/// a 2xx or 3xx answer.
async fn check_one(
    shared: &Shared,
    index: usize,
    path: Result<PathAndQuery, String>,
    within: Duration,
) -> Result<(), String> {
    let Some(authority) = shared.upstreams.get(index).map(|u| u.authority.clone()) else {
        return Ok(());
    };
    let (mut parts, body) = Request::builder()
        .method(Method::GET)
        .header(header::USER_AGENT, "palisade-health-check")
        .body(empty_body())
        .map_err(|e| e.to_string())?
        .into_parts();
    // The same form as proxied requests: origin-form with `Host` over HTTP/1.1, absolute-form over HTTP/2.
    let request = shared.upstream_request(&mut parts, false, path?, &authority, body)?;
    let mut conn = shared.pools.get(index, &authority, false).await?;
    let response = match conn.send(request, within).await {
        Ok(sent) => sent.map_err(|(e, _)| crate::describe(&e))?,
        Err(crate::pool::TimedOut) => return Err(format!("no answer within {within:?}")),
    };
    let status = response.status();
    // Read the (small) body so the connection can be reused.
    if http_body_util::Limited::new(response.into_body(), MAX_HEALTH_BODY).collect().await.is_ok() {
        conn.release(&shared.pools, index);
    }
    if status.is_success() || status.is_redirection() { Ok(()) } else { Err(format!("status {status}")) }
}
