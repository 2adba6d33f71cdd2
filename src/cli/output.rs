//! What `get` prints, whatever the kind: the resource names and aliases kubectl taught, the
//! output formats (`table`, `wide`, `json`, `yaml`, `name`), Kubernetes' list shape, RFC 3339
//! timestamps, ages, and the NotFound message. Rendering is pure; only `print` writes.

use super::jsonpath::{self, Path, Template};
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

/// How `get` prints: the five plain formats, kubectl's JSONPath template, or custom columns.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
    /// `-o jsonpath=TEMPLATE`: the template over the list (or the one object named).
    JsonPath(Template),
    /// `-o custom-columns=NAME:PATH,...` (or `custom-columns-file=FILE`): one row per object.
    CustomColumns(Vec<Column>),
}

/// The formats named by a word alone: clap parses these, so a bad `-o` keeps clap's message
/// with its possible values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Plain {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

impl Format {
    /// Formats that show per-container details (restart counts, start times): worth an
    /// inspect call per container. JSONPath and custom columns read the JSON, so they get all
    /// of it.
    pub fn detailed(&self) -> bool {
        !matches!(self, Format::Table | Format::Name)
    }

    /// Formats whose output is a table under a header (`No resources found.` when empty).
    pub fn tabular(&self) -> bool {
        matches!(
            self,
            Format::Table | Format::Wide | Format::CustomColumns(_)
        )
    }
}

/// clap's parser for `-o`: `jsonpath=...`, `custom-columns=...`, `custom-columns-file=...`,
/// else one of the plain formats through clap's own enum parser (and its error).
#[derive(Clone)]
pub struct FormatParser;

impl clap::builder::TypedValueParser for FormatParser {
    type Value = Format;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Format, clap::Error> {
        let text = value.to_string_lossy();
        let invalid = |why: String| {
            let arg = arg.map_or("--output".to_string(), |a| a.to_string());
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value '{text}' for '{arg}': {why}\n"),
            )
            .with_cmd(cmd)
        };
        if let Some(template) = text.strip_prefix("jsonpath=") {
            return Template::parse(template)
                .map(Format::JsonPath)
                .map_err(|e| invalid(format!("jsonpath template {e}")));
        }
        if let Some(spec) = text.strip_prefix("custom-columns=") {
            return parse_columns(spec)
                .map(Format::CustomColumns)
                .map_err(invalid);
        }
        if let Some(file) = text.strip_prefix("custom-columns-file=") {
            return columns_file(std::path::Path::new(file))
                .map(Format::CustomColumns)
                .map_err(invalid);
        }
        let plain = clap::builder::EnumValueParser::<Plain>::new().parse_ref(cmd, arg, value)?;
        Ok(match plain {
            Plain::Table => Format::Table,
            Plain::Wide => Format::Wide,
            Plain::Json => Format::Json,
            Plain::Yaml => Format::Yaml,
            Plain::Name => Format::Name,
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::builder::PossibleValue;
        use clap::ValueEnum;
        let plain = Plain::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value());
        let more = [
            PossibleValue::new("jsonpath=TEMPLATE"),
            PossibleValue::new("custom-columns=SPEC"),
            PossibleValue::new("custom-columns-file=FILE"),
        ];
        Some(Box::new(plain.chain(more)))
    }
}

/// One custom column: its header (upper-cased, as kubectl prints it) and the path of its
/// values.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub header: String,
    pub path: Path,
}

/// `NAME:.id,IMAGE:.desiredState.manifest.containers[*].image`.
pub fn parse_columns(spec: &str) -> Result<Vec<Column>, String> {
    if spec.trim().is_empty() {
        return Err("custom-columns needs at least one column, e.g. NAME:.id".into());
    }
    spec.split(',')
        .map(|part| {
            let (header, path) = part.split_once(':').ok_or_else(|| {
                format!("custom-columns: `{part}` is not HEADER:PATH (e.g. NAME:.id)")
            })?;
            column(header, path)
        })
        .collect()
}

fn column(header: &str, path: &str) -> Result<Column, String> {
    if header.trim().is_empty() {
        return Err(format!(
            "custom-columns: the column of `{path}` has no header"
        ));
    }
    let path =
        Path::parse_relaxed(path).map_err(|e| format!("custom-columns: path `{path}` {e}"))?;
    Ok(Column {
        header: header.trim().to_uppercase(),
        path,
    })
}

/// kubectl's columns file: a line of headers, then a line of paths, separated by whitespace.
fn columns_file(file: &std::path::Path) -> Result<Vec<Column>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("custom-columns-file {}: {e}", file.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let (Some(headers), Some(paths)) = (lines.next(), lines.next()) else {
        return Err(format!(
            "custom-columns-file {}: expected a line of headers and a line of paths",
            file.display()
        ));
    };
    let (headers, paths): (Vec<&str>, Vec<&str>) = (
        headers.split_whitespace().collect(),
        paths.split_whitespace().collect(),
    );
    if headers.len() != paths.len() {
        return Err(format!(
            "custom-columns-file {}: {} headers but {} paths",
            file.display(),
            headers.len(),
            paths.len()
        ));
    }
    headers
        .iter()
        .zip(paths)
        .map(|(h, p)| column(h, p))
        .collect()
}

/// The cells of one object under custom columns: `<none>` where the path finds nothing,
/// several values joined by `,`.
pub fn column_cells(columns: &[Column], object: &Value) -> Vec<String> {
    columns
        .iter()
        .map(|c| {
            let values = c.path.eval(object);
            if values.is_empty() {
                "<none>".to_string()
            } else {
                values
                    .into_iter()
                    .map(jsonpath::text_of)
                    .collect::<Vec<_>>()
                    .join(",")
            }
        })
        .collect()
}

/// `--sort-by=PATH`: the path as given (for its error) and parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct SortBy {
    pub text: String,
    pub path: Path,
}

impl SortBy {
    pub fn parse(text: &str) -> Result<SortBy, String> {
        Path::parse_relaxed(text)
            .map(|path| SortBy {
                text: text.to_string(),
                path,
            })
            .map_err(|e| e.to_string())
    }
}

/// JSON values in kubectl's sort order: missing first, numbers by value, strings by text;
/// values of different types by type (null, bool, number, string, array, object).
fn compare_values(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let rank = |v: Option<&Value>| match v {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::Bool(_)) => 2,
        Some(Value::Number(_)) => 3,
        Some(Value::String(_)) => 4,
        Some(Value::Array(_)) => 5,
        Some(Value::Object(_)) => 6,
    };
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x @ (Value::Array(_) | Value::Object(_))), Some(y))
            if rank(Some(x)) == rank(Some(y)) =>
        {
            x.to_string().cmp(&y.to_string())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Orders the selection: by name (kubectl's order, as the API server listed) unless
/// `--sort-by` names a path, then by its first value in each object (ties by name). Objects
/// named on the command line keep the order asked, as kubectl prints them, unless sorted.
pub fn sort(selected: &mut Selected, names_given: bool, by: Option<&SortBy>) -> Result<(), String> {
    if !names_given || by.is_some() {
        selected.items.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let Some(by) = by else { return Ok(()) };
    let keys: Vec<Option<&Value>> = selected
        .items
        .iter()
        .copied()
        .map(|i| by.path.eval(&i.object).into_iter().next())
        .collect();
    // kubectl: a path that finds nothing in any object is an error, not an unsorted list.
    if !keys.is_empty() && keys.iter().all(Option::is_none) {
        let hint = if by.text.contains("metadata") {
            " (v1beta1 objects have `id`, `labels` and `creationTimestamp` at the top, not under `metadata`: e.g. --sort-by=.id)"
        } else {
            ""
        };
        return Err(format!(
            "couldn't find any field with path \"{}\" in the list of objects{hint}",
            by.text
        ));
    }
    let mut keyed: Vec<(Option<&Value>, &Item)> = keys
        .into_iter()
        .zip(selected.items.iter().copied())
        .collect();
    keyed.sort_by(|(a, _), (b, _)| compare_values(*a, *b));
    selected.items = keyed.into_iter().map(|(_, i)| i).collect();
    Ok(())
}

/// One object as `get` shows it in every format.
#[derive(Clone)]
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
    format: &Format,
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
        // As kubectl prints it: no newline added; the template says where lines end.
        Format::JsonPath(template) => template.render(&document()),
        Format::Table | Format::Wide | Format::CustomColumns(_) => {
            if selected.items.is_empty() {
                return Ok(String::new());
            }
            let mut rows = vec![header(listing, format)];
            rows.extend(selected.items.iter().map(|i| row(i, format)));
            table(&rows)
        }
    })
}

/// The header of a tabular format.
pub fn header(listing: &Listing, format: &Format) -> Vec<String> {
    match format {
        Format::CustomColumns(columns) => columns.iter().map(|c| c.header.clone()).collect(),
        _ => {
            let mut header: Vec<String> = listing.headers.iter().map(|h| h.to_string()).collect();
            if *format == Format::Wide {
                header.extend(listing.wide_headers.iter().map(|h| h.to_string()));
            }
            header
        }
    }
}

/// One object's cells in a tabular format.
pub fn row(item: &Item, format: &Format) -> Vec<String> {
    match format {
        Format::CustomColumns(columns) => column_cells(columns, &item.object),
        Format::Wide => item.row.iter().chain(&item.extra).cloned().collect(),
        _ => item.row.clone(),
    }
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
    let widths = widths(rows);
    rows.iter().map(|r| table_line(r, &widths)).collect()
}

/// The widest cell of each column.
pub fn widths(rows: &[Vec<String>]) -> Vec<usize> {
    (0..rows[0].len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// One row padded to the columns' widths (a wider cell pushes the rest right), with its
/// newline.
pub fn table_line(row: &[String], widths: &[usize]) -> String {
    let line: Vec<String> = row
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
        .collect();
    let mut out = line.join("   ").trim_end().to_string();
    out.push('\n');
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
        let text = render(&l, &s, &Format::Table, false).unwrap();
        assert_eq!(text, "NAME   TIER\na      web\nb      db\n");
        let wide = render(&l, &s, &Format::Wide, false).unwrap();
        assert_eq!(wide.lines().next().unwrap(), "NAME   TIER   EXTRA");
        assert_eq!(
            render(&l, &s, &Format::Name, false).unwrap(),
            "pod/a\npod/b\n"
        );
        let v: Value =
            serde_json::from_str(&render(&l, &s, &Format::Json, false).unwrap()).unwrap();
        assert_eq!(v["kind"], "PodList");
        assert_eq!(v["apiVersion"], "v1beta1");
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
        let yaml = render(&l, &s, &Format::Yaml, false).unwrap();
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
        let v: Value = serde_json::from_str(&render(&l, &s, &Format::Json, true).unwrap()).unwrap();
        assert_eq!(v["kind"], "Pod", "one named object is printed alone");
        assert_eq!(
            not_found(Resource::Pods, "zz"),
            "drover: error (NotFound): pods \"zz\" not found"
        );
    }

    fn sorted_ids(l: &Listing, by: Option<&str>) -> Result<Vec<String>, String> {
        let by = by.map(|b| SortBy::parse(b).unwrap());
        let all = Selector::default();
        let mut s = l.select(&[], &all);
        sort(&mut s, false, by.as_ref())?;
        Ok(s.items.iter().map(|i| i.id.clone()).collect())
    }

    fn pods(objects: Vec<Value>) -> Listing {
        Listing {
            resource: Resource::Pods,
            headers: &["NAME"],
            wide_headers: &[],
            items: objects
                .into_iter()
                .map(|o| Item {
                    id: o["id"].as_str().unwrap().into(),
                    labels: Labels::new(),
                    row: vec![o["id"].as_str().unwrap().into()],
                    extra: vec![],
                    object: o,
                })
                .collect(),
        }
    }

    #[test]
    fn lists_sort_by_name_unless_sort_by_says_otherwise() {
        let l = pods(vec![
            json!({"id": "web-b", "desiredState": {"replicas": 10}, "currentState": {"host": "m1"}}),
            json!({"id": "backend", "desiredState": {"replicas": 9}}),
            json!({"id": "web-a", "desiredState": {"replicas": 2}, "currentState": {"host": "m3"}}),
        ]);
        assert_eq!(sorted_ids(&l, None).unwrap(), ["backend", "web-a", "web-b"]);
        // Numbers by value (10 after 9), not by text.
        assert_eq!(
            sorted_ids(&l, Some(".desiredState.replicas")).unwrap(),
            ["web-a", "backend", "web-b"]
        );
        // Missing first; every spelling of the path.
        for by in [
            ".currentState.host",
            "{.currentState.host}",
            "currentState.host",
        ] {
            assert_eq!(
                sorted_ids(&l, Some(by)).unwrap(),
                ["backend", "web-b", "web-a"],
                "{by}"
            );
        }
        assert_eq!(
            sorted_ids(&l, Some("{.id}")).unwrap(),
            ["backend", "web-a", "web-b"]
        );
        let e = sorted_ids(&l, Some(".metadata.name")).unwrap_err();
        assert!(
            e.starts_with("couldn't find any field with path \".metadata.name\"")
                && e.contains("--sort-by=.id"),
            "{e}"
        );
        // Named objects keep the order asked unless sorted.
        let names = vec!["web-b".to_string(), "backend".to_string()];
        let all = Selector::default();
        let mut s = l.select(&names, &all);
        sort(&mut s, true, None).unwrap();
        assert_eq!(s.items[0].id, "web-b");
    }

    #[test]
    fn custom_columns_print_upper_case_headers_and_none() {
        let l = pods(vec![
            json!({"id": "web-1", "desiredState": {"manifest": {"containers": [{"image": "a"}, {"image": "b"}]}}}),
            json!({"id": "web-2"}),
        ]);
        let columns =
            parse_columns("name:.id,Images:.desiredState.manifest.containers[*].image").unwrap();
        let all = Selector::default();
        let s = l.select(&[], &all);
        assert_eq!(
            render(&l, &s, &Format::CustomColumns(columns), false).unwrap(),
            "NAME    IMAGES\nweb-1   a,b\nweb-2   <none>\n"
        );
        assert!(parse_columns("NAME").unwrap_err().contains("HEADER:PATH"));
        assert!(parse_columns("NAME:.a[").unwrap_err().contains("column"));
        assert!(parse_columns(":.id").unwrap_err().contains("no header"));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "NAME   HOST\n.id    .currentState.host\n").unwrap();
        let columns = columns_file(file.path()).unwrap();
        assert_eq!(columns[1].header, "HOST");
        assert_eq!(columns.len(), 2);
    }

    #[test]
    fn jsonpath_sees_the_list_or_the_one_object() {
        let l = pods(vec![json!({"id": "b"}), json!({"id": "a"})]);
        let all = Selector::default();
        let mut s = l.select(&[], &all);
        sort(&mut s, false, None).unwrap();
        let t = Format::JsonPath(Template::parse("{.kind}:{.items[*].id}").unwrap());
        assert_eq!(render(&l, &s, &t, false).unwrap(), "PodList:a b");
        let one = vec!["b".to_string()];
        let s = l.select(&one, &all);
        let t = Format::JsonPath(Template::parse("{.id}").unwrap());
        assert_eq!(render(&l, &s, &t, true).unwrap(), "b");
    }
}
