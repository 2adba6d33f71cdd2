//! The daemon's HTTP status API: `GET /status` (JSON: the source commit, each minion's state,
//! every pod and the last round) and `GET /healthz`. Binds loopback unless told otherwise;
//! a connection limit keeps a flood of clients from starving the reconciler.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The latest status document, replaced after every round.
pub type Shared = Arc<Mutex<serde_json::Value>>;

const MAX_CONNECTIONS: usize = 64;

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
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let status = status.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = respond(&status, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(permit);
            });
        }
    });
    Ok(bound)
}
