//! Routes that run no guest still put their tenant on the machine.
//!
//! The guest scheduler moves a tenant's long guests out of the connection workers' way only while another
//! tenant is there to make way for. A tenant serving static files or proxying uses no guest CPU, but its
//! requests are work for the same connection workers: [`Present`] notes each one on the tenant's share, so a
//! neighbour flooding spinning guests or memory bombs beside it is not taken to be alone.

use std::sync::Arc;

use futures::future::BoxFuture;
use http::Response;
use palisade_http::{Body, Handler, HandlerError, RequestBody, RequestContext};
use palisade_sched::Share;

/// A handler that runs no guest, noting each of its requests on its tenant's [`Share`].
pub struct Present {
    inner: Arc<dyn Handler>,
    share: Arc<Share>,
}

impl Present {
    /// `inner`, counted on `share` (see [`Share::note_request`]).
    pub fn new(inner: Arc<dyn Handler>, share: Arc<Share>) -> Present {
        Present { inner, share }
    }
}

impl Handler for Present {
    fn handle(
        &self,
        request: http::Request<RequestBody>,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<Response<Body>, HandlerError>> {
        self.share.note_request();
        self.inner.handle(request, context)
    }
}
