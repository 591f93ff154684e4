//! Admission control: at most `max_concurrent` requests run, at most `max_queue` wait;
//! beyond that a request is refused at once with 429.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// The bounded queue in front of the models.
#[derive(Debug)]
pub struct Limiter {
    semaphore: Arc<Semaphore>,
    max_concurrent: usize,
    max_queue: usize,
    waiting: Arc<AtomicUsize>,
}

/// A running slot; dropping it lets the next queued request run.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
}

/// An admitted request: running at once, or holding a place in the queue.
#[derive(Debug)]
pub enum Ticket {
    Ready(Permit),
    Queued(Queued),
}

/// A place in the queue; counted as waiting until it gets its slot or is dropped
/// (its client left).
#[derive(Debug)]
pub struct Queued {
    semaphore: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Queued {
    /// Waits for a slot.
    pub async fn wait(self) -> Result<Permit, ApiError> {
        let permit = Arc::clone(&self.semaphore)
            .acquire_owned()
            .await
            .map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down",
                )
            })?;
        Ok(Permit { _permit: permit })
    }
}

impl Ticket {
    /// Waits for the slot, if the ticket is queued.
    pub async fn wait(self) -> Result<Permit, ApiError> {
        match self {
            Ticket::Ready(p) => Ok(p),
            Ticket::Queued(q) => q.wait().await,
        }
    }
}

impl Limiter {
    pub fn new(max_concurrent: usize, max_queue: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            max_queue,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Admits a request at once: a slot, a place in the queue, or a 429 when the queue is full.
    pub fn admit(&self) -> Result<Ticket, ApiError> {
        if let Ok(p) = Arc::clone(&self.semaphore).try_acquire_owned() {
            return Ok(Ticket::Ready(Permit { _permit: p }));
        }
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let queued = Queued {
            semaphore: Arc::clone(&self.semaphore),
            waiting: Arc::clone(&self.waiting),
        };
        if before >= self.max_queue {
            drop(queued);
            return Err(ApiError::over_capacity(self.running(), before));
        }
        Ok(Ticket::Queued(queued))
    }

    /// Requests running now.
    pub fn running(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.semaphore.available_permits())
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_then_refuse() {
        let l = Arc::new(Limiter::new(1, 1));
        let first = l.admit().unwrap().wait().await.unwrap();
        assert_eq!(l.running(), 1);
        let l2 = Arc::clone(&l);
        let queued = tokio::spawn(async move { l2.admit()?.wait().await.map(|_| ()) });
        while l.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = l.admit().unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert!(refused.message.contains("1 queued"), "{}", refused.message);
        drop(first);
        queued.await.unwrap().unwrap();
        assert_eq!((l.running(), l.queued()), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_frees_its_place() {
        let l = Limiter::new(1, 1);
        let _running = l.admit().unwrap().wait().await.unwrap();
        let wait = l.admit().unwrap().wait();
        assert_eq!(l.queued(), 1);
        let gone = tokio::time::timeout(std::time::Duration::from_millis(10), wait).await;
        assert!(gone.is_err());
        assert_eq!(l.queued(), 0);
    }
}
