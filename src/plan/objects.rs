//! Object-level changes between the desired state and the store, as `drover diff` shows them:
//! which objects to create, change or delete, which fields differ, and a unified diff of their
//! normalised JSON with secret-looking values masked.

use crate::model::ObjectKey;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Create,
    Change,
    Delete,
}

/// Compares content hashes of the desired objects with the stored ones. Objects only in the
/// store are deletes: callers must only pass a desired state read from the *whole* source.
pub fn object_changes(
    desired: &BTreeMap<ObjectKey, String>,
    stored: &BTreeMap<ObjectKey, String>,
) -> Vec<(ObjectKey, ChangeAction)> {
    let mut changes = Vec::new();
    for (key, hash) in desired {
        match stored.get(key) {
            None => changes.push((key.clone(), ChangeAction::Create)),
            Some(old) if old != hash => changes.push((key.clone(), ChangeAction::Change)),
            Some(_) => {}
        }
    }
    for key in stored.keys() {
        if !desired.contains_key(key) {
            changes.push((key.clone(), ChangeAction::Delete));
        }
    }
    changes.sort();
    changes
}

/// Counts per action, in the order of the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub change: usize,
    pub delete: usize,
}

impl Summary {
    pub fn of<'a>(actions: impl IntoIterator<Item = &'a ChangeAction>) -> Summary {
        let mut s = Summary::default();
        for a in actions {
            match a {
                ChangeAction::Create => s.create += 1,
                ChangeAction::Change => s.change += 1,
                ChangeAction::Delete => s.delete += 1,
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        *self == Summary::default()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to create, {} to change, {} to delete",
            self.create, self.change, self.delete
        )
    }
}

/// Paths of the leaves that differ between two JSON values (`desiredState.replicas`,
/// `labels.tier`, `...containers[0].image`). Arrays of different length are reported whole.
pub fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(before, after, String::new(), &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    let child = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => walk(va, vb, child(k), out),
                    _ => out.push(child(k)),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                walk(va, vb, format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(if path.is_empty() {
            "(whole object)".into()
        } else {
            path
        }),
        _ => {}
    }
}

/// The key of the masks' fingerprints. Kept in the state directory (`mask.key`, 0600), so the
/// same secret shows the same fingerprint from run to run, and nobody without the key can test
/// a guess against a fingerprint offline (an unkeyed hash of a short password can be).
#[derive(Clone, PartialEq, Eq)]
pub struct MaskKey([u8; 32]);

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(<secret>)")
    }
}

impl MaskKey {
    pub fn new(bytes: [u8; 32]) -> MaskKey {
        MaskKey(bytes)
    }

    /// The first 8 hex digits of HMAC-SHA256(key, value): a changed secret shows as a changed
    /// fingerprint, and 32 bits of a keyed MAC tell nothing about the value.
    pub fn fingerprint(&self, value: &str) -> String {
        use sha2::{Digest, Sha256};
        let (mut inner, mut outer) = ([0x36u8; 64], [0x5cu8; 64]);
        for (i, b) in self.0.iter().enumerate() {
            inner[i] ^= b;
            outer[i] ^= b;
        }
        let inner = Sha256::new()
            .chain_update(inner)
            .chain_update(value.as_bytes())
            .finalize();
        let mac = Sha256::new()
            .chain_update(outer)
            .chain_update(inner)
            .finalize();
        mac[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Environment variable names that usually hold credentials (`DB_PASS`, `AUTH`, `TLS_CERT`,
/// `API_KEY`, ...): any of these words anywhere in the name, in any case.
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "PASS",
        "PWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "AUTH",
        "CREDENTIAL",
        "PRIVATE",
        "CERT",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// The byte range of the password in a URL with `user:password@` (`postgres://u:pw@h/db`).
pub fn url_password(value: &str) -> Option<std::ops::Range<usize>> {
    let scheme_end = value.find("://")?;
    let scheme = &value[..scheme_end];
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let start = scheme_end + 3;
    let rest = &value[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The last `@` ends the user info (a password may itself contain `@`).
    let at = rest[..authority_end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    (colon + 1 < at).then(|| start + colon + 1..start + at)
}

/// `text` with the password of every URL in it (`user:password@`, anywhere in the string, as
/// in `--db=postgres://u:pw@h/x` or a shell line) masked by its keyed fingerprint; `None` when
/// it holds none.
pub fn mask_url_passwords(text: &str, key: &MaskKey) -> Option<String> {
    let is_scheme = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    let mut out = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let sep = from + found;
        from = sep + 3;
        let scheme_start = text[..sep]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_scheme(*c))
            .last()
            .map_or(sep, |(i, _)| i);
        if scheme_start == sep || scheme_start < copied {
            continue;
        }
        let rest = &text[from..];
        let authority_end = rest
            .find(|c: char| matches!(c, '/' | '?' | '#' | '\'' | '"') || c.is_whitespace())
            .unwrap_or(rest.len());
        let Some(range) = url_password(&text[scheme_start..from + authority_end]) else {
            continue;
        };
        let (start, end) = (scheme_start + range.start, scheme_start + range.end);
        out.push_str(&text[copied..start]);
        out.push_str(&format!(
            "<redacted {}>",
            key.fingerprint(&text[start..end])
        ));
        copied = end;
        from = from.max(end);
    }
    (copied > 0).then(|| {
        out.push_str(&text[copied..]);
        out
    })
}

/// Masks the values of secret-looking env vars and the password of every URL in any string
/// (env values, `command`, `args`, `workingDir`, ...), with a keyed fingerprint so that a
/// changed secret still shows up as a changed line. Works on any object shape (pods and RC
/// templates).
pub fn redact_secrets(v: &mut Value, key: &MaskKey) {
    match v {
        Value::Object(map) => {
            if let (Some(Value::String(name)), Some(Value::String(value))) =
                (map.get("name"), map.get("value"))
            {
                if looks_secret(name) && !value.is_empty() {
                    let masked = format!("<redacted {}>", key.fingerprint(value));
                    map.insert("value".into(), Value::String(masked));
                }
            }
            map.values_mut().for_each(|v| redact_secrets(v, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_secrets(v, key)),
        Value::String(text) => {
            if let Some(masked) = mask_url_passwords(text, key) {
                *text = masked;
            }
        }
        _ => {}
    }
}

/// Normalised JSON text prepared for display: secrets masked, same layout.
pub fn display_text(text: &str, key: &MaskKey) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            redact_secrets(&mut v, key);
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            s
        }
        Err(_) => text.to_string(),
    }
}

/// A unified diff with three lines of context.
pub fn unified_diff(before: &str, after: &str, old_header: &str, new_header: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(old_header, new_header)
        .to_string()
}

/// The normalised text and content hash of every desired object.
pub fn normalize(
    desired: &crate::model::DesiredState,
) -> (BTreeMap<ObjectKey, String>, BTreeMap<ObjectKey, String>) {
    let objects: Vec<(&ObjectKey, &crate::model::Object)> =
        desired.objects.iter().map(|(k, (o, _))| (k, o)).collect();
    let normalized = crate::par::map(&objects, |(_, o)| {
        let text = o.normalized_json();
        let hash = crate::store::content_hash(text.as_bytes());
        (text, hash)
    });
    let mut texts = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    for ((key, _), (text, hash)) in objects.into_iter().zip(normalized) {
        texts.insert(key.clone(), text);
        hashes.insert(key.clone(), hash);
    }
    (texts, hashes)
}

/// The store batch that makes the applied section equal the desired state: what a successful
/// apply records. Pure: it only looks at the index's hashes.
pub fn record_batch(
    desired: &crate::model::DesiredState,
    index: &crate::store::Index,
) -> crate::store::Batch {
    record_batch_with(desired, index, true)
}

/// As `record_batch`; without `prune`, objects that left the source stay recorded (their pods
/// were left running).
pub fn record_batch_with(
    desired: &crate::model::DesiredState,
    index: &crate::store::Index,
    prune: bool,
) -> crate::store::Batch {
    use crate::store::{Batch, Section};
    let mut batch = Batch::default();
    let (mut texts, hashes) = normalize(desired);
    let stored = index
        .applied
        .iter()
        .map(|(k, e)| (k.clone(), e.hash.clone()))
        .collect();
    for (key, action) in object_changes(&hashes, &stored) {
        match action {
            ChangeAction::Delete if prune => batch.delete(Section::Applied, key),
            ChangeAction::Delete => {}
            _ => {
                let origin = desired.objects[&key].1.clone();
                let text = texts.remove(&key).expect("every change has desired text");
                batch.put(Section::Applied, key, text, Some(origin));
            }
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use serde_json::json;

    fn k(id: &str) -> ObjectKey {
        ObjectKey::new(Kind::Pod, id)
    }

    #[test]
    fn creates_changes_and_deletes_by_hash() {
        let desired: BTreeMap<_, _> = [
            (k("a"), "1".into()),
            (k("b"), "2".into()),
            (k("c"), "3".into()),
        ]
        .into();
        let stored: BTreeMap<_, _> = [
            (k("b"), "2".into()),
            (k("c"), "x".into()),
            (k("d"), "4".into()),
        ]
        .into();
        let changes = object_changes(&desired, &stored);
        assert_eq!(
            changes,
            vec![
                (k("a"), ChangeAction::Create),
                (k("c"), ChangeAction::Change),
                (k("d"), ChangeAction::Delete)
            ]
        );
        let s = Summary::of(changes.iter().map(|(_, a)| a));
        assert_eq!(s.to_string(), "1 to create, 1 to change, 1 to delete");
    }

    #[test]
    fn applying_the_changes_leaves_nothing_to_change() {
        let desired: BTreeMap<_, _> = [(k("a"), "1".into()), (k("c"), "3".into())].into();
        let mut stored: BTreeMap<_, _> = [(k("c"), "x".into()), (k("d"), "4".into())].into();
        for (key, action) in object_changes(&desired, &stored) {
            match action {
                ChangeAction::Delete => {
                    stored.remove(&key);
                }
                _ => {
                    stored.insert(key.clone(), desired[&key].clone());
                }
            }
        }
        assert!(object_changes(&desired, &stored).is_empty());
    }

    #[test]
    fn changed_fields_name_the_leaf() {
        let a = json!({"desiredState": {"replicas": 2, "x": [1, 2]}, "labels": {"a": "1"}});
        let b =
            json!({"desiredState": {"replicas": 3, "x": [1, 5]}, "labels": {"a": "1", "b": "2"}});
        assert_eq!(
            changed_fields(&a, &b),
            vec!["desiredState.replicas", "desiredState.x[1]", "labels.b"]
        );
    }

    #[test]
    fn secret_env_values_are_masked_but_changes_stay_visible() {
        let key = MaskKey::new([7; 32]);
        let text = |v: &str| {
            json!({"env": [{"name": "DB_PASSWORD", "value": v}, {"name": "MODE", "value": "prod"}]})
                .to_string()
        };
        let a = display_text(&text("hunter2"), &key);
        let b = display_text(&text("hunter3"), &key);
        assert!(!a.contains("hunter2") && a.contains("<redacted "), "{a}");
        assert!(a.contains("prod"));
        assert_ne!(a, b);
        assert_eq!(
            a,
            display_text(&text("hunter2"), &key),
            "stable under one key"
        );
    }

    #[test]
    fn the_fingerprint_is_keyed_not_a_plain_hash_of_the_value() {
        let value = "hunter2";
        let unkeyed = &crate::store::content_hash(value.as_bytes())[..8];
        let (k1, k2) = (MaskKey::new([1; 32]), MaskKey::new([2; 32]));
        let shown = display_text(
            &json!({"env": [{"name": "DB_PASSWORD", "value": value}]}).to_string(),
            &k1,
        );
        assert!(!shown.contains(unkeyed), "{shown}");
        assert_ne!(k1.fingerprint(value), k2.fingerprint(value));
        // HMAC-SHA256, as Python's hmac module computes it for this key and value.
        assert_eq!(k1.fingerprint(value), "f26b5407");
        assert!(!format!("{k1:?}").contains('1'));
    }

    #[test]
    fn wider_names_and_urls_with_passwords_are_masked() {
        let key = MaskKey::new([3; 32]);
        for name in [
            "DB_PASS",
            "AUTH",
            "MYSQL_PWD",
            "AWS_CREDENTIALS",
            "PRIVATE_KEY",
            "TLS_CERT",
            "api_token",
        ] {
            let shown = display_text(
                &json!({"env": [{"name": name, "value": "s3cr3t-value"}]}).to_string(),
                &key,
            );
            assert!(!shown.contains("s3cr3t-value"), "{name}: {shown}");
        }
        let shown = display_text(
            &json!({"env": [{"name": "DATABASE_URL", "value": "postgres://u:pw@h:5432/db"}]})
                .to_string(),
            &key,
        );
        assert!(!shown.contains(":pw@"), "{shown}");
        assert!(
            shown.contains("postgres://u:<redacted ") && shown.contains(">@h:5432/db"),
            "{shown}"
        );
        for plain in [
            "http://h/x@y",
            "http://user@h/",
            "mailto:a@b",
            "not a url",
            "http://h:80/",
        ] {
            assert_eq!(url_password(plain), None, "{plain}");
        }
        assert_eq!(url_password("redis://:p@ss@h"), Some(9..13));
    }

    #[test]
    fn url_passwords_in_any_string_are_masked() {
        let key = MaskKey::new([4; 32]);
        let shown = display_text(
            &json!({"command": ["psql", "postgres://user:SECRET1@db/x"],
                    "args": ["--db=mysql://a:SECRET2@h:3306/y", "sh -c 'curl https://u:SECRET3@h/ && redis-cli -u redis://:SECRET4@r'"],
                    "workingDir": "/srv/ftp://x:SECRET5@h",
                    "labels": {"plain": "http://h:80/x@y"}})
            .to_string(),
            &key,
        );
        for secret in ["SECRET1", "SECRET2", "SECRET3", "SECRET4", "SECRET5"] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
        assert!(shown.contains("--db=mysql://a:<redacted "), "{shown}");
        assert!(shown.contains("http://h:80/x@y"), "{shown}");
        assert_eq!(mask_url_passwords("no url here", &key), None);
    }
}
