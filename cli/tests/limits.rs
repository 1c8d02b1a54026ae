//! No port can starve the process: the binary under a lowered descriptor limit, flooded with
//! slow connections on the admin port and on an `http.server` at once, keeps serving, answering
//! probes and reloading; the slow connections are closed by the caps and the timeouts.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Swapvisor, TempConfig};
use swapvisor::extension::DescriptorBudget;

/// The descriptor limit the server runs under: soft and hard, so it cannot raise it.
const SERVER_LIMIT: u64 = 1024;
/// Slow connections opened to each port: more than the server could hold at this limit.
const SLOW: usize = 1000;
/// The header read timeout of both servers in this test.
const HEADER_TIMEOUT: Duration = Duration::from_secs(6);

fn config(version: &str) -> String {
    format!(
        r#"
modules:
  - name: web
    type: http.server
    config: {{ address: "127.0.0.1:0", headerReadTimeout: 6s }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
"#
    )
}

/// Raises this test process's soft descriptor limit to its hard limit: it holds both ends'
/// worth of slow connections.
fn raise_own_descriptor_limit(needed: u64) {
    let (_, limit) = DescriptorBudget::raise_open_file_limit().unwrap();
    assert!(
        limit >= needed,
        "this test needs {needed} open files; the hard limit is {limit}"
    );
}

fn address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// One request on a fresh connection (`Connection: close`), never retried: the status and the
/// body.
fn exchange(to: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut stream)
}

/// Opens `count` connections to `to` that each send half a request head and then nothing.
fn slow_connections(to: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
            // Written into the kernel's buffers whether or not the server accepted yet.
            stream
                .write_all(b"GET /hello HTTP/1.1\r\nHost: sl")
                .unwrap();
            stream
        })
        .collect()
}

/// Waits until every stream in `streams` is closed by the server (end of stream or reset).
fn wait_all_closed(streams: Vec<TcpStream>, deadline: Instant) {
    for (i, mut stream) in streams.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "slow connection {i} still open at the deadline"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!(
                "slow connection {i} got an answer instead of being closed: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => {}
            Err(e) => panic!("slow connection {i} still open: {e}"),
        }
    }
}

/// The value of the metric line that starts with `series` (name and labels).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn slow_connections_on_both_ports_leave_the_engine_serving_probes_answered_and_reloads_working() {
    raise_own_descriptor_limit(2 * SLOW as u64 + 200);
    let file = TempConfig::new(&config("v1"));
    let mut process = Swapvisor::start_under_ulimit(
        &format!("-n {SERVER_LIMIT}"),
        &[
            "run",
            file.as_str(),
            "--admin",
            "127.0.0.1:0",
            "--admin-header-read-timeout",
            "6s",
        ],
    );
    let (web, admin) = process.wait_until_up_with_admin("web");
    let (web, admin) = (address(&web), address(&admin));
    let labels = |at: SocketAddr, kind: &str| format!("{{listener=\"{at}\",kind=\"{kind}\"}}");
    let (web_labels, admin_labels) = (labels(web, "http.server"), labels(admin, "admin"));

    let flooded = Instant::now();
    let mut slow = slow_connections(admin, SLOW);
    slow.extend(slow_connections(web, SLOW));

    // Under the flood: ordinary requests, probes and a reload.
    for _ in 0..20 {
        assert_eq!(
            exchange(web, "GET", "/hello"),
            (200, r#"{"version":"v1"}"#.to_owned())
        );
    }
    assert_eq!(exchange(admin, "GET", "/healthz").0, 200);

    std::fs::write(&file.path, config("v2")).unwrap();
    let (status, outcome) = exchange(admin, "POST", "/api/v1/admin/engine/reload");
    assert_eq!(status, 200, "{outcome}");
    assert!(outcome.contains(r#""status":"activated""#), "{outcome}");
    assert_eq!(
        exchange(web, "GET", "/hello"),
        (200, r#"{"version":"v2"}"#.to_owned())
    );
    let (_, during) = exchange(admin, "GET", "/metrics");
    assert!(
        flooded.elapsed() < HEADER_TIMEOUT,
        "the checks under the flood took {:?}, past the header timeout: they no longer show anything",
        flooded.elapsed()
    );
    // Both listeners are full of slow connections, within their caps (128 and 832 at a
    // limit of 1024).
    let held = |series: &str| metric(&during, series);
    let admin_open = held(&format!("swapvisor_listener_connections{admin_labels}"));
    let web_open = held(&format!("swapvisor_listener_connections{web_labels}"));
    assert!(
        (100..=128).contains(&admin_open),
        "admin holds {admin_open}"
    );
    assert!((700..=832).contains(&web_open), "web holds {web_open}");

    // Every slow connection is closed: evicted to make room, or at its header timeout.
    wait_all_closed(slow, flooded + HEADER_TIMEOUT + Duration::from_secs(20));
    let (_, after) = exchange(admin, "GET", "/metrics");
    for (labels, cap) in [(&admin_labels, 128), (&web_labels, 832)] {
        let value = |name: &str| metric(&after, &format!("{name}{labels}"));
        let evicted = value("swapvisor_listener_evicted_total");
        let timed_out = metric(
            &after,
            &format!(
                "swapvisor_listener_timeouts_total{},timeout=\"header\"}}",
                labels.trim_end_matches('}')
            ),
        );
        assert_eq!(evicted + timed_out, SLOW as u64, "{labels}\n{after}");
        assert!(
            timed_out > 0 && timed_out <= cap,
            "{labels}: {timed_out} timed out"
        );
        assert_eq!(value("swapvisor_listener_max_connections"), cap);
        assert_eq!(value("swapvisor_listener_refused_total"), 0);
        // Reaching the cap is one episode, logged once.
        assert_eq!(value("swapvisor_listener_at_cap_total"), 1, "{labels}");
    }
    let cap_lines = process
        .seen
        .iter()
        .chain(process.lines.try_iter().collect::<Vec<_>>().iter())
        .filter(|l| l.contains("at its connection cap"))
        .count();
    assert_eq!(cap_lines, 2, "one line per listener");

    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Reads one response with a `Content-Length` from a kept-alive connection.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a whole response: {data:?}");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")?
                    .trim()
                    .parse()
                    .ok()
            })
            .expect("a content-length");
        if body.len() >= length {
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            return (status, body.to_owned());
        }
    }
}

/// Waits for the server to close `stream`; returns how long that took.
fn time_until_closed(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => started.elapsed(),
        Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("not closed within {within:?}: {e}"),
    }
}

#[test]
fn an_idle_connection_and_a_slow_body_meet_their_own_timeouts_on_both_servers() {
    let file = TempConfig::new(
        r#"
modules:
  - name: web
    type: http.server
    config: { address: "127.0.0.1:0", headerReadTimeout: 30s, idleTimeout: 1s, bodyReadTimeout: 1s }
pipelines:
  hello:
    trigger: { type: http, config: { server: web, method: "*", path: /hello } }
    steps:
      - { name: r, type: step.json_response, config: { body: { version: "v1" } } }
"#,
    );
    let mut process = Swapvisor::start(&[
        "run",
        file.as_str(),
        "--admin",
        "127.0.0.1:0",
        "--admin-idle-timeout",
        "1s",
        "--admin-body-read-timeout",
        "1s",
    ]);
    let (web, admin) = process.wait_until_up_with_admin("web");
    let (web, admin) = (address(&web), address(&admin));

    // Idle: a kept-alive connection is closed after a second without a next request, long
    // before its 30 s header timeout.
    for (to, path) in [(web, "/hello"), (admin, "/healthz")] {
        let mut stream = TcpStream::connect(to).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut stream).0, 200);
        let waited = time_until_closed(&mut stream, Duration::from_secs(15));
        assert!(
            waited >= Duration::from_millis(900),
            "{path}: closed after {waited:?}"
        );
    }

    // Body: a request that sends 10 of its 100 bytes is answered 408 after a second.
    for (to, path) in [(web, "/hello"), (admin, "/api/v1/admin/engine/reload")] {
        let mut stream = TcpStream::connect(to).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789"
        )
        .unwrap();
        let started = Instant::now();
        let (status, body) = read_response(&mut stream);
        assert_eq!(status, 408, "{path}: {body}");
        assert!(
            body.contains("was not received within its time limit of 1s"),
            "{path}: {body}"
        );
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    let (_, metrics) = exchange(admin, "GET", "/metrics");
    let idle = |at: SocketAddr, kind: &str| {
        metric(
            &metrics,
            &format!(
                "swapvisor_listener_timeouts_total{{listener=\"{at}\",kind=\"{kind}\",timeout=\"idle\"}}"
            ),
        )
    };
    assert_eq!(idle(web, "http.server"), 1);
    assert_eq!(idle(admin, "admin"), 1);
    assert_eq!(metric(&metrics, "swapvisor_request_body_timeouts_total"), 2);

    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0));
}
