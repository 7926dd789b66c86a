//! How many admission reviews the injector reads and answers at once: at most
//! [`ReviewPermits::total`] in all and [`ReviewPermits::per_source`] per source address.
//!
//! A review's body is read only once it holds a permit, so the bodies in memory are at most
//! `total` × the body cap. The per-source share keeps one client that trickles bodies (each
//! read is also bounded in time by the server) from holding every permit: the API server, the
//! only legitimate client, keeps its own share. A review that finds no permit waits, up to a
//! bound, rather than being refused at once, because the API server sends bursts (a
//! Deployment scaling up) and each review takes milliseconds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The permits of one injector.
#[derive(Debug)]
pub struct ReviewPermits {
    total: Arc<Semaphore>,
    total_cap: usize,
    per_source: usize,
    sources: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// A review in progress; dropping it lets the next one in.
#[derive(Debug)]
pub struct ReviewPermit {
    permits: Arc<ReviewPermits>,
    source: IpAddr,
    _total: OwnedSemaphorePermit,
    from_source: Option<OwnedSemaphorePermit>,
}

/// No permit came free within the wait.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the injector is busy: {total} reviews at once ({per_source} per client address) are in progress and none finished within {waited:?}"
)]
pub struct Busy {
    /// The global cap.
    pub total: usize,
    /// The per-source cap.
    pub per_source: usize,
    /// How long the review waited.
    pub waited: Duration,
}

impl ReviewPermits {
    /// `total` reviews at once, `per_source` of them from one address.
    pub fn new(total: usize, per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(total)),
            total_cap: total,
            per_source,
            sources: Mutex::default(),
        })
    }

    /// Waits up to `wait` for a permit for a review from `source`.
    pub async fn acquire(
        self: &Arc<Self>,
        source: IpAddr,
        wait: Duration,
    ) -> Result<ReviewPermit, Busy> {
        let source = source.to_canonical();
        let semaphore = self
            .lock()
            .entry(source)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_source)))
            .clone();
        let acquired = tokio::time::timeout(wait, async {
            let from_source = semaphore.clone().acquire_owned().await.ok()?;
            let total = self.total.clone().acquire_owned().await.ok()?;
            Some((from_source, total))
        })
        .await;
        drop(semaphore);
        match acquired {
            Ok(Some((from_source, total))) => Ok(ReviewPermit {
                permits: self.clone(),
                source,
                _total: total,
                from_source: Some(from_source),
            }),
            _ => {
                self.forget_idle(source);
                Err(Busy {
                    total: self.total_cap,
                    per_source: self.per_source,
                    waited: wait,
                })
            }
        }
    }

    /// Drops `source`'s semaphore when nobody holds or awaits it.
    fn forget_idle(&self, source: IpAddr) {
        let mut sources = self.lock();
        if sources
            .get(&source)
            .is_some_and(|semaphore| Arc::strong_count(semaphore) == 1)
        {
            sources.remove(&source);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<Semaphore>>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sources with a semaphore now (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for ReviewPermit {
    fn drop(&mut self) {
        drop(self.from_source.take());
        self.permits.forget_idle(self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn one_source_holds_at_most_its_share() {
        let permits = ReviewPermits::new(4, 2);
        let _a = permits.acquire(ip("10.0.0.2"), WAIT).await.unwrap();
        let _b = permits.acquire(ip("10.0.0.2"), WAIT).await.unwrap();
        let busy = permits.acquire(ip("10.0.0.2"), WAIT).await.unwrap_err();
        assert_eq!(busy.per_source, 2);
        assert!(busy.to_string().contains("busy"), "{busy}");
        // Another source still gets in at once.
        permits.acquire(ip("10.0.0.1"), WAIT).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_cap_holds_across_sources() {
        let permits = ReviewPermits::new(2, 2);
        let _a = permits.acquire(ip("10.0.0.2"), WAIT).await.unwrap();
        let _b = permits.acquire(ip("10.0.0.3"), WAIT).await.unwrap();
        assert!(permits.acquire(ip("10.0.0.4"), WAIT).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_review_gets_the_permit_another_frees() {
        let permits = ReviewPermits::new(1, 1);
        let first = permits.acquire(ip("10.0.0.1"), WAIT).await.unwrap();
        let waiter = tokio::spawn({
            let permits = permits.clone();
            async move { permits.acquire(ip("10.0.0.1"), WAIT).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn finished_sources_are_forgotten() {
        let permits = ReviewPermits::new(2, 1);
        {
            let _a = permits.acquire(ip("10.0.0.1"), WAIT).await.unwrap();
            assert!(permits.acquire(ip("10.0.0.1"), WAIT).await.is_err());
            assert_eq!(permits.tracked(), 1);
        }
        assert_eq!(permits.tracked(), 0);
    }
}
