//! Listener hygiene for every server drover opens (the status API, the service proxy): slow
//! and idle clients must not hold a listener hostage.
//!
//! A [`Listener`] admits connections under three rules:
//! - **header timeout**: a client that has started sending a request (or a first chunk of
//!   anything) must finish it within `header_timeout`, so a client dribbling bytes is closed;
//! - **idle timeout**: a connection on which nothing arrives for `idle_timeout` while no
//!   request is being handled is closed;
//! - **connection limit**: at most `max_connections` at once; when full, a newcomer still gets
//!   in by evicting the connection that has been idle the longest (so health checks are served
//!   even while idle clients fill every slot); only when every slot is busy handling a request
//!   is the newcomer refused.
//!
//! Protocol code wraps the stream in [`Tracked`] (counts what arrives), marks request handling
//! with [`Conn::busy`] and races its connection future against [`Conn::closed`]. This module
//! knows nothing about HTTP; it never reads or writes a byte itself.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long clients may take and how many may be connected.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Why [`Conn::closed`] asks the connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    HeaderTimeout,
    IdleTimeout,
    /// Evicted to make room for a newer connection.
    Evicted,
}

/// Admits connections and keeps the registry the limit and eviction work from.
#[derive(Debug)]
pub struct Listener {
    limits: Limits,
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct ConnState {
    activity: Mutex<Activity>,
    /// Woken on eviction and when a request finishes (timers restart).
    wake: Notify,
}

#[derive(Debug, Clone, Copy)]
struct Activity {
    /// When the connection started waiting for its next request.
    waiting_since: Instant,
    /// Whether anything arrived since then.
    received: bool,
    /// Requests being handled now.
    busy: u32,
    evicted: bool,
}

impl Listener {
    pub fn new(limits: Limits) -> Arc<Listener> {
        Arc::new(Listener {
            limits,
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Connections registered now.
    pub fn connections(&self) -> usize {
        self.conns.lock().expect("registry").len()
    }

    /// Registers a new connection, evicting the longest-idle one when full. `None`: every slot
    /// is handling a request; the caller closes the newcomer.
    pub fn admit(self: &Arc<Self>) -> Option<Conn> {
        let mut conns = self.conns.lock().expect("registry");
        if conns.len() >= self.limits.max_connections {
            let oldest_idle = conns
                .iter()
                .filter_map(|(id, c)| {
                    let a = *c.activity.lock().expect("activity");
                    (a.busy == 0).then_some((a.waiting_since, *id))
                })
                .min();
            let (_, id) = oldest_idle?;
            let evicted = conns.remove(&id).expect("listed");
            evicted.activity.lock().expect("activity").evicted = true;
            evicted.wake.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            activity: Mutex::new(Activity {
                waiting_since: Instant::now(),
                received: false,
                busy: 0,
                evicted: false,
            }),
            wake: Notify::new(),
        });
        conns.insert(id, state.clone());
        Some(Conn {
            id,
            state,
            listener: Arc::downgrade(self),
        })
    }
}

/// One admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    state: Arc<ConnState>,
    listener: Weak<Listener>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(l) = self.listener.upgrade() {
            l.conns.lock().expect("registry").remove(&self.id);
        }
    }
}

/// Marks a request as being handled while it lives; when the last one ends, the connection
/// starts waiting for its next request (and its timers restart).
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut a = self.0.activity.lock().expect("activity");
        a.busy -= 1;
        if a.busy == 0 {
            a.waiting_since = Instant::now();
            a.received = false;
        }
        drop(a);
        self.0.wake.notify_one();
    }
}

impl Conn {
    /// Wraps the connection's stream so that what arrives is seen by the timers.
    pub fn track<IO>(&self, io: IO) -> Tracked<IO> {
        Tracked {
            io,
            state: self.state.clone(),
        }
    }

    /// Call when a request has arrived whole and is being handled.
    pub fn busy(&self) -> Busy {
        self.state.activity.lock().expect("activity").busy += 1;
        Busy(self.state.clone())
    }

    /// Resolves when the connection should be closed: evicted, or a timeout while no request
    /// is being handled. Race the connection's future against it.
    pub async fn closed(&self) -> CloseReason {
        let limits = match self.listener.upgrade() {
            Some(l) => l.limits,
            None => return CloseReason::Evicted,
        };
        loop {
            // Registered before the state is read, so a wake-up in between is not lost.
            let woken = self.state.wake.notified();
            let a = *self.state.activity.lock().expect("activity");
            if a.evicted {
                return CloseReason::Evicted;
            }
            if a.busy > 0 {
                woken.await;
                continue;
            }
            let (limit, reason) = if a.received {
                (limits.header_timeout, CloseReason::HeaderTimeout)
            } else {
                (limits.idle_timeout, CloseReason::IdleTimeout)
            };
            let deadline = a.waiting_since + limit;
            if Instant::now() >= deadline {
                return reason;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// A stream whose reads are reported to its connection's timers.
pub struct Tracked<IO> {
    io: IO,
    state: Arc<ConnState>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let mut a = self.state.activity.lock().expect("activity");
            if !a.received {
                // The header timeout runs from the first byte of a request.
                a.received = true;
                a.waiting_since = Instant::now();
                drop(a);
                self.state.wake.notify_one();
            }
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(600),
            max_connections: max,
        }
    }

    /// How long `closed` took, checked against the expected window.
    async fn closes_after(c: &Conn, reason: CloseReason, at_least: u64) {
        let t = Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(10), c.closed()).await;
        assert_eq!(got.expect("closed in time"), reason);
        assert!(
            t.elapsed() >= Duration::from_millis(at_least),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn idle_and_header_timeouts_close_only_waiting_connections() {
        let l = Listener::new(limits(4));
        let c = l.admit().unwrap();
        closes_after(&c, CloseReason::IdleTimeout, 550).await;
        // A first byte switches to the (shorter) header timeout.
        let (a, mut b) = tokio::io::duplex(64);
        let c = l.admit().unwrap();
        let mut tracked = c.track(a);
        tokio::io::AsyncWriteExt::write_all(&mut b, b"GET")
            .await
            .unwrap();
        let mut buf = [0u8; 8];
        tokio::io::AsyncReadExt::read(&mut tracked, &mut buf)
            .await
            .unwrap();
        closes_after(&c, CloseReason::HeaderTimeout, 150).await;
        // While a request is handled, no timeout applies; after it, the timers restart.
        let c = l.admit().unwrap();
        let busy = c.busy();
        let closed = tokio::time::timeout(Duration::from_millis(900), c.closed()).await;
        assert!(closed.is_err(), "closed while busy");
        drop(busy);
        closes_after(&c, CloseReason::IdleTimeout, 550).await;
    }

    #[tokio::test]
    async fn a_full_listener_evicts_the_longest_idle_and_refuses_only_when_all_are_busy() {
        let l = Listener::new(limits(2));
        let first = l.admit().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = l.admit().unwrap();
        let third = l.admit().unwrap();
        closes_after(&first, CloseReason::Evicted, 0).await;
        assert_eq!(l.connections(), 2);
        let _b2 = second.busy();
        let _b3 = third.busy();
        assert!(l.admit().is_none());
        drop(first);
        assert_eq!(
            l.connections(),
            2,
            "an evicted connection frees no slot twice"
        );
    }
}
