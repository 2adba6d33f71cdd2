//! The service proxy: one listener per service on the proxy's address, each TCP connection or
//! UDP flow forwarded to one endpoint chosen by the service's [`picker::Picker`].
//!
//! Owns the listeners, the connections and their counters. Fed whole [`ServiceTable`]s by its
//! caller (`update`), which may come at any time: listeners open and close to match, endpoint
//! sets are swapped without touching established connections, and a removed endpoint drains
//! (no new connections, existing ones closed after a grace period). It never computes
//! endpoints, reads the store or prints: problems are values (`update`'s errors, `status`).
//! A service whose port cannot be bound fails alone and is retried on the next update.
//! Resources are bounded: a global connection semaphore, fixed buffers (or pipes) per
//! connection, one datagram buffer per UDP service, a bounded number of UDP flows.
//!
//! The proxy runs on threads of its own, one current-thread runtime each, so forwarding never
//! waits behind the reconciler's work and a connection's events never hop between threads.

pub mod forward;
pub mod header;
pub mod picker;
pub mod table;
mod tcp;
mod udp;

pub use forward::Forwarding;
pub use picker::{Picker, PickerSettings};
pub use table::{ServiceEntry, ServiceTable};

use crate::model::Protocol;
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// Limits and timeouts of a proxy. `Default` gives the documented values.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TCP connections forwarded at once, over all services. Past it, new connections wait in
    /// the listen backlog until one closes.
    pub max_connections: usize,
    /// How long a connect to one endpoint may take before the next endpoint is tried.
    pub connect_timeout: Duration,
    /// How long connections to a removed endpoint (or of a removed service, or at shutdown)
    /// may continue before they are closed.
    pub drain_grace: Duration,
    /// A UDP flow with no datagram either way for this long is forgotten.
    pub udp_idle_timeout: Duration,
    /// UDP flows (distinct client addresses) per service; datagrams from further clients are
    /// dropped until a flow expires.
    pub max_udp_flows: usize,
    pub picker: PickerSettings,
    pub forwarding: Forwarding,
    /// Event-loop threads. Each runs its own single-threaded tokio runtime and accepts from
    /// every TCP listener; a connection lives on one thread (the accepting one, unless another
    /// carries clearly fewer connections): no hand-offs between threads per event (HAProxy's
    /// model).
    /// UDP services run on the first thread. Default: one per CPU, at most 8.
    pub threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            connect_timeout: Duration::from_secs(1),
            drain_grace: Duration::from_secs(30),
            udp_idle_timeout: Duration::from_secs(60),
            max_udp_flows: 1024,
            picker: PickerSettings::default(),
            forwarding: Forwarding::Auto,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot start the proxy's event-loop threads: {0}")]
    Threads(std::io::Error),
    #[error("service {service}: cannot listen on {protocol} {addr}: {source} (the port is the service's `port` in its manifest; the address is `[proxy] listen` in drover.toml)")]
    Bind {
        service: String,
        protocol: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What one service is doing, for `get services` and the status API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// The bound address while listening.
    pub listening: Option<SocketAddr>,
    /// Why it is not listening.
    pub error: Option<String>,
    /// Open TCP connections or live UDP flows, including those draining from removed endpoints.
    pub active: usize,
    /// Connections refused for want of any endpoint that accepted, and UDP datagrams dropped
    /// (no endpoint, or too many flows).
    pub rejected: u64,
    pub endpoints: Vec<EndpointStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub address: SocketAddr,
    /// Open connections (TCP) or flows (UDP) to it.
    pub active: u64,
    /// Connections or flows it was given.
    pub total: u64,
    /// Failed connects (TCP) or refused datagrams (UDP).
    pub failures: u64,
    /// In back-off after a failure: skipped by new connections for now.
    pub backing_off: bool,
    /// Removed from the service; listed while connections to it remain, until the grace
    /// period closes them.
    pub draining: bool,
}

/// Counters of one endpoint and the signal that drains it. Connections hold it, so counters
/// of a removed endpoint stay correct until its last connection ends.
struct Endpoint {
    active: AtomicU64,
    total: AtomicU64,
    failures: AtomicU64,
    /// Set to the instant its connections must be closed by, once removed.
    drain: watch::Sender<Option<Instant>>,
}

impl Endpoint {
    fn new() -> Arc<Endpoint> {
        Arc::new(Endpoint {
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            drain: watch::channel(None).0,
        })
    }
}

/// The picker and the endpoint counters of one service, under one lock taken briefly per
/// connection.
struct Balance {
    picker: Picker,
    endpoints: HashMap<SocketAddr, Arc<Endpoint>>,
    /// Endpoints removed less than a grace period ago: if one comes back (a readiness flap),
    /// its draining connections are reprieved instead of cut.
    draining: HashMap<SocketAddr, Arc<Endpoint>>,
}

/// One served service, shared by its listener task and its connections.
struct Service {
    balance: Mutex<Balance>,
    /// The PROXY protocol header its endpoints are sent first: 0 none, 1 or 2 its version.
    header: std::sync::atomic::AtomicU8,
    active: AtomicUsize,
    rejected: AtomicU64,
    metrics: ServiceMetrics,
}

/// A service's counters in the process's Prometheus metrics (`crate::metrics`): handles taken
/// once, so a connection costs an atomic add, not a label lookup.
struct ServiceMetrics {
    connections: prometheus_client::metrics::counter::Counter,
    bytes_in: prometheus_client::metrics::counter::Counter,
    bytes_out: prometheus_client::metrics::counter::Counter,
    errors: prometheus_client::metrics::counter::Counter,
}

impl ServiceMetrics {
    fn of(name: &str) -> ServiceMetrics {
        use crate::metrics::{DirectionLabels, ServiceLabels};
        let m = crate::metrics::global();
        let service = ServiceLabels {
            service: name.to_string(),
        };
        let direction = |d: &str| DirectionLabels {
            service: name.to_string(),
            direction: d.to_string(),
        };
        // One statement per handle: `get_or_create` returns a read guard, and a second
        // call on the same family while it lives would wait for itself.
        let connections = m.proxy_connections.get_or_create(&service).clone();
        let bytes_in = m.proxy_bytes.get_or_create(&direction("in")).clone();
        let bytes_out = m.proxy_bytes.get_or_create(&direction("out")).clone();
        let errors = m.proxy_errors.get_or_create(&service).clone();
        ServiceMetrics {
            connections,
            bytes_in,
            bytes_out,
            errors,
        }
    }

    /// A connection or datagram not forwarded.
    fn rejected(&self, service: &Service) {
        service.rejected.fetch_add(1, Ordering::Relaxed);
        self.errors.inc();
    }
}

impl Service {
    /// The PROXY protocol version its endpoints are sent, if any.
    fn proxy_protocol(&self) -> Option<crate::model::ProxyProtocol> {
        match self.header.load(Ordering::Relaxed) {
            1 => Some(crate::model::ProxyProtocol::V1),
            2 => Some(crate::model::ProxyProtocol::V2),
            _ => None,
        }
    }

    fn new(entry: &ServiceEntry, limits: &Limits) -> Arc<Service> {
        let service = Arc::new(Service {
            balance: Mutex::new(Balance {
                picker: Picker::new(&[], entry.affinity, limits.picker),
                endpoints: HashMap::new(),
                draining: HashMap::new(),
            }),
            header: Default::default(),
            active: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            metrics: ServiceMetrics::of(&entry.name),
        });
        service.set_endpoints(entry, limits.drain_grace);
        service
    }

    /// Swaps the endpoint set; endpoints that left start draining, endpoints that came back
    /// while draining stop draining.
    fn set_endpoints(&self, entry: &ServiceEntry, grace: Duration) {
        let now = Instant::now();
        let deadline = now + grace;
        let version = match entry.proxy_protocol {
            None => 0,
            Some(crate::model::ProxyProtocol::V1) => 1,
            Some(crate::model::ProxyProtocol::V2) => 2,
        };
        self.header.store(version, Ordering::Relaxed);
        let mut guard = self.balance.lock().expect("balance lock");
        let b = &mut *guard;
        b.picker.set_affinity(entry.affinity);
        b.picker.set_endpoints(&entry.endpoints);
        b.picker.forget_idle(now);
        // Past their deadline every connection of theirs has been closed.
        b.draining
            .retain(|_, e| e.drain.borrow().is_some_and(|d| d > now));
        let removed: Vec<SocketAddr> = b
            .endpoints
            .keys()
            .filter(|addr| !entry.endpoints.contains(addr))
            .copied()
            .collect();
        for addr in removed {
            if let Some(e) = b.endpoints.remove(&addr) {
                e.drain.send_replace(Some(deadline));
                b.draining.insert(addr, e);
            }
        }
        for addr in &entry.endpoints {
            if b.endpoints.contains_key(addr) {
                continue;
            }
            let e = match b.draining.remove(addr) {
                Some(back) => {
                    back.drain.send_replace(None);
                    back
                }
                None => Endpoint::new(),
            };
            b.endpoints.insert(*addr, e);
        }
    }

    /// Picks an endpoint for `client`, not one of `exclude`.
    /// An endpoint for a new connection or flow from `client`, other than those in `exclude`,
    /// claimed (counted active) under the same lock `set_endpoints` swaps endpoints under.
    fn pick(&self, client: IpAddr, exclude: &[SocketAddr]) -> Option<(SocketAddr, Claim, bool)> {
        let mut b = self.balance.lock().expect("balance lock");
        let pick = b.picker.pick(client, Instant::now(), exclude)?;
        let claim = Claim::new(b.endpoints.get(&pick.addr)?.clone());
        Some((pick.addr, claim, pick.was_dead))
    }

    fn connect_failed(&self, addr: SocketAddr, endpoint: &Endpoint) {
        endpoint.failures.fetch_add(1, Ordering::Relaxed);
        let mut b = self.balance.lock().expect("balance lock");
        b.picker.mark_failed(addr, Instant::now());
    }

    fn connect_succeeded(&self, addr: SocketAddr) {
        self.balance
            .lock()
            .expect("balance lock")
            .picker
            .mark_succeeded(addr);
    }

    /// Drains every endpoint: the service is going away.
    fn drain_all(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let b = self.balance.lock().expect("balance lock");
        for e in b.endpoints.values() {
            e.drain.send_replace(Some(deadline));
        }
    }

    fn status(&self, now: Instant) -> Vec<EndpointStatus> {
        let b = self.balance.lock().expect("balance lock");
        let row = |addr: SocketAddr, e: &Endpoint, draining: bool| EndpointStatus {
            address: addr,
            active: e.active.load(Ordering::Relaxed),
            total: e.total.load(Ordering::Relaxed),
            failures: e.failures.load(Ordering::Relaxed),
            backing_off: !draining && b.picker.is_dead(addr, now),
            draining,
        };
        let current = b
            .picker
            .endpoints()
            .map(|addr| row(addr, &b.endpoints[&addr], false));
        let draining = b
            .draining
            .iter()
            .filter(|(_, e)| e.active.load(Ordering::Relaxed) > 0)
            .map(|(addr, e)| row(*addr, e, true));
        current.chain(draining).collect()
    }
}

/// A connection's or flow's hold on its endpoint: counted in the endpoint's `active` from the
/// moment it was picked until dropped. Counting from the pick, not from the connect, is what
/// lets a caller that swapped an endpoint out trust "no active connection" as "nothing will
/// reach it any more": a connection still connecting to it is counted too.
struct Claim(Arc<Endpoint>);

impl Claim {
    fn new(endpoint: Arc<Endpoint>) -> Claim {
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        Claim(endpoint)
    }

    /// The claim became a connection or flow.
    fn given(&self) {
        self.0.total.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Claim {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.0
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a connection or flow as active on its service while alive.
struct ActiveGuard {
    service: Arc<Service>,
}

impl ActiveGuard {
    fn new(service: Arc<Service>) -> ActiveGuard {
        service.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard { service }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.service.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits until `signal` carries a deadline, then until that deadline: the moment a draining
/// connection must be closed. Never returns while no deadline is set.
/// The deadline may be withdrawn (the endpoint came back) before it passes.
async fn closed_after_grace(mut signal: watch::Receiver<Option<Instant>>) {
    loop {
        let deadline = signal.wait_for(Option::is_some).await.ok().and_then(|d| *d);
        let Some(deadline) = deadline else {
            // The sender is gone: nothing can drain this any more.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => return,
            _ = signal.changed() => {}
        }
    }
}

/// State shared by the proxy handle and every task it spawned.
struct Shared {
    listen: IpAddr,
    limits: Limits,
    connections: Arc<Semaphore>,
    /// Set at shutdown to the instant every connection must be closed by.
    stopping: watch::Sender<Option<Instant>>,
    /// The event-loop threads and the TCP connections each one carries.
    loops: Vec<tokio::runtime::Handle>,
    load: Vec<AtomicUsize>,
}

impl Shared {
    /// The thread a connection accepted on thread `me` should live on: `me`, unless the least
    /// loaded thread carries clearly fewer connections. Whichever thread wakes first accepts, so
    /// without this a burst of long-lived connections can pile onto one thread.
    fn thread_for_new_connection(&self, me: usize) -> usize {
        let mine = self.load[me].load(Ordering::Relaxed);
        let (least, count) = self
            .load
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|&(_, n)| n)
            .unwrap_or((me, mine));
        if worth_moving(mine, count) {
            least
        } else {
            me
        }
    }
}

/// Whether a new connection on a thread carrying `mine` connections should move to one carrying
/// `least`. A move costs a deregistration, a registration and a wake-up of the other thread, so
/// only a clear imbalance pays: more than half as many again plus 8. The ordinary jitter of
/// short connections between two threads stays put (with a margin of 2, a tenth of all
/// connections moved under `wrk` without keep-alive); a burst of long-lived connections still
/// ends no worse than about 3:2.
fn worth_moving(mine: usize, least: usize) -> bool {
    mine > least + (least / 2).max(8)
}

/// A served service slot: what the table said, and its listener or why it has none.
struct Slot {
    entry: ServiceEntry,
    service: Arc<Service>,
    listener: Result<Listener, String>,
}

struct Listener {
    addr: SocketAddr,
    /// One task per event-loop thread (TCP) or one (UDP); the socket closes when all are gone.
    tasks: Vec<JoinHandle<()>>,
}

impl Listener {
    async fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            // Aborted: the task, and its copy of the socket, is gone once this resolves.
            let _ = t.await;
        }
    }
}

/// The proxy's threads, each blocked in its own current-thread runtime until told to stop.
struct EventLoops {
    handles: Vec<tokio::runtime::Handle>,
    stop: watch::Sender<bool>,
}

impl EventLoops {
    fn start(threads: usize) -> std::io::Result<EventLoops> {
        let stop = watch::channel(false).0;
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let mut stopped = stop.subscribe();
            std::thread::Builder::new()
                .name(format!("drover-proxy-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    });
                    // Dropping the runtime ends whatever tasks are left on it.
                })?;
        }
        Ok(EventLoops { handles, stop })
    }
}

impl Drop for EventLoops {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The running proxy. Share it behind an `Arc`; every method takes `&self`. Dropping it stops
/// its threads at once; `shutdown` first lets connections finish.
pub struct Proxy {
    shared: Arc<Shared>,
    loops: EventLoops,
    slots: Mutex<HashMap<String, Slot>>,
    /// Serialises `update` and `shutdown`, which await listener tasks between lock scopes.
    updating: tokio::sync::Mutex<()>,
}

impl Proxy {
    /// The address its service ports are bound on.
    pub fn listen_address(&self) -> IpAddr {
        self.shared.listen
    }

    /// A proxy serving on `listen` (no services yet), on `limits.threads` threads of its own.
    /// Needs no runtime from the caller; `update` and `shutdown` may be awaited on any.
    pub fn start(listen: IpAddr, limits: Limits) -> Result<Proxy, ProxyError> {
        let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        let loops = EventLoops::start(limits.threads).map_err(ProxyError::Threads)?;
        Ok(Proxy {
            shared: Arc::new(Shared {
                listen,
                connections: Arc::new(Semaphore::new(max)),
                limits: Limits {
                    max_connections: max,
                    ..limits
                },
                stopping: watch::channel(None).0,
                load: loops.handles.iter().map(|_| AtomicUsize::new(0)).collect(),
                loops: loops.handles.clone(),
            }),
            loops,
            slots: Mutex::new(HashMap::new()),
            updating: tokio::sync::Mutex::new(()),
        })
    }

    /// Makes the proxy serve exactly `table`: opens listeners of new services (and retries
    /// those that failed to bind before), closes those of services no longer listed, and swaps
    /// endpoint sets. Returns one error per service that could not be bound; the others serve
    /// regardless. A service whose port or protocol changed is closed and opened again.
    pub async fn update(&self, table: &ServiceTable) -> Vec<ProxyError> {
        let _serial = self.updating.lock().await;
        let grace = self.shared.limits.drain_grace;
        // Services that are gone or moved to another port: taken out of the map first, and
        // their listeners closed before anything binds, so a port can pass between services.
        let mut closing = Vec::new();
        {
            let mut slots = self.slots.lock().expect("slots lock");
            slots.retain(|name, slot| {
                let stays = table.services.iter().any(|e| {
                    e.name == *name
                        && e.port == slot.entry.port
                        && e.protocol == slot.entry.protocol
                });
                if !stays {
                    slot.service.drain_all(grace);
                    closing.push(std::mem::replace(&mut slot.listener, Err(String::new())));
                }
                stays
            });
        }
        for listener in closing.into_iter().flatten() {
            listener.close().await;
        }

        let mut errors = Vec::new();
        let mut slots = self.slots.lock().expect("slots lock");
        let mut seen = std::collections::HashSet::new();
        for entry in &table.services {
            if !seen.insert(entry.name.as_str()) {
                continue;
            }
            let slot = slots.entry(entry.name.clone()).or_insert_with(|| Slot {
                entry: entry.clone(),
                service: Service::new(entry, &self.shared.limits),
                listener: Err(String::new()),
            });
            if slot.entry != *entry {
                slot.service.set_endpoints(entry, grace);
                slot.entry = entry.clone();
            }
            if slot.listener.is_err() {
                match self.listen(&slot.service, entry) {
                    Ok(listener) => slot.listener = Ok(listener),
                    Err(e) => {
                        slot.listener = Err(e.to_string());
                        errors.push(e);
                    }
                }
            }
        }
        errors
    }

    fn listen(&self, service: &Arc<Service>, entry: &ServiceEntry) -> Result<Listener, ProxyError> {
        let addr = SocketAddr::new(self.shared.listen, entry.port);
        let error = |source| ProxyError::Bind {
            service: entry.name.clone(),
            protocol: entry.protocol.as_str(),
            addr,
            source,
        };
        match entry.protocol {
            Protocol::TCP => {
                let listener = tcp::bind(addr).map_err(error)?;
                let bound = listener.local_addr().unwrap_or(addr);
                let mut tasks = Vec::with_capacity(self.loops.handles.len());
                for (thread, handle) in self.loops.handles.iter().enumerate() {
                    // Registered here, inside the thread's runtime, so a failure is this
                    // update's error rather than a silent task exit.
                    let registered = listener.try_clone().and_then(|copy| {
                        let _in_loop = handle.enter();
                        // SAFETY: `copy` owns its descriptor and nothing else closes or
                        // replaces it while the AsyncFd holds it.
                        unsafe {
                            tokio::io::unix::AsyncFd::register_with_interest(
                                copy,
                                tokio::io::Interest::READABLE,
                            )
                        }
                        .map_err(std::io::Error::from)
                    });
                    match registered {
                        Ok(l) => tasks.push(handle.spawn(tcp::accept_loop(
                            l,
                            service.clone(),
                            self.shared.clone(),
                            thread,
                        ))),
                        Err(e) => {
                            tasks.iter().for_each(JoinHandle::abort);
                            return Err(error(e));
                        }
                    }
                }
                Ok(Listener { addr: bound, tasks })
            }
            Protocol::UDP => {
                let socket = udp::bind(addr).map_err(error)?;
                let bound = socket.local_addr().unwrap_or(addr);
                let handle = &self.loops.handles[0];
                let socket = {
                    let _in_loop = handle.enter();
                    tokio::net::UdpSocket::from_std(socket).map_err(error)?
                };
                let task = handle.spawn(udp::serve(socket, service.clone(), self.shared.clone()));
                Ok(Listener {
                    addr: bound,
                    tasks: vec![task],
                })
            }
        }
    }

    /// Every service of the last table, sorted by name.
    pub fn status(&self) -> Vec<ServiceStatus> {
        let slots = self.slots.lock().expect("slots lock");
        let now = Instant::now();
        let mut out: Vec<ServiceStatus> = slots
            .values()
            .map(|slot| {
                let endpoints = slot.service.status(now);
                ServiceStatus {
                    name: slot.entry.name.clone(),
                    port: slot.entry.port,
                    protocol: slot.entry.protocol,
                    listening: slot.listener.as_ref().ok().map(|l| l.addr),
                    error: slot.listener.as_ref().err().cloned(),
                    active: slot.service.active.load(Ordering::Relaxed),
                    rejected: slot.service.rejected.load(Ordering::Relaxed),
                    endpoints,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Stops accepting, lets open TCP connections finish for at most the drain grace, closes
    /// the rest, and returns once every connection is gone. UDP flows end at once.
    pub async fn shutdown(&self) {
        let _serial = self.updating.lock().await;
        let listeners: Vec<Listener> = {
            let mut slots = self.slots.lock().expect("slots lock");
            slots
                .drain()
                .filter_map(|(_, slot)| slot.listener.ok())
                .collect()
        };
        for l in listeners {
            l.close().await;
        }
        self.shared
            .stopping
            .send_replace(Some(Instant::now() + self.shared.limits.drain_grace));
        // Every connection holds a permit: having them all back means all are closed.
        let all = self.shared.limits.max_connections as u32;
        let _ = self.shared.connections.acquire_many(all).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(endpoints: &[&str]) -> ServiceEntry {
        ServiceEntry {
            name: "claims".into(),
            port: 0,
            protocol: Protocol::TCP,
            affinity: Default::default(),
            proxy_protocol: None,
            endpoints: endpoints.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_picked_endpoint_counts_as_active_until_let_go_even_once_removed() {
        let service = Service::new(&entry(&["127.0.0.1:1"]), &Limits::default());
        let (_, claim, _) = service.pick("127.0.0.2".parse().unwrap(), &[]).unwrap();
        // Removed while the connection is still connecting (it was never `given`): whoever
        // waits for the drain must still see it.
        service.set_endpoints(&entry(&["127.0.0.1:2"]), Duration::from_secs(30));
        let draining = |s: &Service| -> Vec<(u64, u64)> {
            s.status(Instant::now())
                .iter()
                .filter(|e| e.draining)
                .map(|e| (e.active, e.total))
                .collect()
        };
        assert_eq!(draining(&service), vec![(1, 0)]);
        claim.given();
        assert_eq!(draining(&service), vec![(1, 1)]);
        drop(claim);
        assert_eq!(draining(&service), vec![]);
    }

    #[test]
    fn connections_move_between_threads_only_on_a_clear_imbalance() {
        // Jitter of short connections stays.
        assert!(!worth_moving(3, 0));
        assert!(!worth_moving(36, 28));
        assert!(!worth_moving(8, 0));
        assert!(worth_moving(9, 0));
        assert!(worth_moving(40, 20));
        assert!(!worth_moving(150, 100));
        assert!(worth_moving(151, 100));
        // A burst accepted by one thread spreads: moving whenever it pays ends near 3:2.
        let (mut a, mut b) = (0usize, 0usize);
        for _ in 0..1000 {
            if worth_moving(a, b) {
                b += 1;
            } else {
                a += 1;
            }
        }
        assert!(a <= b * 3 / 2 + 9 && b <= a, "{a}:{b}");
    }
}
