//! systemd, as `Type=notify-reload` and socket activation see the binary: a fake
//! `NOTIFY_SOCKET` receives `READY=1`, `RELOADING=1`/`READY=1` around a reload and
//! `STOPPING=1`; sockets passed as `LISTEN_FDS` are served on.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Swapvisor, TempConfig};

fn hello(address: &str, version: &str) -> String {
    common::hello_config(address, version)
}

/// The next notification, as its lines.
fn next(socket: &UnixDatagram) -> Vec<String> {
    let mut buffer = [0u8; 4096];
    let read = socket
        .recv(&mut buffer)
        .expect("a notification within 10 s");
    String::from_utf8_lossy(&buffer[..read])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn tells_systemd_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = TempConfig::new(&hello("127.0.0.1:0", "v1"));
    let mut process = Swapvisor::start_with_env(
        &["run", config.as_str(), "--admin", "off"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let ready = next(&socket);
    assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");
    assert!(
        ready.contains(&"STATUS=serving generation 1".to_owned()),
        "{ready:?}"
    );

    std::fs::write(&config.path, hello("127.0.0.1:0", "v2")).unwrap();
    process.signal("HUP");
    let reloading = next(&socket);
    assert_eq!(reloading[0], "RELOADING=1", "{reloading:?}");
    let usec = reloading[1].strip_prefix("MONOTONIC_USEC=").unwrap();
    assert!(usec.parse::<u64>().unwrap() > 0, "{reloading:?}");
    let reloaded = next(&socket);
    assert!(reloaded.contains(&"READY=1".to_owned()), "{reloaded:?}");
    assert!(
        reloaded.contains(&"STATUS=reload activated: generation 2".to_owned()),
        "{reloaded:?}"
    );

    process.signal("TERM");
    let stopping = next(&socket);
    assert!(stopping.contains(&"STOPPING=1".to_owned()), "{stopping:?}");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_on_the_sockets_systemd_passes() {
    // Bound here, as systemd binds `ListenStream=` sockets, and kept open: a swapvisor that
    // bound the address itself instead would fail with "address in use".
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for socket in [&web, &admin] {
        rustix::io::fcntl_setfd(socket, rustix::io::FdFlags::empty()).unwrap();
    }
    let web_address = web.local_addr().unwrap();
    let admin_address = admin.local_addr().unwrap();
    let (w, a) = (web.as_raw_fd(), admin.as_raw_fd());
    // fd 3 and 4, as systemd passes them; the originals closed in the child.
    let script = format!(
        "exec 100<&{w} 101<&{a} {w}<&- {a}<&-; exec 3<&100 4<&101 100<&- 101<&-; \
         LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=web:admin exec \"$0\" \"$@\""
    );
    let config = TempConfig::new(&hello(&web_address.to_string(), "v1"));
    let mut process = Swapvisor::start_via_shell(
        &script,
        // The admin socket is taken by its name, whatever the flag says.
        &["run", config.as_str(), "--admin", "127.0.0.1:1"],
        &[],
    );
    process.wait_for_line("swapvisor is up", Duration::from_secs(30));
    process.wait_for_line("serving on an inherited socket", Duration::from_secs(1));
    let (status, body) = common::get(&format!("http://{web_address}/hello")).await;
    assert_eq!((status, body["version"].as_str()), (200, Some("v1")));
    let (status, _) = common::get(&format!("http://{admin_address}/healthz")).await;
    assert_eq!(status, 200);
}

/// The units docs/DEPLOYMENT.md shows, as systemd reads them: `systemd-analyze verify` (where
/// that tool exists) finds nothing wrong, except that systemd before 253 does not know
/// `Type=notify-reload` yet, which the page says.
#[test]
fn the_documented_units_verify() {
    let Ok(version) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not installed; the units are not checked");
        return;
    };
    let version: u32 = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let page = std::fs::read_to_string(common::repository().join("docs/DEPLOYMENT.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for (index, block) in page.split("```ini\n").skip(1).enumerate() {
        let block = block.split("```").next().unwrap();
        // The service comes first; each socket unit's first line names its file.
        let name = match index {
            0 => "swapvisor.service".to_owned(),
            _ => block
                .lines()
                .next()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        };
        let path = dir.path().join(&name);
        let text = block.replace("/usr/local/bin/swapvisor", env!("CARGO_BIN_EXE_swapvisor"));
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    assert_eq!(units.len(), 3, "the service and its two socket units");
    let output = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let problems: Vec<&str> = said
        .lines()
        .filter(|line| {
            !(version < 253
                && line.contains("Failed to parse service type, ignoring: notify-reload"))
        })
        .collect();
    assert!(
        output.status.success() && problems.is_empty(),
        "systemd {version}: {said}"
    );
}
