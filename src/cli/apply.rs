//! `drover apply`: reconcile once — rounds of observe, plan, execute until the plan is empty
//! and every pod runs (rolling updates take several rounds), or the timeout. Then record the
//! applied objects in the store, so `drover diff` shows them in sync.

use super::{fail, load_desired, report_load_error, Context, EXIT_ERROR, EXIT_OK};
use crate::SourceArgs;
use drover::exec::describe;
use drover::plan::pods::Action;
use drover::store::Store;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What the user asked of `apply`.
pub struct Options {
    pub dry_run: bool,
    pub prune: bool,
    /// Skip the confirmation a terminal user is asked for.
    pub yes: bool,
    pub timeout: Duration,
}

pub fn run(cx: &Context, args: &SourceArgs, opts: Options) -> ExitCode {
    let Options {
        dry_run,
        prune,
        yes,
        timeout,
    } = opts;
    let spec = cx.source_spec(args);
    // A bad manifest anywhere: nothing is applied and nothing is pruned.
    let (desired, _commit) = match load_desired(cx, &spec) {
        Ok(d) => d,
        Err(e) => return report_load_error(e),
    };
    let mut reconciler = match super::reconciler(cx, &desired, Duration::MAX) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    reconciler.prune = prune;
    // On a terminal, show the plan and ask first (like `terraform apply`); scripts and CI,
    // with no terminal on stdin, are not asked.
    if !dry_run && !yes && std::io::stdin().is_terminal() {
        let preview = super::runtime().block_on(reconciler.round(&desired, true, true));
        for a in &preview.done {
            println!("{}", describe(a).1);
        }
        if preview.planned > 0 {
            print!(
                "apply {} action{}? [y/N] ",
                preview.planned,
                super::plural(preview.planned)
            );
            let _ = std::io::stdout().flush();
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            if !matches!(answer.trim(), "y" | "yes") {
                println!("nothing changed");
                return ExitCode::from(EXIT_OK);
            }
        }
    }
    let store = Store::new(&cx.state_dir);
    let lock = if dry_run {
        None
    } else {
        match store.lock("apply", Duration::from_secs(10)) {
            Ok(l) => Some(l),
            Err(e) => return fail(&e),
        }
    };
    let started = Instant::now();
    let (mut created, mut deleted) = (0usize, 0usize);
    let mut last_seen = None;
    let converged = super::runtime().block_on(async {
        loop {
            let round = reconciler.round(&desired, true, dry_run).await;
            last_seen = Some(round.observation());
            if !round.unobserved.is_empty() {
                // Without a minion's pods the plan would replace them elsewhere: one-shot apply
                // does not guess (the daemon's node controller decides after a grace period).
                for e in &round.unobserved {
                    eprintln!("drover: error: {e}");
                }
                eprintln!("drover: cannot observe every minion; nothing more is changed");
                return false;
            }
            if dry_run {
                for a in &round.done {
                    println!("{}", describe(a).1);
                }
                for (pod, reason) in &round.unschedulable {
                    println!("! pod {pod} cannot be placed: {reason}");
                }
                println!(
                    "plan: {} action{}",
                    round.planned,
                    super::plural(round.planned)
                );
                return true;
            }
            for a in &round.done {
                println!("{}", describe(a).1);
                match a {
                    Action::CreatePod { .. } => created += 1,
                    Action::DeletePod { .. } => deleted += 1,
                }
            }
            for (a, e) in &round.failed {
                eprintln!("drover: error: {}: {e}", describe(a).1);
            }
            if round.planned == 0 && !round.unschedulable.is_empty() {
                for (pod, reason) in &round.unschedulable {
                    eprintln!("drover: pod {pod} is Pending: {reason}");
                }
                return false;
            }
            if round.converged() {
                return true;
            }
            if Instant::now() > started + timeout {
                eprintln!("drover: not converged after {}s", timeout.as_secs());
                return false;
            }
            // Containers starting, or failures to retry: look again shortly.
            if round.planned == 0 || !round.failed.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    if dry_run {
        return ExitCode::from(EXIT_OK);
    }
    let lock = lock.expect("taken when not a dry run");
    // What was seen is worth keeping even when apply failed: `drover diff` shows it.
    if let Some(seen) = &last_seen {
        if let Err(e) = super::record_observation(&store, &lock, seen) {
            return fail(&e);
        }
    }
    if !converged {
        return ExitCode::from(EXIT_ERROR);
    }
    if let Err(e) = super::record(&store, &lock, &desired, prune) {
        return fail(&e);
    }
    println!(
        "converged in {:.1}s: {created} pod{} created, {deleted} deleted",
        started.elapsed().as_secs_f64(),
        super::plural(created)
    );
    ExitCode::from(EXIT_OK)
}
