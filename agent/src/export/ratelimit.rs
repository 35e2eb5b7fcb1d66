//! At most one warning per kind per interval, so a dead endpoint logs a line every few seconds
//! instead of one per span. Lock-free: producers call it on the hot path.
use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

/// What a warning is about; each kind is limited on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    QueueFull = 0,
    Retry = 1,
    Dropped = 2,
    Rejected = 3,
}

const KINDS: usize = 4;
/// Marks "never logged" (0 would be a valid offset).
const NEVER: u64 = u64::MAX;

/// A per-kind rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    start: Instant,
    interval_ms: u64,
    /// Milliseconds since `start` of the last allowed warning, per kind.
    last: [AtomicU64; KINDS],
}

impl RateLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            start: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last: std::array::from_fn(|_| AtomicU64::new(NEVER)),
        }
    }

    /// Whether a warning of `kind` may be logged now.
    pub fn allow(&self, kind: LogKind) -> bool {
        self.allow_at(kind, Instant::now())
    }

    /// Whether a warning of `kind` may be logged at `now`.
    pub fn allow_at(&self, kind: LogKind, now: Instant) -> bool {
        let now_ms = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX - 1);
        let slot = &self.last[kind as usize];
        let last = slot.load(Relaxed);
        if last != NEVER && now_ms.saturating_sub(last) < self.interval_ms {
            return false;
        }
        // Only one of several racing callers wins the slot.
        slot.compare_exchange(last, now_ms, Relaxed, Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_per_kind() {
        let r = RateLimiter::new(Duration::from_secs(10));
        let t0 = r.start;
        assert!(r.allow_at(LogKind::QueueFull, t0));
        assert!(!r.allow_at(LogKind::QueueFull, t0));
        assert!(!r.allow_at(LogKind::QueueFull, t0 + Duration::from_millis(9_999)));
        // Another kind has its own budget.
        assert!(r.allow_at(LogKind::Dropped, t0 + Duration::from_secs(1)));
        assert!(r.allow_at(LogKind::QueueFull, t0 + Duration::from_secs(10)));
        assert!(!r.allow_at(LogKind::QueueFull, t0 + Duration::from_secs(15)));
        assert!(r.allow_at(LogKind::QueueFull, t0 + Duration::from_secs(21)));
        assert!(!r.allow_at(LogKind::Dropped, t0 + Duration::from_secs(2)));
    }

    #[test]
    fn racing_callers_log_once() {
        let r = std::sync::Arc::new(RateLimiter::new(Duration::from_secs(60)));
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..1000).filter(|_| r.allow(LogKind::Retry)).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 1);
    }
}
