//! `drover minions cordon | uncordon | drain`: a minion taken out of scheduling, and emptied of
//! this project's pods start-first (each replacement runs, and is ready, on another minion
//! before the pod it replaces gets its preStop and stops). The cordon is a record beside the
//! state (`reconcile::cordons`), so these work whether or not a daemon holds the store: with
//! one, the daemon does the moving (asked for a round at once) and `drain` reports; without,
//! `drain` runs the rounds itself, as `apply` does.

use super::{fail, Context, EXIT_ERROR, EXIT_OK};
use drover::plan::scheduler::Drain;
use drover::reconcile::cordons::{self, Cordon};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The minion `name` as configured, and the store, or the exit code (told).
fn known(
    cx: &Context,
    name: &str,
) -> Result<(drover::minion::MinionSpec, drover::store::Store), ExitCode> {
    let specs = super::minions::specs(cx).map_err(|e| fail(&e))?;
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let spec = specs
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .ok_or_else(|| {
            fail(&format!(
                "no minion `{name}` (minions: {})",
                names.join(", ")
            ))
        })?;
    let store = cx.store().map_err(|e| fail(&e))?;
    Ok((spec, store))
}

pub fn cordon(cx: &Context, name: &str) -> ExitCode {
    let store = match known(cx, name) {
        Ok((_, store)) => store,
        Err(code) => return code,
    };
    let since = drover::clock::unix_secs(std::time::SystemTime::now());
    match cordons::set(&store, name, &Cordon { since, drain: None }) {
        Ok(()) => {
            println!("minion {name} cordoned: no new pods go there");
            ExitCode::from(EXIT_OK)
        }
        Err(e) => fail(&e),
    }
}

pub fn uncordon(cx: &Context, name: &str) -> ExitCode {
    let (spec, store) = match known(cx, name) {
        Ok(known) => known,
        Err(code) => return code,
    };
    if let Err(e) = cordons::clear(&store, name) {
        return fail(&e);
    }
    ask_for_a_round(&store);
    if spec.unschedulable {
        println!(
            "minion {name}: its record is cleared, but git still cordons it (`unschedulable` \
             in drover.toml or on its Minion manifest)"
        );
    } else {
        println!("minion {name} uncordoned: pods may be placed there again");
    }
    ExitCode::from(EXIT_OK)
}

/// Drains `name`: refuses (changing nothing) when a pod there has no controller to replace it,
/// unless `force`; cordons it for draining; moves its pods; waits until none of this project's
/// are left or `deadline` passes, saying what is left.
pub fn drain(cx: &Context, name: &str, deadline: Duration, force: bool) -> ExitCode {
    let (spec, store) = match known(cx, name) {
        Ok(known) => known,
        Err(code) => return code,
    };
    let pods = match pods_on(&spec) {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot drain {name}: {e}")),
    };
    let single: Vec<&str> = pods
        .iter()
        .filter(|p| p.owner.is_none())
        .map(|p| p.id.as_str())
        .collect();
    if !single.is_empty() && !force {
        return fail(&format!(
            "cannot drain {name}: pod{} {} {} not managed by a replication controller; \
             --force deletes {} and makes {} again on another minion; nothing was changed",
            if single.len() == 1 { "" } else { "s" },
            single.join(", "),
            if single.len() == 1 { "is" } else { "are" },
            if single.len() == 1 { "it" } else { "them" },
            if single.len() == 1 { "it" } else { "them" },
        ));
    }
    let since = drover::clock::unix_secs(std::time::SystemTime::now());
    let how = if force {
        Drain::Force
    } else {
        Drain::Replicated
    };
    let record = Cordon {
        since,
        drain: Some(how),
    };
    if let Err(e) = cordons::set(&store, name, &record) {
        return fail(&e);
    }
    println!(
        "minion {name} cordoned; draining {} pod{}",
        pods.len(),
        super::plural(pods.len())
    );
    let started = Instant::now();
    match store.lock("drain", Duration::from_millis(300)) {
        // Nothing of this project there: nothing to move.
        _ if pods.is_empty() => {}
        // No daemon: the rounds are ours, as apply runs them.
        Ok(lock) => {
            drop(lock);
            let args = crate::SourceArgs {
                source: None,
                reference: None,
                path: None,
                validate: None,
            };
            let opts = super::apply::Options {
                dry_run: false,
                prune: true,
                yes: true,
                allow_empty: cx.settings.config.allow_empty,
                timeout: deadline,
                plan: None,
            };
            // What apply could not do is said by it; what is left is said below.
            let _ = super::apply::run(cx, &args, opts);
        }
        // A daemon holds the store: it moves the pods; we watch.
        Err(_) => ask_for_a_round(&store),
    }
    let mut told = usize::MAX;
    loop {
        let left = match pods_on(&spec) {
            Ok(p) => p,
            Err(e) => return fail(&format!("{name}: {e}")),
        };
        if left.is_empty() {
            // Drained: it stays cordoned, its drain is over.
            let _ = cordons::set(&store, name, &Cordon { since, drain: None });
            println!(
                "minion {name} drained in {:.0}s: no pods of this project left; it stays \
                 cordoned (`drover minions uncordon {name}` lets pods return)",
                started.elapsed().as_secs_f64()
            );
            return ExitCode::from(EXIT_OK);
        }
        let ids: Vec<&str> = left.iter().map(|p| p.id.as_str()).collect();
        if started.elapsed() >= deadline {
            eprintln!(
                "drover: minion {name} not drained after {}s: {} pod{} left: {}; it stays \
                 cordoned and draining",
                deadline.as_secs(),
                ids.len(),
                super::plural(ids.len()),
                ids.join(", ")
            );
            return ExitCode::from(EXIT_ERROR);
        }
        if ids.len() != told {
            println!(
                "{name}: {} pod{} left: {}",
                ids.len(),
                super::plural(ids.len()),
                ids.join(", ")
            );
            told = ids.len();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// This project's pods on the minion, looked at now.
fn pods_on(
    spec: &drover::minion::MinionSpec,
) -> Result<Vec<drover::plan::types::ObservedPod>, String> {
    let minion = super::kept_minion(spec.clone()).map_err(|e| e.to_string())?;
    let (seen, errors) = super::runtime().block_on(drover::reconcile::observe_all(
        &[minion],
        &Default::default(),
    ));
    if let Some(e) = errors.first() {
        return Err(e.to_string());
    }
    Ok(seen
        .pods
        .into_iter()
        .filter(|p| {
            p.phase != drover::plan::types::Phase::Succeeded
                && p.phase != drover::plan::types::Phase::Failed
        })
        .collect())
}

/// Asks the daemon holding the store, if one does, for a round now (`POST /reconcile`).
fn ask_for_a_round(store: &drover::store::Store) {
    let Ok(Some(holder)) = store.holder() else {
        return;
    };
    let Some(status) = holder.status else {
        return;
    };
    let Some(addr) = status.strip_prefix("http://") else {
        return;
    };
    let addr = addr.trim_end_matches('/');
    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
        use std::io::{Read, Write};
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = write!(
            s,
            "POST /reconcile HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = s.read(&mut [0u8; 256]);
    }
}
