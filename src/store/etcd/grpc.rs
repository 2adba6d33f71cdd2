//! A small etcd v3 client speaking gRPC itself, on hyper's HTTP/2: exactly the calls the store
//! makes (`KV/Range`, `KV/Txn`, `Lease/LeaseGrant`, `LeaseRevoke`, `LeaseKeepAlive`,
//! `Watch/Watch`), their messages encoded and decoded by hand below (a few fields each, in
//! protobuf's wire format), so nothing is generated at build time (no `protoc`). TLS goes
//! through OpenSSL, which ssh2 and git2 link already; without TLS it is HTTP/2 with prior
//! knowledge, as etcd's own clients speak it.
//!
//! A gRPC message on the wire: one byte (0: not compressed), its length (4 bytes, big-endian),
//! the protobuf bytes. A call's outcome is `grpc-status` in the trailers (or, for an answer
//! with no message, in the headers).

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HttpClient};
use hyper_util::rt::TokioExecutor;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
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
fn is_down_code(code: u32) -> bool {
    matches!(code, 14 | 4)
}

/// The client's TLS: a CA for the members' certificates (the system's roots without one) and
/// an optional client certificate and key.
pub struct TlsFiles<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

/// A client of one member, `http://host:port` or `https://host:port`. Cheap to clone: one
/// HTTP/2 connection, shared.
#[derive(Clone)]
pub struct Client {
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
}

impl Client {
    /// A client of `endpoint`; nothing is connected until the first call.
    pub fn new(endpoint: &str, tls: Option<&TlsFiles>) -> Result<Client, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        http.set_nodelay(true);
        // A member that vanishes without a word (a partition, a powered-off host) ends the
        // connection, and a watch on it, within seconds: TCP probes here, HTTP/2 pings below.
        http.set_keepalive(Some(Duration::from_secs(3)));
        http.set_keepalive_interval(Some(Duration::from_secs(3)));
        http.set_keepalive_retries(Some(3));
        let ssl = tls_connector(tls)?;
        let https = HttpsConnector::with_connector(http, ssl).map_err(|e| e.to_string())?;
        let http = HttpClient::builder(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_only(true)
            // Pings while a call or a watch is open; no more often than etcd's server allows
            // (`--grpc-keepalive-min-time`, 5 s, or it closes the connection).
            .http2_keep_alive_interval(Duration::from_secs(10))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .http2_keep_alive_while_idle(false)
            // Large answers (every object of a big project) without a round trip per 64 KiB.
            .http2_adaptive_window(true)
            .build(https);
        Ok(Client {
            http,
            base: endpoint.trim_end_matches('/').to_string(),
        })
    }

    /// Sends one request message to `method` (`/etcdserverpb.KV/Range`) and returns the
    /// answer's body once its headers say it is under way.
    async fn start(&self, method: &str, message: Vec<u8>) -> Result<Incoming, Error> {
        let mut framed = Vec::with_capacity(message.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        let request = http::Request::post(format!("{}{method}", self.base))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(framed)))
            .map_err(|e| Error::Failed(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| Error::Down(describe_http_error(&e)))?;
        if !response.status().is_success() {
            return Err(Error::Down(format!(
                "{method}: HTTP status {}",
                response.status()
            )));
        }
        // A call that failed at once says so in its headers (a "trailers-only" answer).
        status_of(response.headers(), method)?;
        Ok(response.into_body())
    }

    /// A unary call: the one answer message's bytes.
    async fn unary(&self, method: &str, message: Vec<u8>) -> Result<Vec<u8>, Error> {
        let mut stream = Messages::new(self.start(method, message).await?, method);
        match stream.next().await? {
            Some(answer) => {
                // Read to the end, for the trailers' status.
                while stream.next().await?.is_some() {}
                Ok(answer)
            }
            None => Err(Error::Failed(format!("{method}: no answer"))),
        }
    }

    /// One key (or every key under it, with `prefix`), at `revision` (0: the latest).
    pub async fn range(&self, key: &[u8], opts: RangeOptions) -> Result<RangeResponse, Error> {
        let mut m = Vec::new();
        put_bytes(&mut m, 1, key);
        if opts.prefix {
            put_bytes(&mut m, 2, &prefix_end(key));
        }
        put_int(&mut m, 3, opts.limit);
        put_int(&mut m, 4, opts.revision);
        put_int(&mut m, 8, opts.keys_only as i64);
        let answer = self.unary("/etcdserverpb.KV/Range", m).await?;
        let mut response = RangeResponse {
            revision: 0,
            kvs: Vec::new(),
        };
        for field in Fields::new(&answer) {
            match field? {
                (1, Value::Bytes(b)) => response.revision = header_revision(b)?,
                (2, Value::Bytes(b)) => response.kvs.push(key_value(b)?),
                _ => {}
            }
        }
        Ok(response)
    }

    /// Runs `txn`: its operations when every comparison holds, nothing otherwise.
    pub async fn txn(&self, txn: &Txn) -> Result<TxnResponse, Error> {
        let mut m = Vec::new();
        for c in &txn.when {
            let mut compare = Vec::new();
            let (key, target, field, value) = match c {
                Compare::CreateRevision(k, v) => (k, 1, 5, *v),
                Compare::ModRevision(k, v) => (k, 2, 6, *v),
            };
            // result EQUAL is 0, the default: left out.
            put_int(&mut compare, 2, target);
            put_bytes(&mut compare, 3, key.as_bytes());
            put_int_always(&mut compare, field, value);
            put_bytes(&mut m, 1, &compare);
        }
        for op in &txn.then {
            let mut request_op = Vec::new();
            match op {
                TxnOp::Put { key, value, lease } => {
                    let mut put = Vec::new();
                    put_bytes(&mut put, 1, key.as_bytes());
                    put_bytes(&mut put, 2, value);
                    put_int(&mut put, 3, *lease);
                    put_bytes(&mut request_op, 2, &put);
                }
                TxnOp::Delete(key) => {
                    let mut delete = Vec::new();
                    put_bytes(&mut delete, 1, key.as_bytes());
                    put_bytes(&mut request_op, 3, &delete);
                }
            }
            put_bytes(&mut m, 2, &request_op);
        }
        let answer = self.unary("/etcdserverpb.KV/Txn", m).await?;
        let mut response = TxnResponse {
            succeeded: false,
            revision: 0,
        };
        for field in Fields::new(&answer) {
            match field? {
                (1, Value::Bytes(b)) => response.revision = header_revision(b)?,
                (2, Value::Varint(v)) => response.succeeded = v != 0,
                _ => {}
            }
        }
        Ok(response)
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, Error> {
        let mut m = Vec::new();
        put_int(&mut m, 1, ttl);
        let answer = self.unary("/etcdserverpb.Lease/LeaseGrant", m).await?;
        let (mut id, mut error) = (0, String::new());
        for field in Fields::new(&answer) {
            match field? {
                (2, Value::Varint(v)) => id = v as i64,
                (4, Value::Bytes(b)) => error = String::from_utf8_lossy(b).into_owned(),
                _ => {}
            }
        }
        if !error.is_empty() {
            return Err(Error::Failed(error));
        }
        Ok(id)
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<(), Error> {
        let mut m = Vec::new();
        put_int(&mut m, 1, id);
        self.unary("/etcdserverpb.Lease/LeaseRevoke", m).await?;
        Ok(())
    }

    /// Renews lease `id` once; the TTL it has now (0: it had already expired). The request
    /// side of the stream closes after the one request, so etcd answers once and ends it.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, Error> {
        let mut m = Vec::new();
        put_int(&mut m, 1, id);
        let answer = self.unary("/etcdserverpb.Lease/LeaseKeepAlive", m).await?;
        let mut ttl = 0;
        for field in Fields::new(&answer) {
            if let (3, Value::Varint(v)) = field? {
                ttl = v as i64;
            }
        }
        Ok(ttl)
    }

    /// A watch of one key: every change of it from now on, until the stream breaks.
    pub async fn watch(&self, key: &[u8]) -> Result<WatchStream, Error> {
        let mut create = Vec::new();
        put_bytes(&mut create, 1, key);
        let mut m = Vec::new();
        put_bytes(&mut m, 1, &create);
        let method = "/etcdserverpb.Watch/Watch";
        Ok(WatchStream {
            messages: Messages::new(self.start(method, m).await?, method),
        })
    }
}

fn tls_connector(tls: Option<&TlsFiles>) -> Result<openssl::ssl::SslConnectorBuilder, String> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    builder
        .set_alpn_protos(b"\x02h2")
        .map_err(|e| e.to_string())?;
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

/// `grpc-status` in `headers`: absent or 0 is fine; otherwise the call failed.
fn status_of(headers: &http::HeaderMap, method: &str) -> Result<(), Error> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code: u32 = code.to_str().ok().and_then(|c| c.parse().ok()).unwrap_or(2);
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    let text = format!("{method}: {message} (gRPC status {code})");
    Err(if is_down_code(code) {
        Error::Down(text)
    } else {
        Error::Failed(text)
    })
}

/// gRPC's `grpc-message` is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The messages of an answer's body, as they arrive; the trailers' status at its end.
struct Messages {
    body: Incoming,
    buffer: Vec<u8>,
    method: String,
}

impl Messages {
    fn new(body: Incoming, method: &str) -> Messages {
        Messages {
            body,
            buffer: Vec::new(),
            method: method.to_string(),
        }
    }

    /// The next message; `None` once the answer ended well.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if self.buffer.len() >= 5 {
                let len =
                    u32::from_be_bytes(self.buffer[1..5].try_into().expect("4 bytes")) as usize;
                if self.buffer[0] != 0 {
                    return Err(Error::Failed(format!(
                        "{}: a compressed message, which was not asked for",
                        self.method
                    )));
                }
                if self.buffer.len() >= 5 + len {
                    let message = self.buffer[5..5 + len].to_vec();
                    self.buffer.drain(..5 + len);
                    return Ok(Some(message));
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            status_of(trailers, &self.method)?;
                        }
                    }
                },
                Some(Err(e)) => {
                    return Err(Error::Down(format!(
                        "{}: the stream broke: {}",
                        self.method,
                        describe_http_error(&e)
                    )))
                }
                None if self.buffer.is_empty() => return Ok(None),
                None => {
                    return Err(Error::Down(format!(
                        "{}: the answer broke off inside a message",
                        self.method
                    )))
                }
            }
        }
    }
}

/// The answers of a watch.
pub struct WatchStream {
    messages: Messages,
}

impl WatchStream {
    /// The next answer; `None` when etcd ended the stream.
    pub async fn message(&mut self) -> Result<Option<WatchResponse>, Error> {
        let Some(m) = self.messages.next().await? else {
            return Ok(None);
        };
        let mut response = WatchResponse {
            changes: 0,
            canceled: false,
        };
        for field in Fields::new(&m) {
            match field? {
                (4, Value::Varint(v)) => response.canceled = v != 0,
                (11, Value::Bytes(_)) => response.changes += 1,
                _ => {}
            }
        }
        Ok(Some(response))
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

// ---------------------------------------------------------------------------------------------
// Protobuf's wire format, as far as these messages need it.

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An int64/bool field, left out at its default (0), as proto3 writes it.
fn put_int(out: &mut Vec<u8>, field: u32, v: i64) {
    if v != 0 {
        put_int_always(out, field, v);
    }
}

/// An int64 field written even at 0 (a oneof member, where presence matters).
fn put_int_always(out: &mut Vec<u8>, field: u32, v: i64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v as u64);
}

/// A bytes, string or message field (left out when empty, as proto3 writes it).
fn put_bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    if v.is_empty() {
        return;
    }
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

/// The fields of a message, in order; unknown ones are read past.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(message: &'a [u8]) -> Fields<'a> {
        Fields { rest: message }
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .rest
                .split_first()
                .ok_or_else(|| bad("a varint runs past the message"))?;
            self.rest = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(bad("a varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.rest.len() < n {
            return Err(bad("a field runs past the message"));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut field = || -> Result<(u32, Value<'a>), Error> {
            let tag = self.varint()?;
            let number = (tag >> 3) as u32;
            let value = match tag & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Value::Other
                }
                2 => {
                    let len = self.varint()? as usize;
                    Value::Bytes(self.take(len)?)
                }
                5 => {
                    self.take(4)?;
                    Value::Other
                }
                other => return Err(bad(&format!("wire type {other}"))),
            };
            Ok((number, value))
        };
        let result = field();
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

fn bad(what: &str) -> Error {
    Error::Failed(format!("etcd sent a message drover cannot read: {what}"))
}

/// `ResponseHeader.revision` (field 3).
fn header_revision(header: &[u8]) -> Result<i64, Error> {
    let mut revision = 0;
    for field in Fields::new(header) {
        if let (3, Value::Varint(v)) = field? {
            revision = v as i64;
        }
    }
    Ok(revision)
}

/// `mvccpb.KeyValue`: key 1, create_revision 2, mod_revision 3, value 5.
fn key_value(message: &[u8]) -> Result<KeyValue, Error> {
    let mut kv = KeyValue {
        key: Vec::new(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: 0,
    };
    for field in Fields::new(message) {
        match field? {
            (1, Value::Bytes(b)) => kv.key = b.to_vec(),
            (2, Value::Varint(v)) => kv.create_revision = v as i64,
            (3, Value::Varint(v)) => kv.mod_revision = v as i64,
            (5, Value::Bytes(b)) => kv.value = b.to_vec(),
            _ => {}
        }
    }
    Ok(kv)
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
    fn messages_encode_and_decode_as_protobuf_does() {
        // RangeRequest{key: "a", revision: 300, keys_only: true}, as protoc writes it.
        let mut m = Vec::new();
        put_bytes(&mut m, 1, b"a");
        put_int(&mut m, 4, 300);
        put_int(&mut m, 8, 1);
        put_int(&mut m, 3, 0);
        assert_eq!(m, [0x0a, 1, b'a', 0x20, 0xac, 0x02, 0x40, 1]);
        // A KeyValue with an unknown fixed64 field in the middle.
        let mut kv = Vec::new();
        put_bytes(&mut kv, 1, b"/k");
        kv.extend_from_slice(&[0x39, 1, 2, 3, 4, 5, 6, 7, 8]);
        put_int(&mut kv, 3, 7);
        put_bytes(&mut kv, 5, b"v");
        let kv = key_value(&kv).unwrap();
        assert_eq!(
            (kv.key, kv.mod_revision, kv.value),
            (b"/k".to_vec(), 7, b"v".to_vec())
        );
        // A truncated message is an error, not a panic.
        assert!(key_value(&[0x0a, 5, b'a']).is_err());
        assert!(header_revision(&[0x18, 0x80]).is_err());
    }

    #[test]
    fn a_grpc_status_is_told_apart() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", "14".parse().unwrap());
        h.insert("grpc-message", "etcdserver:%20no%20leader".parse().unwrap());
        assert!(matches!(status_of(&h, "/m"), Err(Error::Down(m)) if m.contains("no leader")));
        h.insert("grpc-status", "11".parse().unwrap());
        assert!(matches!(status_of(&h, "/m"), Err(Error::Failed(_))));
        h.insert("grpc-status", "0".parse().unwrap());
        assert!(status_of(&h, "/m").is_ok());
    }
}
