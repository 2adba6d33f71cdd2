//! Benchmark: drover's service proxy against a direct connection and against HAProxy, in one
//! run on loopback.
//!
//! - HTTP: `wrk` against a small static HTTP server (this binary re-run as a child process:
//!   three listeners, a fixed 13-byte body, keep-alive unless asked to close), with and without
//!   keep-alive (`Connection: close`): requests/s and p99 latency direct to one backend port,
//!   through drover's proxy (splice and copy forwarding) and through HAProxy (mode tcp, balance
//!   roundrobin over the same three backends). drover runs once per forwarding mode: auto
//!   (copy, then splice once a read fills the buffer), splice from the first byte, and copy.
//! - Throughput: one 1 GiB transfer from a backend that writes 1 GiB and closes, read here,
//!   directly and through each proxy.
//!
//! Fairness on a small shared machine: the targets are measured in alternating rounds (the
//! order rotates each round) so all see the same machine; every figure is printed as the median
//! over rounds with its spread (min..max) and its ratio against direct measured in the same
//! rounds, and drover against HAProxy as the median of per-round ratios (each round's pair ran
//! back to back). wrk, the backends and both proxies get the same settings and none is pinned:
//! each proxy runs 2 event-loop threads (drover: one per CPU; HAProxy: `nbthread 2`, its
//! default on 2 CPUs, written out), all float over the same CPUs.
//! HAProxy runs as a user would configure a plain TCP round robin: `mode tcp`, `balance
//! roundrobin`, default buffers (16 KiB, drover's copy buffer too), no `option splice-auto`
//! (not a default; DROVER_BENCH_HAPROXY_SPLICE=1 adds it).
//! CPU time per request is printed for the proxy, wrk and the backends: on a shared machine the
//! request rates are noisy, the CPU spent per request much less so, and it bounds what any proxy
//! can reach on this machine (printed as the ceiling for a proxy costing that much).
//! Why not busybox httpd as the backend: it forks a process per connection and has no
//! keep-alive, so it, not the proxy, would be measured; one reference row shows its rate.
//!
//! Needs the Debian packages `wrk` and `haproxy` (skips with a message without them).
//! Run: `cargo bench --bench proxy`. Knobs: DROVER_BENCH_ROUNDS (5), DROVER_BENCH_SECS (5),
//! DROVER_BENCH_CONNECTIONS (64), DROVER_BENCH_THREADS (wrk threads, 2).

use drover::model::{Protocol, SessionAffinity};
use drover::proxy::{Forwarding, Limits, Proxy, ServiceEntry, ServiceTable};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const GIB: u64 = 1 << 30;
const BODY: &str = "hello, world\n";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Ok(ports) = std::env::var("DROVER_BENCH_BACKEND") {
        return backend::run(&ports);
    }
    for tool in ["wrk", "haproxy"] {
        if !on_path(tool) {
            println!(
                "proxy benchmark skipped: `{tool}` not found (apt-get install -y wrk haproxy)"
            );
            return;
        }
    }
    let rounds = env_or("DROVER_BENCH_ROUNDS", 5) as usize;
    let secs = env_or("DROVER_BENCH_SECS", 5);
    let connections = env_or("DROVER_BENCH_CONNECTIONS", 64);
    let threads = env_or("DROVER_BENCH_THREADS", 2);

    let http_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let bulk_port = free_port();
    let _backend = ChildGuard(
        Command::new(std::env::current_exe().unwrap())
            .env(
                "DROVER_BENCH_BACKEND",
                format!(
                    "{},{},{},{}",
                    http_ports[0], http_ports[1], http_ports[2], bulk_port
                ),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for p in http_ports.iter().chain([&bulk_port]) {
        wait_listening(SocketAddr::new(LOOPBACK, *p));
    }
    let backends: Vec<SocketAddr> = http_ports
        .iter()
        .map(|p| SocketAddr::new(LOOPBACK, *p))
        .collect();
    let bulk = SocketAddr::new(LOOPBACK, bulk_port);

    // drover's proxy, once per forwarding mode (each on its own threads, one per CPU).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut drover_ports = Vec::new();
    // The last: auto forwarding, its backends sent a PROXY protocol v2 header first.
    let modes = [
        (Forwarding::Auto, None),
        (Forwarding::Splice, None),
        (Forwarding::Copy, None),
        (Forwarding::Auto, Some(drover::model::ProxyProtocol::V2)),
    ];
    let _proxies: Vec<Proxy> = modes
        .into_iter()
        .map(|(forwarding, header)| {
            let (web, big) = (free_port(), free_port());
            drover_ports.push((web, big));
            runtime.block_on(async {
                let proxy = Proxy::start(
                    LOOPBACK,
                    Limits {
                        forwarding,
                        ..Limits::default()
                    },
                )
                .unwrap();
                let table = ServiceTable {
                    services: vec![
                        ServiceEntry {
                            proxy_protocol: header,
                            ..service("web", web, &backends)
                        },
                        service("bulk", big, &[bulk]),
                    ],
                };
                let errors = proxy.update(&table).await;
                assert!(errors.is_empty(), "{errors:?}");
                proxy
            })
        })
        .collect();

    let (haproxy_web, haproxy_bulk) = (free_port(), free_port());
    let haproxy_dir = tempfile::tempdir().unwrap();
    let config = haproxy_dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        haproxy_config(haproxy_web, &backends, haproxy_bulk, bulk),
    )
    .unwrap();
    let _haproxy = ChildGuard(
        Command::new("haproxy")
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(haproxy_dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let haproxy_pid = _haproxy.0.id();
    if !listening(SocketAddr::new(LOOPBACK, haproxy_web)) {
        let log = std::fs::read_to_string(haproxy_dir.path().join("stderr")).unwrap_or_default();
        panic!("haproxy did not start:\n{log}");
    }
    wait_listening(SocketAddr::new(LOOPBACK, haproxy_bulk));

    let targets = [
        Target {
            name: "direct (one backend)",
            web: http_ports[0],
            bulk: bulk_port,
            pid: None,
        },
        Target {
            name: "drover (auto)",
            web: drover_ports[0].0,
            bulk: drover_ports[0].1,
            pid: Some(std::process::id()),
        },
        Target {
            name: "drover (splice)",
            web: drover_ports[1].0,
            bulk: drover_ports[1].1,
            pid: Some(std::process::id()),
        },
        Target {
            name: "drover (copy)",
            web: drover_ports[2].0,
            bulk: drover_ports[2].1,
            pid: Some(std::process::id()),
        },
        Target {
            name: "drover (auto, PROXY v2)",
            web: drover_ports[3].0,
            bulk: drover_ports[3].1,
            pid: Some(std::process::id()),
        },
        Target {
            name: "haproxy",
            web: haproxy_web,
            bulk: haproxy_bulk,
            pid: Some(haproxy_pid),
        },
    ];

    // For profiling: DROVER_BENCH_ONLY=copy,haproxy keeps direct plus the targets whose name
    // contains one of them; DROVER_BENCH_PARTS=close,bulk (of keepalive,close,bulk) picks the parts.
    let only = std::env::var("DROVER_BENCH_ONLY").unwrap_or_default();
    let targets: Vec<&Target> = targets
        .iter()
        .filter(|t| t.name.starts_with("direct") || only.split(',').any(|o| t.name.contains(o)))
        .collect();
    let parts = std::env::var("DROVER_BENCH_PARTS").unwrap_or("keepalive,close,bulk".into());
    println!(
        "proxy benchmark: {} rounds, wrk -t{threads} -c{connections} -d{secs}s, backend: \
         drover's bench static server (3 ports, 2 threads), loopback, {} CPUs, nothing pinned",
        rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "drover: {} event-loop threads, 16 KiB buffers; haproxy {}: nbthread {}, maxconn 4096, \
         mode tcp, balance roundrobin, {}",
        Limits::default().threads,
        haproxy_version(),
        Limits::default().threads,
        if std::env::var_os("DROVER_BENCH_HAPROXY_SPLICE").is_some() {
            "option splice-auto"
        } else {
            "no splice (default)"
        }
    );
    let backend_pid = _backend.0.id();
    for keep_alive in [true, false] {
        if !parts.contains(if keep_alive { "keepalive" } else { "close" }) {
            continue;
        }
        let mut results: Vec<Vec<Wrk>> = vec![Vec::new(); targets.len()];
        for round in 0..rounds {
            // Rotate the order each round so no target always runs first or last.
            for k in 0..targets.len() {
                let i = (k + round) % targets.len();
                let before = CpuSnapshot::take(targets[i].pid, backend_pid);
                let r = wrk(targets[i].web, keep_alive, threads, connections, secs);
                results[i].push(before.charge(r, secs));
            }
        }
        println!(
            "\nHTTP {} (median of {rounds} [min..max]; CPU us per request of the proxy, wrk, \
             the backends):",
            if keep_alive {
                "with keep-alive"
            } else {
                "without keep-alive (Connection: close)"
            }
        );
        let field =
            |i: usize, f: fn(&Wrk) -> f64| -> Vec<f64> { results[i].iter().map(f).collect() };
        let direct = median(field(0, |r| r.rps));
        let direct_p99 = median(field(0, |r| r.p99_ms));
        for (i, t) in targets.iter().enumerate() {
            let (rps, p99) = (field(i, |r| r.rps), field(i, |r| r.p99_ms));
            let errors: u64 = results[i].iter().map(|r| r.errors).sum();
            let proxy_cpu = median(field(i, |r| r.cpu.proxy));
            println!(
                "  {:<22} {:>7.0} req/s [{:>6.0}..{:>6.0}] {:>5.1}% of direct   p99 {:>6.2} ms [{:.2}..{:.2}] {:>4.2}x direct   CPU {} / {:.1} / {:.1}{}",
                t.name,
                median(rps.clone()),
                min(&rps),
                max(&rps),
                100.0 * median(rps.clone()) / direct,
                median(p99.clone()),
                min(&p99),
                max(&p99),
                median(p99.clone()) / direct_p99,
                if proxy_cpu.is_nan() { "-".to_string() } else { format!("{proxy_cpu:.1}") },
                median(field(i, |r| r.cpu.wrk)),
                median(field(i, |r| r.cpu.backend)),
                if errors > 0 {
                    format!("   ({errors} socket errors)")
                } else {
                    String::new()
                }
            );
        }
        // drover against HAProxy, round by round: both ran in the same round on the same
        // machine, so the ratio is steadier than the ratio of medians.
        if let Some(h) = targets.iter().position(|t| t.name == "haproxy") {
            for (i, t) in targets.iter().enumerate() {
                if !t.name.starts_with("drover") {
                    continue;
                }
                let pair = |f: fn(&Wrk) -> f64| -> Vec<f64> {
                    results[i]
                        .iter()
                        .zip(&results[h])
                        .map(|(d, x)| f(d) / f(x))
                        .collect()
                };
                let (rps, p99, cpu) = (pair(|r| r.rps), pair(|r| r.p99_ms), pair(|r| r.cpu.proxy));
                println!(
                    "  {:<22} vs haproxy, per round: req/s {:.3}x [{:.3}..{:.3}]   p99 {:.3}x [{:.3}..{:.3}]   CPU/req {:.3}x [{:.3}..{:.3}]",
                    t.name,
                    median(rps.clone()),
                    min(&rps),
                    max(&rps),
                    median(p99.clone()),
                    min(&p99),
                    max(&p99),
                    median(cpu.clone()),
                    min(&cpu),
                    max(&cpu)
                );
            }
        }
        // What the CPU allows: direct kept `cores` busy at wrk + backend CPU per request; a
        // proxy adds its own CPU to every request on the same cores.
        let (w, b) = (
            median(field(0, |r| r.cpu.wrk)),
            median(field(0, |r| r.cpu.backend)),
        );
        let cores = direct * (w + b) / 1e6;
        let budget = cores * 1e6 / (0.9 * direct) - (w + b);
        println!(
            "  CPU bound: direct kept {cores:.2} CPUs busy at {:.1} us/req (wrk {w:.1}, backends {b:.1}); \
             90% of direct on those CPUs leaves a proxy {budget:.1} us/req",
            w + b
        );
        for (i, t) in targets.iter().enumerate().skip(1) {
            let p = median(field(i, |r| r.cpu.proxy));
            println!(
                "    {:<20} at {p:.1} us/req the ceiling is {:.0} req/s, {:.1}% of direct",
                t.name,
                cores * 1e6 / (w + b + p),
                100.0 * cores * 1e6 / (w + b + p) / direct
            );
        }
    }

    if on_path("busybox") && parts.contains("close") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), BODY).unwrap();
        let port = free_port();
        let _httpd = ChildGuard(
            Command::new("busybox")
                .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
                .arg(dir.path())
                .spawn()
                .unwrap(),
        );
        wait_listening(SocketAddr::new(LOOPBACK, port));
        let r = wrk(port, false, threads, connections, secs);
        println!(
            "  (reference: busybox httpd direct, no keep-alive: {:.0} req/s, p99 {:.2} ms)",
            r.rps, r.p99_ms
        );
    }

    if !parts.contains("bulk") {
        return;
    }
    println!("\nOne 1 GiB transfer (GiB/s; median of {rounds}, [min..max]):");
    let mut bulk_results: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        for k in 0..targets.len() {
            let i = (k + round) % targets.len();
            bulk_results[i].push(transfer(targets[i].bulk));
        }
    }
    let direct = median(bulk_results[0].clone());
    for (t, rs) in targets.iter().zip(&bulk_results) {
        println!(
            "  {:<22} {:>6.2} GiB/s [{:.2}..{:.2}] {:>5.1}% of direct",
            t.name,
            median(rs.clone()),
            min(rs),
            max(rs),
            100.0 * median(rs.clone()) / direct
        );
    }
}

struct Target {
    name: &'static str,
    web: u16,
    bulk: u16,
    /// The process doing the proxying, whose CPU time is charged to it (none when direct;
    /// this process for drover, whose other threads idle meanwhile).
    pid: Option<u32>,
}

fn service(name: &str, port: u16, endpoints: &[SocketAddr]) -> ServiceEntry {
    ServiceEntry {
        name: name.to_string(),
        port,
        protocol: Protocol::TCP,
        affinity: SessionAffinity::None,
        proxy_protocol: None,
        endpoints: endpoints.to_vec(),
    }
}

/// A plain TCP round robin as a user would write it: HAProxy's defaults except the thread
/// count written out (its default on this machine's 2 CPUs) and timeouts (it warns without).
fn haproxy_config(web: u16, backends: &[SocketAddr], bulk_port: u16, bulk: SocketAddr) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server b{i} {b}\n"))
        .collect();
    let splice = if std::env::var_os("DROVER_BENCH_HAPROXY_SPLICE").is_some() {
        "    option splice-auto\n"
    } else {
        ""
    };
    format!(
        "global\n    maxconn 4096\n    nbthread {}\n\
         defaults\n    mode tcp\n{splice}    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n\
         listen web\n    bind 127.0.0.1:{web}\n    balance roundrobin\n{servers}\
         listen bulk\n    bind 127.0.0.1:{bulk_port}\n    balance roundrobin\n    server big {bulk}\n",
        drover::proxy::Limits::default().threads
    )
}

#[derive(Debug, Clone)]
struct Wrk {
    rps: f64,
    p99_ms: f64,
    errors: u64,
    cpu: CpuPerRequest,
}

/// CPU microseconds per request, user plus system (including the loopback packet processing
/// the kernel does in each process's context).
#[derive(Debug, Clone, Default)]
struct CpuPerRequest {
    /// The proxy process (NaN when direct; for drover the bench process, whose other threads
    /// idle meanwhile).
    proxy: f64,
    wrk: f64,
    backend: f64,
}

/// CPU seconds used so far by the proxy, by waited-for children of this process (wrk: the
/// backend and HAProxy are waited for only at the end) and by the backend process.
struct CpuSnapshot {
    proxy_pid: Option<u32>,
    backend_pid: u32,
    proxy: f64,
    children: f64,
    backend: f64,
}

impl CpuSnapshot {
    fn take(proxy_pid: Option<u32>, backend_pid: u32) -> CpuSnapshot {
        CpuSnapshot {
            proxy_pid,
            backend_pid,
            proxy: proxy_pid.map_or(f64::NAN, |p| cpu_seconds(p).0),
            children: cpu_seconds(std::process::id()).1,
            backend: cpu_seconds(backend_pid).0,
        }
    }

    /// Fills `r.cpu` with what was spent since the snapshot, per request of the run.
    fn charge(self, mut r: Wrk, secs: u64) -> Wrk {
        let per = |seconds: f64| seconds * 1e6 / (r.rps * secs as f64);
        r.cpu = CpuPerRequest {
            proxy: self
                .proxy_pid
                .map_or(f64::NAN, |p| per(cpu_seconds(p).0 - self.proxy)),
            wrk: per(cpu_seconds(std::process::id()).1 - self.children),
            backend: per(cpu_seconds(self.backend_pid).0 - self.backend),
        };
        r
    }
}

fn wrk(port: u16, keep_alive: bool, threads: u64, connections: u64, secs: u64) -> Wrk {
    let mut cmd = Command::new("wrk");
    cmd.args([
        format!("-t{threads}"),
        format!("-c{connections}"),
        format!("-d{secs}s"),
        "--latency".to_string(),
    ]);
    if !keep_alive {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(format!("http://127.0.0.1:{port}/"));
    let out = cmd.output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let p99_ms = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("99%"))
        .map(|v| duration_ms(v.trim()))
        .unwrap_or_else(|| panic!("no 99% in wrk output:\n{text}"));
    // "Socket errors: connect 0, read 0, write 0, timeout 0" and "Non-2xx or 3xx responses: N".
    let errors = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .flat_map(|l| l.split(|c: char| !c.is_ascii_digit()))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    Wrk {
        rps,
        p99_ms,
        errors,
        cpu: CpuPerRequest::default(),
    }
}

/// wrk prints durations as `123.45us`, `1.23ms` or `1.02s`.
fn duration_ms(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        _ => f64::NAN,
    }
}

/// Reads everything the bulk backend sends through `port`; returns GiB/s.
fn transfer(port: u16) -> f64 {
    let mut s = TcpStream::connect((LOOPBACK, port)).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(total, GIB, "short transfer through port {port}");
    total as f64 / GIB as f64 / secs
}

/// User plus system CPU seconds so far of process `pid`, and of its children it has waited
/// for, from /proc.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: utime, stime, cutime and cstime are the
    // 14th to 17th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let sum = |range: std::ops::Range<usize>| {
        fields.get(range).map_or(0.0, |f| f.iter().sum::<f64>()) / tick
    };
    (sum(11..13), sum(13..15))
}

fn haproxy_version() -> String {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn free_port() -> u16 {
    TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(addr: SocketAddr) {
    assert!(listening(addr), "{addr} never listened");
}

/// Whether `addr` accepts a connection within 20 s.
fn listening(addr: SocketAddr) -> bool {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Kills a child process when the benchmark ends, however it ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The backend process: a static HTTP server on three ports and a bulk sender.
mod backend {
    use super::{BODY, GIB, LOOPBACK};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    pub fn run(ports: &str) {
        let ports: Vec<u16> = ports.split(',').map(|p| p.parse().unwrap()).collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (http, bulk) = ports.split_at(3);
            for &port in http {
                let listener = TcpListener::bind((LOOPBACK, port)).await.unwrap();
                tokio::spawn(async move {
                    loop {
                        let (s, _) = listener.accept().await.unwrap();
                        tokio::spawn(serve_http(s));
                    }
                });
            }
            let listener = TcpListener::bind((LOOPBACK, bulk[0])).await.unwrap();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(send_gib(s));
            }
        });
    }

    /// Answers every request (read up to its blank line) with the fixed body; closes after
    /// answering a request that asked for it.
    async fn serve_http(mut s: TcpStream) {
        let _ = s.set_nodelay(true);
        let keep = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let close = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let mut buf = vec![0u8; 4096];
        let mut filled = 0;
        let mut first = true;
        loop {
            let n = match s.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            filled += n;
            // A PROXY protocol v2 header (its signature holds a blank line) is skipped once,
            // as a backend that accepts it would; v1's text line reads as part of the request.
            if first && filled >= 16 && buf.starts_with(b"\r\n\r\n\0\r\nQUIT\n") {
                let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
                if filled < len {
                    continue;
                }
                buf.copy_within(len..filled, 0);
                filled -= len;
            }
            first = false;
            while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                let request = &buf[..end];
                let wants_close = find_ci(request, b"connection: close");
                let response = if wants_close { &close } else { &keep };
                if s.write_all(response.as_bytes()).await.is_err() || wants_close {
                    return;
                }
                buf.copy_within(end + 4..filled, 0);
                filled -= end + 4;
            }
            if filled == buf.len() {
                return;
            }
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn find_ci(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    }

    async fn send_gib(mut s: TcpStream) {
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = GIB;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if s.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
        let _ = s.shutdown().await;
    }
}
