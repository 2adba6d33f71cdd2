//! `drover get events [-w] [--for KIND/NAME]` and the Events section of `describe`: the event
//! log the daemon keeps in the state directory (`drover::events`), read without the lock.

use super::output::{self, Format, Resource};
use super::{fail, Context, EXIT_DIFFERENCES, EXIT_OK};
use drover::events::{Event, EventLog, ObjectRef};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// How often `-w` reads the log again.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The object kind an event names, from any spelling kubectl accepts.
pub fn object_kind(kind: &str) -> Option<&'static str> {
    Some(match kind.to_ascii_lowercase().as_str() {
        "pod" | "pods" | "po" => "Pod",
        "rc" | "replicationcontroller" | "replicationcontrollers" => "ReplicationController",
        "service" | "services" | "svc" => "Service",
        "minion" | "minions" | "node" | "nodes" | "no" => "Minion",
        "source" => "Source",
        _ => return None,
    })
}

/// Parses `--for KIND/NAME`.
fn parse_for(text: &str) -> Result<ObjectRef, String> {
    let (kind, name) = text
        .split_once('/')
        .ok_or_else(|| format!("--for {text:?}: expected KIND/NAME, e.g. pod/web-1"))?;
    let kind = object_kind(kind).ok_or_else(|| {
        format!("--for {text:?}: unknown kind {kind:?} (pod, rc, service, minion, source)")
    })?;
    Ok(ObjectRef::new(kind, name))
}

fn read(cx: &Context) -> Result<EventLog, String> {
    EventLog::read(&cx.store()?).map_err(|e| e.to_string())
}

fn age(event: &Event, now: SystemTime) -> String {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let secs = now.saturating_sub(event.last_seen);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

fn line(event: &Event, now: SystemTime) -> String {
    format!(
        "{:<9} {:<6} {:<36} {:<8} {:<18} {}",
        age(event, now),
        event.count,
        event.involved_object.to_string(),
        format!("{:?}", event.severity),
        event.reason,
        event.message
    )
}

const HEADER: &str =
    "LAST SEEN COUNT  OBJECT                               TYPE     REASON             MESSAGE";

/// `get events [NAME...] [--for KIND/NAME] [-w] [-o FORMAT]`: NAME selects events of objects
/// of that name, whatever their kind.
pub fn get(
    cx: &Context,
    names: &[String],
    for_object: Option<&str>,
    watch: bool,
    format: &Format,
) -> ExitCode {
    let only = match for_object.map(parse_for).transpose() {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let wanted = |e: &&Event| {
        only.as_ref().is_none_or(|o| &e.involved_object == o)
            && (names.is_empty() || names.contains(&e.involved_object.name))
    };
    let log = match read(cx) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let items: Vec<&Event> = log.items.iter().filter(wanted).collect();
    // A NAME with no events is NotFound, as `get pods NAME` has it; while watching (a table:
    // other formats print once and end) they may yet come.
    let table = matches!(format, Format::Table | Format::Wide);
    let missing: Vec<&String> = if watch && table {
        Vec::new()
    } else {
        names
            .iter()
            .filter(|name| !items.iter().any(|e| &e.involved_object.name == *name))
            .collect()
    };
    let mut out = std::io::stdout().lock();
    let list = || serde_json::json!({"kind": "EventList", "apiVersion": "v1beta1", "items": items});
    match format {
        Format::Json => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&list()).expect("json")
            );
        }
        Format::Yaml => match serde_norway::to_string(&list()) {
            Ok(text) => {
                let _ = write!(out, "{text}");
            }
            Err(e) => return fail(&e),
        },
        Format::Name => {
            for e in &items {
                let _ = writeln!(out, "event/{}.{}", e.involved_object.name, e.reason);
            }
        }
        Format::JsonPath(template) => {
            let _ = write!(out, "{}", template.render(&list()));
        }
        Format::CustomColumns(columns) => {
            if !items.is_empty() {
                let mut rows = vec![columns.iter().map(|c| c.header.clone()).collect()];
                for e in &items {
                    let object = serde_json::to_value(e).expect("events serialise");
                    rows.push(output::column_cells(columns, &object));
                }
                let _ = write!(out, "{}", output::table(&rows));
            }
        }
        // -w prints the header even over no events: the ones to come go under it.
        Format::Table | Format::Wide if items.is_empty() && !watch => {
            if names.is_empty() {
                eprintln!("No resources found.");
            }
        }
        Format::Table | Format::Wide => {
            let now = SystemTime::now();
            let _ = writeln!(out, "{HEADER}");
            for e in &items {
                let _ = writeln!(out, "{}", line(e, now));
            }
        }
    }
    for name in &missing {
        eprintln!("{}", output::not_found(Resource::Events, name));
    }
    if !(watch && table) {
        return ExitCode::from(if missing.is_empty() {
            EXIT_OK
        } else {
            EXIT_DIFFERENCES
        });
    }
    // -w: every new event, and every repeat of an old one, as it is written.
    let mut shown: Vec<Event> = log.items;
    loop {
        let _ = out.flush();
        std::thread::sleep(WATCH_EVERY);
        let Ok(log) = read(cx) else { continue };
        let now = SystemTime::now();
        for e in log.items.iter().filter(wanted) {
            if !shown.contains(e) {
                let _ = writeln!(out, "{}", line(e, now));
            }
        }
        shown = log.items;
    }
}

/// The Events section `describe` ends with.
pub fn describe_section(cx: &Context, kind: &str, name: &str) {
    let Some(kind) = object_kind(kind) else {
        return;
    };
    let object = ObjectRef::new(kind, name);
    let mut out = std::io::stdout().lock();
    match read(cx) {
        Ok(log) => {
            let now = SystemTime::now();
            let events: Vec<&Event> = log.of(&object).collect();
            if events.is_empty() {
                let _ = writeln!(out, "Events:      <none>");
                return;
            }
            let _ = writeln!(out, "Events:\n  {HEADER}");
            for e in events {
                let _ = writeln!(out, "  {}", line(e, now));
            }
        }
        Err(e) => {
            let _ = writeln!(out, "Events:      unavailable ({e})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_takes_kubectl_spellings() {
        assert_eq!(
            parse_for("po/web-1").unwrap(),
            ObjectRef::new("Pod", "web-1")
        );
        assert_eq!(
            parse_for("rc/web").unwrap(),
            ObjectRef::new("ReplicationController", "web")
        );
        assert!(parse_for("web").unwrap_err().contains("KIND/NAME"));
        assert!(parse_for("deploy/web")
            .unwrap_err()
            .contains("unknown kind"));
    }
}
