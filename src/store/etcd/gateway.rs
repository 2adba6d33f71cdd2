//! A small etcd v3 client over etcd's own JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/lease/*`, `/v3/watch` on the client port: etcd 3.4 and later; 3.3 serves the same under
//! `/v3beta`, used when `/v3` is not found), on hyper:
//! exactly the calls the store makes, with no code generated at build time (no `protoc`) and
//! TLS through OpenSSL, which ssh2 and git2 link already.
//!
//! The gateway speaks proto3's JSON mapping: keys and values base64, 64-bit integers as
//! decimal strings, fields at their zero value left out. A streaming answer (a watch, a lease
//! renewal) is one JSON object per line, `{"result": ...}` or `{"error": ...}`.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HttpClient};
use hyper_util::rt::TokioExecutor;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// Why a call failed: the member is down, unreachable or without quorum (another member may
/// do), or etcd refused the request itself.
#[derive(Debug)]
pub enum Error {
    Down(String),
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Down(m) | Error::Failed(m) => f.write_str(m),
        }
    }
}

/// gRPC's codes for "try another member": Unavailable, DeadlineExceeded.
fn is_down_code(code: i64) -> bool {
    matches!(code, 14 | 4)
}

/// The client's TLS: a CA for the members' certificates (the system's roots without one) and
/// an optional client certificate and key.
pub struct TlsFiles<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

/// A client of one member, `http://host:port` or `https://host:port`. Cheap to clone: the
/// connections are pooled and shared.
#[derive(Clone)]
pub struct Client {
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    /// The member serves the gateway under `/v3beta` (etcd 3.3), found by a `/v3` 404.
    beta: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Client {
    /// A client of `endpoint`; nothing is connected until the first call.
    pub fn new(endpoint: &str, tls: Option<&TlsFiles>) -> Result<Client, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        http.set_nodelay(true);
        // A member that vanishes without a word (a partition, a powered-off host) ends a
        // watch within about 12 s, not the kernel's default two hours and more.
        http.set_keepalive(Some(Duration::from_secs(3)));
        http.set_keepalive_interval(Some(Duration::from_secs(3)));
        http.set_keepalive_retries(Some(3));
        let ssl = tls_connector(tls)?;
        let https = HttpsConnector::with_connector(http, ssl).map_err(|e| e.to_string())?;
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Client {
            http,
            base: endpoint.trim_end_matches('/').to_string(),
            beta: Default::default(),
        })
    }

    /// POSTs `body` to the gateway's `path` (`/kv/range`, ...) and returns the answer's body
    /// once its status says success.
    async fn post(&self, path: &str, body: &Value) -> Result<Incoming, Error> {
        use std::sync::atomic::Ordering;
        let body = Bytes::from(body.to_string());
        loop {
            let beta = self.beta.load(Ordering::Relaxed);
            let root = if beta { "/v3beta" } else { "/v3" };
            let request = http::Request::post(format!("{}{root}{path}", self.base))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| Error::Failed(e.to_string()))?;
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| Error::Down(describe_http_error(&e)))?;
            let status = response.status();
            if status.is_success() {
                return Ok(response.into_body());
            }
            let bytes = read_all(response.into_body()).await?;
            if status == http::StatusCode::NOT_FOUND && !beta {
                self.beta.store(true, Ordering::Relaxed);
                continue;
            }
            return Err(error_of(status, &bytes));
        }
    }

    /// A unary call: the whole answer, parsed.
    async fn unary<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: Value,
    ) -> Result<T, Error> {
        let bytes = read_all(self.post(path, &body).await?).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Failed(format!("etcd answered {path} with unreadable JSON: {e}")))
    }

    /// One key (or every key under it, with `prefix`), at `revision` (0: the latest).
    pub async fn range(&self, key: &[u8], opts: RangeOptions) -> Result<RangeResponse, Error> {
        let mut body = json!({ "key": B64.encode(key) });
        if opts.prefix {
            body["range_end"] = B64.encode(prefix_end(key)).into();
        }
        if opts.revision > 0 {
            body["revision"] = opts.revision.to_string().into();
        }
        if opts.keys_only {
            body["keys_only"] = true.into();
        }
        if opts.limit > 0 {
            body["limit"] = opts.limit.to_string().into();
        }
        let raw: RawRange = self.unary("/kv/range", body).await?;
        let kvs = raw
            .kvs
            .into_iter()
            .map(|kv| {
                Ok(KeyValue {
                    key: decode(&kv.key)?,
                    value: decode(&kv.value)?,
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(RangeResponse {
            revision: raw.header.revision,
            kvs,
        })
    }

    /// Runs `txn`: its operations when every comparison holds, nothing otherwise.
    pub async fn txn(&self, txn: &Txn) -> Result<TxnResponse, Error> {
        let compare: Vec<Value> = txn.when.iter().map(Compare::to_json).collect();
        let success: Vec<Value> = txn.then.iter().map(TxnOp::to_json).collect();
        let body = json!({ "compare": compare, "success": success });
        let raw: RawTxn = self.unary("/kv/txn", body).await?;
        Ok(TxnResponse {
            succeeded: raw.succeeded,
            revision: raw.header.revision,
        })
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, Error> {
        let raw: RawLease = self
            .unary("/lease/grant", json!({ "TTL": ttl.to_string() }))
            .await?;
        if !raw.error.is_empty() {
            return Err(Error::Failed(raw.error));
        }
        Ok(raw.id)
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<(), Error> {
        let _: Value = self
            .unary("/lease/revoke", json!({ "ID": id.to_string() }))
            .await?;
        Ok(())
    }

    /// Renews lease `id` once; the TTL it has now (0: it had already expired).
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, Error> {
        let body = self
            .post("/lease/keepalive", &json!({ "ID": id.to_string() }))
            .await?;
        let mut lines = Lines::new(body);
        let line = lines
            .next()
            .await?
            .ok_or_else(|| Error::Down("etcd ended the lease renewal without an answer".into()))?;
        let raw: RawLease = stream_result(&line)?;
        Ok(raw.ttl)
    }

    /// A watch of one key: every change of it from now on, until the stream breaks.
    pub async fn watch(&self, key: &[u8]) -> Result<WatchStream, Error> {
        let body = json!({ "create_request": { "key": B64.encode(key) } });
        Ok(WatchStream {
            lines: Lines::new(self.post("/watch", &body).await?),
        })
    }
}

fn tls_connector(tls: Option<&TlsFiles>) -> Result<openssl::ssl::SslConnectorBuilder, String> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    let Some(tls) = tls else {
        return Ok(builder);
    };
    let shown = |p: &Path, e: openssl::error::ErrorStack| format!("{}: {e}", p.display());
    if let Some(ca) = tls.ca {
        builder.set_ca_file(ca).map_err(|e| shown(ca, e))?;
    }
    match (tls.cert, tls.key) {
        (Some(cert), Some(key)) => {
            builder
                .set_certificate_chain_file(cert)
                .map_err(|e| shown(cert, e))?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| shown(key, e))?;
            builder
                .check_private_key()
                .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
        }
        (None, None) => {}
        _ => return Err("a client certificate needs both `cert` and `key`".into()),
    }
    Ok(builder)
}

/// A hyper client error with its causes (hyper's own text alone is "client error (Connect)").
fn describe_http_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn read_all(body: Incoming) -> Result<Bytes, Error> {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Error::Down(format!("etcd's answer broke off: {e}")))
}

/// An unsuccessful answer: `{"error": ..., "code": N, "message": ...}`.
fn error_of(status: http::StatusCode, bytes: &[u8]) -> Error {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Status {
        #[serde(deserialize_with = "int")]
        code: i64,
        message: String,
    }
    let parsed: Status = serde_json::from_slice(bytes).unwrap_or_default();
    let message = if parsed.message.is_empty() {
        format!("{status}: {}", String::from_utf8_lossy(bytes).trim())
    } else {
        parsed.message
    };
    let unavailable = matches!(status.as_u16(), 502..=504);
    if is_down_code(parsed.code) || unavailable {
        Error::Down(message)
    } else {
        Error::Failed(message)
    }
}

/// One line of a streaming answer: its `result`, or its `error` as an `Error`.
fn stream_result<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, Error> {
    #[derive(Deserialize)]
    struct Frame<T> {
        result: Option<T>,
        error: Option<StreamError>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct StreamError {
        #[serde(deserialize_with = "int")]
        grpc_code: i64,
        message: String,
    }
    let frame: Frame<T> = serde_json::from_slice(line)
        .map_err(|e| Error::Failed(format!("etcd streamed unreadable JSON: {e}")))?;
    match (frame.result, frame.error) {
        (Some(result), _) => Ok(result),
        (None, Some(e)) if is_down_code(e.grpc_code) => Err(Error::Down(e.message)),
        (None, Some(e)) => Err(Error::Failed(e.message)),
        (None, None) => Err(Error::Failed(
            "etcd streamed neither a result nor an error".into(),
        )),
    }
}

/// The lines of a streaming body, as they arrive.
struct Lines {
    body: Incoming,
    buffer: Vec<u8>,
}

impl Lines {
    fn new(body: Incoming) -> Lines {
        Lines {
            body,
            buffer: Vec::new(),
        }
    }

    /// The next non-empty line; `None` at the end of the body.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.iter().any(|b| !b.is_ascii_whitespace()) {
                    return Ok(Some(line));
                }
                continue;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(Error::Down(format!("the stream broke: {e}"))),
                None if self.buffer.iter().any(|b| !b.is_ascii_whitespace()) => {
                    return Ok(Some(std::mem::take(&mut self.buffer)));
                }
                None => return Ok(None),
            }
        }
    }
}

/// The answers of a watch.
pub struct WatchStream {
    lines: Lines,
}

impl WatchStream {
    /// The next answer; `None` when etcd ended the stream.
    pub async fn message(&mut self) -> Result<Option<WatchResponse>, Error> {
        let Some(line) = self.lines.next().await? else {
            return Ok(None);
        };
        let raw: RawWatch = stream_result(&line)?;
        Ok(Some(WatchResponse {
            changes: raw.events.len(),
            canceled: raw.canceled,
        }))
    }
}

pub struct WatchResponse {
    /// How many changes this answer reports (0 for the answer that confirms the watch).
    pub changes: usize,
    pub canceled: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    pub prefix: bool,
    pub revision: i64,
    pub keys_only: bool,
    /// At most this many keys (0: no limit).
    pub limit: i64,
}

pub struct RangeResponse {
    /// The store's revision the range was read at.
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
}

pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

pub struct TxnResponse {
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
}

/// A comparison of a transaction: a key's create or mod revision equal to a value (0 for a
/// key that does not exist).
#[derive(Debug, Clone)]
pub enum Compare {
    CreateRevision(String, i64),
    ModRevision(String, i64),
}

impl Compare {
    fn to_json(&self) -> Value {
        let (key, target, field, value) = match self {
            Compare::CreateRevision(k, v) => (k, "CREATE", "create_revision", v),
            Compare::ModRevision(k, v) => (k, "MOD", "mod_revision", v),
        };
        json!({
            "key": B64.encode(key),
            "target": target,
            "result": "EQUAL",
            field: value.to_string(),
        })
    }
}

/// An operation of a transaction.
#[derive(Debug, Clone)]
pub enum TxnOp {
    /// A put, under a lease when `lease` is not 0.
    Put {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    Delete(String),
}

impl TxnOp {
    pub fn put(key: String, value: impl Into<Vec<u8>>) -> TxnOp {
        TxnOp::Put {
            key,
            value: value.into(),
            lease: 0,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            TxnOp::Put { key, value, lease } => {
                let mut put = json!({ "key": B64.encode(key), "value": B64.encode(value) });
                if *lease != 0 {
                    put["lease"] = lease.to_string().into();
                }
                json!({ "request_put": put })
            }
            TxnOp::Delete(key) => json!({ "request_delete_range": { "key": B64.encode(key) } }),
        }
    }
}

/// A transaction: `then` runs when every comparison of `when` holds.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub when: Vec<Compare>,
    pub then: Vec<TxnOp>,
}

/// The end of the range of every key starting with `prefix` (etcd's own rule: the prefix with
/// its last byte below 0xff incremented; `\0`, every key, when there is none).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn decode(text: &str) -> Result<Vec<u8>, Error> {
    B64.decode(text)
        .map_err(|e| Error::Failed(format!("etcd sent a key or value that is not base64: {e}")))
}

/// A 64-bit integer as proto3's JSON mapping writes it: a decimal string (or a number).
fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Header {
    #[serde(deserialize_with = "int")]
    revision: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawKv {
    key: String,
    value: String,
    #[serde(deserialize_with = "int")]
    create_revision: i64,
    #[serde(deserialize_with = "int")]
    mod_revision: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRange {
    header: Header,
    kvs: Vec<RawKv>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawTxn {
    header: Header,
    succeeded: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLease {
    #[serde(rename = "ID", deserialize_with = "int")]
    id: i64,
    #[serde(rename = "TTL", deserialize_with = "int")]
    ttl: i64,
    error: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawWatch {
    canceled: bool,
    events: Vec<serde::de::IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_past_every_key_under_it() {
        assert_eq!(prefix_end(b"/p/"), b"/p0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    #[test]
    fn answers_are_read_as_the_gateway_writes_them() {
        let r: RawRange = serde_json::from_str(
            r#"{"header":{"revision":"7"},"kvs":[{"key":"L3AvYQ==","create_revision":"2","mod_revision":"3","value":"aGk="}],"count":"1"}"#,
        )
        .unwrap();
        assert_eq!((r.header.revision, r.kvs[0].mod_revision), (7, 3));
        // A failed comparison leaves `succeeded` out; an expired lease its TTL.
        let t: RawTxn = serde_json::from_str(r#"{"header":{"revision":"2"}}"#).unwrap();
        assert!(!t.succeeded);
        let l: RawLease = stream_result(br#"{"result":{"header":{},"ID":"123"}}"#).unwrap();
        assert_eq!((l.id, l.ttl), (123, 0));
        let e = stream_result::<RawWatch>(
            br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}"#,
        );
        assert!(matches!(e, Err(Error::Down(m)) if m.contains("no leader")));
        let e = error_of(
            http::StatusCode::BAD_REQUEST,
            br#"{"error":"x","message":"etcdserver: mvcc: required revision has been compacted","code":11}"#,
        );
        assert!(matches!(e, Error::Failed(m) if m.contains("compacted")));
        let e = error_of(
            http::StatusCode::SERVICE_UNAVAILABLE,
            b"no healthy upstream",
        );
        assert!(matches!(e, Error::Down(m) if m.contains("no healthy upstream")));
    }
}
