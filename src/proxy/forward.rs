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

/// Bytes of user-space buffer per direction. Part of the connection's task, so it costs no
/// allocation of its own.
pub const COPY_BUFFER: usize = 16 * 1024;

/// Forwards until both directions reached EOF, or either failed. Returns the bytes moved
/// client-to-endpoint and endpoint-to-client.
pub async fn forward(
    client: &TcpStream,
    upstream: &TcpStream,
    how: Forwarding,
) -> io::Result<(u64, u64)> {
    tokio::try_join!(
        one_way(client, upstream, how),
        one_way(upstream, client, how)
    )
}

/// Moves bytes from `src` to `dst` until EOF on `src`, then shuts down `dst`'s sending side so
/// the peer sees the same EOF.
async fn one_way(src: &TcpStream, dst: &TcpStream, how: Forwarding) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    if how == Forwarding::Splice {
        return splice::one_way(src, dst, 0).await;
    }
    let mut buf = [0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        // Try before waiting: after a write the peer's answer is often already there.
        let n = loop {
            match src.try_read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => src.readable().await?,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            shutdown_write(dst);
            return Ok(total);
        }
        write_all(dst, &buf[..n]).await?;
        total += n as u64;
        #[cfg(target_os = "linux")]
        if how == Forwarding::Auto && n == buf.len() {
            return splice::one_way(src, dst, total).await;
        }
    }
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

    /// Moves bytes from `src` to `dst` through a pipe of its own until EOF on `src`, then
    /// shuts down `dst`'s sending side. `total` is what was already moved.
    pub async fn one_way(src: &TcpStream, dst: &TcpStream, mut total: u64) -> io::Result<u64> {
        let pipe = Pipe::new()?;
        loop {
            // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
            let filled = loop {
                match src.try_io(Interest::READABLE, || {
                    splice(src.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
                }) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => src.readable().await?,
                    Err(e) => return Err(e),
                }
            };
            if filled == 0 {
                super::shutdown_write(dst);
                return Ok(total);
            }
            let mut left = filled;
            while left > 0 {
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
