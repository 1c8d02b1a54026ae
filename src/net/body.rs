//! Reading a request body within a size limit, and answering one that is over it so that the
//! client sees the answer.
//!
//! A server that answers 413 and closes at once, with the rest of the body unread, makes the
//! kernel reset the connection; a client that writes its whole body before reading (Python's
//! `http.client`, `requests`, many SDKs) then gets a broken pipe or a reset instead of the
//! answer. Like nginx's lingering close, the rest of an oversized body is read and thrown away
//! in the background, for a bounded time and size, while the 413 goes out.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;

/// How long an oversized body is read and discarded after the answer, at most.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(10);
/// How many bytes of an oversized body are read and discarded after the answer, at most. A
/// body declared larger than this is not read at all: the client would be cut off anyway.
pub(crate) const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// It is over the limit (declared or sent); the rest is being discarded.
    #[error("the body is over the limit of {0} bytes")]
    TooLarge(usize),
    /// It did not arrive whole within its read timeout.
    #[error("{0}")]
    TimedOut(String),
    /// The connection failed while it was being read.
    #[error("could not read the body: {0}")]
    Read(String),
}

/// Reads `body` whole if it is at most `limit` bytes. A larger one is answered
/// [`BodyError::TooLarge`] as soon as that is known, and the rest is drained in the background.
pub(crate) async fn read_limited<B>(mut body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    if body.size_hint().lower() > limit_u64 {
        linger(body);
        return Err(BodyError::TooLarge(limit));
    }
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let error: Box<dyn std::error::Error + Send + Sync> = e.into();
            if super::request_body::RequestBodyError::is_timeout(&*error) {
                BodyError::TimedOut(error.to_string())
            } else {
                BodyError::Read(error.to_string())
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                linger(body);
                return Err(BodyError::TooLarge(limit));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// Reads and discards the rest of `body` in the background, within [`LINGER_TIME`] and
/// [`LINGER_BYTES`]; then drops it, which closes the connection if the body was not finished.
/// For a request answered without reading its body.
pub(crate) fn linger<B>(mut body: B)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
{
    if body.is_end_stream() || body.size_hint().lower() > LINGER_BYTES {
        return;
    }
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + LINGER_TIME;
        let mut drained: u64 = 0;
        while drained < LINGER_BYTES {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    drained += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    });
}
