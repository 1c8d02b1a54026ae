//! The admin API's OpenAPI document against the API itself: the real binary serves
//! `/api/v1/admin/openapi.json`, `openapi-spec-validator` accepts it as OpenAPI 3.1, and
//! `schemathesis` (every check but the two that would need a JSON Schema of a config) finds no
//! server error, no undocumented status code or content type, and no response that breaks the
//! schema.
//!
//! Both tools come from PyPI; `.ci/run` installs them and sets
//! `SWAPVISOR_REQUIRE_SCHEMATHESIS=1`, so there a missing tool fails the test. Elsewhere it is
//! skipped with a note.

mod common;

use std::process::Command;

use common::{Swapvisor, TempConfig, request_with};

const TOKEN: &str = "openapi-test-token-0123456789";

/// Whether `tool` runs; see [`common::tool_present`] (`SWAPVISOR_REQUIRE_SCHEMATHESIS`).
fn available(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let install = "pip install schemathesis openapi-spec-validator";
    common::tool_present(found, tool, "SWAPVISOR_REQUIRE_SCHEMATHESIS", install)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_validates_and_the_api_keeps_to_it() {
    // A plugin, so that the plugin endpoints have one to answer for.
    let config = TempConfig::new(&format!(
        "{}plugins:\n  - {{ name: hits, type: counter }}\n",
        common::hello_config("127.0.0.1:0", "v1")
    ));
    let mut process = Swapvisor::start(&[
        "run",
        config.as_str(),
        "--admin",
        "127.0.0.1:0",
        "--admin-token",
        TOKEN,
    ]);
    let (_, admin) = process.wait_until_up_with_admin("web");
    let bearer = format!("Bearer {TOKEN}");
    let url = format!("{admin}/api/v1/admin/openapi.json");

    // Behind the token, like every /api/ path.
    let (code, _) = request_with("GET", &url, &[], "").await.unwrap();
    assert_eq!(code, 401);
    let (code, document) = request_with("GET", &url, &[("authorization", &bearer)], "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let schema = &document["components"]["schemas"]["PluginStatus"];
    for field in [
        "lastReload",
        "reloads",
        "escalations",
        "lastErrorAt",
        "lastErrorPast",
    ] {
        assert!(
            schema["properties"].get(field).is_some(),
            "{field}: {schema}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    if available("openapi-spec-validator") {
        common::succeeds(Command::new("openapi-spec-validator").arg(&file));
    }
    if available("schemathesis") {
        // Plugin paths name the running plugin, so they reach past the 404.
        let settings = dir.path().join("schemathesis.toml");
        std::fs::write(&settings, "[parameters]\n\"path.name\" = \"hits\"\n").unwrap();
        let authorization = format!("Authorization: {bearer}");
        common::succeeds(
            Command::new("schemathesis")
                .arg("--config-file")
                .arg(&settings)
                .arg("run")
                .arg(&file)
                .args(["--url", &admin, "-H", &authorization])
                .args(["--checks", "all"])
                // A config's validity is its build, not a JSON Schema: the API rejects most
                // strings a schema allows, and accepts documents no schema could list.
                .args([
                    "--exclude-checks",
                    "positive_data_acceptance,negative_data_rejection",
                ])
                // An upgrade replaces this very process; tests/upgrade.rs covers it.
                .args(["--exclude-path", "/api/v1/admin/upgrade"])
                .args(["--max-examples", "50", "--no-color"])
                .current_dir(dir.path()),
        );
    }
    // It served throughout: nothing schemathesis sent took the admin API down.
    let (code, _) = request_with("GET", &format!("{admin}/healthz"), &[], "")
        .await
        .unwrap();
    assert_eq!(code, 200);
}
