//! `drover apply`: reconcile once — rounds of observe, plan, execute until the plan is empty
//! and every pod runs (rolling updates take several rounds), or the timeout. Then record the
//! applied objects in the store, so `drover diff` shows them in sync.

use super::{fail, load_source, report_load_error, Context, EXIT_DIFFERENCES, EXIT_ERROR, EXIT_OK};
use crate::SourceArgs;
use drover::executor::{describe, Progress};
use drover::minion::MinionError;
use drover::plan::pods::Action;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the user asked of `apply`.
pub struct Options {
    pub dry_run: bool,
    pub prune: bool,
    /// Skip the confirmation a terminal user is asked for.
    pub yes: bool,
    /// Let a source with no objects prune everything applied before.
    pub allow_empty: bool,
    pub timeout: Duration,
    /// A saved plan (`diff --out`) to apply exactly, refused if the store or source moved.
    pub plan: Option<std::path::PathBuf>,
}

/// Applies the source: opens the store, shows and (on a terminal) asks, runs the rounds, and
/// records what they did.
pub fn run(cx: &Context, args: &SourceArgs, opts: Options) -> ExitCode {
    let spec = cx.source_spec(args);
    // A bad manifest anywhere: nothing is applied and nothing is pruned.
    let loaded = match load_source(cx, &spec, args.validate) {
        Ok(l) => l,
        Err(e) => return report_load_error(e),
    };
    let saved = match opts.plan.as_deref().map(read_plan).transpose() {
        Ok(p) => p,
        Err(code) => return code,
    };
    // With a saved plan: its objects, once the store and the source are seen not to have moved.
    let stale = |revision: u64| {
        saved.as_ref().and_then(|p| {
            p.stale(
                &cx.project,
                revision,
                loaded.commit.as_deref(),
                &loaded.desired,
            )
        })
    };
    let desired = match &saved {
        Some(p) => p.desired(),
        None => loaded.desired.clone(),
    };
    let (mut reconciler, store, lock) = match open(cx, &spec, &desired, &opts, &stale) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let publish: std::collections::BTreeMap<String, String> = reconciler
        .minions()
        .iter()
        .map(|m| (m.spec.name.clone(), m.spec.publish_address.clone()))
        .collect();
    // A saved plan was read before it was made a file: it is not asked about again.
    let asks = !opts.dry_run && !opts.yes && saved.is_none() && std::io::stdin().is_terminal();
    // The objects apply records differently (a dry run and the question show them first,
    // then the pod actions): a change that moves no pod, such as a Service's port, is still
    // a change.
    let object_changes = if opts.dry_run || asks {
        match super::diff::object_change_lines(&store, &desired) {
            Ok(lines) => lines,
            Err(e) => return fail(&e),
        }
    } else {
        Vec::new()
    };
    for line in &object_changes {
        println!("{line}");
    }
    // On a terminal, show the plan and ask before any change (like `terraform apply`);
    // scripts and CI, with no terminal on stdin, are not asked.
    if asks && !confirmed(&mut reconciler, &desired, &object_changes) {
        println!("apply cancelled");
        return ExitCode::from(EXIT_DIFFERENCES);
    }
    let progress = Arc::new(Shown::new(!opts.dry_run && std::io::stderr().is_terminal()));
    reconciler.progress = progress.clone();
    let started = Instant::now();
    // Calls in flight at the deadline are cut off there, not after the round.
    reconciler.deadline = started.checked_add(opts.timeout);
    let stop = reconciler.stop.clone();
    let mut rounds = Rounds {
        reconciler: &mut reconciler,
        desired: &desired,
        opts: &opts,
        object_changes: &object_changes,
        progress,
        stop,
        first_round: true,
        last_round: None,
        last_seen: None,
        // What happened, for `get events` and `describe` afterwards (the daemon keeps the
        // same log).
        events: drover::events::EventLog::read(&store).unwrap_or_default(),
        interrupted: Interrupted::No,
        created: 0,
        deleted: 0,
        dry_run_actions: 0,
    };
    let converged = super::runtime().block_on(rounds.converge());
    rounds.progress.clear();
    if opts.dry_run {
        // As `diff`: 0 nothing to do, 1 changes, 2 error.
        return ExitCode::from(if !converged {
            EXIT_ERROR
        } else if object_changes.is_empty() && rounds.dry_run_actions == 0 {
            EXIT_OK
        } else {
            EXIT_DIFFERENCES
        });
    }
    let lock = lock.expect("taken when not a dry run");
    rounds.record(&store, &lock, &publish, converged, started)
}

/// The reconciler over every minion, attached to the store under its lock (none for a dry
/// run). An error is the exit code, already told.
fn open(
    cx: &Context,
    spec: &drover::source::SourceSpec,
    desired: &drover::model::DesiredState,
    opts: &Options,
    stale: &dyn Fn(u64) -> Option<String>,
) -> Result<
    (
        drover::reconcile::Reconciler,
        drover::store::Store,
        Option<Arc<drover::store::StoreLock>>,
    ),
    ExitCode,
> {
    let mut reconciler = super::reconciler(cx, desired, Duration::MAX).map_err(|e| fail(&e))?;
    reconciler.prune = opts.prune;
    let store = cx.store().map_err(|e| fail(&e))?;
    let lock = if opts.dry_run {
        None
    } else {
        match store.lock("apply", Duration::from_secs(10)) {
            Ok(l) => Some(Arc::new(l)),
            Err(e) => return Err(fail(&e)),
        }
    };
    // After the lock is taken: no other drover changes the store from here on.
    let revision = store.read_index().map_err(|e| fail(&e))?.resource_version;
    if let Some(why) = stale(revision) {
        return Err(fail(&format!(
            "{why}; nothing was changed (run `drover diff --out` again)"
        )));
    }
    if let Err(e) = drover::reconcile::project::open_for_writing(
        &mut reconciler,
        &store,
        lock.clone(),
        spec,
        desired,
        opts.allow_empty,
    ) {
        return Err(fail(&e));
    }
    match super::proxy_settings(cx) {
        Ok(p) => reconciler.advertise = p.advertise,
        Err(e) => return Err(fail(&e)),
    }
    Ok((reconciler, store, lock))
}

/// A plan file written by `drover diff --out`. An error is the exit code, already told.
fn read_plan(path: &std::path::Path) -> Result<drover::plan::saved::SavedPlan, ExitCode> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(&format!("reading the plan {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        fail(&format!(
            "{}:{}:{}: not a drover plan: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

/// Shows what a round would do and asks whether to do it. Whether to go on: yes, or nothing
/// to ask about.
fn confirmed(
    reconciler: &mut drover::reconcile::Reconciler,
    desired: &drover::model::DesiredState,
    object_changes: &[String],
) -> bool {
    let preview = super::runtime().block_on(reconciler.round(desired, true, true));
    for a in &preview.done {
        println!("{}", describe(a).1);
    }
    report_left_alone(&preview);
    if preview.planned > 0 || !object_changes.is_empty() {
        print!(
            "apply {} object change{} and {} action{}? [y/N] ",
            object_changes.len(),
            super::plural(object_changes.len()),
            preview.planned,
            super::plural(preview.planned)
        );
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "yes") {
            return false;
        }
    }
    true
}

/// apply's rounds: observe, plan, execute until converged, failed, out of time or
/// interrupted; and what they leave for the store.
struct Rounds<'a> {
    reconciler: &'a mut drover::reconcile::Reconciler,
    desired: &'a drover::model::DesiredState,
    opts: &'a Options,
    object_changes: &'a [String],
    progress: Arc<Shown>,
    /// Set by SIGINT or SIGTERM (`on_interrupt`): the round under way ends its calls, then
    /// apply records what was done and says it.
    stop: drover::executor::Stop,
    first_round: bool,
    last_round: Option<drover::reconcile::Round>,
    /// What the last round saw (kept even when apply fails: `drover diff` shows it).
    last_seen: Option<drover::plan::observed::Observation>,
    events: drover::events::EventLog,
    interrupted: Interrupted,
    created: usize,
    deleted: usize,
    /// What a dry run would do: actions, and pods that cannot be placed.
    dry_run_actions: usize,
}

impl Rounds<'_> {
    /// Runs rounds until one ends them. Whether apply converged (a dry run: its plan shown).
    async fn converge(&mut self) -> bool {
        if !self.opts.dry_run {
            tokio::spawn(on_interrupt(self.stop.clone()));
        }
        loop {
            let Some(round) = self.next_round().await else {
                return false;
            };
            self.keep(&round);
            if let Some(converged) = self.verdict(&round) {
                return converged;
            }
            if !self.wait_for_next(&round).await {
                return false;
            }
            self.last_round = Some(round);
        }
    }

    /// Runs one round. After a signal, its begun calls get INTERRUPT_GRACE to end; then they
    /// are cut off, and `None`: the round never returned, and what its finished actions did
    /// is told.
    async fn next_round(&mut self) -> Option<drover::reconcile::Round> {
        let stop = &self.stop;
        let round = self.reconciler.round(self.desired, true, self.opts.dry_run);
        tokio::pin!(round);
        let cut_off = async {
            while pause(Duration::from_secs(3600), stop).await {}
            tokio::time::sleep(INTERRUPT_GRACE).await;
        };
        tokio::select! {
            round = &mut round => Some(round),
            () = cut_off => {
                self.interrupted = Interrupted::CutOff;
                let partial = self.progress.partial_round();
                let now = std::time::SystemTime::now();
                for note in drover::reconcile::round_events::from_round(self.last_round.as_ref(), &partial) {
                    self.events.record(note, now);
                }
                None
            }
        }
    }

    /// Keeps what the round saw and, unless a dry run, its events.
    fn keep(&mut self, round: &drover::reconcile::Round) {
        self.last_seen = Some(round.observation());
        // Its actions are told from the round itself, below: none is kept for a cut-off.
        self.progress.this_round.lock().expect("this round").clear();
        if !self.opts.dry_run {
            let now = std::time::SystemTime::now();
            let backoff = drover::reconcile::round_events::from_backoff(
                round,
                &self.reconciler.backoff,
                Instant::now(),
            );
            for note in drover::reconcile::round_events::from_round(self.last_round.as_ref(), round)
                .into_iter()
                .chain(backoff)
            {
                self.events.record(note, now);
            }
        }
    }

    /// Whether this round ends apply, and how: `Some(true)` converged (or a dry run's plan
    /// shown), `Some(false)` it cannot go on (said why), `None` another round is due.
    fn verdict(&mut self, round: &drover::reconcile::Round) -> Option<bool> {
        if let Some(e) = &round.error {
            eprintln!("drover: error: {e}; nothing more is changed");
            return Some(false);
        }
        if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            self.interrupted = Interrupted::BetweenCalls;
            return Some(false);
        }
        if self.first_round {
            self.first_round = false;
            if self.opts.dry_run || self.opts.yes || !std::io::stdin().is_terminal() {
                report_left_alone(round);
            }
        }
        if !round.unobserved.is_empty() {
            // Without a minion's pods the plan would replace them elsewhere: one-shot apply
            // does not guess (the daemon's node controller decides after a grace period).
            for e in &round.unobserved {
                eprintln!("drover: error: {e}");
            }
            eprintln!("drover: cannot observe every minion; nothing more is changed");
            return Some(false);
        }
        if self.opts.dry_run {
            self.show_plan(round);
            return Some(true);
        }
        report_deliveries(round);
        // Each action was reported by `progress` as it finished.
        for a in &round.done {
            match a {
                Action::CreatePod { .. } => self.created += 1,
                Action::DeletePod { .. } => self.deleted += 1,
                Action::DeleteVolumes { .. } => {}
            }
        }
        let starting = round
            .pods
            .iter()
            .filter(|p| p.phase == drover::plan::pods::Phase::Pending)
            .count();
        self.progress.waiting(starting);
        if round.planned == 0 && !round.unschedulable.is_empty() {
            for (pod, reason) in &round.unschedulable {
                eprintln!("drover: pod {pod} is Pending: {reason}");
            }
            return Some(false);
        }
        if round.converged() {
            return Some(true);
        }
        if self
            .reconciler
            .deadline
            .is_some_and(|d| Instant::now() >= d)
        {
            eprintln!(
                "drover: not converged after {}s:",
                self.opts.timeout.as_secs()
            );
            report_hung(round);
            report_unconverged(round);
            return Some(false);
        }
        None
    }

    /// A dry run's plan: what its round would do, and what cannot be placed.
    fn show_plan(&mut self, round: &drover::reconcile::Round) {
        for a in &round.done {
            println!("{}", describe(a).1);
        }
        for (pod, reason) in &round.unschedulable {
            println!("! pod {pod} cannot be placed: {reason}");
        }
        println!(
            "plan: {} object change{}, {} action{}",
            self.object_changes.len(),
            super::plural(self.object_changes.len()),
            round.planned,
            super::plural(round.planned)
        );
        self.dry_run_actions = round.planned + round.unschedulable.len();
    }

    /// Waits before the next round as this one asks: until the first retry when only pods
    /// backing off are left, shortly while containers start or failures wait to be retried,
    /// at once otherwise. Whether to go on: not when interrupted, nor when the deadline comes
    /// first (then said).
    async fn wait_for_next(&mut self, round: &drover::reconcile::Round) -> bool {
        // Only pods backing off: nothing to look at before the first retry, and no round
        // to start if the deadline comes first.
        let waiting_only = !round.held.is_empty()
            && round.planned == round.held.len()
            && round.failed.is_empty()
            && !round.pending;
        if let (true, Some(retry)) = (waiting_only, round.held.iter().map(|h| h.retry_in).min()) {
            let left = self
                .reconciler
                .deadline
                .map_or(retry, |d| d.saturating_duration_since(Instant::now()));
            if left <= retry {
                return self.run_out_the_clock(left, round).await;
            }
            return self.pause_unless_interrupted(retry).await;
        }
        if round.planned == 0 || !round.failed.is_empty() || !round.held.is_empty() {
            // Containers starting, or failures to retry: look again shortly, unless the
            // deadline comes first (a round started then would only be cut off).
            let soon = Duration::from_millis(200);
            if self
                .reconciler
                .deadline
                .is_some_and(|d| d.saturating_duration_since(Instant::now()) <= soon)
            {
                let left = self
                    .reconciler
                    .deadline
                    .expect("checked")
                    .saturating_duration_since(Instant::now());
                return self.run_out_the_clock(left, round).await;
            }
            return self.pause_unless_interrupted(soon).await;
        }
        true
    }

    /// Waits `how_long`: whether it was not interrupted meanwhile.
    async fn pause_unless_interrupted(&mut self, how_long: Duration) -> bool {
        if !pause(how_long, &self.stop).await {
            self.interrupted = Interrupted::BetweenCalls;
            return false;
        }
        true
    }

    /// Waits out the time `left` to the deadline, then says apply did not converge (unless
    /// interrupted meanwhile). Always ends the rounds: false.
    async fn run_out_the_clock(
        &mut self,
        left: Duration,
        round: &drover::reconcile::Round,
    ) -> bool {
        if !self.pause_unless_interrupted(left).await {
            return false;
        }
        eprintln!(
            "drover: not converged after {}s:",
            self.opts.timeout.as_secs()
        );
        report_unconverged(round);
        false
    }

    /// After the rounds (not a dry run): keeps their events and what they saw, sums up an
    /// interrupted apply, and records the source as applied once converged.
    fn record(
        &self,
        store: &drover::store::Store,
        lock: &drover::store::StoreLock,
        publish: &std::collections::BTreeMap<String, String>,
        converged: bool,
        started: Instant,
    ) -> ExitCode {
        if let Err(e) = self.events.write(store, lock) {
            eprintln!("drover: warning: {e}; this run's events are not kept");
        }
        if self.interrupted != Interrupted::No {
            let tally = *self.progress.tally.lock().expect("tally");
            let cut = match self.interrupted {
                Interrupted::CutOff => tally.planned.saturating_sub(tally.finished),
                _ => 0,
            };
            eprintln!("drover: {}", interrupted_summary(&tally, cut));
        }
        // What was seen is worth keeping even when apply failed: `drover diff` shows it.
        if let Some(seen) = &self.last_seen {
            // Endpoints for a `drover proxy` beside it (no probes run here: running pods count
            // as ready).
            let endpoints =
                drover::plan::endpoints::endpoints(self.desired, &seen.pods, publish, &|_| true);
            if let Err(e) = drover::reconcile::project::record_seen(store, lock, seen, &endpoints) {
                return fail(&e);
            }
        }
        if self.interrupted != Interrupted::No {
            return ExitCode::from(EXIT_INTERRUPTED);
        }
        if !converged {
            return ExitCode::from(EXIT_ERROR);
        }
        if let Err(e) =
            drover::reconcile::project::record_applied(store, lock, self.desired, self.opts.prune)
        {
            return fail(&e);
        }
        println!(
            "converged in {:.1}s: {} pod{} created, {} deleted",
            started.elapsed().as_secs_f64(),
            self.created,
            super::plural(self.created),
            self.deleted
        );
        ExitCode::from(EXIT_OK)
    }
}

/// How long calls already begun may take to end after apply is interrupted.
const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// The exit code of an apply stopped by SIGINT or SIGTERM, as a shell's for SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

/// Whether and how apply was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupted {
    No,
    /// Its calls under way ended (or there were none).
    BetweenCalls,
    /// Calls still under way after `INTERRUPT_GRACE` were cut off: their outcome is unknown.
    CutOff,
}

/// Waits `how_long`, or less when `stop` is set: whether it waited it out.
async fn pause(how_long: Duration, stop: &drover::executor::Stop) -> bool {
    let stopped = async {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = tokio::time::sleep(how_long) => true,
        () = stopped => false,
    }
}

/// Waits for SIGINT or SIGTERM, then sets `stop`; a second signal ends the process at once.
async fn on_interrupt(stop: drover::executor::Stop) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "drover: interrupted: letting calls under way end (up to {}s; again to quit now)",
        INTERRUPT_GRACE.as_secs()
    );
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    std::process::exit(i32::from(EXIT_INTERRUPTED));
}

/// `interrupted: 2 pods created, 1 not started; apply again to finish`.
fn interrupted_summary(tally: &Tally, cut_off: usize) -> String {
    let mut parts = vec![
        format!(
            "{} pod{} created",
            tally.created,
            super::plural(tally.created)
        ),
        format!("{} deleted", tally.deleted),
    ];
    if tally.failed > 0 {
        parts.push(format!("{} failed", tally.failed));
    }
    if tally.not_started > 0 {
        parts.push(format!("{} not started", tally.not_started));
    }
    if cut_off > 0 {
        parts.push(format!(
            "{cut_off} cut off after {}s (may or may not be done)",
            INTERRUPT_GRACE.as_secs()
        ));
    }
    format!("interrupted: {}; apply again to finish", parts.join(", "))
}

/// What this project saw but does not own: pods of objects it never applied, and pods of a
/// drover from before projects that its store never recorded. Left alone, said once.
pub fn report_left_alone(round: &drover::reconcile::Round) {
    for line in left_alone_lines(round) {
        eprintln!("drover: note: {line}");
    }
}

/// The pods a round left alone because they are not this project's, one line each.
pub fn left_alone_lines(round: &drover::reconcile::Round) -> Vec<String> {
    let unowned = round
        .unowned
        .iter()
        .map(|(pod, reason)| format!("pod {pod}: {reason}"));
    let unclaimed = round.unclaimed.iter().map(|(minion, pods)| {
        format!(
            "{} pod{} on {minion} made by drover without a project, never recorded by this one; left alone: {}",
            pods.len(),
            super::plural(pods.len()),
            pods.join(", ")
        )
    });
    unowned.chain(unclaimed).collect()
}

/// What a failure is remembered by: a create by its back-off series (an RC's replicas
/// together, `reconcile::backoff::key`), else the action.
pub fn failure_key(action: &Action) -> String {
    match action {
        Action::CreatePod { pod, .. } => drover::reconcile::backoff::key_of(pod),
        other => describe(other).1,
    }
}

/// A line per image sent to a minion before its pods were made (stdout; failures on stderr;
/// a minion that had the build says nothing).
fn report_deliveries(round: &drover::reconcile::Round) {
    for (d, results) in &round.deliveries {
        let build = drover::images::short_id(&d.id);
        for (minion, result) in results {
            match result {
                Ok(sent) if sent.already => {}
                Ok(sent) => println!(
                    "pushed {} ({build}) to {minion}: {}",
                    d.reference,
                    sent.summary()
                ),
                Err(e) => eprintln!("drover: pushing {} ({build}) to {minion}: {e}", d.reference),
            }
        }
    }
}

/// Why a round has not converged: pods backing off, pods that cannot be placed, pods still
/// starting, actions that failed.
fn report_unconverged(round: &drover::reconcile::Round) {
    for h in &round.held {
        eprintln!(
            "drover: pod {}: {} after {} failure{} (next try in {}s): {}",
            h.pod,
            h.reason.as_str(),
            h.failures,
            super::plural(h.failures as usize),
            h.retry_in.as_secs(),
            h.message
        );
    }
    for (pod, reason) in &round.unschedulable {
        eprintln!("drover: pod {pod}: cannot be placed: {reason}");
    }
    for p in round
        .pods
        .iter()
        .filter(|p| p.phase == drover::plan::pods::Phase::Pending)
    {
        eprintln!("drover: pod {} on {}: still starting", p.id, p.minion);
    }
    // Calls that timed out were told per hung minion (`report_hung`).
    for (a, e) in round.failed.iter().filter(|(_, e)| !e.timed_out) {
        eprintln!("drover: {}: {e}", describe(a).1);
    }
}

/// The minions that stopped answering during the round, with the actions that cost.
fn report_hung(round: &drover::reconcile::Round) {
    let mut hung: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (action, e) in round.failed.iter().filter(|(_, e)| e.timed_out) {
        hung.entry(format!("minion {} ({})", e.minion, e.address))
            .or_default()
            .push(describe(action).1);
    }
    for (minion, actions) in hung {
        eprintln!(
            "drover: {minion} did not answer; {} action{} not done: {}",
            actions.len(),
            super::plural(actions.len()),
            actions.join(", ")
        );
    }
}

/// A line per finished action (stdout; failures on stderr) and, on a terminal, a bar below the
/// lines: actions done of the round's plan, then a spinner while pods start.
struct Shown {
    bar: Option<ProgressBar>,
    /// The last failure said per pod: a pod backing off is said again only with a new reason.
    failures: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// What finished, over every round, for the summary of an interrupted apply.
    tally: std::sync::Mutex<Tally>,
    /// What finished in the round under way: its events, should the round be cut off.
    this_round: std::sync::Mutex<Vec<(Action, Option<MinionError>)>>,
}

/// Actions by outcome, as they finished.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    created: usize,
    deleted: usize,
    failed: usize,
    not_started: usize,
    /// Of the round under way: actions planned, and those finished.
    planned: usize,
    finished: usize,
}

impl Shown {
    fn new(terminal: bool) -> Shown {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(Self::spinner());
            bar.set_message("observing the minions");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Shown {
            bar,
            failures: Default::default(),
            tally: Default::default(),
            this_round: Default::default(),
        }
    }

    fn spinner() -> ProgressStyle {
        ProgressStyle::with_template("{spinner} {msg}").expect("a valid template")
    }

    /// Between rounds: how many pods are still starting.
    fn waiting(&self, starting: usize) {
        if let Some(bar) = &self.bar {
            bar.set_style(Self::spinner());
            bar.set_message(if starting == 0 {
                "observing the minions".to_string()
            } else {
                format!(
                    "waiting for {starting} pod{} to start",
                    super::plural(starting)
                )
            });
        }
    }

    /// The round under way as far as it went: its finished actions (for its events when it
    /// is cut off and never returns).
    fn partial_round(&self) -> drover::reconcile::Round {
        let mut round = drover::reconcile::Round::default();
        for (action, error) in self.this_round.lock().expect("this round").iter() {
            match error {
                None => round.done.push(action.clone()),
                Some(e) if e.not_started => round.not_started.push(action.clone()),
                Some(e) => round.failed.push((action.clone(), e.clone())),
            }
        }
        round
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Shown {
    fn started(&self, total: usize) {
        {
            let mut tally = self.tally.lock().expect("tally");
            tally.planned = total;
            tally.finished = 0;
            self.this_round.lock().expect("this round").clear();
        }
        if let Some(bar) = &self.bar {
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_length(total as u64);
            bar.set_position(0);
            bar.set_message("applying");
        }
    }

    fn finished(&self, action: &Action, error: Option<&MinionError>) {
        {
            self.this_round
                .lock()
                .expect("this round")
                .push((action.clone(), error.cloned()));
            let mut tally = self.tally.lock().expect("tally");
            tally.finished += 1;
            match (error, action) {
                (Some(e), _) if e.not_started => tally.not_started += 1,
                (Some(_), _) => tally.failed += 1,
                (None, Action::CreatePod { .. }) => tally.created += 1,
                (None, Action::DeletePod { .. }) => tally.deleted += 1,
                (None, Action::DeleteVolumes { .. }) => {}
            }
        }
        // Not begun because apply was interrupted: its summary says how many.
        if error.is_some_and(|e| e.not_started) {
            if let Some(bar) = &self.bar {
                bar.inc(1);
            }
            return;
        }
        let line = describe(action).1;
        let new = {
            let mut said = self.failures.lock().expect("failures");
            match error {
                None => {
                    said.remove(&failure_key(action));
                    true
                }
                Some(e) => {
                    let before = said.insert(failure_key(action), e.message.clone());
                    before.as_ref() != Some(&e.message)
                }
            }
        };
        let print = || match error {
            None => println!("{line}"),
            Some(_) if !new => {}
            Some(e) => eprintln!("drover: error: {line}: {e}; backing off"),
        };
        match &self.bar {
            Some(bar) => {
                bar.suspend(print);
                bar.inc(1);
            }
            None => print(),
        }
    }
}
