//! What one query may spend: a deadline, a cancel flag the API sets when the client goes away,
//! and a cap on the memory its results hold. Search loops call [`Budget::check`] per trace and
//! [`Budget::charge`] per hit, and stop with a [`QueryError`] naming the limit.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::StoreError;

/// Why a query stopped without results.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "query exceeded its deadline of {0:?} (store.search.query_timeout); narrow the time range or simplify the query"
    )]
    Deadline(Duration),
    #[error("query cancelled: the client went away")]
    Cancelled,
    #[error(
        "search results would exceed {max_bytes} bytes (store.search.max_result_bytes); lower limit or spss, or narrow the query"
    )]
    TooLarge { max_bytes: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The budget of one query.
#[derive(Debug)]
pub struct Budget {
    timeout: Duration,
    deadline: Option<Instant>,
    cancelled: Arc<AtomicBool>,
    max_bytes: usize,
    used: usize,
}

impl Budget {
    /// A budget with a deadline `timeout` from now and a result-memory cap.
    pub fn new(timeout: Duration, max_bytes: usize) -> Self {
        Self {
            timeout,
            deadline: Instant::now().checked_add(timeout),
            cancelled: Arc::new(AtomicBool::new(false)),
            max_bytes,
            used: 0,
        }
    }

    /// No deadline and no cap (maintenance, tests).
    pub fn unlimited() -> Self {
        Self {
            timeout: Duration::MAX,
            deadline: None,
            cancelled: Arc::new(AtomicBool::new(false)),
            max_bytes: usize::MAX,
            used: 0,
        }
    }

    /// A guard that cancels the query when dropped, unless disarmed.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.cancelled.clone()))
    }

    /// Stop if the client went away or the deadline passed.
    pub fn check(&self) -> Result<(), QueryError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(QueryError::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(QueryError::Deadline(self.timeout));
        }
        Ok(())
    }

    /// Account `bytes` more of results; stop past the cap.
    pub fn charge(&mut self, bytes: usize) -> Result<(), QueryError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.max_bytes {
            return Err(QueryError::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// Cancels its query when dropped (the HTTP handler's future is dropped when the client
/// disconnects); [`CancelOnDrop::disarm`] once the query finished.
#[derive(Debug)]
pub struct CancelOnDrop(Option<Arc<AtomicBool>>);

impl CancelOnDrop {
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_cancel_and_cap_stop_a_query() {
        let b = Budget::new(Duration::ZERO, 10);
        assert!(matches!(b.check(), Err(QueryError::Deadline(_))));

        let b = Budget::new(Duration::from_secs(3600), 10);
        assert!(b.check().is_ok());
        drop(b.cancel_on_drop());
        assert!(matches!(b.check(), Err(QueryError::Cancelled)));

        let b = Budget::new(Duration::from_secs(3600), 10);
        b.cancel_on_drop().disarm();
        assert!(b.check().is_ok());

        let mut b = Budget::new(Duration::MAX, 10);
        assert!(b.charge(10).is_ok());
        assert!(matches!(
            b.charge(1),
            Err(QueryError::TooLarge { max_bytes: 10 })
        ));
    }
}
