//! One indexed read per request, through swapvisor and through sqlx directly, on SQLite and on
//! PostgreSQL, in the same run; then the same load through a reload storm.
//!
//! `cargo bench --bench storage` prints, per database: the direct baseline (16 tasks running
//! `SELECT id, name FROM items WHERE id = $1` on a sqlx pool of the store's size), the HTTP
//! route (16 keep-alive clients that never retry, `GET /items/{id}` -> `step.db_query` ->
//! `step.json_response`), their rps and p99 with the ratios, and the storm: the same clients
//! while the runtime is reloaded every 50 ms, three reloads in four leaving the store alone
//! (carried with its pool) and one in four changing it (a new pool; the old one drains). The
//! bench stops with an error if a request fails, a reload does not activate, or a reload that
//! leaves the store alone opens a connection. PostgreSQL needs its server programs (Debian's
//! `postgresql`); without them that part is skipped with a note.
//!
//! Knobs (environment): STORAGE_SECS (3, per phase), STORAGE_CLIENTS (16), STORAGE_RELOADS (40).

#[path = "support/mod.rs"]
mod support;

#[path = "../cli/tests/common/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use swapvisor::{Config, Registry, Runtime};

/// What `postgres.rs` asks of its test crate: here a missing tool is a note, never a failure.
fn tool_present(present: bool, what: &str, _require: &str, install: &str) -> bool {
    if !present {
        eprintln!("note: skipping {what}: {install}");
    }
    present
}

const ROWS: i64 = 10_000;
const POOL: u32 = 8;

/// Latencies (µs) and failures of one phase.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    failed: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.micros.extend(other.micros);
        self.failed += other.failed;
    }

    fn report(&mut self, label: &str, secs: f64) -> (f64, f64) {
        self.micros.sort_unstable();
        let rps = self.micros.len() as f64 / secs;
        let p99 = support::percentile_ms(&self.micros, 99.0);
        println!(
            "{label}: {} reads, {rps:.0} rps, p50 {:.3} ms, p99 {p99:.3} ms, failed {}",
            self.micros.len(),
            support::percentile_ms(&self.micros, 50.0),
            self.failed
        );
        (rps, p99)
    }
}

fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// The store entry and the config serving `GET /items/{id}`.
fn config(store: &str, version: u32, pool: u32) -> Config {
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
  - {store}
pipelines:
  item:
    trigger: {{ type: http, config: {{ server: web, path: "/items/{{id}}" }} }}
    steps:
      - {{ name: item, type: step.db_query, config: {{ store: db, sql: "SELECT id, name FROM items WHERE id = $1", params: ["{{{{ request.params.id }}}}"], one: true, notFound: true }} }}
      - {{ name: answer, type: step.json_response, config: {{ body: "{{{{ item }}}}" }} }}
  version:
    steps: [{{ name: v, type: step.set, config: {{ values: {{ version: {version} }} }} }}]
"#
    );
    let yaml = yaml.replace("POOL", &pool.to_string());
    Config::parse(yaml.as_bytes()).expect("the bench config is valid")
}

/// `clients` tasks, each reading with a reader of its own from `reader()`, until
/// `for_how_long` has passed.
async fn load<R>(clients: usize, for_how_long: Duration, reader: impl Fn() -> R) -> (Tally, f64)
where
    R: Fn(i64) -> futures::future::BoxFuture<'static, bool> + Send + 'static,
{
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (read, done) = (reader(), done.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut id = (c as i64 * 7919) % ROWS;
                while !done.load(Ordering::Relaxed) {
                    id = (id * 48_271 + 11) % ROWS;
                    let at = Instant::now();
                    if read(id + 1).await {
                        tally.micros.push(micros(at));
                    } else {
                        tally.failed += 1;
                    }
                }
                tally
            })
        })
        .collect();
    tokio::time::sleep(for_how_long).await;
    done.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await.expect("a load task"));
    }
    (total, started.elapsed().as_secs_f64())
}

/// A reader of the HTTP route: one keep-alive connection of its own, never retried.
fn http_reader(
    base: &str,
) -> impl Fn(i64) -> futures::future::BoxFuture<'static, bool> + Send + 'static {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .retry_canceled_requests(false)
        .build_http::<Empty<Bytes>>();
    let base = base.to_owned();
    move |id| {
        let client = client.clone();
        let url: hyper::Uri = format!("{base}/items/{id}").parse().expect("a URI");
        Box::pin(async move {
            let answer = tokio::time::timeout(Duration::from_secs(5), client.get(url)).await;
            match answer {
                Ok(Ok(response)) if response.status().is_success() => {
                    response.into_body().collect().await.is_ok()
                }
                _ => false,
            }
        })
    }
}

/// A sqlx pool of the bench's own, reading as the route does.
#[derive(Clone)]
enum Direct {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const READ: &str = "SELECT id, name FROM items WHERE id = $1";

impl Direct {
    async fn read(&self, id: i64) -> bool {
        match self {
            Direct::Sqlite(pool) => sqlx::query(READ).bind(id).fetch_one(pool).await.is_ok(),
            Direct::Postgres(pool) => sqlx::query(READ).bind(id).fetch_one(pool).await.is_ok(),
        }
    }

    /// `ROWS` rows keyed by id, in one transaction.
    async fn fill(&self) {
        let create = "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL)";
        let insert = "INSERT INTO items (id, name) VALUES ($1, $2)";
        match self {
            Direct::Sqlite(pool) => {
                sqlx::query(create).execute(pool).await.expect("the table");
                let mut tx = pool.begin().await.expect("a transaction");
                for id in 1..=ROWS {
                    let q = sqlx::query(insert).bind(id).bind(format!("item {id}"));
                    q.execute(&mut *tx).await.expect("a row");
                }
                tx.commit().await.expect("the rows");
            }
            Direct::Postgres(pool) => {
                sqlx::query(create).execute(pool).await.expect("the table");
                let mut tx = pool.begin().await.expect("a transaction");
                for id in 1..=ROWS {
                    let q = sqlx::query(insert).bind(id).bind(format!("item {id}"));
                    q.execute(&mut *tx).await.expect("a row");
                }
                tx.commit().await.expect("the rows");
            }
        }
    }
}

/// When the live store's pool opened: the same after a reload that carried it.
async fn pool_opened_at(runtime: &Runtime) -> serde_json::Value {
    let status = runtime.status().await.expect("status");
    let store = status
        .modules
        .iter()
        .find(|m| m.name == "db")
        .expect("the store");
    store.details["pool"]["openedAt"].clone()
}

/// One database's run: baseline, route, storm.
async fn run(label: &str, store: &str, direct: Direct) {
    let clients = support::knob("STORAGE_CLIENTS", 16) as usize;
    let secs = Duration::from_secs(support::knob("STORAGE_SECS", 3));
    let reloads = support::knob("STORAGE_RELOADS", 40) as u32;

    let (mut baseline, took) = load(clients, secs, || {
        let direct = direct.clone();
        move |id| {
            let direct = direct.clone();
            Box::pin(async move { direct.read(id).await })
                as futures::future::BoxFuture<'static, bool>
        }
    })
    .await;
    let (direct_rps, direct_p99) =
        baseline.report(&format!("{label} direct (sqlx, {clients} tasks)"), took);

    let runtime = Runtime::start(config(store, 0, POOL), Registry::with_builtins())
        .await
        .expect("the bench config activates");
    let runtime = Arc::new(runtime);
    let address = runtime.status().await.unwrap().listening()[0].1.clone();
    let base = format!("http://{address}");
    let (mut route, took) = load(clients, secs, || http_reader(&base)).await;
    let (route_rps, route_p99) = route.report(
        &format!("{label} through swapvisor ({clients} clients)"),
        took,
    );
    println!(
        "RATIO {label}: rps {:.2}x direct, p99 {:.2}x direct",
        route_rps / direct_rps,
        route_p99 / direct_p99
    );
    assert_eq!(route.failed, 0, "{label}: requests failed in steady state");

    // The storm: reloads under the same load, one in four changing the store.
    let storming = {
        let (runtime, store) = (runtime.clone(), store.to_owned());
        let interval = (secs / reloads.max(1)).max(Duration::from_millis(50));
        tokio::spawn(async move {
            let (mut pool, mut carried, mut replaced) = (POOL, 0, 0);
            for i in 1..=reloads {
                let touches_store = i % 4 == 0;
                if touches_store {
                    pool = if pool == POOL { POOL - 1 } else { POOL };
                }
                let before = pool_opened_at(&runtime).await;
                let next = config(&store, i, pool);
                let outcome = runtime.reload(next).await.expect("answers").outcome;
                assert!(outcome.is_activated(), "reload {i}: {outcome:?}");
                let same_pool = pool_opened_at(&runtime).await == before;
                assert_eq!(same_pool, !touches_store, "reload {i}: the store's pool");
                if same_pool {
                    carried += 1
                } else {
                    replaced += 1
                }
                tokio::time::sleep(interval).await;
            }
            (carried, replaced)
        })
    };
    let (mut storm, took) = load(clients, secs, || http_reader(&base)).await;
    let (carried, replaced) = storming.await.expect("the reloads");
    let (_, storm_p99) = storm.report(&format!("{label} during {reloads} reloads"), took);
    println!(
        "STORM {label}: {carried} reloads carried the pool, {replaced} replaced it; failed {} (target 0); p99 storm / steady = {:.2}",
        storm.failed,
        storm_p99 / route_p99
    );
    assert_eq!(
        storm.failed, 0,
        "{label}: requests failed during the reload storm"
    );
    runtime.shutdown().await.expect("stops");
}

fn main() {
    let rt = support::tokio_runtime();
    rt.block_on(async {
        // SQLite: a file in a temporary folder, in WAL mode as the store opens it.
        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join("bench.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(POOL);
        let direct = Direct::Sqlite(pool.connect_with(options).await.expect("SQLite opens"));
        direct.fill().await;
        let path = file.display().to_string();
        let store = format!("{{ name: db, type: storage.sqlite, config: {{ path: {path:?}, maxConnections: POOL }} }}");
        run("sqlite", &store, direct).await;

        let Some(server) = postgres::Postgres::start("the PostgreSQL part of the storage bench") else {
            return;
        };
        let url = server.database("bench").await;
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(POOL);
        let direct = Direct::Postgres(pool.connect(&url).await.expect("PostgreSQL answers"));
        direct.fill().await;
        let url_file = dir.path().join("url");
        std::fs::write(&url_file, &url).expect("the URL file");
        let url_file = url_file.display().to_string();
        let store = format!("{{ name: db, type: storage.postgres, config: {{ urlFile: {url_file:?}, maxConnections: POOL }} }}");
        run("postgres", &store, direct).await;
    });
}
