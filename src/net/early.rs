//! Answers a server gives before any handler sees the request.
//!
//! Two kinds of request are answered here, the same way on every listener:
//!
//! - **A request without exactly one `Host`.** RFC 9112 (section 3.2) requires a 400 for an
//!   HTTP/1.1 request that lacks `Host` and for any request with more than one: two `Host`
//!   lines are how a request smuggled past one server reaches another as something else.
//! - **A request on the probe reserve that is not a probe.** A connection admitted past the
//!   cap (every ordinary connection being busy) is there to answer one health probe; anything
//!   else on it is answered 503, and the connection closes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};

/// The answer to `request` when it must not reach a handler. `probes` are the only paths a
/// connection on the probe reserve (`on_reserve`) may ask for.
pub(super) fn answer<B>(
    request: &Request<B>,
    on_reserve: bool,
    probes: &[&str],
) -> Option<Response<Full<Bytes>>> {
    let hosts = request.headers().get_all(HOST).iter().count();
    if hosts > 1 || (hosts == 0 && request.version() == Version::HTTP_11) {
        let error = if hosts > 1 {
            "the request has more than one Host header"
        } else {
            "an HTTP/1.1 request needs a Host header"
        };
        return Some(refusal(StatusCode::BAD_REQUEST, error));
    }
    let probe = matches!(*request.method(), Method::GET | Method::HEAD)
        && probes.contains(&request.uri().path());
    if on_reserve && !probe {
        return Some(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is at its connection cap with every connection busy; only health probes are answered now",
        ));
    }
    None
}

/// `{"error": message}` with `status`, closing the connection.
fn refusal(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, hosts: &[&str], path: &str) -> Request<()> {
        let mut builder = Request::get(path).version(version);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap()
    }

    fn status(request: &Request<()>, on_reserve: bool) -> Option<u16> {
        answer(request, on_reserve, &["/healthz"]).map(|r| r.status().as_u16())
    }

    #[test]
    fn exactly_one_host_is_required_of_http_1_1() {
        assert_eq!(
            status(&request(Version::HTTP_11, &["a"], "/x"), false),
            None
        );
        assert_eq!(
            status(&request(Version::HTTP_11, &[], "/x"), false),
            Some(400)
        );
        assert_eq!(
            status(&request(Version::HTTP_11, &["a", "b"], "/x"), false),
            Some(400)
        );
        assert_eq!(status(&request(Version::HTTP_10, &[], "/x"), false), None);
        assert_eq!(
            status(&request(Version::HTTP_10, &["a", "a"], "/x"), false),
            Some(400)
        );
    }

    #[test]
    fn the_reserve_answers_probes_only() {
        assert_eq!(
            status(&request(Version::HTTP_11, &["a"], "/healthz"), true),
            None
        );
        assert_eq!(
            status(&request(Version::HTTP_11, &["a"], "/api/x"), true),
            Some(503)
        );
    }
}
