//! kubectl's label selector syntax for `-l`: comma-joined requirements, each one of `k=v`,
//! `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (the label exists) or `!k` (it does
//! not). Pure: parsing and matching only.
//!
//! Semantics as Kubernetes' `labels.Parse`: every requirement must hold; `k!=v` and
//! `k notin (...)` also hold for objects without `k`; the empty selector matches everything.

use drover::model::Labels;
use std::fmt;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `-l` selector: all of its requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

const USAGE: &str =
    "use key=value, key==value, key!=value, 'key in (a,b)', 'key notin (a,b)', key or !key, joined by commas";

impl Selector {
    /// Parses kubectl's selector syntax; an error names the part it could not read.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(format!(
                    "bad selector `{text}`: an empty requirement; {USAGE}"
                ));
            }
            requirements.push(
                requirement(part)
                    .map_err(|why| format!("bad selector `{text}`: `{part}`: {why}; {USAGE}"))?,
            );
        }
        Ok(Selector(requirements))
    }

    /// Does every requirement hold for these labels?
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on the commas that are not inside `( )`.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(format!("bad selector `{text}`: nested `(`; {USAGE}")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(format!("bad selector `{text}`: `)` without `(`; {USAGE}")),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("bad selector `{text}`: `(` without `)`; {USAGE}"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key_of(key.trim())?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            key_of(k.trim())?,
            value_of(v.trim())?,
        ));
    }
    if let Some((k, v)) = part.split_once("==") {
        return Ok(Requirement::Equals(key_of(k.trim())?, value_of(v.trim())?));
    }
    if let Some((k, v)) = part.split_once('=') {
        return Ok(Requirement::Equals(key_of(k.trim())?, value_of(v.trim())?));
    }
    if let Some(open) = part.find('(') {
        // `key in (a,b)` / `key notin (a,b)`: the word before `(` is the operator.
        let head: Vec<&str> = part[..open].split_whitespace().collect();
        let Some(list) = part[open + 1..].trim_end().strip_suffix(')') else {
            return Err("text after `)`".into());
        };
        let values = list
            .split(',')
            .map(|v| value_of(v.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if values.iter().all(String::is_empty) {
            return Err("an empty value list".into());
        }
        return match head.as_slice() {
            [key, "in"] => Ok(Requirement::In(key_of(key)?, values)),
            [key, "notin"] => Ok(Requirement::NotIn(key_of(key)?, values)),
            [_, op] => Err(format!("unknown operator `{op}`: use in or notin")),
            _ => Err("expected `key in (...)` or `key notin (...)`".into()),
        };
    }
    if part.contains(char::is_whitespace) {
        return Err("expected an operator (=, ==, !=, in, notin)".into());
    }
    Ok(Requirement::Exists(key_of(part)?))
}

/// A label key: a qualified name, optionally prefixed (`example.com/name`).
fn key_of(key: &str) -> Result<String, String> {
    let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
    if key.is_empty() || name.is_empty() {
        return Err("an empty label key".into());
    }
    if key.split('/').count() > 2 {
        return Err(format!("label key `{key}` has more than one `/`"));
    }
    let ok = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    if !ok(prefix) || !ok(name) {
        return Err(format!(
            "label key `{key}` may hold only letters, digits, `-`, `_`, `.` and one `/`"
        ));
    }
    Ok(key.to_string())
}

/// A label value: may be empty; no operators or spaces inside.
fn value_of(value: &str) -> Result<String, String> {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(value.to_string())
    } else {
        Err(format!(
            "label value `{value}` may hold only letters, digits, `-`, `_` and `.`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_form_parses() {
        use Requirement::*;
        let s = |k: &str| k.to_string();
        assert_eq!(sel("a=1").0, vec![Equals(s("a"), s("1"))]);
        assert_eq!(sel("a==1").0, vec![Equals(s("a"), s("1"))]);
        assert_eq!(sel("a!=1").0, vec![NotEquals(s("a"), s("1"))]);
        assert_eq!(sel("a in (1,2)").0, vec![In(s("a"), vec![s("1"), s("2")])]);
        assert_eq!(sel("a in(1, 2)").0, vec![In(s("a"), vec![s("1"), s("2")])]);
        assert_eq!(sel("a notin (1)").0, vec![NotIn(s("a"), vec![s("1")])]);
        assert_eq!(sel("a").0, vec![Exists(s("a"))]);
        assert_eq!(sel("!a").0, vec![DoesNotExist(s("a"))]);
        assert_eq!(sel("a=").0, vec![Equals(s("a"), s(""))]);
        assert_eq!(sel("example.com/tier=web").0.len(), 1);
        assert!(sel("").0.is_empty());
        assert!(sel("  ").0.is_empty());
        let all = sel("app=shop, tier in (web,db),env notin (dev),!legacy,zone,x!=y,v==1");
        assert_eq!(all.0.len(), 7);
        assert_eq!(
            all.to_string(),
            "app=shop,tier in (web,db),env notin (dev),!legacy,zone,x!=y,v=1"
        );
    }

    #[test]
    fn matching_follows_kubernetes() {
        let web = labels(&[("app", "shop"), ("tier", "web")]);
        let db = labels(&[("app", "shop"), ("tier", "db"), ("legacy", "")]);
        let bare = Labels::new();
        let m = |s: &str, l: &Labels| sel(s).matches(l);
        assert!(m("", &bare) && m("", &web));
        assert!(m("tier=web", &web) && !m("tier=web", &db) && !m("tier=web", &bare));
        assert!(m("tier==web", &web) && !m("tier==web", &db));
        // != and notin hold when the label is absent, as in Kubernetes.
        assert!(!m("tier!=web", &web) && m("tier!=web", &db) && m("tier!=web", &bare));
        assert!(m("tier in (web,db)", &web) && m("tier in (web,db)", &db));
        assert!(!m("tier in (web,db)", &bare) && !m("tier in (cache)", &web));
        assert!(!m("tier notin (web)", &web) && m("tier notin (web)", &db));
        assert!(m("tier notin (web)", &bare));
        assert!(m("legacy", &db) && !m("legacy", &web));
        assert!(m("!legacy", &web) && !m("!legacy", &db) && m("!legacy", &bare));
        assert!(m("app=shop,!legacy", &web) && !m("app=shop,!legacy", &db));
        assert!(m("app=shop,tier in (db),legacy", &db));
    }

    #[test]
    fn anything_else_is_a_clear_error() {
        for (bad, why) in [
            ("a>1", "may hold only"),
            ("a in 1", "expected an operator"),
            ("a in (1", "`(` without `)`"),
            ("a in 1)", "`)` without `(`"),
            ("a in ((1))", "nested"),
            ("a in ()", "empty value list"),
            ("a within (1)", "unknown operator `within`"),
            ("a in (1) x", "text after `)`"),
            ("=1", "empty label key"),
            ("!", "empty label key"),
            ("a=1,,b=2", "empty requirement"),
            ("a=b=c", "may hold only"),
            ("a b", "expected an operator"),
            ("a/b/c=1", "more than one `/`"),
            ("a=x y", "may hold only"),
        ] {
            let e = Selector::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with(&format!("bad selector `{bad}`")), "{e}");
            assert!(
                e.contains("key in (a,b)"),
                "the error shows the syntax: {e}"
            );
        }
    }
}
