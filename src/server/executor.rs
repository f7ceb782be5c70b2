//! The store's reader threads: a small fixed pool that runs blocking store reads off the
//! async runtime.
//!
//! A fixed pool fed by one queue keeps its threads busy under load, so a request costs a
//! queue push and no thread wake-up; spawning each read onto a general blocking pool wakes a
//! parked thread per request, which costs more than the read itself. Writes go to the single
//! committer instead (`writer.rs`).

use std::sync::Arc;
use std::thread::JoinHandle;

use super::queue::WorkQueue;

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
    /// Starts `threads` threads named `name-N`.
    pub(crate) fn start(name: &str, threads: usize) -> std::io::Result<Executor> {
        let queue: Arc<WorkQueue<Job>> = Arc::new(WorkQueue::new());
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

    /// Queues `f`; the future resolves to its result, or `None` if the pool is gone or `f`
    /// panicked.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.queue.push(job).ok()?;
        rx.await.ok()
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
        let ex = Executor::start("test-pool", 2).unwrap();
        let here = std::thread::current().id();
        let (v, id) = ex
            .run(move || (41 + 1, std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(v, 42);
        assert_ne!(id, here);
        // a panicking job reports None and leaves the pool working
        let r: Option<()> = ex.run(|| panic!("job failed")).await;
        assert!(r.is_none());
        assert_eq!(ex.run(|| 7).await, Some(7));
    }
}
