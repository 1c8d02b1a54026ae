//! The admin page (`GET /ui`) and its login: a static page embedded in the binary, whose data
//! all comes from the `/api/` endpoints, and the sessions its login hands out.
//!
//! The page holds no data, so it is served without the token; its script asks
//! `/api/v1/admin/engine/status` and shows only the login form while that answers `401`.
//! `POST /api/v1/admin/login` takes the token in its body (JSON `{"token": ...}` or a form
//! field `token`), never in the URL, and answers a match with a session cookie
//! (`swapvisor_session`, `HttpOnly; SameSite=Strict; Path=/`) that [`require_token`] takes in
//! place of the bearer header. A cookie is sent by the browser on its own, so a request it
//! authenticates that is not a `GET`/`HEAD` must also carry [`CSRF_HEADER`]: a cross-site form
//! cannot set a header, and a cross-site script cannot without a CORS preflight this API never
//! grants.
//!
//! [`require_token`]: super::extract::require_token

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use super::AdminState;
use super::answer::Answer;
use super::extract::{Body, token_matches};
use super::handlers::with_header;

/// The session cookie's name.
pub(super) const COOKIE: &str = "swapvisor_session";
/// The header a cookie-authenticated request other than `GET`/`HEAD` must carry (any value).
pub(super) const CSRF_HEADER: &str = "x-swapvisor-csrf";
/// How long a session lasts from its login.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// The most sessions held at once; a login beyond it ends the oldest.
const MAX_SESSIONS: usize = 64;

/// The page's files, embedded: nothing is fetched from elsewhere.
const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");
/// Only the page's own origin; no inline script or style, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The sessions logins handed out, by the SHA-256 of their id (so a lookup's timing tells
/// nothing about a live id), each with its expiry.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Instant>>,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        // Plain data updated in short sections: a poisoned lock still holds it whole.
        self.by_digest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session's id (32 random bytes, hex), or `None` when the system has no randomness.
    fn open(&self) -> Option<String> {
        let mut bytes = [0u8; 32];
        if let Err(error) = getrandom::getrandom(&mut bytes) {
            tracing::error!(%error, "no randomness for an admin session id");
            return None;
        }
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, expiry| *expiry > now);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions.iter().min_by_key(|(_, e)| **e).map(|(d, _)| *d);
            match oldest {
                Some(oldest) => sessions.remove(&oldest),
                None => break,
            };
        }
        sessions.insert(digest(&id), now + SESSION_LIFETIME);
        Some(id)
    }

    /// True for the id of a session that has not expired.
    pub(super) fn is_valid(&self, id: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .get(&digest(id))
            .is_some_and(|expiry| *expiry > now)
    }

    fn close(&self, id: &str) {
        self.lock().remove(&digest(id));
    }
}

/// The value of the session cookie in `headers`, if any.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// True for a method a cross-site page can have a browser send with its cookies and no
/// custom header: everything but `GET`, `HEAD` and `OPTIONS` then needs [`CSRF_HEADER`].
pub(super) fn needs_csrf_header(request: &Request) -> bool {
    let reads = [Method::GET, Method::HEAD, Method::OPTIONS];
    !(reads.contains(request.method()) || request.headers().contains_key(CSRF_HEADER))
}

/// One embedded file, never cached stale (the binary may be upgraded under the same URL).
fn asset(content_type: &'static str, text: &'static str) -> Response {
    let response = ([(header::CONTENT_TYPE, content_type)], text).into_response();
    let response = with_header(response, header::CONTENT_SECURITY_POLICY, CSP);
    let response = with_header(response, header::CACHE_CONTROL, "no-cache");
    let response = with_header(response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    with_header(response, header::X_FRAME_OPTIONS, "DENY")
}

/// To the page.
#[utoipa::path(get, path = "/", tag = "page", responses((status = 303, description = "To `/ui`")))]
pub(super) async fn root() -> Redirect {
    Redirect::to("/ui")
}

/// The admin page: public, it holds no data (every figure comes from `/api/` calls).
#[utoipa::path(get, path = "/ui", tag = "page",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/app.js`: the page's script.
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/style.css`: the page's style sheet.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// The body of a login.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by hand (JSON or a form), described for the document
pub(super) struct LoginBody {
    /// The admin token.
    token: String,
}

/// Whether a request's body is a form's (the page's login without its script).
fn is_form(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    })
}

/// The token a login body presents: JSON `{"token": ...}` or a form's `token` field.
fn presented_token(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if is_form(headers) {
        form_urlencoded::parse(body)
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
    } else {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        value.get("token")?.as_str().map(str::to_owned)
    }
}

/// A session cookie for the right token in the body; `401` and no cookie for anything else.
/// A form's login (the page without its script) is sent back to the page with `303`.
#[utoipa::path(post, path = "/api/v1/admin/login", tag = "page", security(()),
    request_body(content = LoginBody, description = "The token, as JSON or a form field"),
    responses(
        (status = 200, description = "`logged_in`, with a `swapvisor_session` cookie; `not_required` without a token", body = Answer,
         headers(("Set-Cookie" = String, description = "`swapvisor_session=...; HttpOnly; SameSite=Strict; Path=/`"))),
        (status = 303, description = "A form's login: to `/ui`, with the cookie"),
        (status = 401, description = "`unauthorized`: the wrong token; no cookie", body = Answer),
        (status = 500, description = "`failed`: no session could be opened", body = Answer)))]
pub(super) async fn login(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let Some(token) = &state.token else {
        return Answer::new("not_required").with(StatusCode::OK);
    };
    let presented = presented_token(&headers, &body).unwrap_or_default();
    if !token_matches(token, presented.trim()) {
        // Not a warning: anyone can send these, and the log is not theirs to fill.
        tracing::debug!("an admin login with a wrong token was refused");
        return Answer::failed("unauthorized", "wrong token").with(StatusCode::UNAUTHORIZED);
    }
    let Some(id) = state.sessions.open() else {
        return Answer::failed("failed", "no session could be opened")
            .with(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    let response = if is_form(&headers) {
        Redirect::to("/ui").into_response()
    } else {
        Answer::new("logged_in").with(StatusCode::OK)
    };
    with_header(response, header::SET_COOKIE, &cookie)
}

/// Ends the session and clears its cookie.
#[utoipa::path(post, path = "/api/v1/admin/logout", tag = "page", responses(
    (status = 200, description = "`logged_out`", body = Answer,
     headers(("Set-Cookie" = String, description = "The cleared cookie")))))]
pub(super) async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.sessions.close(id);
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    with_header(
        Answer::new("logged_out").with(StatusCode::OK),
        header::SET_COOKIE,
        &cookie,
    )
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn sessions_open_validate_close_and_stay_bounded() {
        let sessions = Sessions::default();
        let id = sessions.open().unwrap();
        assert_eq!(id.len(), 64);
        assert!(sessions.is_valid(&id));
        assert!(!sessions.is_valid("not-a-session"));
        for _ in 0..MAX_SESSIONS + 5 {
            sessions.open().unwrap();
        }
        assert!(sessions.lock().len() <= MAX_SESSIONS);
        let id = sessions.open().unwrap();
        sessions.close(&id);
        assert!(!sessions.is_valid(&id));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("c=3; swapvisor_session=abc ; d=4"),
        );
        assert_eq!(session_cookie(&headers), Some("abc"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn a_login_body_is_json_or_a_form() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            presented_token(&headers, br#"{"token":"t0k"}"#).as_deref(),
            Some("t0k")
        );
        assert_eq!(presented_token(&headers, b"{{{"), None);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(
            presented_token(&headers, b"token=a%2Bb").as_deref(),
            Some("a+b")
        );
    }
}
