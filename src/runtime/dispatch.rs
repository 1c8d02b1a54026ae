//! Routing each request on the runtime's listeners to whichever engine is live right now.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use swapvisor_actors::Slot;

use crate::engine::{Engine, json_response};
use crate::net::{HttpDispatch, HttpRequest, HttpResponse, ListenerKey};

/// Routes every request to the engine the slot publishes when the request arrives, so that
/// even a request on an old keep-alive connection reaches the new config.
pub(super) struct LiveEngineDispatch(Weak<Slot<Engine>>);

impl LiveEngineDispatch {
    pub(super) fn new(slot: &Arc<Slot<Engine>>) -> Self {
        Self(Arc::downgrade(slot))
    }
}

impl HttpDispatch for LiveEngineDispatch {
    fn dispatch(
        &self,
        listener: &ListenerKey,
        request: HttpRequest,
    ) -> BoxFuture<'static, HttpResponse> {
        let slot = self.0.upgrade();
        let listener = listener.clone();
        Box::pin(async move {
            let unavailable = |why: String| {
                json_response(
                    hyper::StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "error": format!("no engine is serving: {why}") }),
                )
            };
            let Some(slot) = slot else {
                return unavailable("the runtime has shut down".to_owned());
            };
            match slot.acquire().await {
                Ok(engine) => engine.serve_http(&listener, request).await,
                Err(error) => unavailable(error.to_string()),
            }
        })
    }
}
