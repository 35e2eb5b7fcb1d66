//! The bound on request bytes being received and decoded at once, shared by both receivers:
//! each body frame takes permits from one semaphore as it arrives, and a request that finds
//! none left fails before it is decoded or acknowledged (HTTP 429, gRPC UNAVAILABLE; both
//! retryable). Permits go back when the request's body is dropped.
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a body frame was refused.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum Refused {
    #[error(
        "the store is decoding {limit} bytes of requests already (store.max_ingest_bytes_in_flight); retry later"
    )]
    OverBudget { limit: usize },
    #[error("request body exceeds {max} bytes")]
    TooLarge { max: usize },
}

/// The shared budget.
#[derive(Debug, Clone)]
pub struct InFlight {
    sem: Arc<Semaphore>,
    limit: usize,
}

impl InFlight {
    pub fn new(limit: usize) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))),
            limit,
        }
    }

    /// Take `n` bytes of the budget (a request bigger than the whole budget takes all of it).
    pub fn try_take(&self, n: usize) -> Result<Option<OwnedSemaphorePermit>, Refused> {
        let n = u32::try_from(n.min(self.limit)).unwrap_or(u32::MAX);
        if n == 0 {
            return Ok(None);
        }
        self.sem
            .clone()
            .try_acquire_many_owned(n)
            .map(Some)
            .map_err(|_| Refused::OverBudget { limit: self.limit })
    }

    /// Wrap a body of at most `max` bytes so its frames are counted against the budget; `refuse` turns a refusal
    /// into the error its reader expects. The permits stay in the returned [`Held`] (and its
    /// clones) until the last of them and the body are dropped, so a handler keeps them
    /// through decoding and ingest.
    pub fn count<B>(
        &self,
        inner: B,
        max: usize,
        refuse: fn(Refused) -> BoxError,
    ) -> (Counted<B>, Held) {
        let held = Held::default();
        (
            Counted {
                inner,
                budget: self.clone(),
                held: held.clone(),
                seen: 0,
                max,
                refuse,
            },
            held,
        )
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Permits taken for one request.
#[derive(Debug, Clone, Default)]
pub struct Held(Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>);

impl Held {
    pub fn add(&self, p: OwnedSemaphorePermit) {
        let mut h = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &mut *h {
            Some(h) => h.merge(p),
            None => *h = Some(p),
        }
    }
}

/// A body whose bytes hold permits of the budget.
pub struct Counted<B> {
    inner: B,
    budget: InFlight,
    held: Held,
    /// Body bytes so far, and the most accepted.
    seen: usize,
    max: usize,
    refuse: fn(Refused) -> BoxError,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                let n = f.data_ref().map_or(0, Bytes::len);
                this.seen = this.seen.saturating_add(n);
                if this.seen > this.max {
                    return Poll::Ready(Some(Err((this.refuse)(Refused::TooLarge {
                        max: this.max,
                    }))));
                }
                match this.budget.try_take(n) {
                    Ok(Some(p)) => this.held.add(p),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Some(Err((this.refuse)(e)))),
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
