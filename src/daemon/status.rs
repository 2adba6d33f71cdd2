//! The daemon's HTTP status API: `GET /status` (JSON: the source commit, each minion's state,
//! every pod and the last round) and `GET /healthz`. Binds loopback unless told otherwise.
//! Slow and idle clients are handled by `net::Listener` (header and idle timeouts, a connection
//! limit that evicts the longest-idle connection), so `/healthz` answers even while idle
//! connections fill every slot.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The latest status document, replaced after every round.
pub type Shared = Arc<Mutex<serde_json::Value>>;

/// The status API's limits: requests are tiny and answered at once, so a client has 5 s to send
/// one and may stay idle 30 s between requests (keep-alive pollers reconnect cheaply).
pub const LIMITS: crate::net::Limits = crate::net::Limits {
    header_timeout: std::time::Duration::from_secs(5),
    idle_timeout: std::time::Duration::from_secs(30),
    max_connections: 64,
};

type Body = http_body_util::Full<hyper::body::Bytes>;

fn respond(status: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let (code, text) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/status") => {
            let doc = status.lock().expect("status").clone();
            (
                StatusCode::OK,
                serde_json::to_string_pretty(&doc).expect("serialises"),
            )
        }
        (&hyper::Method::GET, "/healthz") => (StatusCode::OK, "ok".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found: try /status".to_string()),
    };
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = code;
    response
}

/// Binds `addr` and serves until the runtime shuts down. Returns the bound address.
pub async fn serve(addr: SocketAddr, status: Shared) -> std::io::Result<SocketAddr> {
    serve_with(addr, status, LIMITS).await
}

/// `serve` with other limits (tests use short ones).
pub async fn serve_with(
    addr: SocketAddr,
    status: Shared,
    limits: crate::net::Limits,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let conns = crate::net::Listener::new(limits);
    tokio::spawn(async move {
        loop {
            // Accepting never waits for a free slot: admission decides at once, so a full
            // listener cannot stop health checks from getting in.
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Some(conn) = conns.admit() else {
                continue; // every slot is mid-request: close the newcomer
            };
            let status = status.clone();
            tokio::spawn(async move {
                let conn = Arc::new(conn);
                let busy_conn = conn.clone();
                let service = hyper::service::service_fn(move |req| {
                    let _busy = busy_conn.busy();
                    let response = respond(&status, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let http = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn.track(stream)), service);
                tokio::select! {
                    _ = http => {}
                    _ = conn.closed() => {} // dropping the connection closes the socket
                }
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn healthz_answers_within_a_second_while_200_idle_connections_are_open() {
        let addr = serve("127.0.0.1:0".parse().unwrap(), Shared::default())
            .await
            .unwrap();
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(1), get(addr, "/healthz"))
            .await
            .expect("/healthz within 1 s");
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
            "{answer}"
        );
        eprintln!(
            "healthz beside 200 idle connections: {:?}",
            started.elapsed()
        );
        // And again, so a second health check is not the one evicted.
        tokio::time::timeout(Duration::from_secs(1), get(addr, "/healthz"))
            .await
            .expect("second /healthz within 1 s");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_request_is_closed() {
        let limits = crate::net::Limits {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(600),
            max_connections: 4,
        };
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), Shared::default(), limits)
            .await
            .unwrap();
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /status HTTP/1.1\r\nHo").await.unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("closed by the header timeout")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
