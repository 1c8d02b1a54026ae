//! `swapvisor reload`, `status`, `try-activate` and `upgrade`: a running instance's admin API from the
//! command line, like `caddy reload` and `nginx -s reload`. Each prints the answer's JSON on
//! stdout and exits 0 on success, 1 otherwise (the answer's error, or why the instance could
//! not be reached, goes to stderr).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::run::{TokenArgs, parse_address};
use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// Where the instance's admin API is, and how to authenticate.
#[derive(Debug, Args)]
pub(super) struct AdminTarget {
    /// The running instance's admin API address.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9797",
        value_parser = parse_address,
        env = "SWAPVISOR_ADMIN"
    )]
    admin: SocketAddr,

    #[command(flatten)]
    token: TokenArgs,

    /// How long to wait for the answer (a reload answers once it has its outcome).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration, env = "SWAPVISOR_CLIENT_TIMEOUT")]
    timeout: Duration,
}

/// `swapvisor reload [FILE]`.
#[derive(Debug, Args)]
pub(super) struct ReloadArgs {
    /// The config to activate; without it, the instance reloads its own config file.
    file: Option<PathBuf>,

    /// Only reload if this generation is live (compare-and-swap); else the answer is
    /// `conflict`.
    #[arg(long, value_name = "GENERATION")]
    if_match: Option<u64>,

    #[command(flatten)]
    target: AdminTarget,
}

impl ReloadArgs {
    /// FILE's content, or an empty body (the instance reloads its own file); a FILE that
    /// cannot be read is the exit code.
    fn body(&self) -> Result<Vec<u8>, u8> {
        self.file.as_deref().map_or(Ok(Vec::new()), read)
    }
}

/// `swapvisor status`.
#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    target: AdminTarget,
}

/// `swapvisor try-activate FILE`.
#[derive(Debug, Args)]
pub(super) struct TryActivateArgs {
    /// The config to build without activating.
    file: PathBuf,

    #[command(flatten)]
    target: AdminTarget,
}

/// `swapvisor fleet ...`.
#[cfg(feature = "fleet")]
#[derive(Debug, clap::Subcommand)]
pub(super) enum FleetCommand {
    /// Reload every node to FILE (or the node's own config file without it), all or nothing.
    /// Exits 0 when every node activated, else 1.
    Reload(ReloadArgs),
    /// Every node with its generation and fingerprint. Exits 0 when they agree, else 1.
    Status(StatusArgs),
}

#[cfg(feature = "fleet")]
pub(super) async fn fleet(command: FleetCommand) -> u8 {
    match command {
        FleetCommand::Reload(args) => {
            let body = match args.body() {
                Ok(body) => body,
                Err(code) => return code,
            };
            let answer = call(
                &args.target,
                "POST",
                "/api/v1/admin/fleet/reload",
                body,
                None,
            )
            .await;
            report(answer, |_, body| status_of(body) == "activated")
        }
        FleetCommand::Status(args) => {
            let answer = call(
                &args.target,
                "GET",
                "/api/v1/admin/fleet/status",
                Vec::new(),
                None,
            )
            .await;
            report(answer, |code, body| {
                code == 200 && body["agreed"] == Value::Bool(true)
            })
        }
    }
}

pub(super) async fn reload(args: ReloadArgs) -> u8 {
    let body = match args.body() {
        Ok(body) => body,
        Err(code) => return code,
    };
    let if_match = args.if_match.map(|g| format!("\"{g}\""));
    let answer = call(
        &args.target,
        "POST",
        "/api/v1/admin/engine/reload",
        body,
        if_match.as_deref(),
    )
    .await;
    report(answer, |_, body| {
        matches!(status_of(body), "activated" | "unchanged")
    })
}

/// `swapvisor upgrade [--binary PATH]`.
#[derive(Debug, Args)]
pub(super) struct UpgradeArgs {
    /// The new executable; without it, the instance runs its own executable's path again
    /// (where a package update put the new build).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,

    #[command(flatten)]
    target: AdminTarget,
}

pub(super) async fn upgrade(args: UpgradeArgs) -> u8 {
    let body = match &args.binary {
        Some(binary) => {
            // The instance resolves the path in its own working folder: send it absolute.
            let binary = std::path::absolute(binary).unwrap_or_else(|_| binary.clone());
            serde_json::json!({ "binary": binary })
                .to_string()
                .into_bytes()
        }
        None => Vec::new(),
    };
    let answer = call(&args.target, "POST", "/api/v1/admin/upgrade", body, None).await;
    report(answer, |code, body| {
        code == 200 && status_of(body) == "upgraded"
    })
}

pub(super) async fn status(args: StatusArgs) -> u8 {
    let answer = call(
        &args.target,
        "GET",
        "/api/v1/admin/engine/status",
        Vec::new(),
        None,
    )
    .await;
    report(answer, |code, _| code == 200)
}

pub(super) async fn try_activate(args: TryActivateArgs) -> u8 {
    let body = match read(&args.file) {
        Ok(body) => body,
        Err(code) => return code,
    };
    let answer = call(
        &args.target,
        "POST",
        "/api/v1/admin/engine/try-activate",
        body,
        None,
    )
    .await;
    report(answer, |_, body| status_of(body) == "build_ok")
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, u8> {
    crate::config::read_file(path).map_err(|error| {
        eprintln!("swapvisor: {error}");
        EXIT_USAGE
    })
}

fn status_of(body: &Value) -> &str {
    body.get("status").and_then(Value::as_str).unwrap_or("")
}

/// Prints the answer and turns it into the exit code.
fn report(answer: Result<(u16, Value), String>, succeeded: impl Fn(u16, &Value) -> bool) -> u8 {
    match answer {
        Ok((code, body)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
            if succeeded(code, &body) {
                EXIT_OK
            } else {
                let error = body.get("error").and_then(Value::as_str);
                eprintln!(
                    "swapvisor: the instance answered {code} {}{}",
                    status_of(&body),
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                );
                EXIT_INVALID
            }
        }
        Err(error) => {
            eprintln!("swapvisor: {error}");
            EXIT_INVALID
        }
    }
}

/// One request to the admin API, on a connection of its own; the answer's status and JSON body.
async fn call(
    target: &AdminTarget,
    method: &str,
    path: &str,
    body: Vec<u8>,
    if_match: Option<&str>,
) -> Result<(u16, Value), String> {
    let token = target.token.read()?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(target.admin)
            .await
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", target.admin))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot talk HTTP to {}: {e}", target.admin))?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, target.admin.to_string());
        if let Some(token) = &token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(tag) = if_match {
            request = request.header(hyper::header::IF_MATCH, tag);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("the admin API at {} did not answer: {e}", target.admin))?;
        let code = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the answer was cut off: {e}"))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((code, body))
    };
    tokio::time::timeout(target.timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "no answer from {} within {}",
                target.admin,
                humantime::format_duration(target.timeout)
            )
        })?
}
