//! The admin page (`GET /ui`): its login over plain HTTP (a cookie for the right token in the
//! body, never in a URL; the CSRF header on cookie-authenticated writes), and the page itself
//! in headless Chromium, driven through chromedriver's WebDriver HTTP protocol.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{
    Browser, Driver, Swapvisor, TempConfig, base64_decode, chromium_present, get_full,
    hello_config, request_full, request_with, webdriver,
};

const TOKEN: &str = "page-test-admin-token-0123";
const PLUGIN: &str = env!("CARGO_BIN_EXE_swapvisor-counter-plugin");

/// `hello_config` with two plugins: `hits` (built in) and `proc` (a process plugin).
fn config(version: &str) -> String {
    format!(
        "{}plugins:\n  - {{ name: hits, type: counter }}\n  - {{ name: proc, type: process, config: {{ command: [{PLUGIN:?}] }} }}\n",
        hello_config("127.0.0.1:0", version)
    )
}

/// The binary with the token, and the URLs of its server and its admin API.
fn start(token: Option<&str>) -> (Swapvisor, TempConfig, String, String) {
    let file = TempConfig::new(&config("v1"));
    let mut args = vec!["run", file.as_str(), "--admin", "127.0.0.1:0"];
    if let Some(token) = token {
        args.extend(["--admin-token", token]);
    }
    let mut process = Swapvisor::start(&args);
    let (web, admin) = process.wait_until_up_with_admin("web");
    (process, file, web, admin)
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// The `name=value` of the session cookie a response set, if any.
fn session_cookie(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("swapvisor_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_sets_a_cookie_for_the_right_token_only_and_writes_need_the_csrf_header() {
    let (_process, _file, _, admin) = start(Some(TOKEN));
    let login = format!("{admin}/api/v1/admin/login");
    let status = format!("{admin}/api/v1/admin/engine/status");
    let reload = format!("{admin}/api/v1/admin/engine/reload");

    // A wrong token, an empty body, and the token where it must never be (a URL): no cookie.
    for body in [r#"{"token":"wrong-token-wrong-token"}"#, "", "{}"] {
        let (code, headers, answer) = request_full("POST", &login, &[], body).await.unwrap();
        assert_eq!(
            (code, answer["status"].as_str()),
            (401, Some("unauthorized"))
        );
        assert!(session_cookie(&headers).is_none(), "{headers:?}");
    }
    let in_url = format!("{login}?token={TOKEN}");
    let (code, headers, _) = request_full("POST", &in_url, &[], "").await.unwrap();
    assert_eq!(code, 401, "a token in the URL is not a login");
    assert!(session_cookie(&headers).is_none());
    let (code, _, _) = request_full("GET", &in_url, &[], "").await.unwrap();
    assert_eq!(code, 405);
    let (code, _, _) = get_full(&format!("{status}?token={TOKEN}")).await;
    assert_eq!(code, 401, "a token in the URL authenticates nothing");

    // The right token: a cookie, HttpOnly and SameSite=Strict.
    let body = json!({ "token": TOKEN }).to_string();
    let (code, headers, answer) = request_full("POST", &login, &[], body).await.unwrap();
    assert_eq!((code, answer["status"].as_str()), (200, Some("logged_in")));
    let set_cookie = headers[hyper::header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    let cookie = session_cookie(&headers).unwrap();
    assert!(cookie.len() > "swapvisor_session=".len() + 32, "{cookie}");
    assert!(!cookie.contains(TOKEN));

    // The cookie reads; a write needs the CSRF header too.
    let with_cookie = [("Cookie", cookie.as_str())];
    let (code, _, answer) = request_full("GET", &status, &with_cookie, "")
        .await
        .unwrap();
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["generation"], 1);
    let (code, _, answer) = request_full("POST", &reload, &with_cookie, config("v2"))
        .await
        .unwrap();
    assert_eq!((code, answer["status"].as_str()), (403, Some("forbidden")));
    // The previous generation's config, which the page diffs against: none before a reload.
    let previous = format!("{admin}/api/v1/admin/engine/config/previous");
    let (code, _, _) = request_full("GET", &previous, &with_cookie, "")
        .await
        .unwrap();
    assert_eq!(code, 404);
    let with_csrf = [("Cookie", cookie.as_str()), ("X-Swapvisor-Csrf", "1")];
    let (code, _, answer) = request_full("POST", &reload, &with_csrf, config("v2"))
        .await
        .unwrap();
    assert_eq!((code, answer["status"].as_str()), (200, Some("activated")));
    let (code, headers, before) = request_full("GET", &previous, &with_cookie, "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(headers[hyper::header::ETAG], "\"1\"");
    assert!(before.to_string().contains("v1"), "{before}");
    // The bearer header needs no CSRF header: nothing sends it on its own.
    let (code, _) = request_with("POST", &reload, &[("Authorization", &bearer())], "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    // A made-up session is no session.
    let forged = [("Cookie", "swapvisor_session=00ff00ff")];
    let (code, _, _) = request_full("GET", &status, &forged, "").await.unwrap();
    assert_eq!(code, 401);

    // A form's login (the page without its script) goes back to the page.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (code, headers, _) = request_full("POST", &login, &form, format!("token={TOKEN}"))
        .await
        .unwrap();
    assert_eq!(code, 303);
    assert_eq!(headers[hyper::header::LOCATION], "/ui");
    assert!(session_cookie(&headers).is_some());

    // Logout ends the session and clears the cookie.
    let logout = format!("{admin}/api/v1/admin/logout");
    let (code, headers, _) = request_full("POST", &logout, &with_csrf, "").await.unwrap();
    assert_eq!(code, 200);
    let cleared = headers[hyper::header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("swapvisor_session=;") && cleared.contains("Max-Age=0"));
    let (code, _, _) = request_full("GET", &status, &with_cookie, "")
        .await
        .unwrap();
    assert_eq!(code, 401, "the session ended with the logout");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_public_embedded_and_fetches_nothing_from_elsewhere() {
    let (_process, _file, _, admin) = start(Some(TOKEN));
    let (code, headers, _) = get_full(&format!("{admin}/")).await;
    assert_eq!(
        (code, headers[hyper::header::LOCATION].to_str().ok()),
        (303, Some("/ui"))
    );
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let (code, headers, body) = get_full(&format!("{admin}{path}")).await;
        assert_eq!(code, 200, "{path}");
        let content_type = headers[hyper::header::CONTENT_TYPE].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        let text = body.as_str().unwrap();
        for outside in ["http://", "https://", "//cdn", TOKEN] {
            assert!(!text.contains(outside), "{path} holds {outside:?}");
        }
    }
    let (_, _, page) = get_full(&format!("{admin}/ui")).await;
    assert!(page.as_str().unwrap().contains(r#"method="post""#));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_the_api_needs_no_login() {
    let (_process, _file, _, admin) = start(None);
    let (code, headers, answer) =
        request_full("POST", &format!("{admin}/api/v1/admin/login"), &[], "{}")
            .await
            .unwrap();
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("not_required"))
    );
    assert!(session_cookie(&headers).is_none());
    let (code, _, _) = get_full(&format!("{admin}/api/v1/admin/engine/status")).await;
    assert_eq!(code, 200);
}

// ---- the page in a browser -------------------------------------------------------------------

/// Waits until the page shows its login, then asserts that it shows nothing else.
async fn only_the_login(browser: &Browser, what: &str) {
    let script = "return document.body.dataset.view === 'login'";
    browser
        .wait_for(what, Duration::from_secs(10), script)
        .await;
    let shown = browser
        .run(
            "return {login: !document.getElementById('login').hidden,
                     app: !document.getElementById('app').hidden,
                     data: document.querySelectorAll('[data-plugin],[data-node],#timeline tr,#pipelines tr').length,
                     text: document.body.innerText}",
        )
        .await;
    assert_eq!(
        (&shown["login"], &shown["app"], &shown["data"]),
        (&json!(true), &json!(false), &json!(0)),
        "{what}: {shown}"
    );
    for data in ["Supervisor", "hits", "proc", "generation"] {
        assert!(
            !shown["text"].as_str().unwrap().contains(data),
            "{what}: {shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_logs_in_and_shows_the_tree_a_reload_and_a_crash_restart() {
    if !chromium_present() {
        return;
    }
    let began = Instant::now();
    let (_process, _file, web, admin) = start(Some(TOKEN));
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::open(&driver, profile.path()).await;

    // Without a session: the login form and nothing else.
    browser.go(&format!("{admin}/")).await;
    only_the_login(&browser, "the login").await;

    // Log in through the form.
    let input = browser.element("#token").await;
    let at = format!("{}/element/{input}", browser.session);
    webdriver("POST", &format!("{at}/value"), json!({ "text": TOKEN })).await;
    browser.click("#login-submit").await;
    browser
        .wait_for(
            "the tree with the engine and two plugins",
            Duration::from_secs(10),
            "return document.body.dataset.view === 'app'
                && !!document.querySelector('#tree [data-node=supervisor] [data-node=active][data-generation=\"1\"] [data-node=slot]')
                && document.querySelectorAll('#tree [data-plugin]').length === 2
                && !!document.querySelector('[data-plugin=hits][data-state=running]')
                && !!document.querySelector('[data-plugin=proc][data-state=running][data-restarts=\"0\"]')
                && document.querySelector('[data-plugin=hits] [data-field=group] b').textContent === 'one_for_one: hits, proc'",
        )
        .await;

    // Requests show as a rate and a p99 (between two scrapes), listeners with their caps.
    for _ in 0..20 {
        assert_eq!(common::get(&format!("{web}/hello")).await.0, 200);
    }
    browser
        .wait_for(
            "the pipeline's rate and p99",
            Duration::from_secs(5),
            "const row = document.querySelector('#pipelines [data-pipeline=hello]');
             const cell = (name) => row && row.querySelector(`[data-field=${name}]`).textContent;
             return Number(cell('total')) >= 20 && Number(cell('rate')) > 0
                 && cell('errors') === '0.0 %' && cell('p99').endsWith(' ms')
                 && !!document.querySelector('#listeners [data-kind=\"http.server\"] [data-field=max]')",
        )
        .await;

    // A reload through the API is on the timeline within 2 s of its answer, with its outcome.
    let (code, answer) = request_with(
        "POST",
        &format!("{admin}/api/v1/admin/engine/reload"),
        &[("Authorization", &bearer())],
        config("v2"),
    )
    .await
    .unwrap();
    let answered = Instant::now();
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("activated")),
        "{answer}"
    );
    let generation = answer["generation"].as_u64().unwrap();
    browser
        .wait_for(
            "the reload on the timeline",
            Duration::from_secs(2).saturating_sub(answered.elapsed()),
            &format!(
                "return !!document.querySelector('#timeline tr[data-kind=engine][data-generation=\"{generation}\"][data-outcome=activated]')"
            ),
        )
        .await;
    let took = answered.elapsed();
    assert!(took <= Duration::from_secs(2), "{took:?}");

    // The config's diff against the generation before.
    let diff_from_v1 = format!(
        "const diff = document.getElementById('config-diff');
         return diff.dataset.previousGeneration === '{}'
             && [...diff.querySelectorAll('.diff-del')].some(l => l.textContent.includes('v1'))
             && [...diff.querySelectorAll('.diff-add')].some(l => l.textContent.includes('v2'))",
        generation - 1
    );
    browser
        .wait_for("the config's diff", Duration::from_secs(5), &diff_from_v1)
        .await;

    // A page opened after the reload saw no earlier generation itself: its diff is against
    // the previous config the runtime keeps.
    browser.go(&format!("{admin}/ui")).await;
    browser
        .wait_for(
            "the diff on a fresh page",
            Duration::from_secs(5),
            &diff_from_v1,
        )
        .await;

    // A crash of the process plugin shows as a restart.
    let (_, status) = request_with(
        "GET",
        &format!("{admin}/api/v1/admin/plugins/proc"),
        &[("Authorization", &bearer())],
        "",
    )
    .await
    .unwrap();
    let pid = status["pid"].as_u64().expect("the process plugin's pid");
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    browser
        .wait_for(
            "the crash as a restart",
            Duration::from_secs(10),
            "return !!document.querySelector('[data-plugin=proc][data-restarts=\"1\"][data-state=running]')
                 && !!document.querySelector('[data-plugin=proc] [data-field=lastError][data-past=true]')",
        )
        .await;
    let pid_shown = browser
        .run("return document.querySelector('[data-plugin=proc] [data-field=pid] b').textContent")
        .await;
    assert_ne!(
        pid_shown,
        json!(pid.to_string()),
        "the restarted process has another pid"
    );

    // The buttons go through the endpoints, with the CSRF header the cookie needs.
    browser.click("[data-reload-plugin=hits]").await;
    browser
        .wait_for(
            "the per-plugin reload's answer",
            Duration::from_secs(10),
            "const s = document.getElementById('action-result').dataset.status;
             return s === 'unchanged' || s === 'activated'",
        )
        .await;
    browser
        .run(&format!(
            "document.getElementById('yaml').value = {}",
            json!(config("v3"))
        ))
        .await;
    browser.click("#try-activate").await;
    browser
        .wait_for(
            "the try-activate's answer",
            Duration::from_secs(10),
            "return document.getElementById('action-result').dataset.status === 'build_ok'",
        )
        .await;

    // The token was in no URL the page loaded.
    let urls = browser
        .run("return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]")
        .await;
    assert!(!urls.to_string().contains(TOKEN), "{urls}");

    // A screenshot, as a PNG.
    let shot = webdriver(
        "GET",
        &format!("{}/screenshot", browser.session),
        Value::Null,
    )
    .await;
    let png = base64_decode(shot.as_str().unwrap());
    assert!(
        png.len() > 8 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG"
    );
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("admin-page.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {} ({} bytes)", path.display(), png.len());
    if let Ok(keep) = std::env::var("SWAPVISOR_KEEP_SCREENSHOT") {
        std::fs::copy(&path, keep).unwrap();
    }

    // Logging out leaves only the login, and the session is gone.
    browser.click("#logout").await;
    only_the_login(&browser, "the login after logout").await;

    browser.close().await;
    eprintln!("the browser test took {:?}", began.elapsed());
}
