//! `step.static` through a real runtime on 127.0.0.1: the bytes, validators and conditional
//! answers, ranges, `HEAD`, index files, and the safe join (no request reads a file outside the
//! root). Requests go out raw over TCP, so that no client tidies a path before it is sent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use swapvisor::config::{Config, DocumentLimits, process_env};
use swapvisor::engine::BuildError;
use swapvisor::{Engine, Registry, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HELLO: &str = "hello, static world";
const SECRET: &str = "TOP-SECRET-NEVER-SERVED";

/// A folder `root` to serve, and beside it files and folders no request may reach.
struct Site {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let root = base.join("root");
    for folder in ["sub", "empty", "pages"] {
        std::fs::create_dir_all(root.join(folder)).unwrap();
    }
    std::fs::create_dir_all(base.join("root-evil")).unwrap();
    std::fs::write(root.join("hello.txt"), HELLO).unwrap();
    std::fs::write(root.join("sub/index.html"), "<h1>sub</h1>").unwrap();
    std::fs::write(root.join("pages/about.html"), "<p>about</p>").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), big).unwrap();
    for secret in ["secret.txt", "secret.html", "root-evil/x.txt"] {
        std::fs::write(base.join(secret), SECRET).unwrap();
    }
    let link = |to: &Path, name: &str| std::os::unix::fs::symlink(to, root.join(name)).unwrap();
    link(&base.join("secret.txt"), "escape");
    link(Path::new("../secret.txt"), "escape-relative");
    link(&base, "escape-dir");
    link(&base.join("root-evil/x.txt"), "prefix");
    link(&root.join("hello.txt"), "inside");
    Site {
        _dir: dir,
        base,
        root,
    }
}

fn config(root: &Path) -> String {
    let root = root.display();
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
pipelines:
  files:
    trigger: {{ type: http, config: {{ server: web, method: "*", path: "/static/{{*rest}}" }} }}
    steps:
      - {{ name: serve, type: step.static, config: {{ root: "{root}", cacheControl: "public, max-age=60" }} }}
  pages:
    trigger: {{ type: http, config: {{ server: web, method: "*", path: "/page/{{name}}" }} }}
    steps:
      - name: serve
        type: step.static
        config: {{ root: "{root}", path: "pages/{{{{ request.params.name }}}}.html" }}
  fixed:
    trigger: {{ type: http, config: {{ server: web, path: /hello.txt }} }}
    steps:
      - {{ name: serve, type: step.static, config: {{ root: "{root}" }} }}
"#
    )
}

async fn start(site: &Site) -> (Runtime, String) {
    let config = Config::parse(config(&site.root).as_bytes()).expect("the config parses");
    let runtime = Runtime::start(config, Registry::with_builtins())
        .await
        .expect("the config activates");
    let address = runtime.status().await.unwrap().listening()[0].1.clone();
    (runtime, address)
}

/// One raw HTTP/1.1 answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `method target` exactly as written, and reads the answer until the server closes.
async fn send(address: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answers within 10 s")
        .unwrap();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let answer = Answer {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    };
    assert_ne!(
        answer.header("transfer-encoding"),
        Some("chunked"),
        "a sized body"
    );
    answer
}

async fn get(address: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    send(address, "GET", target, headers).await
}

#[tokio::test]
async fn a_file_is_served_with_its_type_validators_and_cache_control() {
    let site = site();
    let (runtime, address) = start(&site).await;
    let answer = get(&address, "/static/hello.txt", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), HELLO);
    assert_eq!(answer.header("content-type"), Some("text/plain"));
    assert_eq!(answer.header("content-length"), Some("19"));
    assert_eq!(answer.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(answer.header("accept-ranges"), Some("bytes"));
    let etag = answer.header("etag").expect("an ETag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag: {etag}"
    );
    let modified = answer
        .header("last-modified")
        .expect("a Last-Modified")
        .to_owned();
    assert!(modified.ends_with(" GMT"), "an HTTP date: {modified}");

    let fresh = get(&address, "/static/hello.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(fresh.status, 304);
    assert!(fresh.body.is_empty());
    assert_eq!(fresh.header("etag"), Some(etag.as_str()));
    assert_eq!(fresh.header("cache-control"), Some("public, max-age=60"));
    let listed = format!("\"other\", {etag}");
    let fresh = get(&address, "/static/hello.txt", &[("if-none-match", &listed)]).await;
    assert_eq!(fresh.status, 304);
    let other = get(
        &address,
        "/static/hello.txt",
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!((other.status, other.text().as_str()), (200, HELLO));
    let since = get(
        &address,
        "/static/hello.txt",
        &[("if-modified-since", &modified)],
    )
    .await;
    assert_eq!(since.status, 304);
    assert!(since.body.is_empty());
    let old = "Thu, 01 Jan 1998 00:00:00 GMT";
    let stale = get(&address, "/static/hello.txt", &[("if-modified-since", old)]).await;
    assert_eq!((stale.status, stale.text().as_str()), (200, HELLO));
    let failed = get(&address, "/static/hello.txt", &[("if-match", "\"other\"")]).await;
    assert_eq!(failed.status, 412);

    // A changed file has another ETag: the old one no longer matches.
    std::fs::write(site.root.join("hello.txt"), "changed!").unwrap();
    let changed = get(&address, "/static/hello.txt", &[("if-none-match", &etag)]).await;
    assert_eq!((changed.status, changed.text().as_str()), (200, "changed!"));
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn ranges_are_served_exactly_and_unsatisfiable_ones_refused() {
    let site = site();
    let (runtime, address) = start(&site).await;
    let part = get(&address, "/static/hello.txt", &[("range", "bytes=2-5")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.text(), &HELLO[2..=5]);
    assert_eq!(part.header("content-range"), Some("bytes 2-5/19"));
    assert_eq!(part.header("content-length"), Some("4"));
    let suffix = get(&address, "/static/hello.txt", &[("range", "bytes=-5")]).await;
    assert_eq!((suffix.status, suffix.text().as_str()), (206, "world"));
    let past = get(&address, "/static/hello.txt", &[("range", "bytes=19-")]).await;
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */19"));
    assert!(past.body.is_empty());
    // Several ranges, or a range under If-Range: the whole file.
    let several = get(&address, "/static/hello.txt", &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!((several.status, several.text().as_str()), (200, HELLO));
    let headers = [("range", "bytes=2-5"), ("if-range", "\"whatever\"")];
    let guarded = get(&address, "/static/hello.txt", &headers).await;
    assert_eq!((guarded.status, guarded.text().as_str()), (200, HELLO));
    // A file larger than one read chunk arrives whole, and a range deep inside it exactly.
    let big = std::fs::read(site.root.join("big.bin")).unwrap();
    let whole = get(&address, "/static/big.bin", &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(
        whole.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(whole.body == big, "the whole big file, byte for byte");
    let deep = get(
        &address,
        "/static/big.bin",
        &[("range", "bytes=200000-200009")],
    )
    .await;
    assert_eq!((deep.status, &deep.body[..]), (206, &big[200_000..200_010]));
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn head_index_files_and_missing_files() {
    let site = site();
    let (runtime, address) = start(&site).await;
    let head = send(&address, "HEAD", "/static/hello.txt", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("19"));
    assert!(head.header("etag").is_some());
    assert!(head.body.is_empty(), "HEAD has no body: {:?}", head.text());
    let post = send(&address, "POST", "/static/hello.txt", &[]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    for target in ["/static/sub/", "/static/sub"] {
        let index = get(&address, target, &[]).await;
        assert_eq!(index.status, 200, "{target}");
        assert_eq!(index.text(), "<h1>sub</h1>", "{target}");
        assert_eq!(index.header("content-type"), Some("text/html"), "{target}");
    }
    for target in [
        "/static/empty/",
        "/static/missing.txt",
        "/static/hello.txt/x",
    ] {
        let missing = get(&address, target, &[]).await;
        assert_eq!(missing.status, 404, "{target}");
        assert_eq!(missing.header("content-type"), Some("application/json"));
        let expected = serde_json::json!({ "error": "not found", "path": target });
        assert_eq!(missing.json(), expected);
    }
    // A symlink that stays inside the root is served.
    let inside = get(&address, "/static/inside", &[]).await;
    assert_eq!((inside.status, inside.text().as_str()), (200, HELLO));
    // `path` renders the file's place; without it (and without `rest`), the request path.
    let page = get(&address, "/page/about", &[]).await;
    assert_eq!((page.status, page.text().as_str()), (200, "<p>about</p>"));
    let fixed = get(&address, "/hello.txt", &[]).await;
    assert_eq!((fixed.status, fixed.text().as_str()), (200, HELLO));
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_request_reads_a_file_outside_the_root() {
    let site = site();
    let (runtime, address) = start(&site).await;
    let secret = site.base.join("secret.txt").display().to_string();
    let encoded_absolute = secret.replace('/', "%2F");
    let traversals = [
        "/static/../secret.txt".to_owned(),
        "/static/sub/../../secret.txt".to_owned(),
        "/static/%2e%2e/secret.txt".to_owned(),
        "/static/%2E%2E/secret.txt".to_owned(),
        "/static/..%2fsecret.txt".to_owned(),
        "/static/..%2Fsecret.txt".to_owned(),
        "/static/%2e%2e%2fsecret.txt".to_owned(),
        "/static/sub%2f..%2f..%2fsecret.txt".to_owned(),
        "/static/..%5csecret.txt".to_owned(),
        "/static/..%5Csecret.txt".to_owned(),
        "/static/%5c..%5csecret.txt".to_owned(),
        "/static/%252e%252e/secret.txt".to_owned(),
        format!("/static/{encoded_absolute}"),
        format!("/static/{}", secret.replace('/', "%2f")),
        format!("/static/{secret}"),
        format!("/static//{secret}"),
        "/static/hello.txt%00".to_owned(),
        "/static/secret.txt%00hello.txt".to_owned(),
        "/static/escape".to_owned(),
        "/static/escape-relative".to_owned(),
        "/static/escape-dir/secret.txt".to_owned(),
        "/static/escape-dir/root-evil/x.txt".to_owned(),
        "/static/prefix".to_owned(),
        "/page/..%2f..%2fsecret".to_owned(),
        "/page/%2e%2e%2f%2e%2e%2fsecret".to_owned(),
    ];
    for target in &traversals {
        let answer = get(&address, target, &[]).await;
        assert_eq!(answer.status, 404, "{target}: {}", answer.text());
        assert_eq!(answer.json()["error"], "not found", "{target}");
        assert!(
            !answer.text().contains(SECRET),
            "{target} served the secret"
        );
        let head = send(&address, "HEAD", target, &[("range", "bytes=0-")]).await;
        assert_eq!(head.status, 404, "HEAD {target}");
    }
    // The secret is there and readable: only the join keeps it out.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), SECRET);
    runtime.shutdown().await.unwrap();
}

/// Every error line of building `yaml`.
async fn errors(yaml: &str) -> Vec<String> {
    let limits = DocumentLimits::default();
    let registry = Registry::with_builtins();
    match Engine::build_from_source(yaml.as_bytes(), &limits, &registry, &process_env).await {
        Ok(_) => panic!("config built, but errors were expected:\n{yaml}"),
        Err(BuildError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected validation errors, got {other}"),
    }
}

fn one_step(settings: &str) -> String {
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
pipelines:
  files:
    trigger: {{ type: http, config: {{ server: web, path: "/{{*rest}}" }} }}
    steps:
      - {{ name: serve, type: step.static, config: {{ {settings} }} }}
"#
    )
}

#[tokio::test]
async fn config_errors_name_their_place() {
    let site = site();
    let at = r#"pipelines.files.steps[0] (name "serve").config"#;
    let missing = site.base.join("nowhere").display().to_string();
    let file = site.root.join("hello.txt").display().to_string();
    let valid = "the folder to serve, absolute or relative to the runtime's working directory";
    assert_eq!(
        errors(&one_step(&format!("root: \"{missing}\""))).await,
        vec![format!(
            "{at}.root: folder {missing:?} does not exist ({valid})"
        )]
    );
    assert_eq!(
        errors(&one_step(&format!("root: \"{file}\""))).await,
        vec![format!("{at}.root: {file:?} is not a folder ({valid})")]
    );
    let root = site.root.display();
    let bad = format!("root: \"{root}\", index: \"../x.html\", cacheControl: \"a\\nb\"");
    assert_eq!(
        errors(&one_step(&bad)).await,
        vec![
            format!(
                "{at}.index: \"../x.html\" is not a file name (the file served for a folder, for example \"index.html\")"
            ),
            format!(
                "{at}.cacheControl: is not a valid header value (printable ASCII, for example \"public, max-age=3600\")"
            ),
        ]
    );
    assert_eq!(
        errors(&one_step("index: a.html")).await,
        vec![format!("{at}: missing field \"root\"")]
    );
}
