//! The admin API's short answers: a status word, and what went wrong. Every handler answers
//! with one of these or with a status type of the runtime, so the OpenAPI document
//! ([`super::openapi`]), which is derived from the same types, says what is sent.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use swapvisor_actors::RunState;

/// `{"status", "error"?, "generation"?, "restoreError"?, "state"?}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Answer {
    /// What happened, in one word: `ok`, `ready`, `activated`, `build_failed`, `rolled_back`,
    /// `degraded`, `conflict`, `unchanged`, `not_found`, `unauthorized`, `unavailable`, ...
    status: &'static str,
    /// Why, when something went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The live generation after a reload.
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    /// Why restoring the previous config failed too (`degraded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    restore_error: Option<String>,
    /// Where the runtime is (`/readyz`, and while it is not attached yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<RunState>,
}

impl Answer {
    /// An answer of `status` alone.
    pub(super) fn new(status: &'static str) -> Self {
        Self {
            status,
            error: None,
            generation: None,
            restore_error: None,
            state: None,
        }
    }

    /// An answer of `status` because of `error`.
    pub(super) fn failed(status: &'static str, error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::new(status)
        }
    }

    /// With the generation.
    pub(super) fn generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// With the restore's error.
    pub(super) fn restore_error(mut self, error: Option<String>) -> Self {
        self.restore_error = error;
        self
    }

    /// With the runtime's state.
    pub(super) fn state(mut self, state: RunState) -> Self {
        self.state = Some(state);
        self
    }

    /// The response: `code`, and this as JSON.
    pub(super) fn with(self, code: StatusCode) -> Response {
        super::handlers::json(code, serde_json::to_value(self).unwrap_or_default())
    }
}
