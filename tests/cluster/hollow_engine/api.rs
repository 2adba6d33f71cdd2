//! Docker Engine API 1.41 over HTTP/1.1: the paths, status codes, headers and streaming of a
//! Docker 20.10 engine for the calls drover makes (and the few the CLI needs to look).

use crate::engine::{ApiError, Engine, Fault, ENGINE_VERSION, MIN_API_VERSION};
use crate::util::{self, bool_value, parse_filters};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// A response body: all of it at once (Content-Length), or streamed (chunked) from a channel.
pub enum Out {
    Full(Option<Bytes>),
    Chan(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Out {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Out::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Out::Chan(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Out::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Out::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Out::Full(None) => SizeHint::with_exact(0),
            Out::Chan(_) => SizeHint::default(),
        }
    }
}

type Answer = Result<Response<Out>, ApiError>;

/// The highest API version the engines accept (`--api-version`; Docker 20.10's is 1.41).
#[derive(Clone, Copy)]
pub struct Limits {
    pub max: (u32, u32),
}

pub async fn handle(
    engine: Arc<Engine>,
    limits: Limits,
    req: Request<Incoming>,
) -> Result<Response<Out>, Infallible> {
    engine.requests.fetch_add(1, Ordering::Relaxed);
    stall(&engine).await;
    let max = format!("{}.{}", limits.max.0, limits.max.1);
    let mut response = match route(&engine, limits, req).await {
        Ok(r) => r,
        Err(e) => error(e),
    };
    let h = response.headers_mut();
    h.insert("Api-Version", HeaderValue::from_str(&max).expect("ascii"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_str(&format!("Docker/{ENGINE_VERSION} (linux)")).expect("ascii"),
    );
    Ok(response)
}

/// Waits as the engine's fault says: forever while it hangs, MS milliseconds when slow.
async fn stall(engine: &Engine) {
    let mut fault = engine.fault.subscribe();
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::None => return,
            Fault::Slow(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return;
            }
            Fault::Hang => {
                if fault.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

fn error(e: ApiError) -> Response<Out> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &serde_json::json!({"message": e.message}));
    *r.status_mut() = status;
    r
}

/// JSON as Go's `json.NewEncoder` writes it: the value and a newline.
fn json_bytes(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).expect("serialises");
    b.push(b'\n');
    Bytes::from(b)
}

/// Go's HTTP server gives a body of up to 2048 bytes a Content-Length and sends a longer one
/// chunked.
fn json_response(status: StatusCode, v: &Value) -> Response<Out> {
    let bytes = json_bytes(v);
    let body = if bytes.len() > 2048 {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(bytes);
        Out::Chan(rx)
    } else {
        Out::Full(Some(bytes))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn ok_json(v: &Value) -> Answer {
    Ok(json_response(StatusCode::OK, v))
}

fn empty(status: StatusCode) -> Answer {
    let mut r = Response::new(Out::Full(None));
    *r.status_mut() = status;
    Ok(r)
}

/// A streamed answer: `lines` (each JSON and Docker's stream line end, `\r\n`) sent chunked.
fn json_stream(lines: Vec<Value>) -> Answer {
    let (tx, rx) = mpsc::channel(lines.len().max(1));
    for l in lines {
        let mut b = serde_json::to_vec(&l).expect("serialises");
        b.extend_from_slice(b"\r\n");
        let _ = tx.try_send(Bytes::from(b));
    }
    let mut r = Response::new(Out::Chan(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn page_not_found() -> ApiError {
    ApiError::new(404, "page not found")
}

fn version_of(text: &str) -> Option<(u32, u32)> {
    let (a, b) = text.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The path without its `/vX.Y` prefix, that version checked as Docker's middleware does.
fn unversioned(path: &str, limits: Limits) -> Result<&str, ApiError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(path);
    };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok(path);
    }
    let Some(v) = version_of(version) else {
        return Err(page_not_found());
    };
    let min = version_of(MIN_API_VERSION).expect("valid");
    if v < min {
        return Err(ApiError::new(
            400,
            format!("client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"),
        ));
    }
    if v > limits.max {
        return Err(ApiError::new(
            400,
            format!(
                "client version {version} is too new. Maximum supported API version is {}.{}",
                limits.max.0, limits.max.1
            ),
        ));
    }
    Ok(tail)
}

/// A query parameter's value.
fn get<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
}

/// A request body as JSON (`null` when empty).
async fn read_json(body: &mut Incoming) -> Result<Value, ApiError> {
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::new(400, e.to_string()))?;
        if let Ok(chunk) = frame.into_data() {
            data.extend_from_slice(&chunk);
            if data.len() > 64 << 20 {
                return Err(ApiError::new(413, "request body too large"));
            }
        }
    }
    if data.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&data).map_err(|e| ApiError::new(400, e.to_string()))
}

async fn route(engine: &Arc<Engine>, limits: Limits, mut req: Request<Incoming>) -> Answer {
    let method = req.method().clone();
    let full = req.uri().path().to_string();
    let path = unversioned(&full, limits)?.to_string();
    let query = util::parse_query(req.uri().query());
    let q = |k: &str| get(&query, k);
    let filters = || parse_filters(q("filters")).map_err(|e| ApiError::new(400, e));
    let seconds = |k: &str| -> Result<Option<i64>, ApiError> {
        match q(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::new(
                    400,
                    format!("strconv.Atoi: parsing \"{v}\": invalid syntax"),
                )
            }),
        }
    };

    if let Some(rest) = path.strip_prefix("/images/") {
        return images(engine, &method, rest, &query, &mut req).await;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => {
            let mut r = Response::new(if method == Method::HEAD {
                Out::Full(None)
            } else {
                Out::Full(Some(Bytes::from_static(b"OK")))
            });
            let h = r.headers_mut();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            h.insert(
                "Cache-Control",
                HeaderValue::from_static("no-cache, no-store, must-revalidate"),
            );
            h.insert("Pragma", HeaderValue::from_static("no-cache"));
            Ok(r)
        }
        (&Method::GET, ["version"]) => ok_json(&engine.version_json()),
        (&Method::GET, ["info"]) => ok_json(&engine.info_json()),
        (&Method::GET, ["events"]) => events(engine, q("since"), q("until"), filters()?),
        (&Method::GET, ["containers", "json"]) => {
            ok_json(&engine.list(bool_value(q("all")), &filters()?)?)
        }
        (&Method::POST, ["containers", "create"]) => {
            let body = read_json(req.body_mut()).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &engine.create_container(q("name"), &body)?,
            ))
        }
        (&Method::GET, ["containers", id, "json"]) => ok_json(&engine.inspect(id)?),
        (&Method::POST, ["containers", id, "start"]) => {
            if engine.start(id)? {
                empty(StatusCode::NO_CONTENT)
            } else {
                empty(StatusCode::NOT_MODIFIED)
            }
        }
        (&Method::POST, ["containers", id, "stop"]) => {
            if engine.stop(id, seconds("t")?)? {
                empty(StatusCode::NO_CONTENT)
            } else {
                empty(StatusCode::NOT_MODIFIED)
            }
        }
        (&Method::POST, ["containers", id, "restart"]) => {
            engine.restart(id, seconds("t")?)?;
            empty(StatusCode::NO_CONTENT)
        }
        (&Method::POST, ["containers", id, "kill"]) => {
            engine.kill(id, q("signal"))?;
            empty(StatusCode::NO_CONTENT)
        }
        (&Method::DELETE, ["containers", id]) => {
            engine.remove(id, bool_value(q("force")), bool_value(q("v")))?;
            empty(StatusCode::NO_CONTENT)
        }
        (&Method::GET, ["containers", id, "logs"]) => {
            if !bool_value(q("stdout")) && !bool_value(q("stderr")) {
                return Err(ApiError::new(
                    400,
                    "Bad parameters: you must choose at least one stream",
                ));
            }
            logs(engine, id, bool_value(q("follow")))
        }
        (&Method::POST, ["containers", id, "exec"]) => {
            let body = read_json(req.body_mut()).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &engine.exec_create(id, &body)?,
            ))
        }
        (&Method::POST, ["exec", id, "start"]) => {
            let id = id.to_string();
            exec_start(engine, &id, req).await
        }
        (&Method::GET, ["exec", id, "json"]) => ok_json(&engine.exec_inspect(id)?),
        (&Method::POST, ["exec", id, "resize"]) => {
            engine.exec_resize(id)?;
            empty(StatusCode::OK)
        }
        (&Method::GET, ["images", "json"]) => {
            ok_json(&engine.images_list(bool_value(q("all")), &filters()?)?)
        }
        (&Method::POST, ["volumes", "create"]) => {
            let body = read_json(req.body_mut()).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &engine.volume_create(&body)?,
            ))
        }
        (&Method::GET, ["volumes"]) => ok_json(&engine.volumes_list(&filters()?)?),
        (&Method::GET, ["volumes", name]) => ok_json(&engine.volume_inspect(name)?),
        (&Method::DELETE, ["volumes", name]) => {
            engine.volume_remove(name, bool_value(q("force")))?;
            empty(StatusCode::NO_CONTENT)
        }
        _ => Err(page_not_found()),
    }
}

/// `/images/...`: names hold slashes, so these paths are taken apart by their ends.
async fn images(
    engine: &Arc<Engine>,
    method: &Method,
    rest: &str,
    query: &[(String, String)],
    req: &mut Request<Incoming>,
) -> Answer {
    let q = |k: &str| get(query, k);
    match (method, rest) {
        (&Method::GET, "json") => {
            let filters = parse_filters(q("filters")).map_err(|e| ApiError::new(400, e))?;
            ok_json(&engine.images_list(bool_value(q("all")), &filters)?)
        }
        (&Method::POST, "create") => {
            let from_image = q("fromImage").unwrap_or("");
            let from_src = q("fromSrc").unwrap_or("");
            if !from_image.is_empty() {
                let lines = engine.pull(from_image, q("tag").unwrap_or(""))?;
                return json_stream(lines);
            }
            if from_src == "-" {
                let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
                let mut size = 0i64;
                let body = req.body_mut();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| ApiError::new(500, e.to_string()))?;
                    if let Ok(chunk) = frame.into_data() {
                        size += chunk.len() as i64;
                        sha2::Digest::update(&mut hasher, &chunk);
                    }
                }
                let layer: [u8; 32] = sha2::Digest::finalize(hasher).into();
                let line =
                    engine.import(layer, size, q("repo").unwrap_or(""), q("tag").unwrap_or(""))?;
                return json_stream(vec![line]);
            }
            if !from_src.is_empty() {
                return Err(ApiError::new(
                    500,
                    format!("the hollow engine cannot fetch {from_src}: import from \"-\""),
                ));
            }
            Err(ApiError::new(400, "invalid reference format"))
        }
        (&Method::POST, "load") => {
            let mut reader = crate::load::TarReader::new();
            let body = req.body_mut();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| ApiError::new(500, e.to_string()))?;
                if let Ok(chunk) = frame.into_data() {
                    reader.push(&chunk).map_err(|e| ApiError::new(500, e))?;
                }
            }
            let lines = engine.load(&reader.loaded)?;
            json_stream(lines)
        }
        (&Method::GET, r) if r.ends_with("/json") => {
            ok_json(&engine.image_inspect(&r[..r.len() - "/json".len()])?)
        }
        _ => Err(page_not_found()),
    }
}

/// `GET /events`: the kept events since `since`, then each new one as it happens, until
/// `until` or the client goes.
fn events(
    engine: &Arc<Engine>,
    since: Option<&str>,
    until: Option<&str>,
    filters: util::Filters,
) -> Answer {
    let now = util::now_nanos();
    let since = since.map(|s| parse_time(s, now)).transpose()?;
    let until = until.map(|s| parse_time(s, now)).transpose()?;
    let (past, mut rx) = engine.subscribe(since, &filters);
    let (tx, out) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        for e in past {
            if until.is_some_and(|u| e.time > u) {
                return;
            }
            if tx.send(json_bytes(&e.to_json())).await.is_err() {
                return;
            }
        }
        let deadline = async {
            match until {
                Some(u) => {
                    let wait = (u - util::now_nanos()).max(0) as u64;
                    tokio::time::sleep(Duration::from_nanos(wait)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = &mut deadline => return,
                got = rx.recv() => match got {
                    Ok(e) => {
                        if e.matches(&filters) && tx.send(json_bytes(&e.to_json())).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    let mut r = Response::new(Out::Chan(out));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Docker's event times: Unix seconds (with a fraction), or a duration ago (`10m`).
fn parse_time(s: &str, now: i64) -> Result<i64, ApiError> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: f64 = num.parse().map_err(|_| {
        ApiError::new(
            400,
            format!("failed to parse value as time or duration: \"{s}\""),
        )
    })?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => {
            return Err(ApiError::new(
                400,
                format!("failed to parse value as time or duration: \"{s}\""),
            ))
        }
    };
    Ok(now - (n * scale) as i64)
}

/// `GET /containers/{id}/logs`: a hollow container writes nothing. A followed log of a
/// running container stays open until it stops.
fn logs(engine: &Arc<Engine>, id: &str, follow: bool) -> Answer {
    let (id, running, generation) = engine.logs_check(id)?;
    let (tx, out) = mpsc::channel::<Bytes>(1);
    if follow && running {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tick.tick() => if engine.log_done(&id, generation) { return },
                }
            }
        });
    }
    Ok(Response::new(Out::Chan(out)))
}

/// `POST /exec/{id}/start`: the exec runs at once (exit code 0, no output). Attached, as the
/// CLI and bollard ask (`Upgrade: tcp`), the connection is taken over (101 UPGRADED) and the
/// empty output ends at once.
async fn exec_start(engine: &Arc<Engine>, id: &str, mut req: Request<Incoming>) -> Answer {
    let upgrade = req
        .headers()
        .get(hyper::header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"tcp"));
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body = read_json(req.body_mut()).await?;
    let detach = body["Detach"].as_bool().unwrap_or(false);
    engine.exec_start(id)?;
    if detach {
        return empty(StatusCode::OK);
    }
    let mut r = if upgrade {
        tokio::spawn(async move {
            // Nothing to say: the stream ends as soon as it is handed over.
            if let Ok(io) = on_upgrade.await {
                drop(io);
            }
        });
        let mut r = Response::new(Out::Full(None));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
        let h = r.headers_mut();
        h.insert("Connection", HeaderValue::from_static("Upgrade"));
        h.insert("Upgrade", HeaderValue::from_static("tcp"));
        r
    } else {
        Response::new(Out::Chan(mpsc::channel(1).1))
    };
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.docker.raw-stream"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked_as_docker_does() {
        let limits = Limits { max: (1, 41) };
        assert_eq!(unversioned("/v1.41/_ping", limits).unwrap(), "/_ping");
        assert_eq!(unversioned("/_ping", limits).unwrap(), "/_ping");
        assert_eq!(
            unversioned("/v1.53/version", limits).unwrap_err().message,
            "client version 1.53 is too new. Maximum supported API version is 1.41"
        );
        assert_eq!(unversioned("/v1.11/info", limits).unwrap_err().status, 400);
        assert_eq!(
            unversioned("/volumes/x", limits).unwrap(),
            "/volumes/x",
            "a path starting with v that is no version"
        );
    }
}
