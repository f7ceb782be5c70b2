//! The store's reader threads: a small fixed pool that runs blocking store reads off the
//! async runtime.
//!
//! A fixed pool fed by one queue keeps its threads busy under load, so a request costs a
//! queue push and no thread wake-up; spawning each read onto a general blocking pool wakes a
//! parked thread per request, which costs more than the read itself. Writes go to the single
//! committer instead (`writer.rs`).
//!
//! The queue is bounded, and each job carries a deadline: a job refused by a full queue, or
//! still queued at its deadline, never runs, and its caller learns why at once.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::queue::{Refused, WorkQueue};

/// Why a job did not run to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunError {
    /// The queue was full.
    Busy,
    /// The job was still queued at its deadline.
    Expired,
    /// The pool is gone, or the job panicked.
    Failed,
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of threads running queued jobs.
pub(crate) struct Executor {
    queue: Arc<WorkQueue<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// Starts `threads` threads named `name-N`, fed by a queue of at most `capacity` jobs.
    pub(crate) fn start(name: &str, threads: usize, capacity: usize) -> std::io::Result<Executor> {
        let queue: Arc<WorkQueue<Job>> = Arc::new(WorkQueue::new(capacity));
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let q = Arc::clone(&queue);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        while let Some(job) = q.pop() {
                            // A panicking job drops its reply sender; the thread lives on.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    })?,
            );
        }
        Ok(Executor {
            queue,
            threads: handles,
        })
    }

    /// Queues `f` to start by `deadline`; the future resolves to its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        deadline: Instant,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, RunError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let r = if Instant::now() > deadline {
                Err(RunError::Expired)
            } else {
                Ok(f())
            };
            let _ = tx.send(r);
        });
        match self.queue.push(job) {
            Ok(()) => {}
            Err(Refused::Full(_)) => return Err(RunError::Busy),
            Err(Refused::Closed(_)) => return Err(RunError::Failed),
        }
        rx.await.unwrap_or(Err(RunError::Failed))
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Closing the queue ends every thread once the queue is empty.
        self.queue.close();
        for t in self.threads.drain(..) {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_off_the_runtime_and_return_results() {
        let ex = Executor::start("test-pool", 2, 16).unwrap();
        let here = std::thread::current().id();
        let soon = || Instant::now() + std::time::Duration::from_secs(10);
        let (v, id) = ex
            .run(soon(), move || (41 + 1, std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(v, 42);
        assert_ne!(id, here);
        // a panicking job reports a failure and leaves the pool working
        let r: Result<(), _> = ex.run(soon(), || panic!("job failed")).await;
        assert_eq!(r, Err(RunError::Failed));
        assert_eq!(ex.run(soon(), || 7).await, Ok(7));
        // a job past its deadline does not run
        let past = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(ex.run(past, || 7).await, Err(RunError::Expired));
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let ex = Executor::start("test-pool", 1, 1).unwrap();
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let soon = Instant::now() + std::time::Duration::from_secs(10);
        let blocker = ex.run(soon, move || hold_rx.recv().is_ok());
        let queued = ex.run(soon, || 1);
        let refused = ex.run(soon, || 2);
        tokio::pin!(blocker, queued);
        // poll the first two into the pool and the queue
        assert!(futures_poll_once(blocker.as_mut()).await.is_none());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(futures_poll_once(queued.as_mut()).await.is_none());
        assert_eq!(refused.await, Err(RunError::Busy));
        hold_tx.send(()).unwrap();
        assert_eq!(blocker.await, Ok(true));
        assert_eq!(queued.await, Ok(1));
    }

    /// Polls `f` once: its output if it is ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
