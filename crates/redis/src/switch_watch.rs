//! Listens to the Sentinels' `+switch-master` announcements, so that a link asks them for the new master as
//! soon as a failover completes rather than at its next failed command (which, when the old master is
//! still up but demoted, may never come for a subscriber listening on it).

use std::sync::Weak;
use std::time::Duration;

use futures::StreamExt as _;

use crate::sentinel::SentinelRoute;

/// How long to wait before subscribing again, on the next Sentinel, when a subscription fails or ends.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Starts listening (on one Sentinel at a time, the next one when it fails) for as long as `route` lives;
/// `None` outside a tokio runtime, where the link still follows failovers through its failed commands.
pub(crate) fn spawn(sentinels: Vec<(String, u16)>, route: Weak<SentinelRoute>) -> Option<tokio::task::AbortHandle> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let task = runtime.spawn(async move {
        for (host, port) in sentinels.iter().cycle() {
            if let Err(e) = listen(host, *port, &route).await {
                tracing::debug!("redis: listening to Sentinel {host}:{port} for failovers: {e}");
            }
            if route.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
    });
    Some(task.abort_handle())
}

/// Marks the route's master as moved on each `+switch-master` for it announced by the Sentinel at
/// `host:port`, until the subscription ends.
async fn listen(host: &str, port: u16, route: &Weak<SentinelRoute>) -> redis::RedisResult<()> {
    let client = redis::Client::open((host.to_string(), port))?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe("+switch-master").await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let Some(route) = route.upgrade() else { return Ok(()) };
        // "NAME OLD-IP OLD-PORT NEW-IP NEW-PORT"
        let Ok(text) = message.get_payload::<String>() else { continue };
        if text.split(' ').next() == Some(route.master_name()) {
            tracing::debug!("redis: a Sentinel announced a failover: {text}");
            route.switched();
        }
    }
    Ok(())
}
