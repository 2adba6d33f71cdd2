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
            // Name the failing requirement only when there are several: the input is shown once.
            let at = if part == text.trim() {
                String::new()
            } else {
                format!("in `{part}`: ")
            };
            requirements.push(
                requirement(part)
                    .map_err(|why| format!("bad selector `{text}`: {at}{why}; {USAGE}"))?,
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
    // The key runs up to its operator: `=`, `==`, `!=`, or whitespace/`(` before in/notin.
    let key_end = part
        .find(|c: char| matches!(c, '=' | '!' | '(') || c.is_whitespace())
        .unwrap_or(part.len());
    let key = key_of(&part[..key_end])?;
    let rest = part[key_end..].trim_start();
    if rest.is_empty() {
        return Ok(Requirement::Exists(key));
    }
    if let Some(value) = rest.strip_prefix("!=") {
        return Ok(Requirement::NotEquals(key, value_of(value.trim())?));
    }
    if let Some(value) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        return Ok(Requirement::Equals(key, value_of(value.trim())?));
    }
    let op_end = rest
        .find(|c: char| c == '(' || c.is_whitespace())
        .unwrap_or(rest.len());
    let (op, list) = (&rest[..op_end], rest[op_end..].trim_start());
    match op {
        "in" | "notin" => {
            let Some(list) = list.strip_prefix('(') else {
                return Err(format!("expected `(` after `{op}`"));
            };
            // `split_top_level` leaves each requirement's parentheses paired.
            let Some((inside, after)) = list.split_once(')') else {
                return Err("`(` without `)`".into());
            };
            if !after.trim().is_empty() {
                return Err(format!("text after `)`: `{}`", after.trim()));
            }
            let values = inside
                .split(',')
                .map(|v| value_of(v.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            if values.iter().all(String::is_empty) {
                return Err("an empty value list".into());
            }
            Ok(if op == "in" {
                Requirement::In(key, values)
            } else {
                Requirement::NotIn(key, values)
            })
        }
        "" => Err(format!("expected in or notin between `{key}` and `(`")),
        _ if list.starts_with('(') => Err(format!("unknown operator `{op}`: use in or notin")),
        _ => Err(format!(
            "expected an operator (=, ==, !=, in, notin) after `{key}`, found `{op}`"
        )),
    }
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

/// A label value: any text, as v1beta1 never checked values, save what the syntax would read
/// otherwise: whitespace, `,` and `)` end a value, and `=`, `!` and `(` would start an
/// operator. It may be empty.
fn value_of(value: &str) -> Result<String, String> {
    match value
        .chars()
        .find(|&c| c.is_whitespace() || "=!(),".contains(c))
    {
        None => Ok(value.to_string()),
        Some(c) if c.is_whitespace() => Err(format!(
            "label value `{value}` holds whitespace, which ends a value"
        )),
        Some(c) => Err(format!(
            "label value `{value}` holds `{c}`, which the selector syntax reserves"
        )),
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
    fn a_value_may_hold_any_text_the_syntax_can_end() {
        use Requirement::*;
        let s = |k: &str| k.to_string();
        assert_eq!(sel("ver=1.0/beta").0, vec![Equals(s("ver"), s("1.0/beta"))]);
        assert_eq!(
            sel("ver == 1.0/beta").0,
            vec![Equals(s("ver"), s("1.0/beta"))]
        );
        assert_eq!(
            sel("owner!=a@b.c").0,
            vec![NotEquals(s("owner"), s("a@b.c"))]
        );
        assert_eq!(
            sel("at in (10:30, x+y,ünï,*)").0,
            vec![In(s("at"), vec![s("10:30"), s("x+y"), s("ünï"), s("*")])]
        );
        assert_eq!(
            sel("url notin (a/b:c)").0,
            vec![NotIn(s("url"), vec![s("a/b:c")])]
        );
        let pod = labels(&[("ver", "1.0/beta"), ("owner", "a@b.c"), ("at", "10:30")]);
        for matching in [
            "ver=1.0/beta",
            "ver==1.0/beta,owner=a@b.c",
            "ver!=1.0",
            "at in (10:30,11:00)",
            "at notin (10:31)",
            "owner,!url",
        ] {
            assert!(sel(matching).matches(&pod), "{matching}");
        }
        for not_matching in ["ver=1.0", "ver!=1.0/beta", "at notin (10:30)", "owner=a@b"] {
            assert!(!sel(not_matching).matches(&pod), "{not_matching}");
        }
        assert_eq!(
            sel("ver=1.0/beta,at in (10:30)").to_string(),
            "ver=1.0/beta,at in (10:30)"
        );
    }

    #[test]
    fn anything_else_is_a_clear_error() {
        for (bad, why) in [
            ("a>1", "label key `a>1` may hold only"),
            ("a in 1", "expected `(` after `in`"),
            ("a notin x (1)", "expected `(` after `notin`"),
            ("a in (1", "`(` without `)`"),
            ("a in 1)", "`)` without `(`"),
            ("a in ((1))", "nested"),
            ("a in ()", "empty value list"),
            ("a within (1)", "unknown operator `within`"),
            ("a (1)", "expected in or notin between `a` and `(`"),
            ("a in (1) x", "text after `)`: `x`"),
            ("=1", "empty label key"),
            ("!", "empty label key"),
            ("a=1,,b=2", "empty requirement"),
            ("a=b=c", "label value `b=c` holds `=`"),
            ("a!=!b", "label value `!b` holds `!`"),
            ("a=x(y)", "label value `x(y)` holds `(`"),
            ("a in (x=y)", "label value `x=y` holds `=`"),
            (
                "a b",
                "expected an operator (=, ==, !=, in, notin) after `a`, found `b`",
            ),
            ("a/b/c=1", "more than one `/`"),
            ("a=x y", "label value `x y` holds whitespace"),
            ("a in (x y)", "label value `x y` holds whitespace"),
        ] {
            let e = Selector::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with(&format!("bad selector `{bad}`")), "{e}");
            assert!(
                !e.contains(&format!("`{bad}`: `{bad}`")) && !e.contains(": in `"),
                "one requirement: the input is not repeated: {e}"
            );
            assert!(
                e.contains("key in (a,b)"),
                "the error shows the syntax: {e}"
            );
        }
        // With several requirements, the one at fault is named.
        let e = Selector::parse("app=shop,tier in web").unwrap_err();
        assert!(
            e.starts_with(
                "bad selector `app=shop,tier in web`: in `tier in web`: expected `(` after `in`;"
            ),
            "{e}"
        );
    }
}
