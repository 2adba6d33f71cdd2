//! `drover apply`: reconcile once — observe the minions, plan, execute, and repeat until the
//! plan is empty and every pod runs (rolling updates take several rounds), or the timeout.
//! Then record the applied objects in the store, so `drover diff` shows them in sync.

use super::{fail, load_desired, report_load_error, Context, EXIT_ERROR, EXIT_OK};
use crate::SourceArgs;
use drover::exec::{describe, execute, observe};
use drover::minion::{minion_specs, Minion};
use drover::plan::pods::{plan, Action, Phase};
use drover::store::Store;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(cx: &Context, args: &SourceArgs, dry_run: bool, timeout: Duration) -> ExitCode {
    let spec = cx.source_spec(args);
    // A bad manifest anywhere: nothing is applied and nothing is pruned.
    let (desired, _commit) = match load_desired(cx, &spec) {
        Ok(d) => d,
        Err(e) => return report_load_error(e),
    };
    let specs = match minion_specs(&cx.settings, Some(&desired)) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let mut minions = Vec::new();
    for s in specs {
        match Minion::new(s) {
            Ok(m) => minions.push(Arc::new(m)),
            Err(e) => return fail(&e),
        }
    }
    let by_name: HashMap<String, Arc<Minion>> = minions
        .iter()
        .map(|m| (m.spec.name.clone(), m.clone()))
        .collect();
    let store = Store::new(&cx.state_dir);
    let lock = if dry_run {
        None
    } else {
        match store.lock("apply", Duration::from_secs(10)) {
            Ok(l) => Some(l),
            Err(e) => return fail(&e),
        }
    };
    let config = cx.settings.config.clone();
    let credentials: drover::exec::Credentials =
        Arc::new(move |image: &str| config.credentials_for(image));
    let runtime = super::runtime();
    let started = Instant::now();
    let deadline = started + timeout;
    let (mut created, mut deleted) = (0usize, 0usize);
    let converged = runtime.block_on(async {
        loop {
            let (pods, views, errors) = observe(&minions).await;
            if !errors.is_empty() {
                // Without a minion's pods the plan would replace them elsewhere: one-shot apply
                // does not guess (the daemon's node controller decides after a grace period).
                for e in &errors {
                    eprintln!("drover: error: {e}");
                }
                eprintln!("drover: cannot observe every minion; nothing more is changed");
                return false;
            }
            let p = plan(&desired, &pods, &views);
            for (pod, reason) in &p.unschedulable {
                eprintln!("drover: pod {pod} is Pending: {reason}");
            }
            if dry_run {
                for a in &p.actions {
                    println!("{}", describe(a).1);
                }
                println!(
                    "plan: {} action{}",
                    p.actions.len(),
                    super::plural(p.actions.len())
                );
                return true;
            }
            let pending = pods.iter().any(|p| p.phase == Phase::Pending);
            if p.actions.is_empty() && (!pending || !p.unschedulable.is_empty()) {
                return p.unschedulable.is_empty();
            }
            if Instant::now() > deadline {
                eprintln!("drover: not converged after {:?}", timeout);
                return false;
            }
            if p.actions.is_empty() {
                // Containers are starting: look again shortly.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let outcome = execute(&p, &by_name, credentials.clone()).await;
            for a in &outcome.done {
                println!("{}", describe(a).1);
                match a {
                    Action::CreatePod { .. } => created += 1,
                    Action::DeletePod { .. } => deleted += 1,
                }
            }
            for (a, e) in &outcome.failed {
                eprintln!("drover: error: {}: {e}", describe(a).1);
            }
            if !outcome.failed.is_empty() {
                // Retried on the next round, until the deadline.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    if dry_run {
        return ExitCode::from(EXIT_OK);
    }
    if !converged {
        return ExitCode::from(EXIT_ERROR);
    }
    let lock = lock.expect("taken when not a dry run");
    let recorded = store
        .read_index()
        .map(|index| drover::plan::objects::record_batch(&desired, &index))
        .and_then(|batch| store.commit(&lock, &batch));
    if let Err(e) = recorded {
        return fail(&e);
    }
    println!(
        "converged in {:.1}s: {created} pod{} created, {deleted} deleted",
        started.elapsed().as_secs_f64(),
        super::plural(created)
    );
    ExitCode::from(EXIT_OK)
}
