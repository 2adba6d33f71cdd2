//! TCP services: the accept loop of one listener and the life of one forwarded connection
//! (pick, connect with a timeout and fail over, forward, drain). Never holds a lock across an
//! await; never forwards a connection it has no permit for, and holds at most one accepted
//! connection per accept loop while waiting for one.

use super::{closed_after_grace, forward, ActiveGuard, Claim, Service, Shared};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

/// Pending connections the kernel may hold for us, while every permit is taken or between
/// accepts. Linux caps it at `net.core.somaxconn`.
const BACKLOG: libc::c_int = 4096;

/// Binds a listening socket, not yet registered with any event loop: each proxy thread
/// registers its own duplicate of it.
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    // std sets SO_REUSEADDR, so a restarted proxy can bind again while old connections sit in
    // TIME_WAIT. Not SO_REUSEPORT: that would let a second proxy bind the same port and
    // silently split the traffic instead of reporting the port as taken.
    let listener = std::net::TcpListener::bind(addr)?;
    // std listens with a backlog of 128; listen(2) again only raises it.
    // SAFETY: plain syscall on a descriptor `listener` owns.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Accepted connections inherit TCP_NODELAY from the listener on Linux: one setsockopt per
    // service instead of one per connection.
    #[cfg(target_os = "linux")]
    set_nodelay(&listener)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[cfg(target_os = "linux")]
fn set_nodelay(listener: &std::net::TcpListener) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid option value of the size given, on a descriptor `listener` owns.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Accepts on event-loop thread `me` until aborted.
///
/// Accepted sockets are registered with an event loop only once their thread is chosen (in
/// their task, on that thread), so a connection handed to another thread costs a wake-up of
/// that thread and no epoll deregistration.
pub(super) async fn accept_loop(
    listener: AsyncFd<std::net::TcpListener>,
    service: Arc<Service>,
    shared: Arc<Shared>,
    me: usize,
) {
    loop {
        let (client, peer) = match accept(&listener).await {
            Ok(accepted) => accepted,
            // Out of descriptors or memory: give the system a moment instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // At the limit, this loop holds the one connection it accepted until a permit frees,
        // and further clients wait in the backlog. Taking the permit before accepting would
        // be tidier but lets idle accept loops (one per service per thread) sit on permits,
        // and with enough services starve the others.
        let Ok(permit) = shared.connections.clone().acquire_owned().await else {
            return;
        };
        let (service, shared2) = (service.clone(), shared.clone());
        let thread = shared.thread_for_new_connection(me);
        shared.load[thread].fetch_add(1, Ordering::Relaxed);
        let task = async move {
            // Registers with the event loop of the thread this runs on, once connected.
            serve(client, peer, service, &shared2).await;
            shared2.load[thread].fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        };
        if thread == me {
            tokio::spawn(task);
        } else {
            shared.loops[thread].spawn(task);
        }
    }
}

/// Accepts one connection: a non-blocking socket not registered with any event loop yet.
async fn accept(
    listener: &AsyncFd<std::net::TcpListener>,
) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        // WouldBlock clears the readiness and waits again.
        if let Ok(accepted) = ready.try_io(|l| accept_nonblocking(l.get_ref())) {
            return accepted;
        }
    }
}

/// accept4(2) with the new socket non-blocking and close-on-exec in the same call (std's
/// accept would need one more syscall to make it non-blocking).
#[cfg(target_os = "linux")]
fn accept_nonblocking(
    listener: &std::net::TcpListener,
) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut raw: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `raw` is valid for writes of `len` bytes; the descriptor is open.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            (&mut raw as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: accept4 returned a new descriptor that nobody else owns.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let peer = socket_addr(&raw).ok_or_else(|| std::io::Error::other("unknown address family"))?;
    Ok((stream, peer))
}

#[cfg(not(target_os = "linux"))]
fn accept_nonblocking(
    listener: &std::net::TcpListener,
) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept()?;
    stream.set_nonblocking(true)?;
    Ok((stream, peer))
}

/// The address in a C socket address filled by the kernel.
#[cfg(target_os = "linux")]
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let raw: *const libc::sockaddr_storage = storage;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let a = unsafe { &*raw.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                std::net::Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()).into(),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*raw.cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

async fn serve(
    client: std::net::TcpStream,
    peer: SocketAddr,
    service: Arc<Service>,
    shared: &Shared,
) {
    let _active = ActiveGuard::new(service.clone());
    #[cfg(not(target_os = "linux"))]
    let _ = client.set_nodelay(true);
    service.metrics.connections.inc();
    let how = shared.limits.forwarding;
    // Before connecting, so a request already there goes out as soon as the endpoint answers.
    // A client that reset already needs no endpoint.
    let Ok(mut first) = forward::Prefetched::read(&client, how) else {
        return;
    };
    let Some((upstream, claim)) = connect(&service, peer, shared).await else {
        service.metrics.rejected(&service);
        return;
    };
    if let Some(version) = service.proxy_protocol() {
        // The client's address, and the one it reached the proxy on, before any of its bytes
        // (in the same write as those it sent already).
        let Ok(local) = client.local_addr() else {
            return;
        };
        let header = super::header::header(version, peer, local);
        first = Some(forward::Prefetched::behind(&header, first));
    }
    // Registered with this thread's event loop only now: until here nothing waited on it.
    let Ok(client) = TcpStream::from_std(client) else {
        return;
    };
    let drain = claim.drain.subscribe();
    claim.given();
    let stopping = shared.stopping.subscribe();
    tokio::select! {
        moved = forward::forward(&client, &upstream, how, first) => {
            // Counted when a connection ends well (a cut one's bytes are not told).
            if let Ok((sent, received)) = moved {
                service.metrics.bytes_in.inc_by(sent);
                service.metrics.bytes_out.inc_by(received);
            }
        }
        _ = closed_after_grace(drain) => {}
        _ = closed_after_grace(stopping) => {}
    }
}

/// Connects to an endpoint for `peer`, trying each endpoint at most once: a failed or timed-out
/// connect puts that endpoint in back-off and moves on to the next.
async fn connect(
    service: &Service,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(TcpStream, Claim)> {
    // Allocates only once a connect has failed.
    let mut tried: Vec<SocketAddr> = Vec::new();
    loop {
        let (addr, claim, was_dead) = service.pick(peer.ip(), &tried)?;
        match connect_to(addr, shared.limits.connect_timeout).await {
            Ok(upstream) => {
                if was_dead {
                    service.connect_succeeded(addr);
                }
                return Some((upstream, claim));
            }
            Err(_) => {
                service.connect_failed(addr, &claim);
                tried.push(addr);
            }
        }
    }
}

/// Connects to `addr` with TCP_NODELAY set, giving up after `limit`.
///
/// On loopback (and often on a LAN) the handshake is over by the time a non-blocking
/// connect(2) returns, and a refusal is known too: both are read from the socket at once
/// (getpeername(2) succeeds only once connected; then SO_ERROR tells a refusal from a handshake
/// under way). Only a handshake under way waits, for writability, under a timer: the common
/// case takes no timer (whose insertion also wakes the event loop through its eventfd) and no
/// turn of the event loop.
#[cfg(target_os = "linux")]
async fn connect_to(addr: SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns; closed on every early return.
    let socket = std::net::TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // Before the connect, so it holds from the first segment.
    socket.set_nodelay(true)?;
    let (raw, len) = raw_sockaddr(addr);
    // SAFETY: `raw` holds a socket address of `len` bytes; the descriptor is open.
    let r = unsafe { libc::connect(fd, (&raw as *const libc::sockaddr_storage).cast(), len) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        if socket.peer_addr().is_err() {
            // Not connected: refused already, or the handshake is under way.
            if let Some(e) = socket.take_error()? {
                return Err(e);
            }
            let stream = TcpStream::from_std(socket)?;
            let handshake = async {
                std::future::poll_fn(|cx| stream.poll_write_ready(cx)).await?;
                match stream.take_error()? {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            };
            return match tokio::time::timeout(limit, handshake).await {
                Ok(Ok(())) => Ok(stream),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            };
        }
    }
    TcpStream::from_std(socket)
}

#[cfg(not(target_os = "linux"))]
async fn connect_to(addr: SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
    let upstream = tokio::time::timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let _ = upstream.set_nodelay(true);
    Ok(upstream)
}

/// `addr` as the C socket address connect(2) takes.
#[cfg(target_os = "linux")]
fn raw_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let at = (&mut storage as *mut libc::sockaddr_storage).cast();
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in.
            unsafe { std::ptr::write(at, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in6.
            unsafe { std::ptr::write(at.cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
