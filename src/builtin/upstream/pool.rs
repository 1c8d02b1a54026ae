//! An upstream's pool: which target a request goes to, the connections kept open to each
//! (hyper-util's pooled client), and when a failed request is tried again.
//!
//! A request goes to a *usable* target (healthy by the active checks, not ejected by the
//! traffic), picked round robin or by fewest requests in flight. None usable: it is refused at
//! once. A failed attempt is tried again on another target when that cannot do harm and the
//! budget allows:
//!
//! - a request that was never sent (no connection could be made) may go again, whatever its
//!   method;
//! - one that may have reached the backend goes again only when its method is idempotent;
//! - a body streamed to the first attempt cannot be sent twice, so only a request whose body is
//!   empty or was read whole ([`OutBody`]) is retried;
//! - retries in flight are at most `budgetPercent` of the requests in flight (and at least
//!   `minConcurrent`), so that retries cannot multiply the load on a struggling backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::settings::{Balance, Settings};
use super::target::{InFlight, Outcome, Target, millis_since};
use super::tunnel::Tunnels;
use crate::net::StreamBody;

/// A request body as an upstream sends it: whole ones can be sent again, a stream only once.
pub(crate) enum OutBody {
    /// No body.
    Empty,
    /// A body read whole (small, of known length).
    Whole(Bytes),
    /// A body streamed as it arrives.
    Stream(StreamBody),
}

impl OutBody {
    /// This body for one attempt, and what is left for the next (`None`: no more attempts).
    fn attempt(self) -> (StreamBody, Option<OutBody>) {
        match self {
            OutBody::Empty => (
                Empty::new().map_err(|e| match e {}).boxed_unsync(),
                Some(OutBody::Empty),
            ),
            OutBody::Whole(bytes) => (
                Full::new(bytes.clone())
                    .map_err(|e| match e {})
                    .boxed_unsync(),
                Some(OutBody::Whole(bytes)),
            ),
            OutBody::Stream(body) => (body, None),
        }
    }
}

/// Why an upstream gave no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No target is usable now (answered 503).
    #[error("no target of upstream {upstream:?} is healthy")]
    Unavailable {
        /// The upstream.
        upstream: String,
    },
    /// No response head within the time limit (answered 504).
    #[error("upstream {upstream:?} ({target}) gave no response within {}", humantime::format_duration(*limit))]
    TimedOut {
        /// The upstream.
        upstream: String,
        /// The target of the last attempt.
        target: String,
        /// The time limit.
        limit: Duration,
    },
    /// The connection failed (answered 502).
    #[error("upstream {upstream:?} ({target}): {message}")]
    Failed {
        /// The upstream.
        upstream: String,
        /// The target of the last attempt.
        target: String,
        /// What failed.
        message: String,
    },
}

/// What a request to an upstream is: everything but the body.
pub(crate) struct OutRequest {
    pub(crate) method: Method,
    /// The path and query, starting with `/`.
    pub(crate) path_and_query: String,
    pub(crate) headers: HeaderMap,
}

/// A response, with the request counted in flight on its target until the response is dropped.
pub(crate) struct Answer {
    pub(crate) response: Response<Incoming>,
    pub(crate) in_flight: InFlight,
    /// The target's address.
    pub(crate) target: String,
}

/// The shared part of one `http.upstream` instance: what its steps lend, and what a carried
/// instance keeps across reloads.
pub(crate) struct UpstreamPool {
    pub(crate) name: String,
    pub(super) targets: Vec<Arc<Target>>,
    client: Client<HttpConnector, StreamBody>,
    pub(super) settings: Settings,
    next: AtomicUsize,
    /// When ejections are counted from.
    pub(super) origin: Instant,
    active_requests: AtomicUsize,
    active_retries: AtomicUsize,
    pub(super) retries: AtomicU64,
    pub(super) retries_refused: AtomicU64,
    pub(crate) tunnels: Tunnels,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("name", &self.name)
            .field("targets", &self.targets.len())
            .finish_non_exhaustive()
    }
}

/// Whether `method` may be sent twice without changing more than once (RFC 9110, 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl UpstreamPool {
    /// A pool for `settings`; it connects to nothing until a request or check is sent.
    pub(super) fn new(name: &str, settings: Settings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.max_idle_per_target)
            .pool_idle_timeout(settings.idle_timeout)
            .pool_timer(TokioTimer::new())
            // A canceled request is never sent again behind our back: retries are ours, above.
            .retry_canceled_requests(false)
            .build(connector);
        Self {
            name: name.to_owned(),
            targets: settings
                .targets
                .iter()
                .map(|address| Arc::new(Target::new(address.clone())))
                .collect(),
            client,
            settings,
            next: AtomicUsize::new(0),
            origin: Instant::now(),
            active_requests: AtomicUsize::new(0),
            active_retries: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
            retries_refused: AtomicU64::new(0),
            tunnels: Tunnels::default(),
        }
    }

    /// A pool of one target, `authority`, for a step that calls a fixed URL: no health checks
    /// and no ejection (there is nowhere else to send), retries as an upstream's by default.
    pub(crate) fn for_url(step: &str, authority: String) -> Self {
        let settings = Settings::single(authority);
        Self::new(step, settings)
    }

    /// How long a request waits for its response head unless its step says otherwise.
    pub(crate) fn settings_request_timeout(&self) -> Duration {
        self.settings.request_timeout
    }

    pub(super) fn now_ms(&self) -> u64 {
        millis_since(self.origin)
    }

    /// A usable target for the next attempt, one not yet `tried` when there is one.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let now = self.now_ms();
        let count = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let usable = (0..count)
            .map(|k| (start + k) % count)
            .filter(|i| self.targets[*i].usable(now));
        let fresh = usable.clone().filter(|i| !tried.contains(i));
        self.choose(fresh).or_else(|| self.choose(usable))
    }

    /// The target `balance` takes of `candidates`, given in round-robin order.
    fn choose(&self, mut candidates: impl Iterator<Item = usize>) -> Option<usize> {
        match self.settings.balance {
            Balance::RoundRobin => candidates.next(),
            // Ties go to the first in round-robin order, so that an idle pool still spreads.
            Balance::LeastRequests => {
                candidates.min_by_key(|i| self.targets[*i].in_flight.load(Ordering::Relaxed))
            }
        }
    }

    /// Whether one more retry fits the budget.
    fn may_retry(&self) -> bool {
        let requests = self.active_requests.load(Ordering::Relaxed);
        let allowed = (requests * self.settings.retries.budget_percent as usize / 100)
            .max(self.settings.retries.min_concurrent as usize);
        self.active_retries.load(Ordering::Relaxed) < allowed
    }

    /// Sends `request` with `body`, trying again as the module docs say, and waits up to
    /// `timeout` for each attempt's response head.
    pub(crate) async fn send(
        &self,
        request: &OutRequest,
        body: OutBody,
        timeout: Duration,
    ) -> Result<Answer, SendError> {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        let _request = Decrement(&self.active_requests);
        let mut tried = Vec::new();
        let mut body = Some(body);
        let mut retrying: Option<Decrement<'_>> = None;
        loop {
            let Some(index) = self.pick(&tried) else {
                return Err(SendError::Unavailable {
                    upstream: self.name.clone(),
                });
            };
            tried.push(index);
            let target = &self.targets[index];
            let Some(this_body) = body.take() else {
                // Unreachable: a body that cannot be sent again ends the loop below.
                return Err(self.failed(target, "the request body cannot be sent again"));
            };
            let (attempt_body, rest) = this_body.attempt();
            let uri = format!("{}{}", target.base, request.path_and_query);
            let mut out = hyper::Request::new(attempt_body);
            *out.method_mut() = request.method.clone();
            *out.headers_mut() = request.headers.clone();
            match uri.parse::<Uri>() {
                Ok(uri) => *out.uri_mut() = uri,
                Err(e) => return Err(self.failed(target, &format!("invalid path: {e}"))),
            }
            let in_flight = InFlight::new(target);
            let sent = tokio::time::timeout(timeout, self.client.request(out)).await;
            let (outcome, error) = match sent {
                Ok(Ok(response)) => {
                    let outcome = if response.status().is_server_error() {
                        Outcome::ServerError
                    } else {
                        Outcome::Ok
                    };
                    self.record(target, outcome);
                    drop(retrying);
                    return Ok(Answer {
                        response,
                        in_flight,
                        target: target.address.clone(),
                    });
                }
                Ok(Err(e)) if e.is_connect() => (
                    Outcome::ConnectFailed,
                    self.failed(target, &format!("connect failed: {}", source_text(&e))),
                ),
                Ok(Err(e)) => (Outcome::Failed, self.failed(target, &source_text(&e))),
                Err(_) => (
                    Outcome::Failed,
                    SendError::TimedOut {
                        upstream: self.name.clone(),
                        target: target.address.clone(),
                        limit: timeout,
                    },
                ),
            };
            drop(in_flight);
            self.record(target, outcome);
            let safe = outcome == Outcome::ConnectFailed || idempotent(&request.method);
            let attempts_left = tried.len() < self.settings.retries.attempts as usize;
            if !(safe && attempts_left && rest.is_some()) {
                return Err(error);
            }
            if retrying.is_none() {
                if !self.may_retry() {
                    self.retries_refused.fetch_add(1, Ordering::Relaxed);
                    return Err(error);
                }
                self.active_retries.fetch_add(1, Ordering::Relaxed);
                retrying = Some(Decrement(&self.active_retries));
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(upstream = %self.name, error = %error, "retrying on another target");
            body = rest;
        }
    }

    fn record(&self, target: &Target, outcome: Outcome) {
        let passive = &self.settings.passive;
        target.record(
            outcome,
            self.now_ms(),
            passive.failures,
            passive.eject_for_ms,
        );
    }

    fn failed(&self, target: &Target, message: &str) -> SendError {
        SendError::Failed {
            upstream: self.name.clone(),
            target: target.address.clone(),
            message: message.to_owned(),
        }
    }

    /// Sends one health check to target `index`: true for a 2xx or 3xx answer within `timeout`.
    pub(super) async fn check(&self, index: usize, path: &str, timeout: Duration) -> bool {
        let Some(target) = self.targets.get(index) else {
            return false;
        };
        let uri = format!("{}{path}", target.base);
        let Ok(uri) = uri.parse::<Uri>() else {
            return false;
        };
        let mut request = hyper::Request::new(Empty::new().map_err(|e| match e {}).boxed_unsync());
        *request.uri_mut() = uri;
        let answered = tokio::time::timeout(timeout, async {
            let response = self.client.request(request).await.ok()?;
            let status = response.status();
            // Read to the end, so that the connection goes back to the pool.
            let _ = response.into_body().collect().await;
            Some(status.is_success() || status.is_redirection())
        })
        .await;
        matches!(answered, Ok(Some(true)))
    }
}

/// The error and its causes in one line: hyper-util's own text says only "client error".
fn source_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Takes one off a counter when dropped.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
