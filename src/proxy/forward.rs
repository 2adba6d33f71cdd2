//! Moving bytes between an accepted client connection and its endpoint, both ways, until both
//! sides have finished: half-close is passed on (EOF from one side becomes a write shutdown
//! towards the other) so request/response protocols that close their sending side still work.
//!
//! Two ways to do it: `splice(2)` through a pipe per direction, so the payload never enters
//! user space (Linux only), and `tokio::io::copy_bidirectional` with fixed buffers. Owns no
//! connection bookkeeping; never allocates more than the pipes or buffers of one connection.

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

/// How a TCP connection's bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// splice(2) through a kernel pipe per direction (Linux); `Copy` elsewhere.
    Splice,
    /// Read into and write from a user-space buffer per direction.
    Copy,
}

/// Bytes of user-space buffer per direction for `Forwarding::Copy`.
pub const COPY_BUFFER: usize = 16 * 1024;

/// Forwards until both directions reached EOF, or either failed. Returns the bytes moved
/// client-to-endpoint and endpoint-to-client.
pub async fn forward(
    mut client: TcpStream,
    mut upstream: TcpStream,
    how: Forwarding,
) -> std::io::Result<(u64, u64)> {
    #[cfg(target_os = "linux")]
    if how == Forwarding::Splice {
        return splice::forward(&client, &upstream).await;
    }
    let _ = how;
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, COPY_BUFFER, COPY_BUFFER)
        .await
}

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Most bytes asked of one splice call: the default pipe capacity (16 pages), so a full
    /// pipe is drained before the next read and a splice into it never blocks half-way.
    const CHUNK: usize = 64 * 1024;

    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Pipe {
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

    pub async fn forward(client: &TcpStream, upstream: &TcpStream) -> io::Result<(u64, u64)> {
        let (up, down) = (Pipe::new()?, Pipe::new()?);
        tokio::try_join!(
            one_way(client, upstream, &up),
            one_way(upstream, client, &down)
        )
    }

    /// Moves bytes from `src` to `dst` through `pipe` until EOF on `src`, then shuts down
    /// `dst`'s sending side so the peer sees the same EOF.
    async fn one_way(src: &TcpStream, dst: &TcpStream, pipe: &Pipe) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
            let filled = loop {
                src.readable().await?;
                match src.try_io(Interest::READABLE, || {
                    splice(src.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
                }) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            };
            if filled == 0 {
                // SAFETY: dst's descriptor is open for the duration of the borrow.
                unsafe { libc::shutdown(dst.as_raw_fd(), libc::SHUT_WR) };
                return Ok(total);
            }
            let mut left = filled;
            while left > 0 {
                // Try first: the send buffer usually has room, and waiting for readiness
                // would cost a trip through the reactor.
                match dst.try_io(Interest::WRITABLE, || {
                    splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), left)
                }) {
                    Ok(n) => left -= n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                    Err(e) => return Err(e),
                }
            }
            total += filled as u64;
        }
    }
}
