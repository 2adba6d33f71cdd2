//! What `get` prints, whatever the kind: the resource names and aliases kubectl taught, the
//! output formats (`table`, `wide`, `json`, `yaml`, `name`), Kubernetes' list shape, RFC 3339
//! timestamps, ages, and the NotFound message. Rendering is pure; only `print` writes.

use super::selector::Selector;
use drover::model::{Labels, API_VERSION};
use serde_json::{json, Value};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// The kinds `get` lists, named and aliased as kubectl names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    #[value(name = "pods", aliases = ["pod", "po"])]
    Pods,
    #[value(
        name = "replicationcontrollers",
        aliases = ["replicationcontroller", "rc"]
    )]
    ReplicationControllers,
    #[value(name = "services", aliases = ["service", "svc"])]
    Services,
    #[value(name = "minions", aliases = ["minion", "nodes", "node", "no"])]
    Minions,
    /// The event log (`cli::events`): listed by its own code, not a listing.
    #[value(name = "events", aliases = ["event", "ev"])]
    Events,
}

impl Resource {
    /// The v1beta1 kind of one object.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Pods => "Pod",
            Resource::ReplicationControllers => "ReplicationController",
            Resource::Services => "Service",
            Resource::Minions => "Minion",
            Resource::Events => "Event",
        }
    }

    /// The resource's plural name (NotFound messages).
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Pods => "pods",
            Resource::ReplicationControllers => "replicationcontrollers",
            Resource::Services => "services",
            Resource::Minions => "minions",
            Resource::Events => "events",
        }
    }

    /// `-o name` prints `singular/id`, as kubectl does.
    pub fn singular(self) -> &'static str {
        match self {
            Resource::Pods => "pod",
            Resource::ReplicationControllers => "replicationcontroller",
            Resource::Services => "service",
            Resource::Minions => "minion",
            Resource::Events => "event",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

impl Format {
    /// Formats that show per-container details (restart counts, start times): worth an
    /// inspect call per container.
    pub fn detailed(self) -> bool {
        matches!(self, Format::Wide | Format::Json | Format::Yaml)
    }
}

/// One object as `get` shows it in every format.
pub struct Item {
    pub id: String,
    pub labels: Labels,
    /// The table's cells; `wide` appends `extra`.
    pub row: Vec<String>,
    pub extra: Vec<String>,
    /// The v1beta1 object, with `currentState`.
    pub object: Value,
}

/// Every object of one resource, with its table headers.
pub struct Listing {
    pub resource: Resource,
    pub headers: &'static [&'static str],
    pub wide_headers: &'static [&'static str],
    pub items: Vec<Item>,
}

/// What a listing becomes once names and the selector are applied.
pub struct Selected<'a> {
    pub items: Vec<&'a Item>,
    /// Names asked for that matched nothing.
    pub missing: Vec<&'a str>,
}

impl Listing {
    /// Objects named (in the order asked; all when none are) that match the selector.
    pub fn select<'a>(&'a self, names: &'a [String], selector: &Selector) -> Selected<'a> {
        let matching = |i: &&Item| selector.matches(&i.labels);
        if names.is_empty() {
            return Selected {
                items: self.items.iter().filter(matching).collect(),
                missing: Vec::new(),
            };
        }
        let mut selected = Selected {
            items: Vec::new(),
            missing: Vec::new(),
        };
        for name in names {
            match self.items.iter().filter(matching).find(|i| &i.id == name) {
                Some(i) => selected.items.push(i),
                None => selected.missing.push(name),
            }
        }
        selected
    }
}

/// kubectl's words for an object that does not exist (drover has no server to blame).
pub fn not_found(resource: Resource, name: &str) -> String {
    format!(
        "drover: error (NotFound): {} \"{name}\" not found",
        resource.plural()
    )
}

/// Renders the selected objects. One object asked for by name is printed alone (as kubectl
/// does); otherwise a `{kind}List`.
pub fn render(
    listing: &Listing,
    selected: &Selected,
    format: Format,
    single: bool,
) -> Result<String, String> {
    let document = || {
        if single && selected.items.len() == 1 {
            selected.items[0].object.clone()
        } else {
            list(
                listing.resource,
                selected.items.iter().map(|i| i.object.clone()).collect(),
            )
        }
    };
    Ok(match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(&document()).expect("values serialise");
            text.push('\n');
            text
        }
        Format::Yaml => serde_norway::to_string(&document()).map_err(|e| e.to_string())?,
        Format::Name => selected
            .items
            .iter()
            .map(|i| format!("{}/{}\n", listing.resource.singular(), i.id))
            .collect(),
        Format::Table | Format::Wide => {
            if selected.items.is_empty() {
                return Ok(String::new());
            }
            let wide = format == Format::Wide;
            let mut header: Vec<String> = listing.headers.iter().map(|h| h.to_string()).collect();
            if wide {
                header.extend(listing.wide_headers.iter().map(|h| h.to_string()));
            }
            let mut rows = vec![header];
            for i in &selected.items {
                let mut row = i.row.clone();
                if wide {
                    row.extend(i.extra.iter().cloned());
                }
                rows.push(row);
            }
            table(&rows)
        }
    })
}

/// Kubernetes' list shape: `{"kind": "PodList", "apiVersion": "v1beta1", "items": [...]}`.
pub fn list(resource: Resource, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{}List", resource.kind()),
        "apiVersion": API_VERSION,
        "items": items,
    })
}

/// Left-aligned columns, three spaces apart (kubectl's spacing); the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// Writes to stdout; a closed pipe (`drover get pods | head`) is not an error.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// `k=v,k=v`, or `<none>` as kubectl shows an empty map.
pub fn labels_text(l: &Labels) -> String {
    if l.is_empty() {
        "<none>".into()
    } else {
        l.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// RFC 3339 in UTC, to the second: `2026-11-28T23:15:04Z`.
pub fn rfc3339(unix_seconds: i64) -> String {
    drover::clock::rfc3339_secs(unix_seconds)
}

pub fn system_time_rfc3339(t: SystemTime) -> String {
    drover::clock::rfc3339(t)
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// kubectl's short age: `45s`, `12m`, `5h`, `3d`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A duration as kubectl's `--since` takes it: `30s`, `5m`, `2h`, `1h30m`, `500ms`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad =
        || format!("bad duration `{text}`: use a number with a unit, e.g. 30s, 5m, 2h, 1h30m");
    let mut total = std::time::Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => std::time::Duration::from_millis(1),
            "s" => std::time::Duration::from_secs(1),
            "m" => std::time::Duration::from_secs(60),
            "h" => std::time::Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        total += unit.checked_mul(n as u32).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_420_070_399), "2014-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_798_500_000), "2026-12-28T23:20:00Z");
    }

    #[test]
    fn ages_and_durations_read_as_kubectl_writes_them() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(125), "2m");
        assert_eq!(age(7200), "2h");
        assert_eq!(age(3 * 86_400 + 5), "3d");
        let secs = |t: &str| parse_duration(t).unwrap().as_millis();
        assert_eq!(secs("30s"), 30_000);
        assert_eq!(secs("5m"), 300_000);
        assert_eq!(secs("1h30m"), 5_400_000);
        assert_eq!(secs("500ms"), 500);
        for bad in ["", "5", "m", "5x", "-5s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn listing() -> Listing {
        let item = |id: &str, tier: &str| Item {
            id: id.into(),
            labels: [("tier".to_string(), tier.to_string())].into(),
            row: vec![id.into(), tier.into()],
            extra: vec!["x".into()],
            object: json!({"kind": "Pod", "id": id}),
        };
        Listing {
            resource: Resource::Pods,
            headers: &["NAME", "TIER"],
            wide_headers: &["EXTRA"],
            items: vec![item("a", "web"), item("b", "db")],
        }
    }

    #[test]
    fn every_format_renders_the_selection() {
        let l = listing();
        let all = Selector::default();
        let s = l.select(&[], &all);
        let text = render(&l, &s, Format::Table, false).unwrap();
        assert_eq!(text, "NAME   TIER\na      web\nb      db\n");
        let wide = render(&l, &s, Format::Wide, false).unwrap();
        assert_eq!(wide.lines().next().unwrap(), "NAME   TIER   EXTRA");
        assert_eq!(
            render(&l, &s, Format::Name, false).unwrap(),
            "pod/a\npod/b\n"
        );
        let v: Value = serde_json::from_str(&render(&l, &s, Format::Json, false).unwrap()).unwrap();
        assert_eq!(v["kind"], "PodList");
        assert_eq!(v["apiVersion"], "v1beta1");
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
        let yaml = render(&l, &s, Format::Yaml, false).unwrap();
        assert!(
            yaml.starts_with("kind: PodList\napiVersion: v1beta1\nitems:\n"),
            "{yaml}"
        );

        let web = Selector::parse("tier=web").unwrap();
        let names = vec!["a".to_string(), "b".to_string(), "zz".to_string()];
        let s = l.select(&names, &web);
        assert_eq!(s.items.len(), 1);
        assert_eq!(s.missing, vec!["b", "zz"]);
        let one = vec!["a".to_string()];
        let s = l.select(&one, &all);
        let v: Value = serde_json::from_str(&render(&l, &s, Format::Json, true).unwrap()).unwrap();
        assert_eq!(v["kind"], "Pod", "one named object is printed alone");
        assert_eq!(
            not_found(Resource::Pods, "zz"),
            "drover: error (NotFound): pods \"zz\" not found"
        );
    }
}
