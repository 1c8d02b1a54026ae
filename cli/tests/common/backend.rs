//! A real HTTP backend on 127.0.0.1 for the gateway tests: it counts the connections it
//! accepts and the requests it sees, and can be made unhealthy, slow or killed.

use super::*;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// What a backend has seen, and switches that change how it answers.
#[derive(Default)]
pub(crate) struct BackendState {
    /// TCP connections accepted.
    pub(crate) accepted: AtomicU64,
    /// Requests seen, health checks excluded.
    pub(crate) requests: AtomicU64,
    /// Health checks seen.
    pub(crate) checks: AtomicU64,
    /// `/health` answers 503 while set.
    pub(crate) unhealthy: AtomicBool,
    /// Every request but `/health` gets its connection closed without an answer while set.
    pub(crate) drop_requests: AtomicBool,
    /// `/slow` waits for this before it answers.
    pub(crate) release_slow: tokio::sync::Notify,
    /// Requests waiting in `/slow` now.
    pub(crate) waiting: AtomicU64,
}

/// A running backend; [`Backend::kill`] (or dropping it) closes its socket and connections.
pub(crate) struct Backend {
    pub(crate) name: String,
    pub(crate) address: std::net::SocketAddr,
    pub(crate) state: Arc<BackendState>,
    tasks: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    /// Starts backend `name` on 127.0.0.1:0.
    pub(crate) async fn start(name: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(BackendState::default());
        let (name_owned, shared) = (name.to_owned(), state.clone());
        let tasks = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let (name, state) = (name_owned.clone(), shared.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        answer(name.clone(), state.clone(), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            name: name.to_owned(),
            address,
            state,
            tasks: Some(tasks),
        }
    }

    /// `host:port`, as an upstream target.
    pub(crate) fn target(&self) -> String {
        self.address.to_string()
    }

    /// Closes the socket and every connection: the port refuses connections from now on.
    pub(crate) fn kill(&mut self) {
        if let Some(tasks) = self.tasks.take() {
            tasks.abort();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

type Answer = hyper::Response<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>;

fn json_answer(status: u16, body: Value) -> Answer {
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|e| match e {})
            .boxed(),
    );
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
}

async fn answer(
    name: String,
    state: Arc<BackendState>,
    mut request: hyper::Request<Incoming>,
) -> Result<Answer, std::io::Error> {
    let path = request.uri().path().to_owned();
    if path == "/health" {
        state.checks.fetch_add(1, Ordering::SeqCst);
        let status = if state.unhealthy.load(Ordering::SeqCst) {
            503
        } else {
            200
        };
        return Ok(json_answer(status, json!({ "backend": name })));
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    if state.drop_requests.load(Ordering::SeqCst) {
        // Read the request, then close without an answer: it reached the backend.
        let _ = request.into_body().collect().await;
        return Err(std::io::Error::other("dropped on purpose"));
    }
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    match path.as_str() {
        "/slow" => {
            state.waiting.fetch_add(1, Ordering::SeqCst);
            state.release_slow.notified().await;
            state.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        "/count" => {
            // Streams the body through, counting it, without keeping it.
            let mut body = request.into_body();
            let mut bytes = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(std::io::Error::other)?;
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                }
            }
            return Ok(json_answer(200, json!({ "backend": name, "bytes": bytes })));
        }
        "/download" => {
            // `n` bytes, in 64 KiB chunks made as they are sent.
            let n: u64 = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let chunks = futures::stream::unfold(n, |left| async move {
                (left > 0).then(|| {
                    let size = left.min(64 * 1024);
                    let chunk = Bytes::from(vec![b'x'; size as usize]);
                    (Ok::<_, std::io::Error>(Frame::data(chunk)), left - size)
                })
            });
            return Ok(hyper::Response::new(BodyExt::boxed(StreamBody::new(
                chunks,
            ))));
        }
        _ if request.headers().contains_key("upgrade") => {
            // Any upgrade, on any path: answered 101, then every byte echoed back.
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut io = TokioIo::new(upgraded);
                let mut buffer = [0u8; 1024];
                while let Ok(n) = io.read(&mut buffer).await {
                    if n == 0 || io.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let mut response = json_answer(101, Value::Null);
            *response.body_mut() = Full::new(Bytes::new()).map_err(|e| match e {}).boxed();
            let headers = response.headers_mut();
            headers.insert("connection", "upgrade".parse().unwrap());
            headers.insert("upgrade", "websocket".parse().unwrap());
            return Ok(response);
        }
        _ => {}
    }
    let method = request.method().to_string();
    let query = request.uri().query().map(str::to_owned);
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?;
    let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    if path == "/fail" {
        return Ok(json_answer(500, json!({ "backend": name })));
    }
    Ok(json_answer(
        200,
        json!({ "backend": name, "method": method, "path": path, "query": query, "headers": headers, "body": body }),
    ))
}

/// Opens a tunnel through the gateway at `base` (`http://host:port`) with an `Upgrade:
/// websocket` request for `path`, and checks the `101` (within 10 s).
pub(crate) async fn open_tunnel(base: &str, path: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("the handshake's answer came");
        assert_eq!(read.unwrap(), 1, "closed during the handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    stream
}

/// Sends `frame` through the tunnel and reads it back (within 10 s).
pub(crate) async fn echo(stream: &mut tokio::net::TcpStream, frame: &str) {
    stream.write_all(frame.as_bytes()).await.unwrap();
    let mut back = vec![0u8; frame.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
        .await
        .expect("the echo came back")
        .expect("the tunnel is open");
    assert_eq!(String::from_utf8_lossy(&back), frame);
}
