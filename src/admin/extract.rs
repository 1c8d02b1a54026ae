//! One extractor per concern: the token check, the request body with its size limit, and the
//! `If-Match` generation.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::answer::Answer;
use super::{AdminState, ui};
use crate::net::{BodyError, read_limited};

/// Requires `Authorization: Bearer <token>`, or a session cookie from the login, on every
/// `/api/` path but the login itself when a token is set.
pub(super) async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if !path.starts_with("/api/") || path == "/api/v1/admin/login" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_credentials)
        .unwrap_or("");
    if token_matches(token, presented) {
        return next.run(request).await;
    }
    // The page's session, in place of the header; with a header a cross-site form cannot send
    // on anything but a read (see `ui`).
    let session =
        ui::session_cookie(request.headers()).is_some_and(|id| state.sessions.is_valid(id));
    if session && ui::needs_csrf_header(&request) {
        Answer::failed(
            "forbidden",
            "a request authenticated by the session cookie must carry X-Swapvisor-Csrf",
        )
        .with(StatusCode::FORBIDDEN)
    } else if session {
        next.run(request).await
    } else {
        let mut response = Answer::failed(
            "unauthorized",
            "this endpoint requires Authorization: Bearer <token>",
        )
        .with(StatusCode::UNAUTHORIZED);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

/// True when `presented` is `token`, compared in constant time so that the token cannot be
/// guessed byte by byte from timings.
pub(super) fn token_matches(token: &str, presented: &str) -> bool {
    presented.as_bytes().ct_eq(token.as_bytes()).into()
}

/// The credentials of an `Authorization: Bearer <token>` value. The scheme is matched without
/// regard to case and may be followed by any number of spaces (RFC 9110, section 11.1).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_matches(' '))
}

/// A request body of at most the admin API's `max_body` bytes; a larger one is answered 413.
pub(super) struct Body(pub(super) bytes::Bytes);

impl FromRequest<AdminState> for Body {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AdminState) -> Result<Self, Response> {
        match read_limited(request.into_body(), state.max_body).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(BodyError::TooLarge(_)) => Err(Answer::failed(
                "payload_too_large",
                format!("the body is over the limit of {} bytes", state.max_body),
            )
            .with(StatusCode::PAYLOAD_TOO_LARGE)),
            Err(error @ BodyError::TimedOut(_)) => {
                Err(Answer::failed("request_timeout", error.to_string())
                    .with(StatusCode::REQUEST_TIMEOUT))
            }
            Err(error) => {
                Err(Answer::failed("bad_request", error.to_string()).with(StatusCode::BAD_REQUEST))
            }
        }
    }
}

/// The generation named by `If-Match` (`3`, `"3"` or `W/"3"`), if the header is present.
pub(super) struct IfMatch(pub(super) Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = value.to_str().unwrap_or("").trim();
        let unquoted = text.trim_start_matches("W/").trim_matches('"');
        unquoted
            .parse::<u64>()
            .map(|g| IfMatch(Some(g)))
            .map_err(|_| {
                Answer::failed(
                    "bad_request",
                    format!("If-Match must be a generation number, got {text:?}"),
                )
                .with(StatusCode::BAD_REQUEST)
            })
    }
}

/// The runtime, once its first engine has started; before that, 503 with the state `starting`.
pub(super) struct Attached(pub(super) std::sync::Arc<crate::runtime::Runtime>);

impl FromRequestParts<AdminState> for Attached {
    type Rejection = Response;

    async fn from_request_parts(_parts: &mut Parts, state: &AdminState) -> Result<Self, Response> {
        state.runtime().cloned().map(Attached).ok_or_else(|| {
            Answer::failed("unavailable", "the first engine has not started yet")
                .state(swapvisor_actors::RunState::Starting)
                .with(StatusCode::SERVICE_UNAVAILABLE)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_credentials;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0ken", "bearer t0ken", "BEARER  t0ken"] {
            assert_eq!(bearer_credentials(value), Some("t0ken"), "{value}");
        }
        assert_eq!(bearer_credentials("Basic t0ken"), None);
        assert_eq!(bearer_credentials("Bearert0ken"), None);
    }
}
