//! `examples/gateway.yaml`, as the README runs it: the `swapvisor` binary in front of two real
//! backends, each route answering as the example's comments say.

mod common;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use common::{
    Backend, Swapvisor, TempConfig, echo, get, open_tunnel, repository, request_full,
    swapvisor_with_env,
};

const SECRET: &str = "a-long-random-secret-of-32-bytes";

/// The example with its server on an ephemeral port and its targets on `backends`.
fn example_on(backends: &[&Backend]) -> String {
    let text = std::fs::read_to_string(repository().join("examples/gateway.yaml")).unwrap();
    assert!(text.contains("127.0.0.1:8080") && text.contains("127.0.0.1:9001"));
    text.replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9001", &backends[0].target())
        .replace("127.0.0.1:9002", &backends[1].target())
}

#[test]
fn the_example_validates_as_it_is() {
    let (code, stdout, stderr) = swapvisor_with_env(
        &["validate", "examples/gateway.yaml"],
        &[("GATEWAY_JWT_SECRET", SECRET)],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Without the secret, the place that needs it says so.
    let (code, _, stderr) = swapvisor_with_env(&["validate", "examples/gateway.yaml"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(r#"pipelines.account.steps[0] (name "auth").config.secretEnv"#),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_example_gateway_serves_every_route_in_front_of_real_backends() {
    let (one, two) = (Backend::start("one").await, Backend::start("two").await);
    let config = TempConfig::new(&example_on(&[&one, &two]));
    let mut process = Swapvisor::start_with_env(
        &["run", config.as_str(), "--admin", "off"],
        &[("GATEWAY_JWT_SECRET", SECRET)],
    );
    let base = process.wait_until_up("web");

    // The public route: either backend, the path rewritten.
    let (status, body) = get(&format!("{base}/catalog/tea")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/tea");
    assert!(
        body["backend"] == "one" || body["backend"] == "two",
        "{body}"
    );

    // The POST: validated, then forwarded byte for byte.
    let order = r#"{"item":"tea","count":2}"#;
    let (status, _, body) = request_full("POST", &format!("{base}/orders"), &[], order)
        .await
        .unwrap();
    assert_eq!(
        (status, body["body"].as_str()),
        (200, Some(order)),
        "{body}"
    );
    let (status, _, body) = request_full("POST", &format!("{base}/orders"), &[], r#"{"count":0}"#)
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["", "/count"], "{body}");

    // The account route: no token is 401; a good one reaches the backend as x-user.
    let (status, headers, _) = request_full("GET", &format!("{base}/account/me"), &[], "")
        .await
        .unwrap();
    assert_eq!(
        (status, &headers["www-authenticate"]),
        (
            401,
            &"Bearer".parse::<hyper::header::HeaderValue>().unwrap()
        )
    );
    let claims =
        json!({"sub": "ada", "aud": "gateway", "exp": jsonwebtoken::get_current_timestamp() + 600});
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let (status, _, body) = request_full(
        "GET",
        &format!("{base}/account/me"),
        &[("authorization", &bearer)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/account/me");
    assert_eq!(body["headers"]["x-user"], "ada");
    assert!(body["headers"].get("authorization").is_none(), "{body}");

    // The WebSocket route: upgraded, and echoed.
    let mut tunnel = open_tunnel(&base, "/live").await;
    echo(&mut tunnel, "ping").await;

    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(30)), Some(0));
}
