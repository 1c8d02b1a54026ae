//! The threads jq programs compile and run on, each with a large stack.
//!
//! jaq parses, compiles and runs a program by recursion over its syntax tree: in a debug
//! build, 200 nested parentheses or 300 chained `|` overflow a 2 MiB stack, tokio's default
//! for its workers and blocking threads, and a stack overflow aborts the whole process. A
//! program is at most [`MAX_PROGRAM_BYTES`] long, so its tree is at most that deep, and every
//! compile and run happens on a thread with a [`STACK_BYTES`] stack, which holds that depth
//! with room to spare (the stack is reserved, not committed: untouched pages cost nothing).
//!
//! Runs go to a pool that grows on demand up to [`MAX_THREADS`] threads, created on the first
//! run (never at build: a build compiles on a scoped thread it joins). A caller awaits its
//! answer, so a pipeline's time limit still ends the request when a program runs long; the
//! program itself runs on to its end, holding its thread.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};

use swapvisor_actors::guard::Interrupted;

/// The longest jq program a config may hold.
pub(crate) const MAX_PROGRAM_BYTES: usize = 4096;
/// The stack of every thread that compiles or runs a program.
pub(crate) const STACK_BYTES: usize = 128 << 20;
/// The most threads that run programs at once; more runs wait for one of them.
const MAX_THREADS: usize = 32;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: mpsc::Sender<Job>,
    queue: Mutex<mpsc::Receiver<Job>>,
    threads: AtomicUsize,
    idle: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, queue) = mpsc::channel();
        Pool {
            jobs,
            queue: Mutex::new(queue),
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
        }
    })
}

impl Pool {
    fn submit(&'static self, job: Job) -> Result<(), String> {
        self.jobs
            .send(job)
            .map_err(|_| "the jq threads are gone".to_owned())?;
        if self.idle.load(Ordering::SeqCst) > 0 {
            return Ok(());
        }
        if self.threads.fetch_add(1, Ordering::SeqCst) >= MAX_THREADS {
            self.threads.fetch_sub(1, Ordering::SeqCst);
            return Ok(()); // it waits for a busy thread
        }
        let spawned = std::thread::Builder::new()
            .name("swapvisor-jq".to_owned())
            .stack_size(STACK_BYTES)
            .spawn(move || self.serve());
        if let Err(error) = spawned {
            let left = self.threads.fetch_sub(1, Ordering::SeqCst) - 1;
            tracing::warn!(%error, threads = left, "could not start a thread for jq programs");
            if left == 0 {
                return Err(format!("no thread could be started to run it: {error}"));
            }
        }
        Ok(())
    }

    fn serve(&self) {
        loop {
            self.idle.fetch_add(1, Ordering::SeqCst);
            let job = self
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .recv();
            self.idle.fetch_sub(1, Ordering::SeqCst);
            match job {
                Ok(job) => job(),
                Err(_) => return,
            }
        }
    }
}

/// Runs `work` on a pool thread and awaits its result; a panic in it is an error.
pub(crate) async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    pool().submit(Box::new(move || {
        let result = std::panic::catch_unwind(AssertUnwindSafe(work));
        // The caller may have stopped waiting (its run timed out): nobody to tell then.
        let _ = answer.send(result.map_err(|panic| Interrupted::from_panic(&*panic)));
    }))?;
    match answered.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(interrupted)) => Err(interrupted.to_string()),
        Err(_) => Err("its thread ended without an answer".to_owned()),
    }
}

/// Runs `work` on a thread of its own with the large stack, and waits for it (for builds:
/// the thread is gone when this returns).
pub(crate) fn run_scoped<T: Send>(work: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("swapvisor-jq-build".to_owned())
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, work)
            .map_err(|e| format!("no thread could be started to compile it: {e}"))?;
        thread
            .join()
            .map_err(|panic| Interrupted::from_panic(&*panic).to_string())
    })
}
