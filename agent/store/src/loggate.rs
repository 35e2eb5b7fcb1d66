//! At most one log line per interval for a failure that repeats every maintenance tick (a
//! failing block write, compaction or fsync), saying how many were held back meanwhile.
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// How often a repeating failure is logged.
pub const INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct LogGate {
    interval: Duration,
    /// When a line was last let through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Default for LogGate {
    fn default() -> Self {
        Self::new(INTERVAL)
    }
}

impl LogGate {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back)` when a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    pub fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match st.0 {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                st.1 += 1;
                None
            }
            _ => {
                let held = st.1;
                *st = (Some(now), 0);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let g = LogGate::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(g.allow_at(t0), Some(0));
        // Four times a second for ten seconds: all held back.
        for i in 1..=40 {
            assert_eq!(g.allow_at(t0 + Duration::from_millis(250 * i)), None);
        }
        assert_eq!(g.allow_at(t0 + Duration::from_secs(30)), Some(40));
        assert_eq!(g.allow_at(t0 + Duration::from_secs(31)), None);
    }
}
