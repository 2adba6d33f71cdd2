//! Who serves the services now. Each process that runs the proxy (the daemon, leader or
//! follower, and `drover proxy`) keeps a record beside the state (`Store::put_aside`): which
//! process it is, the address it listens on, and each service it serves or why it cannot.
//! It is written when what it serves changes, renewed every [`RENEW`] while the process runs,
//! and removed when it stops. `get
//! services` and `describe service` read the records: a service that no live record serves is
//! `not served`, whatever was recorded of it before, so a stopped daemon never leaves a
//! service saying `ok`.
//!
//! A record is live while it was renewed within [`STALE`]; one written on this host is also
//! dead as soon as its process is gone (a daemon killed with SIGKILL leaves its record).

use crate::clock::unix_secs as unix;
use crate::proxy::Proxy;
use crate::store::host_name as this_host;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often a serving process renews its record.
pub const RENEW: Duration = Duration::from_secs(5);
/// A record not renewed for this long is not believed.
pub const STALE: Duration = Duration::from_secs(30);

/// Where the records are, beside the state.
const DIR: &str = "serving";

/// One serving process's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub pid: u32,
    pub host: String,
    /// `daemon` or `proxy`.
    pub command: String,
    /// The address its service ports are bound on.
    pub listen: String,
    /// Unix seconds of its last renewal.
    pub renewed: u64,
    /// Each service it has a listener for: `None` when it serves it, else why not.
    pub services: BTreeMap<String, Option<String>>,
}

/// What a service's proxy state is, from the live records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Served by these (`daemon pid 12 on h at 127.0.0.1`).
    Served(Vec<String>),
    /// Live proxies have it but cannot serve it: why (the first one's reason).
    Failing(String),
    /// No live proxy has it.
    NotServed,
}

impl State {
    /// The short form `get services` shows.
    pub fn summary(&self) -> String {
        match self {
            State::Served(_) => "ok".into(),
            State::Failing(why) => why.clone(),
            State::NotServed => "not served".into(),
        }
    }

    /// The long form `describe` shows.
    pub fn detail(&self) -> String {
        match self {
            State::Served(by) => format!("ok (served by {})", by.join("; ")),
            State::Failing(why) => why.clone(),
            State::NotServed => "not served (no daemon or `drover proxy` serves it now)".into(),
        }
    }
}

impl Record {
    fn name(&self) -> String {
        format!("{DIR}/{}-{}.json", self.host, self.pid)
    }

    fn who(&self) -> String {
        format!(
            "{} pid {} on {} at {}",
            self.command, self.pid, self.host, self.listen
        )
    }

    /// Whether the record speaks for a running process at `now` (Unix seconds).
    pub fn is_live(&self, now: u64, this_host: &str, running: impl Fn(u32) -> bool) -> bool {
        now.saturating_sub(self.renewed) <= STALE.as_secs()
            && (self.host != this_host || running(self.pid))
    }
}

/// A service's state from the live records.
pub fn state_of(service: &str, live: &[Record]) -> State {
    let mut served = Vec::new();
    let mut failing = None;
    for r in live {
        match r.services.get(service) {
            Some(None) => served.push(r.who()),
            Some(Some(why)) => {
                failing.get_or_insert_with(|| why.clone());
            }
            None => {}
        }
    }
    match (served.is_empty(), failing) {
        (false, _) => State::Served(served),
        (true, Some(why)) => State::Failing(why),
        (true, None) => State::NotServed,
    }
}

/// The live records of the store (unreadable or stale ones left out).
pub fn live(store: &Store) -> Result<Vec<Record>, String> {
    let now = unix(SystemTime::now());
    let host = this_host();
    let mut out = Vec::new();
    for (_, bytes) in store.list_aside(DIR).map_err(|e| e.to_string())? {
        let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
            continue;
        };
        if record.is_live(now, &host, process_running) {
            out.push(record);
        }
    }
    Ok(out)
}

/// Keeps this process's record while it runs: writes it now, again every [`RENEW`] (with
/// the proxy's services as they are then), and removes it when the returned guard drops.
/// A store that cannot be written is told once by `Keeper::problem`, and tried again.
pub fn keep(store: Store, proxy: Arc<Proxy>, command: &str) -> Keeper {
    let record = Record {
        pid: std::process::id(),
        host: this_host(),
        command: command.into(),
        listen: proxy.listen_address().to_string(),
        renewed: 0,
        services: BTreeMap::new(),
    };
    let name = record.name();
    let writer_store = store.clone();
    let problem: Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let told = problem.clone();
    let task = tokio::spawn(async move {
        let mut record = record;
        let mut failing = false;
        // Looked at every second: written when what it serves changed, else every RENEW.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut written_at: Option<std::time::Instant> = None;
        loop {
            tick.tick().await;
            let services: BTreeMap<String, Option<String>> = proxy
                .status()
                .into_iter()
                .map(|s| (s.name, s.error))
                .collect();
            let due = written_at.is_none_or(|at| at.elapsed() >= RENEW);
            if services == record.services && !due {
                continue;
            }
            written_at = Some(std::time::Instant::now());
            record.renewed = unix(SystemTime::now());
            record.services = services;
            let (store, bytes) = (
                writer_store.clone(),
                serde_json::to_vec_pretty(&record).expect("records serialise"),
            );
            let name = record.name();
            let written = tokio::task::spawn_blocking(move || store.put_aside(&name, &bytes)).await;
            match written {
                Ok(Ok(())) => failing = false,
                Ok(Err(e)) if !failing => {
                    failing = true;
                    *told.lock().expect("problem") =
                        Some(format!("cannot record what this process serves: {e}"));
                }
                _ => {}
            }
        }
    });
    Keeper {
        store,
        name,
        task,
        problem,
    }
}

/// Removes the record when dropped (the process stops serving).
pub struct Keeper {
    store: Store,
    name: String,
    task: tokio::task::JoinHandle<()>,
    problem: Arc<std::sync::Mutex<Option<String>>>,
}

impl Keeper {
    /// A failure to write the record since last asked (each failure told once).
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().expect("problem").take()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.store.remove_aside(&self.name);
    }
}

/// Whether a process of this host runs with that pid (one of another user counts).
fn process_running(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 checks for the process and sends nothing.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32, renewed: u64, services: &[(&str, Option<&str>)]) -> Record {
        Record {
            pid,
            host: "h".into(),
            command: "daemon".into(),
            listen: "127.0.0.1".into(),
            renewed,
            services: services
                .iter()
                .map(|(n, e)| (n.to_string(), e.map(String::from)))
                .collect(),
        }
    }

    #[test]
    fn a_record_is_believed_while_renewed_and_its_process_runs() {
        let r = record(7, 1000, &[]);
        assert!(r.is_live(1000 + STALE.as_secs(), "h", |_| true));
        assert!(!r.is_live(1001 + STALE.as_secs(), "h", |_| true), "stale");
        assert!(!r.is_live(1000, "h", |_| false), "its process is gone");
        assert!(
            r.is_live(1000, "other", |_| false),
            "another host's process"
        );
    }

    #[test]
    fn a_service_is_served_by_a_live_record_else_failing_else_not_served() {
        let a = record(1, 0, &[("web", None), ("db", Some("port 5432 taken"))]);
        let b = record(2, 0, &[("db", None)]);
        assert!(
            matches!(state_of("web", std::slice::from_ref(&a)), State::Served(by) if by.len() == 1)
        );
        assert_eq!(
            state_of("db", std::slice::from_ref(&a)),
            State::Failing("port 5432 taken".into())
        );
        assert!(matches!(state_of("db", &[a.clone(), b]), State::Served(_)));
        assert_eq!(state_of("cache", &[a]), State::NotServed);
        assert_eq!(state_of("web", &[]).summary(), "not served");
    }
}
