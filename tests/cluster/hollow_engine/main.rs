//! The hollow engine: one process serving N fake Docker Engines, each on its own unix socket
//! (`DIR/sockets/mI.sock`) with its own containers, images, volumes and execs in memory, for
//! scale tests of drover (issue 26: a thousand minions from one drover). Each answers the
//! Docker API calls drover makes as Docker Engine 20.10 (API 1.41) answers them: the same
//! paths (with or without a `/vX.Y` prefix), status codes, JSON shapes and streaming. Nothing
//! runs: a started container is running at once and stays so until stopped, killed or
//! removed; every image name "pulls" at once; an exec exits 0 with no output.
//!
//! Faults, per engine, from the control socket (`DIR/control.sock`, one text line per
//! connection, the answer then the connection closed):
//!
//! ```text
//! mI hang         accept connections, answer nothing (until healed)
//! mI slow MS      answer each request MS milliseconds late
//! mI lose         every container, exec and volume vanishes, open connections drop (a reboot
//!                 with the host's state lost); images stay
//! mI heal         back to normal (hang and slow end)
//! all CMD         CMD on every engine
//! status          one line per engine, then a total line
//! stats           the process's memory and totals
//! ping            pong
//! ```
//!
//! Usage: `hollow-engine serve --dir DIR --minions N [--api-version 1.41] [--threads 2]`,
//! `hollow-engine ctl --dir DIR COMMAND...` (sends one control line, prints the answer).
//! `tests/cluster/hollow` runs it behind real sshds.

#![recursion_limit = "512"]

mod api;
mod engine;
mod load;
mod util;

use engine::{Engine, Fault};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

struct Args {
    dir: PathBuf,
    minions: usize,
    threads: usize,
    limits: api::Limits,
}

fn usage() -> ! {
    eprintln!(
        "usage: hollow-engine serve --dir DIR --minions N [--api-version X.Y] [--threads T]\n       hollow-engine ctl --dir DIR COMMAND..."
    );
    std::process::exit(2)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = argv.first() else { usage() };
    let mut dir = None;
    let mut minions = 0usize;
    let mut threads = 2usize;
    let mut max = engine::API_VERSION.to_string();
    let mut rest = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let value = |i: usize| argv.get(i + 1).cloned().unwrap_or_else(|| usage());
        match argv[i].as_str() {
            "--dir" => {
                dir = Some(PathBuf::from(value(i)));
                i += 1;
            }
            "--minions" => {
                minions = value(i).parse().unwrap_or_else(|_| usage());
                i += 1;
            }
            "--threads" => {
                threads = value(i).parse().unwrap_or_else(|_| usage());
                i += 1;
            }
            "--api-version" => {
                max = value(i);
                i += 1;
            }
            other => rest.push(other.to_string()),
        }
        i += 1;
    }
    let Some(dir) = dir else { usage() };
    match mode.as_str() {
        "serve" if minions > 0 => {
            let (a, b) = max.split_once('.').unwrap_or_else(|| usage());
            let limits = api::Limits {
                max: (
                    a.parse().unwrap_or_else(|_| usage()),
                    b.parse().unwrap_or_else(|_| usage()),
                ),
            };
            serve(Args {
                dir,
                minions,
                threads: threads.max(1),
                limits,
            })
        }
        "ctl" if !rest.is_empty() => std::process::exit(ctl(&dir, &rest.join(" "))),
        _ => usage(),
    }
}

/// Sends one control line and prints the answer; exit 1 when the engine said `error`.
fn ctl(dir: &Path, line: &str) -> i32 {
    let path = dir.join("control.sock");
    let mut s = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hollow-engine: {}: {e}", path.display());
            return 1;
        }
    };
    if s.write_all(format!("{line}\n").as_bytes()).is_err() {
        return 1;
    }
    let mut answer = String::new();
    if s.read_to_string(&mut answer).is_err() {
        return 1;
    }
    print!("{answer}");
    if answer.starts_with("error") {
        1
    } else {
        0
    }
}

/// Lets the process hold a socket per connection for a thousand engines.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed, which lives
    // on this stack frame for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn serve(args: Args) {
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let sockets = args.dir.join("sockets");
        std::fs::create_dir_all(&sockets).expect("sockets directory");
        let engines: Arc<Vec<Arc<Engine>>> = Arc::new(
            (1..=args.minions)
                .map(|i| Arc::new(Engine::new(i)))
                .collect(),
        );
        for engine in engines.iter() {
            let path = sockets.join(format!("{}.sock", engine.name));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path)
                .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
            tokio::spawn(accept(engine.clone(), listener, args.limits));
        }
        std::fs::write(
            args.dir.join("engine.pid"),
            format!("{}\n", std::process::id()),
        )
        .expect("engine.pid");
        let control_path = args.dir.join("control.sock");
        let _ = std::fs::remove_file(&control_path);
        let control = UnixListener::bind(&control_path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", control_path.display()));
        println!(
            "hollow-engine: {} engines on {}/mI.sock (API {}.{} and below), control {}",
            args.minions,
            sockets.display(),
            args.limits.max.0,
            args.limits.max.1,
            control_path.display()
        );
        loop {
            let Ok((stream, _)) = control.accept().await else {
                continue;
            };
            let engines = engines.clone();
            tokio::spawn(async move {
                let _ = control_connection(&engines, stream).await;
            });
        }
    })
}

async fn accept(engine: Arc<Engine>, listener: UnixListener, limits: api::Limits) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("hollow-engine: {}: accept: {e}", engine.name);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(connection(engine.clone(), stream, limits));
    }
}

/// One client connection, served until it closes or the engine `lose`s its state.
async fn connection(engine: Arc<Engine>, stream: UnixStream, limits: api::Limits) {
    engine.connections.fetch_add(1, Ordering::Relaxed);
    let mut epoch = engine.epoch.subscribe();
    let served = engine.clone();
    let service = service_fn(move |req| api::handle(served.clone(), limits, req));
    let conn = http1::Builder::new()
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        _ = conn => {}
        _ = epoch.changed() => {}
    }
    engine.connections.fetch_sub(1, Ordering::Relaxed);
}

async fn control_connection(engines: &[Arc<Engine>], stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let answer = command(engines, line.trim());
    write.write_all(answer.as_bytes()).await?;
    write.shutdown().await
}

fn command(engines: &[Arc<Engine>], line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["ping"] => "pong\n".into(),
        ["status"] => {
            let mut out = String::new();
            let (mut containers, mut running, mut connections) = (0, 0, 0);
            for e in engines {
                let c = e.counts();
                let conns = e.connections.load(Ordering::Relaxed);
                containers += c.containers;
                running += c.running;
                connections += conns;
                out.push_str(&format!(
                    "{} fault={} containers={} running={} images={} volumes={} connections={} requests={}\n",
                    e.name,
                    *e.fault.borrow(),
                    c.containers,
                    c.running,
                    c.images,
                    c.volumes,
                    conns,
                    e.requests.load(Ordering::Relaxed)
                ));
            }
            out.push_str(&format!(
                "total engines={} containers={containers} running={running} connections={connections}\n",
                engines.len()
            ));
            out
        }
        ["stats"] => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let field = |k: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(k))
                    .map(|l| l[k.len()..].trim().to_string())
                    .unwrap_or_default()
            };
            let containers: usize = engines.iter().map(|e| e.counts().containers).sum();
            format!(
                "engines={} containers={containers} rss={} hwm={} threads={} strings={}\n",
                engines.len(),
                field("VmRSS:").replace(' ', ""),
                field("VmHWM:").replace(' ', ""),
                field("Threads:"),
                util::interner().len()
            )
        }
        ["all", rest @ ..] if !rest.is_empty() => engines
            .iter()
            .map(|e| fault(e, rest))
            .collect::<Vec<_>>()
            .join(""),
        [name, rest @ ..] if !rest.is_empty() => {
            match engines.iter().find(|e| e.name == *name) {
                Some(e) => fault(e, rest),
                None => format!("error: no minion {name} (m1..m{})\n", engines.len()),
            }
        }
        _ => format!(
            "error: unknown command `{line}` (mI hang|slow MS|lose|heal, all CMD, status, stats, ping)\n"
        ),
    }
}

fn fault(e: &Engine, words: &[&str]) -> String {
    match words {
        ["hang"] => {
            e.fault.send_replace(Fault::Hang);
            format!("{} hang\n", e.name)
        }
        ["slow", ms] => match ms.parse::<u64>() {
            Ok(ms) => {
                e.fault.send_replace(Fault::Slow(ms));
                format!("{} slow {ms}\n", e.name)
            }
            Err(_) => format!("error: slow takes milliseconds, not `{ms}`\n"),
        },
        ["heal"] => {
            e.fault.send_replace(Fault::None);
            format!("{} heal\n", e.name)
        }
        ["lose"] => {
            let c = e.lose();
            format!(
                "{} lose: {} containers ({} running), {} volumes gone\n",
                e.name, c.containers, c.running, c.volumes
            )
        }
        _ => format!("error: unknown fault `{}`\n", words.join(" ")),
    }
}
