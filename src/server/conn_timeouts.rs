//! Deadlines for slow and idle clients, one connection at a time.
//!
//! hyper 1's own `header_read_timeout` starts when a connection opens or
//! goes idle, so it cannot tell an idle keep-alive connection from a client
//! sending its request head slowly. Here the two phases are timed apart:
//! - idle: no request in flight and no byte of the next one received, from
//!   the connection's opening or the end of its last response;
//! - reading a head: from the first byte of a request to its last header.
//!
//! A request in flight (head parsed, response not yet written) has no
//! deadline here: a generation may stream for minutes.
//!
//! [`Activity`] is the shared state. [`WatchedStream`] notes bytes read;
//! the service notes requests with a [`RequestGuard`], which the response
//! body ([`GuardedBody`]) holds until hyper drops it after the last frame;
//! [`Activity::expired`] resolves once the current phase's deadline passes.
//! The accept loop then drops the connection (no response: the client has
//! not sent a complete request to answer).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::body::Body;

/// The two deadlines; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTimeouts {
    /// From the first byte of a request to the end of its head.
    pub header_read: Option<Duration>,
    /// With no request in flight, until the first byte of the next one.
    pub idle: Option<Duration>,
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    HeaderRead,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle { since: Instant },
    ReadingHead { since: Instant },
    Busy { num_requests: usize },
}

/// What one connection is doing, as its stream and its service see it.
#[derive(Debug)]
pub struct Activity {
    timeouts: ConnectionTimeouts,
    phase: Mutex<Phase>,
    /// Woken on every phase change: the deadline may have moved.
    changed: Notify,
}

impl Activity {
    pub fn new(timeouts: ConnectionTimeouts) -> Arc<Self> {
        Arc::new(Self {
            timeouts,
            phase: Mutex::new(Phase::Idle { since: Instant::now() }),
            changed: Notify::new(),
        })
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = change(*phase);
        // One waiter (the watchdog): a stored permit covers a change made
        // while it was not yet waiting.
        self.changed.notify_one();
    }

    fn bytes_received(&self) {
        let idle = matches!(*self.phase.lock().unwrap_or_else(PoisonError::into_inner), Phase::Idle { .. });
        if idle {
            self.update(|phase| match phase {
                Phase::Idle { .. } => Phase::ReadingHead { since: Instant::now() },
                other => other,
            });
        }
    }

    /// A request head was parsed; its response body holds the guard.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.update(|phase| match phase {
            Phase::Busy { num_requests } => Phase::Busy { num_requests: num_requests + 1 },
            Phase::Idle { .. } | Phase::ReadingHead { .. } => Phase::Busy { num_requests: 1 },
        });
        RequestGuard { activity: self.clone() }
    }

    fn request_finished(&self) {
        self.update(|phase| match phase {
            Phase::Busy { num_requests } if num_requests > 1 => {
                Phase::Busy { num_requests: num_requests - 1 }
            }
            _ => Phase::Idle { since: Instant::now() },
        });
    }

    fn deadline(&self) -> Option<(Instant, Expiry)> {
        match *self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Idle { since } => Some((since + self.timeouts.idle?, Expiry::Idle)),
            Phase::ReadingHead { since } => Some((since + self.timeouts.header_read?, Expiry::HeaderRead)),
            Phase::Busy { .. } => None,
        }
    }

    /// Resolves when the connection has been idle, or reading one request
    /// head, for longer than its timeout.
    pub async fn expired(&self) -> Expiry {
        loop {
            match self.deadline() {
                Some((deadline, expiry)) if deadline <= Instant::now() => return expiry,
                Some((deadline, _)) => tokio::select! {
                    () = tokio::time::sleep_until(deadline.into()) => {}
                    () = self.changed.notified() => {}
                },
                None => self.changed.notified().await,
            }
        }
    }
}

/// Marks one request in flight until dropped.
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.request_finished();
    }
}

/// A response body that keeps its request in flight until hyper drops it,
/// which it does after writing the last frame.
pub struct GuardedBody {
    body: Body,
    _guard: RequestGuard,
}

impl GuardedBody {
    pub fn new(body: Body, guard: RequestGuard) -> Self {
        Self { body, _guard: guard }
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A stream that tells its [`Activity`] when bytes arrive.
pub struct WatchedStream<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> WatchedStream<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_received();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time, short: tokio's paused clock needs a feature that would
    // build tokio (and hyper above it) a second time for tests.
    const IDLE: Duration = Duration::from_millis(100);
    const HEADER_READ: Duration = Duration::from_millis(300);

    fn activity() -> Arc<Activity> {
        Activity::new(ConnectionTimeouts { idle: Some(IDLE), header_read: Some(HEADER_READ) })
    }

    #[tokio::test]
    async fn an_idle_connection_expires_after_the_idle_timeout() {
        let activity = activity();
        let started = Instant::now();
        assert_eq!(activity.expired().await, Expiry::Idle);
        let waited = started.elapsed();
        assert!(waited >= IDLE && waited < HEADER_READ, "{waited:?}");
    }

    #[tokio::test]
    async fn a_first_byte_switches_to_the_header_deadline() {
        let activity = activity();
        let started = Instant::now();
        activity.bytes_received();
        assert_eq!(activity.expired().await, Expiry::HeaderRead);
        assert!(started.elapsed() >= HEADER_READ, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_request_in_flight_has_no_deadline_and_its_end_restarts_idle() {
        let activity = activity();
        activity.bytes_received();
        let guard = activity.request_started();
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { activity.expired().await }
        });
        tokio::time::sleep(2 * HEADER_READ).await;
        assert!(!watchdog.is_finished());
        let finished = Instant::now();
        drop(guard);
        assert_eq!(watchdog.await.ok(), Some(Expiry::Idle));
        let waited = finished.elapsed();
        assert!(waited >= IDLE && waited < HEADER_READ, "{waited:?}");
    }

    #[tokio::test]
    async fn without_limits_nothing_expires() {
        let activity = Activity::new(ConnectionTimeouts { idle: None, header_read: None });
        let expired = tokio::time::timeout(2 * HEADER_READ, activity.expired()).await;
        assert!(expired.is_err());
    }
}
