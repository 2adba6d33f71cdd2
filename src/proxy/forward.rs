//! Moving bytes between an accepted client connection and its endpoint, both ways, until both
//! sides have finished: half-close is passed on (EOF from one side becomes a write shutdown
//! towards the other) so request/response protocols that close their sending side still work.
//!
//! Three ways to do it, measured by `benches/proxy.rs`: `splice(2)` through a pipe per
//! direction, so the payload never enters user space (Linux only); a plain copy through a
//! fixed buffer per direction; and `Auto`, which copies until one read fills the whole buffer
//! (a bulk transfer) and splices from then on, so small request/response traffic does not pay
//! for pipes and bulk traffic is not copied. Owns no connection bookkeeping; never allocates
//! more than the buffers or pipes of one connection.

use serde::{Deserialize, Serialize};
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// How a TCP connection's bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Copy through a buffer; once a read fills it, splice the rest of that direction (Linux).
    Auto,
    /// splice(2) through a kernel pipe per direction from the first byte (Linux).
    Splice,
    /// Read into and write from a user-space buffer per direction.
    Copy,
}

/// Bytes of user-space buffer per direction, allocated uninitialised when the direction starts:
/// neither zeroed nor moved with the connection's task.
pub const COPY_BUFFER: usize = 16 * 1024;

/// Bytes a connection's client sent before it was forwarded (read while connecting), in the
/// buffer that carries that direction from then on.
pub struct Prefetched {
    buf: Box<[MaybeUninit<u8>]>,
    len: usize,
}

impl Prefetched {
    /// Reads what `client` (a fresh, not yet registered socket) already holds, without waiting:
    /// clients usually send their request right after connecting, so it is often there by the
    /// time the connection is accepted, and forwarding it straight away saves a turn of the event
    /// loop (and the wake-up it costs). `Ok(None)` when nothing was there (or EOF: reading again
    /// says so again), and for `Splice`, which never reads into user space.
    pub fn read(
        client: &impl std::os::fd::AsRawFd,
        how: Forwarding,
    ) -> io::Result<Option<Prefetched>> {
        if how == Forwarding::Splice && cfg!(target_os = "linux") {
            return Ok(None);
        }
        let mut buf = Box::<[u8]>::new_uninit_slice(COPY_BUFFER);
        match recv(client.as_raw_fd(), &mut buf) {
            Ok(0) => Ok(None),
            Ok(len) => Ok(Some(Prefetched { buf, len })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Prefetched {
    /// `prefix` (a PROXY protocol header) followed by what the client sent already, to go out
    /// in one write.
    pub fn behind(prefix: &[u8], first: Option<Prefetched>) -> Prefetched {
        let had = first.as_ref().map_or(0, |p| p.len);
        let len = prefix.len() + had;
        let mut buf = Box::<[u8]>::new_uninit_slice(COPY_BUFFER.max(len));
        for (slot, byte) in buf.iter_mut().zip(prefix) {
            slot.write(*byte);
        }
        if let Some(p) = first {
            // SAFETY: recv initialised the first `p.len` bytes of `p.buf`; the copy goes to
            // the slots after the prefix, inside `buf` (its length is at least `len`).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    p.buf.as_ptr(),
                    buf.as_mut_ptr().add(prefix.len()),
                    p.len,
                );
            }
        }
        Prefetched { buf, len }
    }
}

/// Forwards until both directions reached EOF, or either failed. Returns the bytes moved
/// client-to-endpoint and endpoint-to-client. `first` is what the client sent before.
pub async fn forward(
    client: &TcpStream,
    upstream: &TcpStream,
    how: Forwarding,
    first: Option<Prefetched>,
) -> io::Result<(u64, u64)> {
    let finished = AtomicBool::new(false);
    tokio::try_join!(
        one_way(client, upstream, how, &finished, first),
        one_way(upstream, client, how, &finished, None)
    )
}

/// Moves bytes from `src` to `dst` until EOF on `src`, then passes the EOF on; `first` is what
/// was read from `src` already.
async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    how: Forwarding,
    finished: &AtomicBool,
    first: Option<Prefetched>,
) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    if how == Forwarding::Splice && first.is_none() {
        return splice::one_way(src, dst, 0, finished).await;
    }
    let (mut buf, mut n) = match first {
        Some(p) => (p.buf, p.len),
        None => (Box::<[u8]>::new_uninit_slice(COPY_BUFFER), 0),
    };
    let mut total = 0u64;
    loop {
        if n == 0 {
            n = read(src, &mut buf).await?;
            if n == 0 {
                pass_eof(dst, finished);
                return Ok(total);
            }
        }
        // SAFETY: recv initialised the first n bytes.
        let data = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        write_all(dst, data).await?;
        total += n as u64;
        // Splice from the first byte once what came before it (a PROXY header) is out.
        #[cfg(target_os = "linux")]
        if (how == Forwarding::Auto && n == buf.len()) || how == Forwarding::Splice {
            return splice::one_way(src, dst, total, finished).await;
        }
        n = 0;
    }
}

/// EOF from one side: shut down the sending side towards the other, so it sees the EOF too,
/// unless the other direction already finished, since then both sockets are about to be closed
/// and the close sends the same FIN without a syscall of its own.
fn pass_eof(dst: &TcpStream, finished: &AtomicBool) {
    if !finished.swap(true, Ordering::AcqRel) {
        shutdown_write(dst);
    }
}

/// Reads what `src` has. A read shorter than the buffer took everything the socket held, so
/// the readiness is cleared right away instead of by one more read that would return EAGAIN:
/// a syscall saved per message. Safe with edge-triggered readiness: data arriving later is a
/// new event, and tokio never clears the read-closed flag this way.
async fn read(src: &TcpStream, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    loop {
        let mut got = None;
        let attempt = src.try_io(Interest::READABLE, || {
            let n = recv(src.as_raw_fd(), buf)?;
            got = Some(n);
            drained_if(n, buf.len())
        });
        if let Some(n) = got {
            return Ok(n);
        }
        match attempt {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => readable(src).await?,
            Err(e) => return Err(e),
            Ok(()) => unreachable!("a successful recv sets `got`"),
        }
    }
}

/// recv(2) into possibly uninitialised memory.
fn recv(fd: std::os::fd::RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes (recv only writes, so uninitialised
    // memory is fine); the caller keeps the descriptor open.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Waits for read readiness. Through the stream's single reader slot rather than
/// `TcpStream::readable`, whose waiter is linked into (and out of) a list under a lock on every
/// wait: each side of a connection has one reader (and one writer), its direction's task.
async fn readable(s: &TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| s.poll_read_ready(cx)).await
}

/// Waits for write readiness, as [`readable`].
async fn writable(s: &TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| s.poll_write_ready(cx)).await
}

/// `Err(WouldBlock)` (which makes `try_io` clear the readiness) when a read of `n` bytes out of
/// `asked` emptied the socket.
fn drained_if(n: usize, asked: usize) -> io::Result<()> {
    if n > 0 && n < asked {
        Err(io::ErrorKind::WouldBlock.into())
    } else {
        Ok(())
    }
}

/// Writes all of `data`. Tries the socket first whatever the event loop last knew of it: a
/// write almost always succeeds, and a socket just registered (or a first write to a fresh
/// endpoint connection) has no readiness recorded yet, so waiting for one would cost a turn
/// of the event loop. Only `EAGAIN` waits, for the readiness the failed attempt cleared.
async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        match send(dst.as_raw_fd(), data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
        if data.is_empty() {
            return Ok(());
        }
    }
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(dst).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// send(2), without SIGPIPE where the platform allows.
fn send(fd: std::os::fd::RawFd, data: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = 0;
    // SAFETY: data is valid for reads of data.len() bytes; the caller keeps fd open.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn shutdown_write(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the borrow. An error (the peer is
    // gone) is noticed by the other direction.
    unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) };
}

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::AtomicBool;
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Most bytes asked of one splice call. The pipe is always emptied before the next fill,
    /// so a fill is bounded by the pipe's capacity anyway; asking for more costs nothing.
    const CHUNK: usize = 1 << 20;

    /// Pipe capacity asked for in bulk mode (`Auto` after a full buffer): fewer syscalls per
    /// byte than the default 64 KiB. Best effort: past the per-user pipe limit the kernel
    /// refuses and the default stays.
    const BULK_PIPE: libc::c_int = 256 * 1024;

    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Pipe {
        fn with_capacity(bytes: libc::c_int) -> io::Result<Pipe> {
            let pipe = Pipe::new()?;
            // SAFETY: plain fcntl on a descriptor we own; failure leaves the default size.
            unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
            Ok(pipe)
        }

        fn new() -> io::Result<Pipe> {
            let mut fds = [0 as RawFd; 2];
            // SAFETY: fds is a valid array of two ints for pipe2 to fill.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both are open descriptors owned by nobody else.
            Ok(unsafe {
                Pipe {
                    read: OwnedFd::from_raw_fd(fds[0]),
                    write: OwnedFd::from_raw_fd(fds[1]),
                }
            })
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: plain syscall on descriptors the caller keeps open; null offsets mean "use
        // the file position", the only option for sockets and pipes.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Moves bytes from `src` to `dst` through a pipe of its own until EOF on `src`, then
    /// passes the EOF on. `total` is what was already moved.
    pub async fn one_way(
        src: &TcpStream,
        dst: &TcpStream,
        mut total: u64,
        finished: &AtomicBool,
    ) -> io::Result<u64> {
        // Called at the start (`Splice`) or once a direction proved bulky (`Auto`).
        let pipe = if total == 0 {
            Pipe::new()?
        } else {
            Pipe::with_capacity(BULK_PIPE)?
        };
        loop {
            // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
            let filled = loop {
                // Unlike recv, a short splice does not prove the socket empty (the pipe can run
                // out of slots before bytes), so only EAGAIN clears the readiness.
                match src.try_io(Interest::READABLE, || {
                    splice(src.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
                }) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => super::readable(src).await?,
                    Err(e) => return Err(e),
                }
            };
            if filled == 0 {
                super::pass_eof(dst, finished);
                return Ok(total);
            }
            let mut left = filled;
            while left > 0 {
                match dst.try_io(Interest::WRITABLE, || {
                    splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), left)
                }) {
                    Ok(n) => left -= n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => super::writable(dst).await?,
                    Err(e) => return Err(e),
                }
            }
            total += filled as u64;
        }
    }
}
