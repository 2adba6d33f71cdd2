//! Small pieces the engine shares: ids, times as Docker writes them, query strings and
//! filters as Docker reads them, image references, and the string interner that keeps
//! sixty thousand containers' labels small.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// A Docker object id (container, image, exec): 32 bytes, shown as 64 hex digits.
pub type Id = [u8; 32];

pub fn hex(id: &Id) -> String {
    let mut s = String::with_capacity(64);
    for b in id {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn sha256(data: &[u8]) -> Id {
    Sha256::digest(data).into()
}

/// A fresh id, unique in the process (Docker's are random; these only need to be unique).
pub fn new_id(engine: usize) -> Id {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    sha256(format!("hollow {engine} {n} {}", now_nanos()).as_bytes())
}

/// Parses 64 hex digits.
pub fn parse_hex(s: &str) -> Option<Id> {
    if s.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Go's `time.RFC3339Nano` in UTC (`2026-12-08T00:15:47.90573559Z`: trailing zeros of the
/// fraction cut); 0 is Go's zero time, `0001-01-01T00:00:00Z`, as Docker writes a time never set.
pub fn rfc3339_nano(nanos: i64) -> String {
    if nanos == 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let mut s = rfc3339_secs(secs);
    s.pop(); // the Z
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// `2026-12-08T00:16:33Z`.
pub fn rfc3339_secs(secs: i64) -> String {
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// go-units' `HumanDuration`, which `docker ps` STATUS uses ("Up 3 seconds").
pub fn human_duration(nanos: i64) -> String {
    let seconds = nanos / 1_000_000_000;
    let minutes = seconds / 60;
    let hours = ((nanos as f64) / 3.6e12 + 0.5) as i64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// A query string's pairs, percent-decoded (`+` is a space, as Go's `url.ParseQuery` reads it).
pub fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = q else { return Vec::new() };
    q.split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Docker's `httputils.BoolValue`: anything but "", "0", "no", "false" or "none" is true.
pub fn bool_value(v: Option<&str>) -> bool {
    let v = v.unwrap_or("").trim().to_ascii_lowercase();
    !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
}

/// A `filters` parameter: `{"label":["a=b"]}`, or the older `{"label":{"a=b":true}}`.
pub type Filters = Vec<(String, Vec<String>)>;

pub fn parse_filters(text: Option<&str>) -> Result<Filters, String> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid filter: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("invalid filter: not an object".into());
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let values = match v {
            serde_json::Value::Array(a) => a
                .into_iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            serde_json::Value::Object(m) => m
                .into_iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(false))
                .map(|(k, _)| k)
                .collect(),
            _ => return Err(format!("invalid filter '{k}'")),
        };
        out.push((k, values));
    }
    Ok(out)
}

/// Docker's `MatchKVList` for `label` filters: every `key` or `key=value` given must match.
pub fn labels_match<'a>(wanted: &[String], mut get: impl FnMut(&str) -> Option<&'a str>) -> bool {
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => get(k) == Some(v),
        None => get(w).is_some(),
    })
}

/// An image reference in Docker's familiar form, as `docker images` shows it:
/// `docker.io/library/busybox` is `busybox:latest`. A digest reference keeps its digest.
pub fn familiar(reference: &str) -> String {
    let mut r = reference.trim();
    for prefix in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = r.strip_prefix(prefix) {
            r = rest;
            if let Some(rest) = r.strip_prefix("library/") {
                r = rest;
            }
            break;
        }
    }
    if let Some(rest) = r.strip_prefix("library/") {
        r = rest;
    }
    if r.contains('@') {
        return r.to_string();
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// The repository of a familiar reference (`busybox`, `drover/pause`), without tag or digest.
pub fn repository(familiar: &str) -> &str {
    if let Some((repo, _)) = familiar.split_once('@') {
        return repo;
    }
    match familiar.rfind(':') {
        Some(i) if !familiar[i..].contains('/') => &familiar[..i],
        _ => familiar,
    }
}

/// The path a registry is asked for (`Pulling from library/busybox`): the repository without
/// its registry host, `library/` added for an official image.
pub fn remote_path(repo: &str) -> String {
    let (first, rest) = repo.split_once('/').unwrap_or(("", repo));
    if first.is_empty() {
        format!("library/{repo}")
    } else if first.contains(['.', ':']) || first == "localhost" {
        rest.to_string()
    } else {
        repo.to_string()
    }
}

/// Shared strings: every container of a project carries the same label keys and most of the
/// same values, the same environment and commands. Strings no container holds any more are
/// dropped when the set has doubled since the last sweep.
pub struct Interner {
    set: Mutex<(HashSet<Arc<str>>, usize)>,
}

pub fn interner() -> &'static Interner {
    static I: OnceLock<Interner> = OnceLock::new();
    I.get_or_init(|| Interner {
        set: Mutex::new((HashSet::new(), 1024)),
    })
}

impl Interner {
    pub fn get(&self, s: &str) -> Arc<str> {
        let mut guard = self.set.lock().expect("interner");
        let (set, sweep_at) = &mut *guard;
        if let Some(a) = set.get(s) {
            return a.clone();
        }
        if set.len() >= *sweep_at {
            set.retain(|a| Arc::strong_count(a) > 1);
            set.shrink_to_fit();
            *sweep_at = (set.len() * 2).max(1024);
        }
        let a: Arc<str> = Arc::from(s);
        set.insert(a.clone());
        a
    }

    pub fn len(&self) -> usize {
        self.set.lock().expect("interner").0.len()
    }
}

pub fn intern(s: &str) -> Arc<str> {
    interner().get(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_go_writes_them() {
        assert_eq!(rfc3339_nano(0), "0001-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(1_796_688_947_905_735_590),
            "2026-12-08T00:15:47.90573559Z"
        );
        assert_eq!(rfc3339_secs(1_796_688_993), "2026-12-08T00:16:33Z");
        assert_eq!(human_duration(500_000_000), "Less than a second");
        assert_eq!(human_duration(3_000_000_000), "3 seconds");
        assert_eq!(human_duration(7_200_000_000_000), "2 hours");
    }

    #[test]
    fn references_and_queries() {
        assert_eq!(familiar("busybox"), "busybox:latest");
        assert_eq!(familiar("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(familiar("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(repository("localhost:5000/app:1"), "localhost:5000/app");
        assert_eq!(remote_path("busybox"), "library/busybox");
        assert_eq!(remote_path("registry.example.com/a/b"), "a/b");
        assert_eq!(
            parse_query(Some("filters=%7B%22a%22%3A1%7D&all=1")),
            vec![
                ("filters".to_string(), "{\"a\":1}".to_string()),
                ("all".to_string(), "1".to_string())
            ]
        );
        assert_eq!(
            parse_filters(Some(r#"{"label":{"a=b":true}}"#)).unwrap(),
            vec![("label".to_string(), vec!["a=b".to_string()])]
        );
    }
}
