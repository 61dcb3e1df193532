//! After a `101 Switching Protocols` (WebSocket and other upgrades): bytes copied both ways between the
//! client and the upstream until either closes or the tunnel is idle for the route's `timeout`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use palisade_http::Activity;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::upstreams::Picked;

/// Joins the two upgraded connections once hyper hands them over; `upstream` counts as in flight until the
/// tunnel closes.
pub(crate) fn spawn(client: OnUpgrade, upstream_side: OnUpgrade, idle: Duration, upstream: Picked) {
    tokio::spawn(async move {
        let (client, upstream_io) = match tokio::try_join!(client, upstream_side) {
            Ok(both) => both,
            Err(e) => return tracing::debug!("upgrade did not complete: {e}"),
        };
        let activity = Arc::new(Activity::new());
        let mut client = Watched { io: TokioIo::new(client), activity: activity.clone() };
        let mut upstream_io = TokioIo::new(upstream_io);
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut client, &mut upstream_io) => match result {
                Ok((up, down)) => tracing::debug!(upstream = %upstream.upstream().config, up, down, "tunnel closed"),
                Err(e) => tracing::debug!(upstream = %upstream.upstream().config, "tunnel ended: {e}"),
            },
            () = activity.idle_for(idle) => {
                tracing::debug!(upstream = %upstream.upstream().config, "closing a tunnel idle for {idle:?}");
            }
        }
    });
}

/// One side of the tunnel, recording when bytes move in either direction.
struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
