//! The agent's one thread for binding and applying.
//!
//! Binding and applying block (syscalls, the verifier) and allocate a lot
//! for a moment (a bound state, map plans, program objects). Run on
//! tokio's blocking pool they land on whichever pool thread is free, and
//! a flip that comes while the last one's thread is still winding down
//! starts another thread; glibc gives each new thread its own malloc arena
//! (up to eight per core), and each arena keeps what it freed. Under churn
//! the agent's resident memory then grew with every arena warmed up
//! (measured: 72 to 130 MiB in 5 s of churn, flat at 62 MiB with a single
//! arena). One long-lived thread keeps those allocations in one arena.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// A handle on the apply thread.
pub struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread.
    pub fn start() -> Result<Worker, String> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("policyc-apply".into())
            .spawn(move || {
                for job in queue {
                    // A panicking apply is reported to its caller (its
                    // answer channel closes); the thread serves the next.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map_err(|e| format!("cannot start the apply thread: {e}"))?;
        Ok(Worker { jobs })
    }

    /// Runs `job` on the thread and waits for its result without blocking
    /// the runtime.
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let (answer, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(job());
        });
        self.jobs.send(job).map_err(|_| "the apply thread is gone".to_string())?;
        result.await.map_err(|_| "the apply panicked".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_one_thread_and_a_panic_leaves_it_serving() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let worker = Worker::start().unwrap();
        runtime.block_on(async {
            let first = worker.run(|| std::thread::current().id()).await.unwrap();
            assert_eq!(worker.run(|| -> u8 { panic!("boom") }).await, Err("the apply panicked".into()));
            assert_eq!(worker.run(|| std::thread::current().id()).await.unwrap(), first);
            assert_ne!(first, std::thread::current().id());
        });
    }
}
