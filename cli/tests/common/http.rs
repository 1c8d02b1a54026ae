//! HTTP requests from tests: a client that never retries and counts its connections.

use super::*;

/// A keep-alive HTTP/1 client on one connection at a time, which never retries and counts the
/// connections it opens.
///
/// Load tests use it to see what a reload does to clients. hyper-util's legacy client would
/// hide exactly that: it retries, by default, a request whose pooled connection was closed
/// under it, and races a new connection against waiting for an idle one. Here a request on a
/// connection the server closes fails, and a connection the server closed between requests
/// shows up as one more connection opened.
#[derive(Default)]
pub(crate) struct TestClient {
    connection: tokio::sync::Mutex<Option<(String, SendRequest<Full<Bytes>>)>>,
    opened: std::sync::atomic::AtomicUsize,
}

impl TestClient {
    /// How many TCP connections it has opened.
    pub(crate) fn connections(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A fresh [`TestClient`].
pub(crate) fn client() -> TestClient {
    TestClient::default()
}

/// Sends one request and returns the status and the JSON body (or the text as a JSON string).
pub(crate) async fn request(
    client: &TestClient,
    method: &str,
    url: &str,
    body: &str,
) -> Result<(u16, Value), String> {
    send(client, method, url, &[], Bytes::from(body.to_owned())).await
}

/// Sends one request with extra headers on a fresh client.
pub(crate) async fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<(u16, Value), String> {
    send(&client(), method, url, headers, body.into()).await
}

async fn send(
    client: &TestClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(u16, Value), String> {
    send_full(client, method, url, headers, body)
        .await
        .map(|(status, _, body)| (status, body))
}

/// Sends one request on a fresh client and returns the status, the response headers and the
/// JSON body.
pub(crate) async fn request_full(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<(u16, hyper::HeaderMap, Value), String> {
    send_full(&client(), method, url, headers, body.into()).await
}

async fn send_full(
    client: &TestClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(u16, hyper::HeaderMap, Value), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_string();
    let mut connection = client.connection.lock().await;
    let reusable =
        matches!(&*connection, Some((to, sender)) if *to == authority && !sender.is_closed());
    if !reusable {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        let (sender, serving) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {authority}: {e}"))?;
        tokio::spawn(serving);
        client
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *connection = Some((authority.clone(), sender));
    }
    let Some((_, sender)) = connection.as_mut() else {
        return Err("no connection".into());
    };
    sender
        .ready()
        .await
        .map_err(|e| format!("the connection closed: {e:?}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, &authority);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let response_headers = response.headers().clone();
    // The server said this connection ends with this response: the next request opens a new
    // one, as any HTTP client does (it is counted).
    if response_headers
        .get(hyper::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    {
        *connection = None;
    }
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, response_headers, json))
}

/// GET `url` on a fresh client, with the response headers.
pub(crate) async fn get_full(url: &str) -> (u16, hyper::HeaderMap, Value) {
    request_full("GET", url, &[], "")
        .await
        .expect("request failed")
}

/// GET `url` on a fresh client.
pub(crate) async fn get(url: &str) -> (u16, Value) {
    request(&client(), "GET", url, "")
        .await
        .expect("request failed")
}
