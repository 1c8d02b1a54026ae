//! Steady-state cost of a request: `Runtime::execute` against the same 3-step pipeline on a
//! bare engine (no runtime), and against routing every call through one ractor actor's
//! mailbox, with one caller and with two concurrent callers.
//!
//! `cargo bench --bench dispatch` ends with `RATIO` lines: runtime / bare engine in throughput
//! (target >= 0.8), and the same for the single-mailbox design.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Value, json};
use swapvisor::{Engine, Runtime};

/// The single-mailbox baseline: one actor owns the engine and runs every call.
struct EngineActor;

enum Call {
    Execute(Value, RpcReplyPort<Value>),
}

#[cfg(feature = "fleet")]
impl ractor::Message for Call {}

impl Actor for EngineActor {
    type Msg = Call;
    type State = Engine;
    type Arguments = Engine;

    async fn pre_start(
        &self,
        _myself: ActorRef<Call>,
        engine: Engine,
    ) -> Result<Engine, ActorProcessingErr> {
        Ok(engine)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Call>,
        message: Call,
        engine: &mut Engine,
    ) -> Result<(), ActorProcessingErr> {
        let Call::Execute(input, reply) = message;
        let output = engine.execute("hello", input).await.unwrap_or(Value::Null);
        let _ = reply.send(output);
        Ok(())
    }
}

#[derive(Clone)]
enum Target {
    Bare(Engine),
    Runtime(Arc<Runtime>),
    Mailbox(ActorRef<Call>),
}

impl Target {
    async fn call(&self, input: Value) -> Value {
        match self {
            Target::Bare(engine) => engine.execute("hello", input).await.expect("runs"),
            Target::Runtime(runtime) => runtime.execute("hello", input).await.expect("runs"),
            Target::Mailbox(actor) => ractor::call!(actor, Call::Execute, input).expect("answers"),
        }
    }
}

fn input() -> Value {
    json!({"query": {"name": "ada"}})
}

/// Runs `iters` calls split across `callers` tasks, and returns the wall time.
async fn timed(target: &Target, callers: u64, iters: u64) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let target = target.clone();
            let share = iters / callers + u64::from(caller < iters % callers);
            tokio::spawn(async move {
                for _ in 0..share {
                    std::hint::black_box(target.call(input()).await);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    started.elapsed()
}

fn dispatch(c: &mut Criterion) {
    let rt = support::tokio_runtime();
    let config = support::config(0, "v1", "");
    let (bare, runtime, mailbox) = rt.block_on(async {
        let bare = Engine::build(&config, &support::registry())
            .await
            .expect("builds");
        bare.start().await.expect("starts");
        let runtime = Runtime::start(config.clone(), support::registry())
            .await
            .expect("starts");
        let for_actor = Engine::build(&config, &support::registry())
            .await
            .expect("builds");
        for_actor.start().await.expect("starts");
        let (actor, _) = Actor::spawn(None, EngineActor, for_actor)
            .await
            .expect("spawns");
        (bare, Arc::new(runtime), actor)
    });
    let targets = [
        ("bare engine", Target::Bare(bare)),
        ("runtime", Target::Runtime(runtime.clone())),
        ("one actor mailbox", Target::Mailbox(mailbox)),
    ];
    for callers in [1u64, 2] {
        let mut group = c.benchmark_group(format!(
            "dispatch {callers} caller{}",
            if callers > 1 { "s" } else { "" }
        ));
        group.throughput(Throughput::Elements(1));
        group
            .sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for (name, target) in &targets {
            group.bench_function(*name, |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| timed(target, callers, iters))
            });
        }
        group.finish();
    }
    rt.block_on(async { runtime.shutdown().await.expect("stops") });
}

fn report(_c: &mut Criterion) {
    for group in ["dispatch 1 caller", "dispatch 2 callers"] {
        // Time per call is the inverse of throughput: bare / runtime is runtime's relative throughput.
        support::print_ratio(
            &format!("{group}: runtime throughput / bare engine"),
            group,
            "bare engine",
            "runtime",
            ">= 0.8",
        );
        support::print_ratio(
            &format!("{group}: one-mailbox throughput / bare engine"),
            group,
            "bare engine",
            "one actor mailbox",
            "for comparison",
        );
    }
}

criterion_group!(benches, dispatch, report);
criterion_main!(benches);
