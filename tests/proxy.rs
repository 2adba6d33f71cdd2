//! The service proxy on real loopback sockets: backends are small tokio servers in the test
//! process, the proxy listens on 127.0.0.1 with kernel-chosen ports. No Docker.
//!
//! Waits are conditions polled against a deadline, never fixed sleeps; the only bounded waits
//! are for things that must *not* happen (a connection past the limit getting through), which
//! can only make such a test pass wrongly, never fail spuriously.

use drover::model::{Protocol, SessionAffinity};
use drover::proxy::{
    Forwarding, Limits, PickerSettings, Proxy, ServiceEntry, ServiceStatus, ServiceTable,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Generous: the machine running the tests may be busy with other builds.
const DEADLINE: Duration = Duration::from_secs(20);

/// A TCP backend: greets every connection with its name and a newline, then echoes until EOF
/// and closes its sending side.
struct Backend {
    name: String,
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

async fn backend(name: &str) -> Backend {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (greeting, count) = (format!("{name}\n"), accepted.clone());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let greeting = greeting.clone();
            tokio::spawn(async move {
                let _ = s.write_all(greeting.as_bytes()).await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Backend {
        name: name.to_string(),
        addr,
        accepted,
    }
}

fn tcp(name: &str, endpoints: &[SocketAddr]) -> ServiceEntry {
    ServiceEntry {
        name: name.to_string(),
        port: 0,
        protocol: Protocol::TCP,
        affinity: SessionAffinity::None,
        proxy_protocol: None,
        endpoints: endpoints.to_vec(),
    }
}

fn table(services: Vec<ServiceEntry>) -> ServiceTable {
    ServiceTable { services }
}

fn limits() -> Limits {
    Limits {
        connect_timeout: Duration::from_millis(500),
        ..Limits::default()
    }
}

async fn start(services: Vec<ServiceEntry>, limits: Limits) -> Proxy {
    let proxy = Proxy::start(LOOPBACK, limits).unwrap();
    let errors = proxy.update(&table(services)).await;
    assert!(errors.is_empty(), "{errors:?}");
    proxy
}

fn status<'a>(all: &'a [ServiceStatus], name: &str) -> &'a ServiceStatus {
    all.iter()
        .find(|s| s.name == name)
        .expect("service in status")
}

fn address(proxy: &Proxy, name: &str) -> SocketAddr {
    status(&proxy.status(), name).listening.expect("listening")
}

/// Connects through the proxy and returns the stream and the greeting's backend name.
async fn greeted(addr: SocketAddr) -> (BufReader<TcpStream>, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
        .await
        .expect("greeting in time")
        .unwrap();
    (reader, line.trim().to_string())
}

/// Same, from a chosen local address (another client IP on 127.0.0.0/8).
async fn greeted_from(from: Ipv4Addr, addr: SocketAddr) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await.unwrap();
    line.trim().to_string()
}

async fn echo(reader: &mut BufReader<TcpStream>, text: &str) -> String {
    reader
        .get_mut()
        .write_all(format!("{text}\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
        .await
        .expect("echo in time")
        .unwrap();
    line.trim().to_string()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_connections_over_three_backends() {
    let backends = [
        backend("b1").await,
        backend("b2").await,
        backend("b3").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let proxy = start(vec![tcp("web", &addrs)], limits()).await;
    let addr = address(&proxy, "web");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut order = Vec::new();
    for _ in 0..30 {
        let (_, name) = greeted(addr).await;
        order.push(name.clone());
        *seen.entry(name).or_default() += 1;
    }
    for b in &backends {
        assert_eq!(seen[&b.name], 10, "{seen:?}");
        assert_eq!(b.accepted.load(Ordering::SeqCst), 10);
    }
    assert_eq!(order[..3], ["b1", "b2", "b3"]);
    let st = proxy.status();
    let web = status(&st, "web");
    assert_eq!(web.endpoints.iter().map(|e| e.total).sum::<u64>(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_each_client_on_one_backend() {
    let backends = [
        backend("b1").await,
        backend("b2").await,
        backend("b3").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let mut web = tcp("web", &addrs);
    web.affinity = SessionAffinity::ClientIP;
    let proxy = start(vec![web], limits()).await;
    let addr = address(&proxy, "web");
    let clients = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let mut chosen = Vec::new();
    for client in clients {
        let first = greeted_from(client, addr).await;
        for _ in 0..10 {
            assert_eq!(greeted_from(client, addr).await, first);
        }
        chosen.push(first);
    }
    // Round robin gave the second client a different backend, and it stuck too.
    assert_ne!(chosen[0], chosen[1]);
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// hangs until the connector's timeout, like a host that went away.
async fn black_hole() -> (SocketAddr, Vec<std::net::TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((LOOPBACK, 0).into()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        let attempt = tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300))
        })
        .await
        .unwrap();
        match attempt {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
        assert!(fillers.len() < 20, "accept queue never filled");
    }
    // Keep the listener open for as long as the fillers are.
    std::mem::forget(listener);
    (addr, fillers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_costs_a_connect_timeout_and_the_next_one_serves() {
    let good = backend("good").await;
    let (hole, _fillers) = black_hole().await;
    let limits = Limits {
        connect_timeout: Duration::from_millis(300),
        // Longer than the test could take, so the dead endpoint is tried exactly once.
        picker: PickerSettings {
            dead_backoff: Duration::from_secs(600),
            ..PickerSettings::default()
        },
        ..Limits::default()
    };
    let proxy = start(vec![tcp("web", &[hole, good.addr])], limits).await;
    let addr = address(&proxy, "web");
    let t = Instant::now();
    let (_, name) = greeted(addr).await;
    assert_eq!(name, "good");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    // The dead endpoint is now skipped: further connections do not try it.
    for _ in 0..5 {
        assert_eq!(greeted(addr).await.1, "good");
    }
    let st = proxy.status();
    let hole_status = status(&st, "web")
        .endpoints
        .iter()
        .find(|e| e.address == hole)
        .unwrap();
    assert_eq!(hole_status.failures, 1);
    assert!(hole_status.backing_off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_endpoint_fails_over_at_once() {
    let good = backend("good").await;
    let closed = {
        let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        l.local_addr().unwrap()
    };
    let proxy = start(vec![tcp("web", &[closed, good.addr])], limits()).await;
    let addr = address(&proxy, "web");
    for _ in 0..4 {
        assert_eq!(greeted(addr).await.1, "good");
    }
    assert_eq!(status(&proxy.status(), "web").rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_closes_the_client_and_counts_it() {
    let proxy = start(vec![tcp("web", &[])], limits()).await;
    let mut s = TcpStream::connect(address(&proxy, "web")).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)));
    eventually("rejected count", || {
        status(&proxy.status(), "web").rejected == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_endpoint_drains_then_closes_after_the_grace_period() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let limits = Limits {
        drain_grace: Duration::from_millis(800),
        ..limits()
    };
    let proxy = start(vec![tcp("web", &[b1.addr])], limits).await;
    let addr = address(&proxy, "web");
    let (mut old, name) = greeted(addr).await;
    assert_eq!(name, "b1");

    // Taken before the update, which starts the grace period.
    let removed_at = Instant::now();
    let errors = proxy.update(&table(vec![tcp("web", &[b2.addr])])).await;
    assert!(errors.is_empty());
    // The established connection still works; new ones go to the remaining endpoint.
    assert_eq!(echo(&mut old, "still here").await, "still here");
    assert_eq!(greeted(addr).await.1, "b2");
    eventually("only the draining connection", || {
        status(&proxy.status(), "web").active == 1
    })
    .await;

    // After the grace period the proxy closes it.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, old.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "draining connection never closed");
    assert!(removed_at.elapsed() >= Duration::from_millis(800));
    eventually("no active connection", || {
        status(&proxy.status(), "web").active == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_back_before_its_grace_ends_keeps_its_connections() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let grace = Duration::from_millis(500);
    let limits = Limits {
        drain_grace: grace,
        ..limits()
    };
    let proxy = start(vec![tcp("web", &[b1.addr])], limits).await;
    let addr = address(&proxy, "web");
    let (mut conn, _) = greeted(addr).await;
    proxy.update(&table(vec![tcp("web", &[b2.addr])])).await;
    let st = proxy.status();
    let draining = status(&st, "web")
        .endpoints
        .iter()
        .find(|e| e.address == b1.addr);
    assert!(
        draining.is_some_and(|e| e.draining && e.active == 1),
        "{st:?}"
    );
    // A readiness flap: b1 is back within the grace period.
    proxy
        .update(&table(vec![tcp("web", &[b1.addr, b2.addr])]))
        .await;
    // Well past the original deadline the connection is still open.
    tokio::time::sleep(grace * 3).await;
    assert_eq!(echo(&mut conn, "kept").await, "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_updates_keep_established_connections() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let proxy = start(vec![tcp("web", &[b1.addr])], limits()).await;
    let addr = address(&proxy, "web");
    let (mut conn, _) = greeted(addr).await;
    // b1 stays, b2 joins: nothing drains.
    proxy
        .update(&table(vec![tcp("web", &[b2.addr, b1.addr])]))
        .await;
    for i in 0..3 {
        assert_eq!(
            echo(&mut conn, &format!("line {i}")).await,
            format!("line {i}")
        );
    }
    let names: Vec<String> = [greeted(addr).await.1, greeted(addr).await.1].into();
    assert!(names.contains(&"b2".to_string()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_opens_new_listeners_and_closes_removed_ones() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let proxy = start(vec![tcp("a", &[b1.addr])], limits()).await;
    let a = address(&proxy, "a");
    assert_eq!(greeted(a).await.1, "b1");

    let errors = proxy
        .update(&table(vec![tcp("a", &[b1.addr]), tcp("b", &[b2.addr])]))
        .await;
    assert!(errors.is_empty());
    assert_eq!(
        address(&proxy, "a"),
        a,
        "an unchanged service keeps its listener"
    );
    assert_eq!(greeted(address(&proxy, "b")).await.1, "b2");

    proxy.update(&table(vec![tcp("b", &[b2.addr])])).await;
    assert_eq!(proxy.status().len(), 1);
    // The listener is closed by the time update returns.
    assert!(TcpStream::connect(a).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_fails_only_its_service_and_is_retried() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let squatter = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let mut blocked = tcp("blocked", &[b2.addr]);
    blocked.port = taken;
    let services = vec![tcp("free", &[b1.addr]), blocked];

    let proxy = Proxy::start(LOOPBACK, limits()).unwrap();
    let errors = proxy.update(&table(services.clone())).await;
    assert_eq!(errors.len(), 1);
    let message = errors[0].to_string();
    assert!(message.contains("service blocked"), "{message}");
    assert!(message.contains(&taken.to_string()), "{message}");
    let st = proxy.status();
    assert!(status(&st, "blocked").listening.is_none());
    assert!(status(&st, "blocked").error.is_some());
    assert_eq!(greeted(address(&proxy, "free")).await.1, "b1");

    drop(squatter);
    let errors = proxy.update(&table(services)).await;
    assert!(errors.is_empty(), "{errors:?}");
    let st = proxy.status();
    assert_eq!(status(&st, "blocked").error, None);
    let addr = status(&st, "blocked").listening.unwrap();
    assert_eq!(addr.port(), taken);
    assert_eq!(greeted(addr).await.1, "b2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_holds_extra_clients_until_one_closes() {
    let b1 = backend("b1").await;
    let limits = Limits {
        max_connections: 2,
        ..limits()
    };
    let proxy = start(vec![tcp("web", &[b1.addr])], limits).await;
    let addr = address(&proxy, "web");
    let first = greeted(addr).await;
    let _second = greeted(addr).await;
    // The third completes its handshake in the backlog but is not forwarded.
    let third = TcpStream::connect(addr).await.unwrap();
    let mut third = BufReader::new(third);
    let mut line = String::new();
    let early = tokio::time::timeout(Duration::from_millis(300), third.read_line(&mut line)).await;
    assert!(early.is_err(), "a third connection got through: {line:?}");
    assert_eq!(b1.accepted.load(Ordering::SeqCst), 2);
    drop(first);
    tokio::time::timeout(DEADLINE, third.read_line(&mut line))
        .await
        .expect("third connection served once one closed")
        .unwrap();
    assert_eq!(line.trim(), "b1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_is_shared_by_services_without_starving_any() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    // Fewer permits than services times proxy threads: idle listeners must not hold any.
    let limits = Limits {
        max_connections: 2,
        threads: 2,
        ..limits()
    };
    let names = ["a", "b", "c", "d"];
    let services = names.iter().map(|n| tcp(n, &[b1.addr, b2.addr])).collect();
    let proxy = start(services, limits).await;
    // The last services first: their listeners were opened last.
    for name in names.into_iter().rev() {
        let (conn, _) = greeted(address(&proxy, name)).await;
        drop(conn);
        eventually("the connection to close", || {
            status(&proxy.status(), name).active == 0
        })
        .await;
    }
}

/// A backend that reads a whole request until EOF, then answers with it reversed and closes:
/// only works if the proxy passes the client's half-close on.
async fn reverser() -> SocketAddr {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut data = Vec::new();
                s.read_to_end(&mut data).await.unwrap();
                data.reverse();
                s.write_all(&data).await.unwrap();
            });
        }
    });
    addr
}

async fn half_close_and_integrity(forwarding: Forwarding) {
    let proxy = start(
        vec![tcp("rev", &[reverser().await])],
        Limits {
            forwarding,
            ..limits()
        },
    )
    .await;
    let addr = address(&proxy, "rev");
    // Several megabytes, so both directions fill their pipes or buffers many times over.
    let sent: Vec<u8> = (0..6_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let receive = r.read_to_end(&mut got);
    let ((), n) = tokio::time::timeout(DEADLINE, async { tokio::join!(send, receive) })
        .await
        .expect("transfer in time");
    assert_eq!(n.unwrap(), sent.len());
    let mut expected = sent.clone();
    expected.reverse();
    assert!(got == expected, "bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_forwarding_passes_half_close_and_every_byte() {
    half_close_and_integrity(Forwarding::Splice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_forwarding_passes_half_close_and_every_byte() {
    half_close_and_integrity(Forwarding::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_forwarding_passes_half_close_and_every_byte() {
    half_close_and_integrity(Forwarding::Copy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_after_the_grace_period() {
    let b1 = backend("b1").await;
    let limits = Limits {
        drain_grace: Duration::from_millis(200),
        ..limits()
    };
    let proxy = start(vec![tcp("web", &[b1.addr])], limits).await;
    let addr = address(&proxy, "web");
    let (mut conn, _) = greeted(addr).await;
    tokio::time::timeout(DEADLINE, proxy.shutdown())
        .await
        .expect("shutdown in time");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(DEADLINE, conn.read_to_end(&mut rest)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))));
    assert!(TcpStream::connect(addr).await.is_err());
}

/// A UDP backend answering every datagram with `name:` and the datagram.
async fn udp_backend(name: &str) -> SocketAddr {
    let socket = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let prefix = format!("{name}:");
    tokio::spawn(async move {
        let mut buf = vec![0; 65_536];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let mut reply = prefix.clone().into_bytes();
            reply.extend_from_slice(&buf[..n]);
            socket.send_to(&reply, from).await.unwrap();
        }
    });
    addr
}

fn udp(name: &str, endpoints: &[SocketAddr]) -> ServiceEntry {
    ServiceEntry {
        protocol: Protocol::UDP,
        ..tcp(name, endpoints)
    }
}

async fn ask(client: &UdpSocket, text: &str) -> String {
    client.send(text.as_bytes()).await.unwrap();
    let mut buf = vec![0; 65_536];
    // A datagram may be lost: ask again until answered.
    let start = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), client.recv(&mut buf)).await {
            Ok(n) => return String::from_utf8(buf[..n.unwrap()].to_vec()).unwrap(),
            Err(_) => {
                assert!(start.elapsed() < DEADLINE, "no UDP answer");
                client.send(text.as_bytes()).await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_are_echoed_through_the_proxy_and_stay_on_one_endpoint() {
    let (u1, u2) = (udp_backend("u1").await, udp_backend("u2").await);
    let limits = Limits {
        udp_idle_timeout: Duration::from_secs(3),
        ..limits()
    };
    let proxy = start(vec![udp("dns", &[u1, u2])], limits).await;
    let addr = address(&proxy, "dns");
    let mut answers = Vec::new();
    for _ in 0..2 {
        let client = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        // Connected: replies must come from the service address to be received at all.
        client.connect(addr).await.unwrap();
        let first = ask(&client, "hello").await;
        let (backend, text) = first.split_once(':').unwrap();
        assert_eq!(text, "hello");
        for i in 0..5 {
            assert_eq!(
                ask(&client, &format!("m{i}")).await,
                format!("{backend}:m{i}")
            );
        }
        answers.push(backend.to_string());
    }
    assert_ne!(
        answers[0], answers[1],
        "two clients, two flows, round robin"
    );
    assert_eq!(status(&proxy.status(), "dns").active, 2);
    eventually("flows to idle out", || {
        status(&proxy.status(), "dns").active == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flow_limit_drops_datagrams_of_further_clients() {
    let u1 = udp_backend("u1").await;
    let limits = Limits {
        max_udp_flows: 1,
        ..limits()
    };
    let proxy = start(vec![udp("dns", &[u1])], limits).await;
    let addr = address(&proxy, "dns");
    let first = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    first.connect(addr).await.unwrap();
    assert_eq!(ask(&first, "a").await, "u1:a");
    let second = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    second.connect(addr).await.unwrap();
    second.send(b"b").await.unwrap();
    eventually("a dropped datagram", || {
        status(&proxy.status(), "dns").rejected >= 1
    })
    .await;
    assert_eq!(status(&proxy.status(), "dns").active, 1);
}

/// The value of one sample line of the process's metrics.
fn metric(line_start: &str) -> Option<f64> {
    drover::metrics::global()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_bytes_and_errors_per_service() {
    let proxy = start(
        vec![
            tcp("metered", &[reverser().await]),
            tcp("metered-none", &[]),
        ],
        limits(),
    )
    .await;
    let mut s = TcpStream::connect(address(&proxy, "metered"))
        .await
        .unwrap();
    s.write_all(&[b'x'; 1000]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1000);
    let mut refused = TcpStream::connect(address(&proxy, "metered-none"))
        .await
        .unwrap();
    let _ = tokio::time::timeout(DEADLINE, refused.read(&mut [0u8; 1])).await;
    eventually("the connection's bytes counted", || {
        metric(r#"drover_proxy_bytes_total{service="metered",direction="in"}"#) == Some(1000.0)
            && metric(r#"drover_proxy_bytes_total{service="metered",direction="out"}"#)
                == Some(1000.0)
    })
    .await;
    assert_eq!(
        metric(r#"drover_proxy_connections_total{service="metered"}"#),
        Some(1.0)
    );
    eventually("the refused connection counted", || {
        metric(r#"drover_proxy_errors_total{service="metered-none"}"#) == Some(1.0)
    })
    .await;
}

/// HAProxy with `accept-proxy` as the backend: an independent reader of the PROXY protocol,
/// answering each HTTP request with the client address and the destination it was told.
struct HaproxyBackend {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for HaproxyBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy_backend() -> HaproxyBackend {
    let port = std::net::TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n\
             frontend told\n  bind 127.0.0.1:{port} accept-proxy\n  \
             http-request return status 200 content-type text/plain lf-string \"%[src] %[src_port] %[dst] %[dst_port]\"\n"
        ),
    )
    .unwrap();
    let child = std::process::Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("haproxy (Debian's package) runs");
    let addr = SocketAddr::new(LOOPBACK, port);
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(started.elapsed() < DEADLINE, "haproxy did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    HaproxyBackend {
        child,
        addr,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_brings_the_client_address_to_the_backend_in_both_versions() {
    use drover::model::ProxyProtocol;
    let told = haproxy_backend();
    let modes = [Forwarding::Auto, Forwarding::Splice, Forwarding::Copy];
    for (version, forwarding) in [ProxyProtocol::V1, ProxyProtocol::V2]
        .into_iter()
        .flat_map(|v| modes.map(|f| (v, f)))
    {
        let proxy = start(
            vec![ServiceEntry {
                proxy_protocol: Some(version),
                ..tcp("told", &[told.addr])
            }],
            Limits {
                forwarding,
                ..limits()
            },
        )
        .await;
        let service = address(&proxy, "told");
        // A client on another loopback address than the proxy's own.
        let from = Ipv4Addr::new(127, 0, 0, 7);
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
        let mut stream = socket.connect(service).await.unwrap();
        let client = stream.local_addr().unwrap();
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(DEADLINE, stream.read_to_string(&mut answer))
            .await
            .expect("an answer in time")
            .unwrap();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert_eq!(
            body,
            format!(
                "{} {} {} {}",
                from,
                client.port(),
                service.ip(),
                service.port()
            ),
            "{version:?} {forwarding:?}: {answer}"
        );
        // Closed first: the proxy's shutdown waits for its connections to end.
        drop(stream);
        proxy.shutdown().await;
    }
    // Without it, the backend sees the proxy: HAProxy refuses a connection with no header.
    let proxy = start(vec![tcp("plain", &[told.addr])], limits()).await;
    let mut stream = TcpStream::connect(address(&proxy, "plain")).await.unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_string(&mut answer)).await;
    assert!(!answer.contains("200"), "{answer}");
    drop(stream);
    proxy.shutdown().await;
}
