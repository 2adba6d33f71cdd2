//! UDP services: per-client flows. The first datagram from a client address picks an endpoint
//! and opens a socket connected to it; the client's datagrams go out on that socket and the
//! endpoint's replies come back from the service's own socket, so the client sees the address it
//! sent to. A flow silent both ways for the idle timeout is forgotten.
//!
//! Bounded: one datagram buffer per direction per service (replies share one buffer under a
//! lock never held across an await), at most `max_udp_flows` flows; replies that cannot be
//! sent at once are dropped, as UDP allows, rather than queued.

use super::{closed_after_grace, ActiveGuard, Claim, Service, Shared};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::task::{AbortHandle, JoinSet};

/// Largest UDP payload.
const DATAGRAM: usize = 65_535;

/// Binds the service socket, not yet registered with an event loop.
pub(super) fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

struct Flow {
    upstream: UdpSocket,
    /// The endpoint `upstream` is connected to.
    addr: SocketAddr,
    /// Counted active on it for as long as the flow lives (until its last holder lets go).
    endpoint: Claim,
    /// Milliseconds after `Flows::epoch` of the last datagram either way.
    last_seen: AtomicU64,
}

struct Flows {
    map: Mutex<HashMap<SocketAddr, (Arc<Flow>, AbortHandle)>>,
    epoch: Instant,
    reply: Mutex<Vec<u8>>,
}

impl Flows {
    fn touch(&self, flow: &Flow) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        flow.last_seen.store(ms, Ordering::Relaxed);
    }

    fn idle_deadline(&self, flow: &Flow, idle: Duration) -> Instant {
        self.epoch + Duration::from_millis(flow.last_seen.load(Ordering::Relaxed)) + idle
    }

    /// Forgets `client`'s flow if it is still `flow` (a newer one may have replaced it).
    fn remove(&self, client: SocketAddr, flow: &Arc<Flow>) {
        let mut map = self.map.lock().expect("flows lock");
        if map.get(&client).is_some_and(|(f, _)| Arc::ptr_eq(f, flow)) {
            map.remove(&client);
        }
    }
}

/// Serves one UDP service until aborted; its flows end with it (they live in its `JoinSet`).
pub(super) async fn serve(socket: UdpSocket, service: Arc<Service>, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let flows = Arc::new(Flows {
        map: Mutex::new(HashMap::new()),
        epoch: Instant::now(),
        reply: Mutex::new(vec![0; DATAGRAM]),
    });
    let mut tasks = JoinSet::new();
    let mut buf = vec![0; DATAGRAM];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(_) => {
                // Errors on an unconnected socket are transient (memory); do not spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        // Reap finished flow tasks so the set stays as small as the live flows.
        while tasks.try_join_next().is_some() {}
        let existing = flows
            .map
            .lock()
            .expect("flows lock")
            .get(&client)
            .map(|(f, a)| (f.clone(), a.clone()));
        let (flow, abort) = match existing {
            Some(existing) => existing,
            None => match open_flow(&service, &shared, &flows, client) {
                Some(flow) => {
                    service.metrics.connections.inc();
                    let abort = tasks.spawn(relay_replies(
                        flow.clone(),
                        client,
                        Arc::downgrade(&socket),
                        flows.clone(),
                        service.clone(),
                        shared.clone(),
                    ));
                    flows
                        .map
                        .lock()
                        .expect("flows lock")
                        .insert(client, (flow.clone(), abort.clone()));
                    (flow, abort)
                }
                None => {
                    service.metrics.rejected(&service);
                    continue;
                }
            },
        };
        flows.touch(&flow);
        // Awaits only the socket's first readiness report (a new socket is not yet known
        // writable); a UDP send never waits for the peer.
        match flow.upstream.send(&buf[..n]).await {
            Ok(sent) => {
                service.metrics.bytes_in.inc_by(sent as u64);
            }
            // The endpoint refused an earlier datagram (ICMP port unreachable): end the flow;
            // the client's next datagram is sent to another endpoint.
            Err(_) => {
                service.connect_failed(flow.addr, &flow.endpoint);
                abort.abort();
                flows.remove(client, &flow);
            }
        }
    }
}

/// A new flow for `client`, or `None` when the service is at its flow limit or has no endpoint.
fn open_flow(
    service: &Service,
    shared: &Shared,
    flows: &Flows,
    client: SocketAddr,
) -> Option<Arc<Flow>> {
    if flows.map.lock().expect("flows lock").len() >= shared.limits.max_udp_flows {
        return None;
    }
    let mut tried = Vec::new();
    loop {
        let (addr, claim, _) = service.pick(client.ip(), &tried)?;
        match connected_socket(addr) {
            Ok(upstream) => {
                return Some(Arc::new(Flow {
                    upstream,
                    addr,
                    endpoint: claim,
                    last_seen: AtomicU64::new(flows.epoch.elapsed().as_millis() as u64),
                }))
            }
            Err(_) => {
                service.connect_failed(addr, &claim);
                tried.push(addr);
            }
        }
    }
}

fn connected_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let any = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    socket.connect(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Relays the endpoint's datagrams back to `client` until the flow idles out, its endpoint
/// drains, the endpoint refuses, or the proxy stops.
async fn relay_replies(
    flow: Arc<Flow>,
    client: SocketAddr,
    service_socket: Weak<UdpSocket>,
    flows: Arc<Flows>,
    service: Arc<Service>,
    shared: Arc<Shared>,
) {
    let _active = ActiveGuard::new(service.clone());
    flow.endpoint.given();
    let idle = shared.limits.udp_idle_timeout;
    let drained = closed_after_grace(flow.endpoint.drain.subscribe());
    tokio::pin!(drained);
    let mut stopping = shared.stopping.subscribe();
    loop {
        let deadline = flows.idle_deadline(&flow, idle);
        tokio::select! {
            ready = flow.upstream.readable() => {
                if ready.is_err() {
                    break;
                }
                let relayed = {
                    let mut buf = flows.reply.lock().expect("reply buffer lock");
                    match flow.upstream.try_recv(&mut buf) {
                        Ok(n) => {
                            if let Some(socket) = service_socket.upgrade() {
                                // A full send buffer drops the reply, as the network could.
                                if socket.try_send_to(&buf[..n], client).is_ok() {
                                    service.metrics.bytes_out.inc_by(n as u64);
                                }
                            }
                            Ok(true)
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                        Err(e) => Err(e),
                    }
                };
                match relayed {
                    Ok(true) => flows.touch(&flow),
                    Ok(false) => {}
                    Err(_) => {
                        service.connect_failed(flow.addr, &flow.endpoint);
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if Instant::now() >= flows.idle_deadline(&flow, idle) {
                    break;
                }
            }
            _ = &mut drained => break,
            _ = stopping.wait_for(Option::is_some) => break,
        }
    }
    flows.remove(client, &flow);
}
