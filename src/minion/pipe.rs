//! The two ends of one SSH channel's bytes inside drover: `ChannelStream`, which tokio and
//! hyper read and write like a socket, and `PipeEnd`, which an I/O thread of the SSH pool
//! (`ssh_pool.rs`) fills from and drains into the channel.
//!
//! The bytes cross in memory under a mutex, not through a socketpair: a channel costs no file
//! descriptor, so a minion costs one (its TCP connection) however many calls are in flight or
//! pooled, and the I/O threads poll only TCP sockets. Each direction holds at most `LIMIT`
//! bytes; beyond that the writer waits (hyper is told Pending, the channel is left unread and
//! its SSH window closes), so memory per channel is bounded.

use std::io;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Bytes one direction may hold before its writer waits.
pub const LIMIT: usize = 256 * 1024;

/// Wakes one pool thread from `poll(2)`: a byte on a socketpair, written only when none is
/// pending, so a burst of writes costs one wake-up.
pub struct Poke {
    socket: UnixStream,
    pending: AtomicBool,
}

impl Poke {
    pub fn new(socket: UnixStream) -> Poke {
        Poke {
            socket,
            pending: AtomicBool::new(false),
        }
    }

    pub fn poke(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            use std::io::Write;
            let _ = (&self.socket).write(&[1]);
        }
    }

    /// Called by the woken thread before it looks at its work: a poke after this wakes it again.
    pub fn rearm(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

#[derive(Default)]
struct State {
    /// Written by hyper, not yet taken by the I/O thread.
    up: Vec<u8>,
    /// From the minion, not yet read by hyper (from `down_read` on).
    down: Vec<u8>,
    down_read: usize,
    /// hyper shut its writing half: the channel gets EOF once `up` is sent.
    up_shut: bool,
    /// The `ChannelStream` was dropped: nobody reads any more.
    local_gone: bool,
    /// The minion sent EOF (or the channel ended): reads return 0 once `down` is read.
    remote_eof: bool,
    /// The session died: reads and writes fail with this.
    broken: Option<String>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

struct Shared {
    state: Mutex<State>,
    poke: Arc<Poke>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A new pipe: the stream for tokio, the end for the I/O thread that `poke` wakes.
pub fn pipe(poke: Arc<Poke>) -> (ChannelStream, PipeEnd) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        poke,
    });
    (
        ChannelStream {
            shared: shared.clone(),
        },
        PipeEnd { shared },
    )
}

/// The tokio side of one SSH channel.
pub struct ChannelStream {
    shared: Arc<Shared>,
}

impl Drop for ChannelStream {
    fn drop(&mut self) {
        self.shared.lock().local_gone = true;
        self.shared.poke.poke();
    }
}

impl tokio::io::AsyncRead for ChannelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.shared.lock();
        let unread = s.down.len() - s.down_read;
        if unread > 0 {
            let n = unread.min(out.remaining());
            out.put_slice(&s.down[s.down_read..s.down_read + n]);
            s.down_read += n;
            let was_full = unread >= LIMIT;
            if s.down_read == s.down.len() {
                s.down.clear();
                s.down_read = 0;
            }
            drop(s);
            if was_full {
                self.shared.poke.poke(); // the I/O thread left the channel unread: room now
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &s.broken {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                e.clone(),
            )));
        }
        if s.remote_eof {
            return Poll::Ready(Ok(()));
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl tokio::io::AsyncWrite for ChannelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.shared.lock();
        if let Some(e) = &s.broken {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e.clone())));
        }
        if s.up_shut || s.remote_eof {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = LIMIT.saturating_sub(s.up.len());
        if room == 0 {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        s.up.extend_from_slice(&data[..n]);
        drop(s);
        self.shared.poke.poke();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.lock().up_shut = true;
        self.shared.poke.poke();
        Poll::Ready(Ok(()))
    }
}

impl hyper_util::client::legacy::connect::Connection for ChannelStream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// What the I/O thread found on the tokio side.
pub struct Taken {
    /// hyper will write no more (shut down or dropped) and everything is taken.
    pub eof: bool,
    /// Nobody will read what the minion sends: the channel can close.
    pub gone: bool,
}

/// The I/O thread's side of one channel.
pub struct PipeEnd {
    shared: Arc<Shared>,
}

impl PipeEnd {
    /// Moves what hyper wrote into `into` (which the caller has finished sending).
    pub fn take_up(&self, into: &mut Vec<u8>) -> Taken {
        let mut s = self.shared.lock();
        into.clear();
        let was_full = s.up.len() >= LIMIT;
        std::mem::swap(&mut s.up, into);
        let taken = Taken {
            eof: (s.up_shut || s.local_gone) && into.is_empty(),
            gone: s.local_gone,
        };
        let writer = was_full.then(|| s.writer.take()).flatten();
        drop(s);
        if let Some(w) = writer {
            w.wake();
        }
        taken
    }

    /// How many bytes from the minion the tokio side can take now (0: leave the channel unread).
    pub fn room(&self) -> usize {
        let s = self.shared.lock();
        if s.local_gone {
            return usize::MAX; // read and drop, so the channel drains to its end
        }
        LIMIT.saturating_sub(s.down.len() - s.down_read)
    }

    /// Hands bytes from the minion to the tokio side (dropped when nobody reads).
    pub fn give_down(&self, data: &[u8]) {
        let mut s = self.shared.lock();
        if s.local_gone {
            return;
        }
        s.down.extend_from_slice(data);
        let reader = s.reader.take();
        drop(s);
        if let Some(w) = reader {
            w.wake();
        }
    }

    /// The minion will send no more.
    pub fn remote_eof(&self) {
        self.end(None);
    }

    /// The session failed: both directions end with `message`.
    pub fn break_with(&self, message: &str) {
        self.end(Some(message.to_string()));
    }

    fn end(&self, broken: Option<String>) {
        let mut s = self.shared.lock();
        s.remote_eof = true;
        if broken.is_some() {
            s.broken = broken;
        }
        let (reader, writer) = (s.reader.take(), s.writer.take());
        drop(s);
        for w in [reader, writer].into_iter().flatten() {
            w.wake();
        }
    }

    /// Is the tokio side gone, with nothing left to send?
    pub fn gone(&self) -> bool {
        self.shared.lock().local_gone
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        // A channel closed without EOF (the session failed, the loop ended): readers must
        // not wait forever.
        let ended = self.shared.lock().remote_eof;
        if !ended {
            self.break_with("ssh channel closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pair() -> (ChannelStream, PipeEnd, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let (stream, end) = pipe(Arc::new(Poke::new(a)));
        (stream, end, b)
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_eof_ends_the_read() {
        let (mut stream, end, _woken) = pair();
        stream.write_all(b"GET /").await.unwrap();
        let mut up = Vec::new();
        let taken = end.take_up(&mut up);
        assert_eq!(up, b"GET /");
        assert!(!taken.eof && !taken.gone);
        end.give_down(b"200 OK");
        end.remote_eof();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"200 OK");
    }

    #[tokio::test]
    async fn a_full_direction_makes_the_writer_wait_until_taken() {
        let (mut stream, end, _woken) = pair();
        let big = vec![7u8; LIMIT + 10];
        let writer = tokio::spawn(async move {
            stream.write_all(&big).await.unwrap();
            stream.shutdown().await.unwrap();
            stream
        });
        let mut total = 0;
        let mut chunk = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let taken = end.take_up(&mut chunk);
            total += chunk.len();
            assert!(
                chunk.len() <= LIMIT,
                "one direction never holds more than LIMIT"
            );
            if taken.eof {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "writer never finished"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(total, LIMIT + 10);
        drop(writer.await.unwrap());
        assert!(end.gone());
    }

    #[tokio::test]
    async fn a_broken_session_fails_the_read_and_pokes_once_per_burst() {
        let (mut stream, end, woken) = pair();
        stream.write_all(b"a").await.unwrap();
        stream.write_all(b"b").await.unwrap();
        use std::io::Read;
        let mut buf = [0u8; 8];
        assert_eq!(
            (&woken).read(&mut buf).unwrap(),
            1,
            "two writes, one wake-up byte"
        );
        end.break_with("ssh session failed: reset");
        let e = stream.read(&mut buf).await.unwrap_err();
        assert!(e.to_string().contains("reset"), "{e}");
    }
}
