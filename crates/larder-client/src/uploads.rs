//! The upload queue ([`Cache::queue`](crate::Cache::queue); `larder exec` and `larder worker`'s
//! `--upload-workers N [--no-wait]`): store jobs run at most N at a time while the caller goes
//! on; at the end the caller waits for them, or abandons them and says how many.
//!
//! A job's failure is a message for a warning, never an error of the caller: a failed upload
//! never fails the build.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

/// Jobs queued beyond this make the next [`Uploads::wait_for_room`] wait: queued jobs hold their
/// entries (inlined file contents included) in memory.
pub const MAX_QUEUED: usize = 4096;

/// What became of one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Stored: this many bytes of outputs.
    Stored(u64),
    /// Failed, with why.
    Failed(String),
    /// Abandoned at the end (`--no-wait`).
    Abandoned,
}

/// Uploads queued or running.
#[derive(Debug)]
pub struct Uploads {
    /// One permit per concurrent job.
    slots: Arc<Semaphore>,
    /// Each job returns the bytes it stored or why it failed.
    tasks: JoinSet<Result<u64, String>>,
}

impl Uploads {
    /// Run at most `workers` jobs at a time (at least one).
    pub fn new(workers: usize) -> Uploads {
        Uploads {
            slots: Arc::new(Semaphore::new(workers.max(1))),
            tasks: JoinSet::new(),
        }
    }

    /// Jobs queued or running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no job is queued or running.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Queue `job`: it starts once a slot is free.
    pub fn spawn<F>(&mut self, job: F)
    where
        F: Future<Output = Result<u64, String>> + Send + 'static,
    {
        let slots = self.slots.clone();
        self.tasks.spawn(async move {
            // The semaphore is never closed; if it were, that would only mean no limit.
            let _slot = slots.acquire_owned().await.ok();
            job.await
        });
    }

    /// The jobs that have finished, without waiting.
    pub fn finished(&mut self) -> Vec<Done> {
        let mut done = Vec::new();
        while let Some(d) = self.tasks.try_join_next() {
            done.push(outcome(d));
        }
        done
    }

    /// The jobs that have finished, after waiting (while [`MAX_QUEUED`] jobs are queued or
    /// running) for those needed to make room for one more.
    pub async fn wait_for_room(&mut self) -> Vec<Done> {
        let mut finished = self.finished();
        while self.len() >= MAX_QUEUED {
            match self.next().await {
                Some(done) => finished.push(done),
                None => break,
            }
        }
        finished
    }

    /// Wait for the next job to finish; `None` when none is left.
    pub async fn next(&mut self) -> Option<Done> {
        self.tasks.join_next().await.map(outcome)
    }

    /// Wait for every job, or with `no_wait` abandon those not finished yet (a job stopped at an
    /// await point stores nothing more: entries are written last).
    pub async fn finish(mut self, no_wait: bool) -> Vec<Done> {
        if no_wait {
            self.tasks.abort_all();
        }
        let mut done = Vec::with_capacity(self.tasks.len());
        while let Some(d) = self.next().await {
            done.push(d);
        }
        done
    }
}

fn outcome(joined: Result<Result<u64, String>, JoinError>) -> Done {
    match joined {
        Ok(Ok(bytes)) => Done::Stored(bytes),
        Ok(Err(why)) => Done::Failed(why),
        Err(e) if e.is_cancelled() => Done::Abandoned,
        Err(e) => Done::Failed(format!("the upload stopped: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_counts_and_limits_concurrency() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut u = Uploads::new(2);
        for i in 0..8u64 {
            let (running, peak) = (running.clone(), peak.clone());
            u.spawn(async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                running.fetch_sub(1, SeqCst);
                if i == 3 { Err("no".into()) } else { Ok(i) }
            });
        }
        let done = u.finish(false).await;
        assert_eq!(done.len(), 8);
        assert_eq!(
            done.iter().filter(|d| matches!(d, Done::Failed(_))).count(),
            1
        );
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_wait_abandons() {
        let mut u = Uploads::new(1);
        for _ in 0..3 {
            u.spawn(async {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                Ok(1)
            });
        }
        let done = u.finish(true).await;
        assert_eq!(done, vec![Done::Abandoned; 3]);
    }
}
