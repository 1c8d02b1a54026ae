// Longer than 450 lines on purpose: one test per guard step and one for their config errors, sharing the fixtures and helpers above them.
//! The gateway steps through real HTTP requests: `step.validate` answers 400 with every failing
//! pointer, `step.jwt` 401 with the RFC 6750 challenge, `step.rate_limit` 429 with
//! `Retry-After` (and keeps its buckets across a reload that leaves it unchanged); each stops
//! the pipeline, and each names the place of its config errors.

mod common;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use swapvisor::config::DocumentLimits;
use swapvisor::engine::BuildError;
use swapvisor::{Config, Engine, Registry, ReloadOutcome, Runtime};

use common::request_full;

const SECRET: &str = "a test secret, thirty-two bytes!";

/// A file of `cli/tests/fixtures/jwt/`.
fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn env(name: &str) -> Option<String> {
    (name == "JWT_SECRET").then(|| SECRET.to_owned())
}

fn server(pipelines: &str) -> String {
    format!(
        "modules:\n  - {{ name: web, type: http.server, config: {{ address: \"127.0.0.1:0\" }} }}\npipelines:\n{pipelines}"
    )
}

async fn start(yaml: &str) -> (Runtime, String) {
    let runtime = Runtime::builder(Registry::with_builtins())
        .env(Arc::new(env))
        .start(yaml)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let address = runtime.status().await.unwrap().listening()[0].1.clone();
    (runtime, format!("http://{address}"))
}

/// Sends a request; returns the status, the named response header and the JSON body.
async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
    header: &str,
) -> (u16, Option<String>, Value) {
    let (status, response_headers, body) = request_full(method, url, headers, body.to_owned())
        .await
        .expect("request failed");
    let value = response_headers
        .get(header)
        .map(|v| v.to_str().expect("a text header").to_owned());
    (status, value, body)
}

const VALIDATE: &str = r#"
  create:
    trigger: { type: http, config: { server: web, method: POST, path: /users } }
    steps:
      - name: check
        type: step.validate
        config:
          schema:
            type: object
            required: [name]
            properties:
              name: { type: string, minLength: 1 }
              age: { type: integer, minimum: 0 }
              tags: { type: array, items: { type: string } }
      - { name: r, type: step.json_response, config: { status: 201, body: { created: "{{ check.name }}", age: "{{ check.age }}" } } }
  search:
    trigger: { type: http, config: { server: web, path: /search } }
    steps:
      - { name: q, type: step.validate, config: { target: query, schema: { type: object, required: [q], properties: { q: { type: string, maxLength: 5 } } } } }
      - { name: boom, type: step.fail, config: { message: "ran after a refusal" } }
"#;

#[tokio::test]
async fn validate_passes_a_good_body_and_answers_400_with_every_pointer() {
    let (runtime, base) = start(&server(VALIDATE)).await;
    let users = format!("{base}/users");
    let (status, _, body) = send("POST", &users, &[], r#"{"name": "ada", "age": 36}"#, "").await;
    assert_eq!((status, body), (201, json!({"created": "ada", "age": 36})));

    let bad = r#"{"age": -1, "tags": ["x", 7]}"#;
    let (status, _, body) = send("POST", &users, &[], bad, "").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        json!({"error": "validation failed", "errors": [
            {"pointer": "", "message": "\"name\" is a required property"},
            {"pointer": "/age", "message": "value is less than the minimum of 0"},
            {"pointer": "/tags/1", "message": "value is not of type \"string\""},
        ]})
    );
    // No body at all is a null, which is no object.
    let (status, _, body) = send("POST", &users, &[], "", "").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["errors"],
        json!([{"pointer": "", "message": "value is not of type \"object\""}])
    );

    // The query target; the step.fail after it never runs (a run of it would answer 500).
    let (status, _, body) = send("GET", &format!("{base}/search?q=toolong"), &[], "", "").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/q");
    let (status, _, body) = send("GET", &format!("{base}/search?q=ok"), &[], "", "").await;
    assert_eq!(status, 500, "a valid query reaches the next step: {body}");
    assert_eq!(body["error"], "ran after a refusal");
    runtime.shutdown().await.unwrap();
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(iss: &str, aud: &str, exp: u64) -> Value {
    json!({"sub": "ada", "iss": iss, "aud": aud, "exp": exp, "role": "admin"})
}

fn hs256(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn signed(alg: Algorithm, kid: Option<&str>, pem: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixture(pem)).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn jwt_pipelines(secret_file: &str) -> String {
    let respond = r#"{ name: r, type: step.json_response, config: { body: { sub: "{{ auth.sub }}", claims: "{{ auth }}" } } }"#;
    format!(
        r#"
  hs:
    trigger: {{ type: http, config: {{ server: web, path: /hs }} }}
    steps:
      - {{ name: auth, type: step.jwt, config: {{ algorithm: HS256, secretEnv: JWT_SECRET, issuer: https://issuer.test, audience: [api, other] }} }}
      - {respond}
  es:
    trigger: {{ type: http, config: {{ server: web, path: /es }} }}
    steps:
      - {{ name: auth, type: step.jwt, config: {{ algorithm: ES256, publicKeyFile: "{es}", leeway: 30s }} }}
      - {respond}
  rs:
    trigger: {{ type: http, config: {{ server: web, path: /rs }} }}
    steps:
      - {{ name: auth, type: step.jwt, config: {{ algorithm: RS256, jwksFile: "{jwks}" }} }}
      - {respond}
  file:
    trigger: {{ type: http, config: {{ server: web, path: /file }} }}
    steps:
      - {{ name: auth, type: step.jwt, config: {{ algorithm: HS256, secretFile: "{secret_file}" }} }}
      - {respond}
"#,
        es = fixture("es256-public.pem"),
        jwks = fixture("rs256.jwks.json"),
    )
}

/// Sends `token` as a bearer token to `path`; returns status, WWW-Authenticate and body.
async fn bearer(base: &str, path: &str, token: &str) -> (u16, Option<String>, Value) {
    let auth = format!("Bearer {token}");
    send(
        "GET",
        &format!("{base}{path}"),
        &[("authorization", &auth)],
        "",
        "www-authenticate",
    )
    .await
}

fn invalid(description: &str) -> (u16, Option<String>, Value) {
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
    (401, Some(challenge), json!({"error": description}))
}

#[tokio::test]
async fn jwt_accepts_a_valid_token_and_answers_401_with_the_reason() {
    // A secret file as `echo` writes one: its newline is no part of the secret.
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), format!("{SECRET}\n")).unwrap();
    let path = secret_file.path().display().to_string();
    let (runtime, base) = start(&server(&jwt_pipelines(&path))).await;
    let iss = "https://issuer.test";
    let good = claims(iss, "api", now() + 300);
    let (status, challenge, body) = bearer(&base, "/hs", &hs256(&good, SECRET)).await;
    assert_eq!((status, challenge), (200, None), "{body}");
    assert_eq!(body, json!({"sub": "ada", "claims": good}));

    let cases = [
        (
            claims(iss, "api", now() - 100),
            SECRET,
            "the token has expired",
        ),
        (
            claims("https://evil.test", "api", now() + 300),
            SECRET,
            "the token's issuer is not accepted",
        ),
        (
            claims(iss, "billing", now() + 300),
            SECRET,
            "the token's audience is not accepted",
        ),
        (
            good.clone(),
            "another secret of the same length!",
            "the token's signature is invalid",
        ),
    ];
    for (claims, secret, description) in cases {
        assert_eq!(
            bearer(&base, "/hs", &hs256(&claims, secret)).await,
            invalid(description)
        );
    }
    assert_eq!(
        bearer(&base, "/hs", "not.a.token").await,
        invalid("the token is malformed")
    );

    // No token, or another scheme: the bare challenge (RFC 6750 3.1).
    let missing = (
        401,
        Some("Bearer".to_owned()),
        json!({"error": "missing bearer token"}),
    );
    let url = format!("{base}/hs");
    assert_eq!(
        send("GET", &url, &[], "", "www-authenticate").await,
        missing
    );
    let basic = [("authorization", "Basic YWRhOnB3")];
    assert_eq!(
        send("GET", &url, &basic, "", "www-authenticate").await,
        missing
    );

    // ES256 from a PEM public key, with leeway: expired 10 s ago is still inside 30 s.
    let recent = claims(iss, "api", now() - 10);
    let (status, _, body) = bearer(
        &base,
        "/es",
        &signed(Algorithm::ES256, None, "es256-private.pem", &recent),
    )
    .await;
    assert_eq!((status, &body["sub"]), (200, &json!("ada")), "{body}");
    let old = claims(iss, "api", now() - 100);
    let token = signed(Algorithm::ES256, None, "es256-private.pem", &old);
    assert_eq!(
        bearer(&base, "/es", &token).await,
        invalid("the token has expired")
    );
    let hs_token = hs256(&good, SECRET);
    assert_eq!(
        bearer(&base, "/es", &hs_token).await,
        invalid("the token's algorithm is not accepted")
    );

    // RS256 from a JWKS, the key chosen by kid; without `audience`, aud is not checked.
    let token = signed(Algorithm::RS256, Some("k1"), "rs256-private.pem", &good);
    let (status, _, body) = bearer(&base, "/rs", &token).await;
    assert_eq!((status, &body["claims"]), (200, &good), "{body}");
    let token = signed(Algorithm::RS256, Some("k2"), "rs256-private.pem", &good);
    assert_eq!(
        bearer(&base, "/rs", &token).await,
        invalid("no key of the key set matches the token's kid")
    );

    let (status, _, body) = bearer(&base, "/file", &hs256(&good, SECRET)).await;
    assert_eq!((status, &body["sub"]), (200, &json!("ada")), "{body}");
    let token = hs256(&good, &format!("{SECRET}\n"));
    assert_eq!(
        bearer(&base, "/file", &token).await,
        invalid("the token's signature is invalid")
    );
    runtime.shutdown().await.unwrap();
}

fn limited(rate: &str, version: &str) -> String {
    server(&format!(
        r#"
  limited:
    trigger: {{ type: http, config: {{ server: web, path: /limited }} }}
    steps:
      - {{ name: limit, type: step.rate_limit, config: {{ key: "{{{{ request.headers.x-api-key }}}}", rate: "{rate}", burst: 3 }} }}
      - {{ name: r, type: step.json_response, config: {{ body: {{ ok: true }} }} }}
  version:
    trigger: {{ type: http, config: {{ server: web, path: /version }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: {version} }} }} }}
"#
    ))
}

async fn hit(base: &str, key: &str) -> (u16, Option<String>, Value) {
    let url = format!("{base}/limited");
    send("GET", &url, &[("x-api-key", key)], "", "retry-after").await
}

async fn reload_to(runtime: &Runtime, base: &str, yaml: String, version: &str) {
    let config = Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let outcome = runtime.reload(config).await.unwrap().outcome;
    assert!(
        matches!(outcome, ReloadOutcome::Activated { .. }),
        "{outcome:?}"
    );
    let (status, _, body) = send("GET", &format!("{base}/version"), &[], "", "").await;
    assert_eq!(
        (status, body),
        (200, json!({"version": version})),
        "the new engine serves"
    );
}

#[tokio::test]
async fn rate_limit_refuses_past_the_burst_and_keeps_its_buckets_across_an_unchanged_reload() {
    let (runtime, base) = start(&limited("1/h", "v1")).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(hit(&base, "alice").await.0);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "a burst of 3, then one refusal"
    );
    let (status, retry_after, body) = hit(&base, "alice").await;
    let seconds: u64 = retry_after.expect("a Retry-After header").parse().unwrap();
    assert_eq!(status, 429);
    assert!(
        (3500..=3600).contains(&seconds),
        "one token an hour: {seconds}"
    );
    assert_eq!(
        body,
        json!({"error": "rate limit exceeded", "retryAfter": seconds})
    );
    assert_eq!(
        hit(&base, "bob").await.0,
        200,
        "another key has its own bucket"
    );

    // A reload that changes another pipeline rebuilds the step with the same settings.
    reload_to(&runtime, &base, limited("1/h", "v2"), "v2").await;
    assert_eq!(
        hit(&base, "alice").await.0,
        429,
        "the bucket is still spent"
    );
    // A reload that changes the rate gets a fresh bucket.
    reload_to(&runtime, &base, limited("2/h", "v3"), "v3").await;
    assert_eq!(
        hit(&base, "alice").await.0,
        200,
        "a fresh bucket after the rate changed"
    );
    runtime.shutdown().await.unwrap();
}

/// Builds `steps` of one pipeline `p` and returns every error line.
async fn errors(steps: &str) -> Vec<String> {
    let yaml = format!("pipelines:\n  p:\n    steps:\n{steps}");
    let result = Engine::build_from_source(
        yaml.as_bytes(),
        &DocumentLimits::default(),
        &Registry::with_builtins(),
        &env,
    )
    .await;
    match result {
        Err(BuildError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Ok(_) => panic!("built, but errors were expected:\n{yaml}"),
        Err(other) => panic!("expected config errors, got {other}"),
    }
}

#[tokio::test]
async fn config_errors_name_their_place() {
    let at = r#"pipelines.p.steps[0] (name "g").config"#;
    let found =
        errors("      - { name: g, type: step.validate, config: { target: cookies, schema: {} } }")
            .await;
    assert_eq!(
        found,
        [format!(
            r#"{at}.target: unknown variant "cookies", expected one of "body", "query", "headers", "params""#
        )]
    );
    let found = errors("      - { name: g, type: step.validate, config: { schema: { type: object, properties: { age: { minimum: low } } } } }").await;
    assert_eq!(
        found,
        [format!(
            r#"{at}.schema: not a valid JSON Schema (draft 2020-12) at /properties/age/minimum: "low" is not of type "number""#
        )]
    );
    let found = errors("      - { name: g, type: step.validate, config: { schema: [] } }").await;
    assert!(
        found[0].starts_with(&format!(
            "{at}.schema: the schema is a list; expected a mapping"
        )),
        "{found:?}"
    );

    let jwt =
        |config: &str| format!("      - {{ name: g, type: step.jwt, config: {{ {config} }} }}");
    let cases = [
        (
            "algorithm: HS256, secretEnv: NOPE",
            format!(
                r#"{at}.secretEnv: environment variable "NOPE" is not set; it must hold the HS256 secret"#
            ),
        ),
        (
            "algorithm: ES256, publicKeyFile: /no/such.pem",
            format!(
                r#"{at}.publicKeyFile: cannot read "/no/such.pem": No such file or directory (os error 2)"#
            ),
        ),
        (
            "algorithm: HS256, publicKeyFile: x.pem",
            format!(
                "{at}.publicKeyFile: HS256 verifies with a shared secret, not a public key: give secretEnv or secretFile"
            ),
        ),
        (
            "algorithm: RS256, secretEnv: JWT_SECRET",
            format!(
                "{at}.secretEnv: RS256 verifies with a public key; a shared secret is for HS256: give publicKeyFile (PEM) or jwksFile"
            ),
        ),
        (
            "algorithm: HS256",
            format!(
                "{at}: HS256 needs a key: give one of secretEnv or secretFile (HS256), publicKeyFile (PEM, RS256 and ES256) or jwksFile"
            ),
        ),
        (
            "algorithm: HS256, secretEnv: JWT_SECRET, secretFile: s",
            format!(
                "{at}.secretFile: give one key source; this step has both secretEnv and secretFile"
            ),
        ),
        (
            "algorithm: HS512, secretEnv: JWT_SECRET",
            format!(
                r#"{at}.algorithm: unknown variant "HS512", expected one of "HS256", "RS256", "ES256""#
            ),
        ),
        (
            "algorithm: HS256, secretEnv: JWT_SECRET, leeway: 1500ms",
            format!(
                r#"{at}.leeway: leeway "1500ms" is not whole seconds; claims are checked to the second, so write "0s", "30s" or "2m""#
            ),
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(errors(&jwt(config)).await, [expected], "{config}");
    }
    let found = errors(&jwt(
        "algorithm: HS256, secretEnv: JWT_SECRET, audience: []",
    ))
    .await;
    assert_eq!(
        found,
        [format!(
            "{at}.audience: expected a string or a non-empty list of strings (the accepted audience values)"
        )]
    );
    // A file that is no PEM key: the README beside the fixtures.
    let found = errors(&jwt(&format!(
        "algorithm: ES256, publicKeyFile: \"{}\"",
        fixture("README.md")
    )))
    .await;
    assert!(
        found[0].starts_with(&format!(
            "{at}.publicKeyFile: {:?} is not an EC public key in PEM: ",
            fixture("README.md")
        )),
        "{found:?}"
    );
    let found = errors(&jwt(&format!(
        "algorithm: RS256, jwksFile: \"{}\"",
        fixture("es256-public.pem")
    )))
    .await;
    assert!(found[0].contains("is not a JWKS document"), "{found:?}");

    let found = errors("      - { name: g, type: step.rate_limit, config: { rate: 10/fortnight, burst: 0, key: \"{{ nope.x }}\" } }").await;
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with(&format!(r#"{at}.rate: invalid duration "fortnight""#)),
        "{found:?}"
    );
    assert_eq!(
        found[1],
        format!("{at}.burst: burst is 0; it is how many requests may come at once, at least 1")
    );
    assert!(
        found[2].starts_with(&format!(r#"{at}.key: unknown template reference "nope""#)),
        "{found:?}"
    );
    let found = errors("      - { name: g, type: step.rate_limit, config: { rate: 10 } }").await;
    assert!(
        found[0].starts_with(&format!(r#"{at}.rate: invalid"#)),
        "{found:?}"
    );
}
