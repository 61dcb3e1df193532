//! After a `101 Switching Protocols` (WebSocket and other upgrades): bytes copied both ways between the
//! client and the upstream until either closes or the tunnel is idle for the route's `timeout`.

use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use palisade_http::Activity;

use crate::upstreams::Picked;

/// Joins the two upgraded connections once hyper hands them over; `upstream` counts as in flight until the
/// tunnel closes. `activity` is the client connection's (every byte through the tunnel moves on it).
pub(crate) fn spawn(
    client: OnUpgrade,
    upstream_side: OnUpgrade,
    idle: Duration,
    activity: Option<Arc<Activity>>,
    upstream: Picked,
) {
    // Tracked by the worker: a stopping server lets the tunnel run until it closes or idles out.
    palisade_http::lingering::spawn(async move {
        let (client, upstream_io) = match tokio::try_join!(client, upstream_side) {
            Ok(both) => both,
            Err(e) => return tracing::debug!("upgrade did not complete: {e}"),
        };
        let (mut client, mut upstream_io) = (TokioIo::new(client), TokioIo::new(upstream_io));
        let idle_for = async {
            match &activity {
                Some(activity) => activity.idle_for(idle).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut client, &mut upstream_io) => match result {
                Ok((up, down)) => tracing::debug!(upstream = %upstream.upstream().config, up, down, "tunnel closed"),
                Err(e) => tracing::debug!(upstream = %upstream.upstream().config, "tunnel ended: {e}"),
            },
            () = idle_for => {
                tracing::debug!(upstream = %upstream.upstream().config, "closing a tunnel idle for {idle:?}");
            }
        }
    });
}
