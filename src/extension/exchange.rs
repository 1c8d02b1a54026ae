//! The HTTP exchange a step runs in, for steps that need more than the JSON `request`: a
//! proxy streams the raw body to a backend and the backend's response back, and passes an
//! `Upgrade` (a WebSocket) through.
//!
//! Most steps never look at it: a pipeline's `request` is JSON, its body read whole (up to 1 MiB)
//! before the first step runs. A step type that streams says so with [`Step::takes_body`]; a
//! pipeline holding one does not read the body, leaves `request.body` null, and lends the body
//! to that step here instead. A step answers with a streamed response through
//! [`HttpExchange::respond`]: it is the pipeline's HTTP answer, whatever later steps output.
//!
//! [`Step::takes_body`]: super::Step::takes_body

use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::http::request::Parts;
use hyper::upgrade::OnUpgrade;

use crate::net::{HttpRequest, RequestBody, StreamBody, lock};

/// The raw side of one HTTP request that a pipeline serves. Shared by the pipeline's steps;
/// each part that can be taken is taken once.
pub struct HttpExchange {
    head: Parts,
    client: SocketAddr,
    body: Mutex<Option<StreamBody>>,
    /// The body as the pipeline read it whole, when it did.
    read: Mutex<Option<bytes::Bytes>>,
    upgrade: Mutex<Option<OnUpgrade>>,
    response: Mutex<Option<hyper::Response<StreamBody>>>,
}

impl std::fmt::Debug for HttpExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpExchange")
            .field("method", &self.head.method)
            .field("uri", &self.head.uri)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl HttpExchange {
    /// The exchange of `request`. Its body is lent to the steps when `stream_body`; otherwise it
    /// is returned, to be read whole into the pipeline's `request`.
    pub(crate) fn new(request: HttpRequest, stream_body: bool) -> (Self, Option<RequestBody>) {
        let (mut head, body) = request.into_parts();
        let client = body.client();
        let upgrade = head.extensions.remove::<OnUpgrade>();
        let (lent, kept) = if stream_body {
            use http_body_util::BodyExt;
            (Some(body.map_err(Into::into).boxed_unsync()), None)
        } else {
            (None, Some(body))
        };
        let exchange = Self {
            head,
            client,
            body: Mutex::new(lent),
            read: Mutex::new(None),
            upgrade: Mutex::new(upgrade),
            response: Mutex::new(None),
        };
        (exchange, kept)
    }

    /// The request's method, URI, version and headers, as they arrived.
    pub fn head(&self) -> &Parts {
        &self.head
    }

    /// The address of the client the request came from, when the server knows it.
    pub fn client(&self) -> Option<SocketAddr> {
        Some(self.client)
    }

    /// Takes the request body, to stream it elsewhere. `None` when the pipeline read it whole
    /// (no step of it [`takes_body`](super::Step::takes_body)) or another step took it.
    pub fn take_body(&self) -> Option<StreamBody> {
        lock(&self.body).take()
    }

    /// The body's bytes when the pipeline read it whole (no step takes it): what a step
    /// forwards as it arrived, after other steps have checked `request.body`.
    pub fn read_body(&self) -> Option<bytes::Bytes> {
        lock(&self.read).clone()
    }

    /// Keeps the body the pipeline read whole.
    pub(crate) fn set_read_body(&self, bytes: bytes::Bytes) {
        *lock(&self.read) = Some(bytes);
    }

    /// Takes the upgrade of the client's connection, for a request that asked for one
    /// (`Connection: upgrade`). Answering `101` and awaiting it gives the raw connection.
    pub fn take_upgrade(&self) -> Option<OnUpgrade> {
        lock(&self.upgrade).take()
    }

    /// Sets the pipeline's HTTP answer to `response`, streamed as it comes. A later call
    /// replaces an earlier one.
    pub fn respond(&self, response: hyper::Response<StreamBody>) {
        *lock(&self.response) = Some(response);
    }

    /// The streamed answer a step gave, if any.
    pub(crate) fn take_response(&self) -> Option<hyper::Response<StreamBody>> {
        lock(&self.response).take()
    }
}
