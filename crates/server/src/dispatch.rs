//! One request: find the tenant and route, call its handler, turn failures into clear responses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use palisade_http::{Body, Fault, RequestContext};
use tracing::Instrument;

use crate::host::{HostError, request_host};

/// What every connection shares: the router and the request counter.
pub(crate) struct Dispatcher {
    router: crate::Routes,
    next_request_id: AtomicU64,
}

impl Dispatcher {
    pub(crate) fn new(router: crate::Routes) -> Dispatcher {
        Dispatcher { router, next_request_id: AtomicU64::new(1) }
    }

    pub(crate) async fn dispatch(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Response<Body> {
        let started = Instant::now();
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let method = req.method().clone();
        let path = req.uri().path().to_string();

        let host = match request_host(&req) {
            Ok(h) => h,
            Err(HostError::Missing) => return Fault::BadRequest.response("missing Host header"),
            Err(HostError::Invalid) => return Fault::BadRequest.response("invalid Host header"),
        };
        let Some(tenant) = self.router.tenant(host.as_deref()) else {
            tracing::debug!(request_id, host = host.as_deref().unwrap_or(""), "no tenant for host");
            return Fault::NotFound.response("no site is configured for this host");
        };
        let Some((route, handler)) = tenant.route(&path) else {
            return Fault::NotFound.response("no route matches this path");
        };

        let span = tracing::info_span!("request", id = request_id, tenant = %tenant.name, route = %route);
        let context = RequestContext {
            request_id,
            tenant: tenant.name.as_str().into(),
            route: route.into(),
            remote_addr: remote,
            local_addr: local,
        };
        let req = req.map(|b| b.map_err(Into::into).boxed_unsync());
        let response = match handler.handle(req, context).instrument(span.clone()).await {
            Ok(r) => r,
            Err(e) => {
                span.in_scope(|| tracing::warn!(status = e.fault.status().as_u16(), "{e}"));
                e.response()
            }
        };
        span.in_scope(|| {
            tracing::info!(
                target: "palisade::access",
                %method,
                path,
                status = response.status().as_u16(),
                micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "request"
            )
        });
        response
    }
}
