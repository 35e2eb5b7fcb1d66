//! Every query route runs through [`within_limits`]: a slot among
//! `store.search.max_concurrent_queries` (waited for until the deadline, then 429), a
//! [`Budget`] with the deadline and result-memory cap, the blocking pool (never the async
//! workers that answer `/ready` and ingest), and cancellation when the handler's future is
//! dropped because the client went away.
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::Response,
};

use super::text;
use crate::{
    Store,
    metrics::Metrics,
    query::budget::{Budget, QueryError},
};

fn count_stop(store: &Store, reason: &str) {
    store
        .metrics()
        .queries_stopped
        .get_or_create(&Metrics::labels(&[("reason", reason)]))
        .inc();
}

/// The response for a query that stopped, counted by reason where it stopped (a cancelled
/// query has no handler left to count it).
pub fn stopped(store: &Store, e: &QueryError) -> Response {
    let (code, reason) = match e {
        QueryError::Deadline(_) => (StatusCode::GATEWAY_TIMEOUT, "deadline"),
        QueryError::Cancelled => (StatusCode::GATEWAY_TIMEOUT, "cancelled"),
        QueryError::TooLarge { .. } => (StatusCode::BAD_REQUEST, "too_large"),
        QueryError::Store(_) => return super::internal(e),
    };
    count_stop(store, reason);
    text(code, e)
}

/// Decrements the in-flight gauge however the query ends.
struct Inflight(Store);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.metrics().queries_inflight.dec();
    }
}

/// Run `f` on the blocking pool within the store's query limits.
pub async fn within_limits<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store, &mut Budget) -> Result<T, Response> + Send + 'static,
) -> Result<T, Response> {
    let cfg = &store.config().search;
    let mut budget = Budget::new(cfg.query_timeout, cfg.max_result_bytes);
    let slots = store.inner.query_slots.clone();
    let Ok(Ok(permit)) = tokio::time::timeout(cfg.query_timeout, slots.acquire_owned()).await
    else {
        count_stop(store, "busy");
        let mut r = text(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} queries are already running (store.search.max_concurrent_queries); retry later",
                cfg.max_concurrent_queries
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(r);
    };
    let guard = budget.cancel_on_drop();
    store.metrics().queries_inflight.inc();
    let _inflight = Inflight(store.clone());
    let st = store.clone();
    let res = tokio::task::spawn_blocking(move || {
        let r = f(&st, &mut budget);
        drop(permit);
        r
    })
    .await;
    guard.disarm();
    res.unwrap_or_else(|e| Err(super::internal(&e)))
}
