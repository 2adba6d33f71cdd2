//! The daemon's HTTP API, on one listener that binds loopback unless told otherwise:
//!
//! | path | answer |
//! |---|---|
//! | `GET /status` | JSON: the source (and since when it is invalid), each minion, every pod, the services and the last round |
//! | `GET /healthz` | `200 ok` while the process runs |
//! | `GET /readyz` | `200 ok` once a round has run with a valid source and a sound store; `503` with the reason otherwise |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text, `crate::metrics`) |
//! | `GET /events` | the event log (`crate::events`) as a v1beta1 `EventList` |
//! | `GET /` | the web interface (`web/`, shipped in the binary; no build step, no CDN) |
//! | `GET /logs?minion=M&pod=P&container=C` | the last 500 lines of a container's log |
//! | `POST /reconcile` | asks for a round now |
//!
//! `HEAD` is answered as `GET` without a body; other methods get `405` with `Allow`, other
//! paths `404`; every body says its `Content-Type`. The page's requests must name this server
//! by an IP address or `localhost` (a `Host` check that defeats DNS rebinding), and
//! `POST /reconcile` must come from the page's own origin (or from a client that is not a
//! browser, which sends no `Origin`): another site cannot make a visitor's browser act. Slow and idle clients are handled by
//! `net::Listener` (header and idle timeouts, a connection limit that evicts the longest-idle
//! connection), so `/healthz` answers even while idle connections fill every slot.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the API serves, replaced by the daemon as things happen.
#[derive(Debug, Clone)]
pub struct State {
    /// The `/status` document.
    pub document: serde_json::Value,
    /// The pods of the last round, for `/logs`.
    pub pods: Vec<crate::plan::pods::ObservedPod>,
    /// Why the daemon is not ready (`/readyz` answers 503 with it); `None` when ready.
    pub not_ready: Option<String>,
    /// Names the API answers to besides IP addresses and `localhost` (`status_hosts`).
    pub host_names: Vec<String>,
}

impl Default for State {
    fn default() -> State {
        State {
            document: serde_json::json!({}),
            pods: Vec::new(),
            not_ready: Some("no round has run yet".into()),
            host_names: Vec::new(),
        }
    }
}

pub type SharedStatus = Arc<Mutex<State>>;

/// What the web interface may ask of the daemon.
#[derive(Clone)]
pub struct Controls {
    /// Asks the loop for a round.
    pub reconcile: tokio::sync::mpsc::Sender<()>,
    pub minions: Vec<Arc<crate::minion::Minion>>,
    pub project: String,
    pub events: Arc<Mutex<crate::events::EventLog>>,
}

/// The status API's limits: requests are tiny and answered at once, so a client has 5 s to send
/// one and may stay idle 30 s between requests (keep-alive pollers reconnect cheaply).
pub const LIMITS: crate::net::Limits = crate::net::Limits {
    header_timeout: std::time::Duration::from_secs(5),
    idle_timeout: std::time::Duration::from_secs(30),
    max_connections: 64,
};

type Body = http_body_util::Full<hyper::body::Bytes>;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const PATHS: [&str; 9] = [
    "/status",
    "/events",
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
    "/app.js",
    "/logs",
    "/reconcile",
];

const PAGE: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
/// The page loads nothing from elsewhere and runs only its own script.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Answers one request: refused (an unknown path, a method the path does not take, a
/// browser's request from elsewhere), or the path's answer.
async fn respond(
    status: &SharedStatus,
    controls: Option<&Controls>,
    req: &Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path();
    if let Some(refused) = refusal(status, req, path) {
        return refused;
    }
    // hyper leaves the body out of an answer to HEAD, keeping its Content-Length.
    match path {
        "/" => {
            let mut response = answer(StatusCode::OK, "text/html; charset=utf-8", PAGE.into());
            response.headers_mut().insert(
                "content-security-policy",
                HeaderValue::from_static(PAGE_POLICY),
            );
            response
        }
        "/app.js" => answer(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            SCRIPT.into(),
        ),
        "/reconcile" => request_round(controls),
        "/logs" => logs(status, controls, req.uri().query().unwrap_or("")).await,
        "/events" => {
            let items = controls
                .map(|c| c.events.lock().expect("event log").items.clone())
                .unwrap_or_default();
            let list =
                serde_json::json!({"kind": "EventList", "apiVersion": "v1beta1", "items": items});
            answer(StatusCode::OK, JSON, list.to_string())
        }
        "/status" => {
            let doc = status.lock().expect("status").document.clone();
            let text = serde_json::to_string_pretty(&doc).expect("serialises");
            answer(StatusCode::OK, JSON, text)
        }
        "/healthz" => answer(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => match status.lock().expect("status").not_ready.clone() {
            None => answer(StatusCode::OK, TEXT, "ok\n".into()),
            Some(why) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: {why}\n"),
            ),
        },
        _ => metrics(req),
    }
}

/// Why a request is refused, as the answer: an unknown path, a method the path does not take,
/// or a browser's request from elsewhere.
fn refusal(status: &SharedStatus, req: &Request<Incoming>, path: &str) -> Option<Response<Body>> {
    if !PATHS.contains(&path) {
        let body = serde_json::json!({"error": format!("not found: {path}"), "paths": PATHS});
        return Some(answer(StatusCode::NOT_FOUND, JSON, body.to_string()));
    }
    let allowed = if path == "/reconcile" {
        "POST"
    } else {
        "GET, HEAD"
    };
    let method_ok = match path {
        "/reconcile" => req.method() == Method::POST,
        _ => req.method() == Method::GET || req.method() == Method::HEAD,
    };
    if !method_ok {
        let body = serde_json::json!({"error": format!("method {} not allowed", req.method())});
        let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, JSON, body.to_string());
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        return Some(response);
    }
    // One rule for every path: what another web site could read through a visitor's browser
    // (DNS rebinding) is as sensitive as what it could do.
    let names = status.lock().expect("status").host_names.clone();
    if let Err(why) = browser_checks(req, &names) {
        let body = serde_json::json!({ "error": why });
        return Some(answer(StatusCode::FORBIDDEN, JSON, body.to_string()));
    }
    None
}

/// `POST /reconcile`: asks the daemon for a round.
fn request_round(controls: Option<&Controls>) -> Response<Body> {
    match controls {
        Some(c) => {
            // A round already asked for is enough: a full queue is not an error.
            let _ = c.reconcile.try_send(());
            answer(
                StatusCode::ACCEPTED,
                JSON,
                r#"{"reconcile":"requested"}"#.into(),
            )
        }
        None => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            JSON,
            r#"{"error":"this server cannot reconcile"}"#.into(),
        ),
    }
}

/// `GET /metrics`.
fn metrics(req: &Request<Incoming>) -> Response<Body> {
    // Prometheus asks for OpenMetrics; anything else (curl, promtool, older scrapers)
    // gets the classic text format.
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let metrics = crate::metrics::global();
    if accept.contains("application/openmetrics-text") {
        answer(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            metrics.render(),
        )
    } else {
        answer(
            StatusCode::OK,
            crate::metrics::TEXT_CONTENT_TYPE,
            metrics.render_text(),
        )
    }
}

/// The `Host` must be an IP address, `localhost` or one of the configured `names` (so a
/// hostile name rebound to this address cannot read or act), and a browser's `Origin`, when
/// sent, must be this server.
fn browser_checks(req: &Request<Incoming>, names: &[String]) -> Result<(), String> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    // No Host at all is a plain HTTP/1.0 client (a health check): a browser always sends one.
    let named = names.iter().any(|n| n.eq_ignore_ascii_case(name));
    if !name.is_empty()
        && name != "localhost"
        && !named
        && name.parse::<std::net::IpAddr>().is_err()
    {
        return Err(format!(
            "Host {host:?}: address this server by IP address or localhost (or add the name \
             to status_hosts in drover.toml)"
        ));
    }
    if let Some(origin) = req.headers().get(hyper::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if origin != format!("http://{host}") {
            return Err(format!("cross-origin request from {origin:?} refused"));
        }
    }
    Ok(())
}

/// The last lines of one container's log, as text.
async fn logs(status: &SharedStatus, controls: Option<&Controls>, query: &str) -> Response<Body> {
    let param = |key: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| percent_decode(v))
        })
    };
    let (Some(controls), Some(minion), Some(pod)) = (controls, param("minion"), param("pod"))
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            TEXT,
            "give minion= and pod= (and container=)\n".into(),
        );
    };
    let found = {
        let state = status.lock().expect("status");
        state
            .pods
            .iter()
            .find(|p| p.minion == minion && p.id == pod)
            .cloned()
    };
    let Some(found) = found else {
        return answer(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("no pod {pod} on {minion}\n"),
        );
    };
    // Only a container of this pod as the project observed it: the name never reaches
    // Docker unchecked (it would name any container on the minion).
    let container = match param("container") {
        Some(asked) if !found.containers.iter().any(|c| c.name == asked) => {
            return answer(
                StatusCode::NOT_FOUND,
                TEXT,
                format!("pod {pod} on {minion} has no container {asked:?}\n"),
            );
        }
        Some(asked) => asked,
        None => match found.containers.first() {
            Some(c) => c.name.clone(),
            None => {
                return answer(
                    StatusCode::NOT_FOUND,
                    TEXT,
                    format!("pod {pod} on {minion} has no container\n"),
                )
            }
        },
    };
    let Some(m) = controls.minions.iter().find(|m| m.name() == minion) else {
        return answer(StatusCode::NOT_FOUND, TEXT, format!("no minion {minion}\n"));
    };
    let name = crate::minion::pods::name_in(&controls.project, &found, &container);
    match tail_logs(m, &name, 500).await {
        Ok(text) => answer(StatusCode::OK, TEXT, text),
        Err(e) => answer(StatusCode::BAD_GATEWAY, TEXT, format!("{e}\n")),
    }
}

/// The last `lines` lines of a container's stdout and stderr.
async fn tail_logs(
    minion: &crate::minion::Minion,
    container: &str,
    lines: u64,
) -> Result<String, crate::minion::MinionError> {
    use futures_util::TryStreamExt;
    let query = crate::minion::LogQuery {
        tail: Some(lines),
        ..Default::default()
    };
    let chunks: Vec<_> = minion.logs_with(container, &query).try_collect().await?;
    Ok(chunks.iter().map(|c| c.to_string()).collect())
}

/// `%41` and `+` as a query string spells them.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(code: StatusCode, content_type: &'static str, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Binds `addr` and serves until the runtime shuts down. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    status: SharedStatus,
    controls: Option<Controls>,
) -> std::io::Result<SocketAddr> {
    serve_with(addr, status, controls, LIMITS).await
}

/// `serve` with other limits (tests use short ones).
pub async fn serve_with(
    addr: SocketAddr,
    status: SharedStatus,
    controls: Option<Controls>,
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
            let controls = controls.clone();
            tokio::spawn(async move {
                let conn = Arc::new(conn);
                let busy_conn = conn.clone();
                let service = hyper::service::service_fn(move |req| {
                    let busy = busy_conn.busy();
                    let (status, controls) = (status.clone(), controls.clone());
                    async move {
                        let response = respond(&status, controls.as_ref(), &req).await;
                        drop(busy);
                        Ok::<_, Infallible>(response)
                    }
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
        request(addr, "GET", path).await
    }

    async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
        request_with(addr, method, path, "").await
    }

    async fn request_with(addr: SocketAddr, method: &str, path: &str, headers: &str) -> String {
        let host = if headers.contains("Host:") {
            String::new()
        } else {
            format!("Host: {addr}\r\n")
        };
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("{method} {path} HTTP/1.1\r\n{host}{headers}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn healthz_answers_within_a_second_while_200_idle_connections_are_open() {
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            SharedStatus::default(),
            None,
        )
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
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
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
        let addr = serve_with(
            "127.0.0.1:0".parse().unwrap(),
            SharedStatus::default(),
            None,
            limits,
        )
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

    #[tokio::test]
    async fn answers_as_http_expects_for_methods_paths_and_readiness() {
        let state = SharedStatus::default();
        let addr = serve("127.0.0.1:0".parse().unwrap(), state.clone(), None)
            .await
            .unwrap();
        let status = get(addr, "/status").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(
            status.contains("content-type: application/json"),
            "{status}"
        );

        let missing = get(addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        assert!(
            missing.contains("\"/readyz\""),
            "names the paths: {missing}"
        );

        let post = request(addr, "POST", "/status").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.contains("allow: GET, HEAD"), "{post}");

        let head = request(addr, "HEAD", "/healthz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-length: 3"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "no body: {head:?}");

        let unready = get(addr, "/readyz").await;
        assert!(unready.starts_with("HTTP/1.1 503"), "{unready}");
        assert!(
            unready.ends_with("not ready: no round has run yet\n"),
            "{unready}"
        );
        state.lock().unwrap().not_ready = None;
        let ready = get(addr, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

        // Prometheus asks for OpenMetrics and gets it; a plain client gets the classic format.
        let accept =
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n";
        let metrics = request_with(addr, "GET", "/metrics", accept).await;
        assert!(
            metrics.contains("application/openmetrics-text"),
            "{metrics}"
        );
        assert!(metrics.ends_with("# EOF\n"), "{metrics}");
        // Every path answers only to an IP address or localhost: a rebound name reads nothing.
        for path in ["/status", "/metrics", "/events", "/healthz", "/"] {
            let rebound = request_with(addr, "GET", path, "Host: evil.example:7979\r\n").await;
            assert!(rebound.starts_with("HTTP/1.1 403"), "{path}: {rebound}");
            let named = request_with(addr, "GET", path, "Host: localhost:7979\r\n").await;
            assert!(!named.starts_with("HTTP/1.1 403"), "{path}: {named}");
        }
        // A name the config allows (status_hosts) is answered; only that one.
        state.lock().unwrap().host_names = vec!["drover.internal".into()];
        let allowed = request_with(addr, "GET", "/healthz", "Host: Drover.Internal:7979\r\n").await;
        assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
        let other = request_with(addr, "GET", "/healthz", "Host: evil.example\r\n").await;
        assert!(other.starts_with("HTTP/1.1 403"), "{other}");
        let classic = get(addr, "/metrics").await;
        assert!(classic.contains("text/plain; version=0.0.4"), "{classic}");
        assert!(
            classic.contains("# TYPE drover_rounds_total counter") && !classic.contains("# EOF"),
            "{classic}"
        );
    }
}
