//! The long-running process (`drover daemon`): one [`Daemon`] owns the triggers (a watched
//! directory, a polled git ref, the periodic resync), the reconcile loop, the prober, the
//! service proxy and the status API, and stops them together.
//!
//! Modelled on kube-runtime's controller: level-triggered (a round never asks why it runs;
//! triggers arriving during a round coalesce into the next one) and at most one round at a
//! time. The prober runs beside the loop on its own period: it restarts containers whose
//! liveness probes fail and takes not-ready pods out of the proxy at once, without waiting
//! for a round. Before a round deletes pods that serve a service, the proxy stops sending
//! them new connections and the round waits (bounded) for the open ones to finish: rolling
//! updates drop no request.
//!
//! With the state in etcd, several daemons run at once and one leads: the one holding the
//! store's writer lease (`StoreLock`). Only the leader plans, acts and writes (every write
//! fenced on the lease, and the lease confirmed before a plan is executed); the others
//! follow: they try to take the lease whenever the leader key changes (and every second),
//! serve the status API saying who leads, and serve the proxy from the endpoints the leader
//! records, following them by etcd watch. The file store's daemon holds its lock from the
//! start and always leads.
//!
//! Nothing here prints: what happens is reported as [`Report`]s to the caller.

mod docker_events;
pub mod probes;
pub mod status;
pub mod watch;

use crate::events::{EventLog, Note, ObjectRef};
use crate::image_pins::ImagePins;
use crate::manifest::Diagnostic;
use crate::minion::Minion;
use crate::model::{ContainerManifest, DesiredState};
use crate::plan::endpoints::{endpoints, proxy_table, ServiceEndpoints};
use crate::plan::pods::{manifests_by_hash, probes_passed, Action, ObservedPod, Phase, Plan};
use crate::proxy::{Proxy, ServiceStatus};
use crate::reconcile::project::{self, LoadError, Loaded};
use crate::reconcile::restarts::Restarts;
use crate::reconcile::{Reconciler, Round};
use crate::source::{GitOptions, SourceSpec};
use crate::store::{Store, StoreLock};
use probes::{ProbeBook, ProbeKey, Target, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a round waits for connections to pods it is about to delete to finish.
pub const DRAIN_WAIT: Duration = Duration::from_secs(10);
/// How often a daemon looks again while a minion is silent within its grace (to see it back).
const SILENT_MINION_LOOK: Duration = Duration::from_secs(5);

/// What the daemon is asked to do.
pub struct Options {
    pub project: String,
    pub spec: SourceSpec,
    pub git: GitOptions,
    pub resync: Duration,
    /// The status API's address.
    pub status_listen: SocketAddr,
    /// The proxy's address and limits; `None` runs no proxy (a `drover proxy` elsewhere
    /// serves the services from the store).
    pub proxy: Option<(IpAddr, crate::proxy::Limits)>,
    pub allow_empty: bool,
    /// How manifests are read (size limit, `--validate`, privileged).
    pub manifest: crate::manifest::Options,
    /// This daemon's status API as others reach it, told to followers by the leader key.
    pub advertise_status: Option<String>,
    /// Host names the status API also answers to, besides IP addresses and `localhost`
    /// (`status_hosts` in drover.toml: for those who scrape it by name).
    pub status_hosts: Vec<String>,
    /// `[images] push`: images the daemon delivers from the local engine.
    pub image_patterns: Vec<String>,
}

/// What happened, for the caller to show.
pub enum Report<'a> {
    /// The status API is listening (or why not).
    StatusApi(Result<SocketAddr, String>),
    /// A new commit (or a directory change) was read.
    SourceAt(Option<&'a str>),
    Skipped(&'a str),
    /// The source was read with warnings (said when they change).
    Warnings(&'a [Diagnostic]),
    /// The source cannot be used; the last valid state stays in force.
    SourceInvalid(&'a [Diagnostic]),
    SourceUnusable(String),
    /// A round ended (it may have done nothing).
    Round(&'a Round, Duration),
    /// A service the proxy cannot serve (its port cannot be bound), once per change.
    ProxyError(String),
    /// A container is not ready: its liveness probe failed, or Docker restarted it. `acted`
    /// once the failure threshold was reached and drover restarted (or killed) it.
    ProbeFailed {
        minion: &'a str,
        pod: &'a str,
        container: &'a str,
        error: &'a str,
        acted: Option<Result<(), String>>,
    },
    /// A store write failed (reported, retried next round).
    StoreError(String),
    /// This daemon took the writer lease: it leads from now on.
    Leading,
    /// Another daemon leads (said when the leader changes).
    Following(String),
    /// This daemon lost the writer lease and stopped acting; why.
    Deposed(String),
}

/// What the prober, the status API and the endpoint updates share with the loop.
#[derive(Default)]
struct LoopState {
    desired: DesiredState,
    /// What each pod definition of `desired` runs, by template hash (probes, readiness).
    manifests: BTreeMap<String, ContainerManifest>,
    /// The pods of the last round, without those it deleted.
    pods: Vec<ObservedPod>,
    publish: BTreeMap<String, String>,
    /// Containers (minion, pod, container) whose probes passed.
    passed: BTreeSet<ProbeKey>,
}

impl LoopState {
    fn set_desired(&mut self, desired: &DesiredState) {
        self.manifests = manifests_by_hash(desired)
            .into_iter()
            .map(|(hash, m)| (hash, m.clone()))
            .collect();
        self.desired = desired.clone();
    }

    fn endpoints(&self) -> Vec<ServiceEndpoints> {
        endpoints(
            &self.desired,
            &self.pods,
            &self.publish,
            &|p: &ObservedPod| probes_passed(p, self.manifests.get(&p.template_hash), &self.passed),
        )
    }
}

pub struct Daemon {
    opts: Options,
    reconciler: Reconciler,
    store: Store,
    /// The writer lease; `None` while following (etcd: another daemon leads).
    lock: Option<Arc<StoreLock>>,
    loaded: Loaded,
    /// Since when, and why, the source cannot be used (the last valid state stays in force).
    source_invalid: Option<(std::time::SystemTime, String)>,
    /// The source must be read again: the last read could not check it against the store
    /// (etcd unreachable), so it was neither taken nor refused.
    reload_pending: bool,
    events: Arc<Mutex<EventLog>>,
    /// The local builds the loaded source's delivered images are pinned to.
    pins: Arc<ImagePins>,
}

impl Daemon {
    /// A daemon starting from a loaded source: with `lock`, leading, over a reconciler already
    /// attached to the store (`project::open_for_writing`); without, following until it takes
    /// the store's writer lease (etcd).
    pub fn new(
        opts: Options,
        reconciler: Reconciler,
        store: Store,
        lock: Option<Arc<StoreLock>>,
        (loaded, pins): (Loaded, Arc<ImagePins>),
    ) -> Daemon {
        Daemon {
            opts,
            reconciler,
            store,
            lock,
            loaded,
            source_invalid: None,
            reload_pending: false,
            events: Default::default(),
            pins,
        }
    }

    /// Looks again at the local engine's builds of the delivered images (one list of its
    /// images; none without `[images] push`), pulling there first the names the last read
    /// found it lacking. Whether a build changed, so the source is to be pinned again. The
    /// engine not answering keeps the builds in force (said once per round).
    async fn refresh_pins(&mut self, report: &(dyn Fn(Report) + Send + Sync)) -> bool {
        if self.opts.image_patterns.is_empty() {
            return false;
        }
        let missing = self.pins.missing();
        for name in &missing {
            if let Err(e) = crate::images::pull_local(name).await {
                report(Report::SourceUnusable(format!(
                    "image {name} is in [images] push but not in the local Docker Engine, and \
                     {e}"
                )));
            }
        }
        match crate::images::local_pins(&self.opts.image_patterns).await {
            Ok(pins) => {
                let changed = pins.ids() != self.pins.ids() || !missing.is_empty();
                if changed {
                    self.pins = Arc::new(pins);
                }
                changed
            }
            Err(e) => {
                report(Report::SourceUnusable(format!(
                    "{e}; the images' last known builds stay in force"
                )));
                false
            }
        }
    }

    fn note(&self, note: Note) {
        self.events.lock().expect("event log").record_now(note);
    }

    /// Runs until `stop` resolves; the round in progress finishes first, then the proxy,
    /// the prober and the status API stop. An error: the status API cannot listen, and
    /// nothing was done.
    ///
    /// As kube-runtime's `Controller`: the triggers ([`Triggers`]) wake the loop, the loop
    /// decides whether this daemon may act ([`Daemon::lead_or_follow`]), and only then runs
    /// a round ([`Daemon::round`]), which says when to look again.
    pub async fn run(
        mut self,
        report: &(dyn Fn(Report) + Send + Sync),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), String> {
        let events_written = self.restore_event_log(report);
        let (wake, requests) = tokio::sync::mpsc::channel::<()>(1);
        let _watcher = self.watch_source(&wake, report);
        let mut tasks = tokio::task::JoinSet::new();
        self.spawn_git_poll(&mut tasks, &wake);
        let status = self.serve_status(&wake, report).await?;
        let proxy = self.start_proxy(report);
        // What this daemon serves, for `get services` (removed when it stops).
        let keeper = proxy
            .as_ref()
            .map(|p| crate::serving::keep(self.store.clone(), p.clone(), "daemon"));
        let shared = Arc::new(Mutex::new(LoopState {
            publish: self
                .reconciler
                .minions()
                .iter()
                .map(|m| (m.spec.name.clone(), m.spec.publish_address.clone()))
                .collect(),
            ..Default::default()
        }));
        self.spawn_docker_events(&mut tasks);
        let (probes, feed) = self.spawn_prober(&mut tasks, &shared, &proxy, &wake);
        let leading = self.spawn_endpoint_follower(&mut tasks, &proxy);
        if self.lock.is_some() && self.store.is_etcd() {
            report(Report::Leading);
        }
        let mut triggers = Triggers {
            requests,
            probes,
            leader_changes: self.store.subscribe_leader(),
            follow_tick: tokio::time::interval(FOLLOWER_TRY),
            resync: tokio::time::interval(self.opts.resync),
        };
        let shell = Shell {
            wake,
            status,
            proxy,
            keeper,
            shared,
            feed,
            leading,
        };
        let mut memory = Memory {
            events_written,
            leader_said: None,
            rounds: 0,
            last_round: None,
            proxy_errors: Vec::new(),
        };
        tokio::pin!(stop);
        loop {
            let source_changed = match triggers.next(self.lock.is_none(), stop.as_mut()).await {
                Woken::Stop => break,
                Woken::Probe(p) => {
                    self.note(probe_note(&p));
                    report(Report::ProbeFailed {
                        minion: &p.key.0,
                        pod: &p.key.1,
                        container: &p.key.2,
                        error: &p.error,
                        acted: p.acted,
                    });
                    continue;
                }
                Woken::Asked => true,
                Woken::Look => false,
            };
            let rebuilt = self.refresh_pins(report).await;
            if source_changed || self.reload_pending || rebuilt {
                self.reload(report);
            }
            let Some(lock) = self.lead_or_follow(&shell, &mut memory, report) else {
                continue;
            };
            if !self.store_sound(&shell.status, report) {
                continue;
            }
            self.round(&lock, &shell, &mut memory, report).await;
        }
        tasks.shutdown().await;
        shell.stop().await;
        Ok(())
    }

    /// The event log as the store kept it (a new one if it cannot be read); returns what is
    /// written, so that a round writes the log only when it changed.
    fn restore_event_log(&self, report: &(dyn Fn(Report) + Send + Sync)) -> EventLog {
        match EventLog::read(&self.store) {
            Ok(log) => *self.events.lock().expect("event log") = log,
            Err(e) => report(Report::StoreError(format!("{e}; starting a new event log"))),
        }
        self.events.lock().expect("event log").clone()
    }

    /// Watches a directory source for changes (a git source has no watcher); without one, the
    /// resync still reads it.
    fn watch_source(
        &self,
        wake: &tokio::sync::mpsc::Sender<()>,
        report: &(dyn Fn(Report) + Send + Sync),
    ) -> Option<notify::RecommendedWatcher> {
        match watch::watch_dir(&self.opts.spec, wake.clone()) {
            Ok(w) => w,
            Err(e) => {
                report(Report::SourceUnusable(format!("{e}; relying on resync")));
                None
            }
        }
    }

    /// For a remote git source: polls its head, and asks for a round when it moves.
    fn spawn_git_poll(
        &self,
        tasks: &mut tokio::task::JoinSet<()>,
        wake: &tokio::sync::mpsc::Sender<()>,
    ) {
        let Some(every) = watch::git_poll_interval(&self.opts.spec) else {
            return;
        };
        let (tx, spec, git) = (wake.clone(), self.opts.spec.clone(), self.opts.git.clone());
        let mut last = self.loaded.commit.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let (s, g) = (spec.clone(), git.clone());
                if let Ok(Ok(now)) =
                    tokio::task::spawn_blocking(move || crate::source::head_commit(&s, &g)).await
                {
                    if now != last {
                        last = now;
                        let _ = tx.try_send(());
                    }
                }
            }
        });
    }

    /// Starts the status API (its reconcile-now requests wake the loop). An error: it cannot
    /// listen, and the daemon must not run on.
    async fn serve_status(
        &self,
        wake: &tokio::sync::mpsc::Sender<()>,
        report: &(dyn Fn(Report) + Send + Sync),
    ) -> Result<status::SharedStatus, String> {
        let status: status::SharedStatus = Default::default();
        status.lock().expect("status").host_names = self.opts.status_hosts.clone();
        let serving = status::serve(
            self.opts.status_listen,
            status.clone(),
            Some(status::Controls {
                reconcile: wake.clone(),
                minions: self.reconciler.minions().to_vec(),
                project: self.opts.project.clone(),
                events: self.events.clone(),
            }),
        )
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {}: {e} (choose another address with `drover daemon --listen ADDRESS:PORT`)",
                self.opts.status_listen
            )
        });
        // Not run on without it: what answers at that address would be another process, and
        // the README's checks (curl, the page, /metrics) would read that.
        let failed = serving.as_ref().err().cloned();
        report(Report::StatusApi(serving));
        match failed {
            Some(why) => Err(why),
            None => Ok(status),
        }
    }

    /// The service proxy, if one is asked for and it starts (if not, the daemon serves no
    /// services and says so).
    fn start_proxy(&self, report: &(dyn Fn(Report) + Send + Sync)) -> Option<Arc<Proxy>> {
        match self
            .opts
            .proxy
            .clone()
            .map(|(l, limits)| Proxy::start(l, limits))
        {
            Some(Ok(p)) => Some(Arc::new(p)),
            Some(Err(e)) => {
                report(Report::ProxyError(format!("{e}; serving no services")));
                None
            }
            None => None,
        }
    }

    /// Follows each minion's Docker events into the event log.
    fn spawn_docker_events(&self, tasks: &mut tokio::task::JoinSet<()>) {
        for minion in self.reconciler.minions() {
            tasks.spawn(docker_events::follow(
                minion.clone(),
                self.opts.project.clone(),
                self.events.clone(),
            ));
        }
    }

    /// Starts the prober beside the loop, and lets rounds wait on the restarts it makes.
    /// Returns its reports and the lock under which a proxy table is computed and handed over
    /// (by rounds and the prober alike).
    fn spawn_prober(
        &mut self,
        tasks: &mut tokio::task::JoinSet<()>,
        shared: &Arc<Mutex<LoopState>>,
        proxy: &Option<Arc<Proxy>>,
        wake: &tokio::sync::mpsc::Sender<()>,
    ) -> (
        tokio::sync::mpsc::Receiver<ProbeReport>,
        Arc<tokio::sync::Mutex<()>>,
    ) {
        let (probe_tx, probe_events) = tokio::sync::mpsc::channel::<ProbeReport>(64);
        let restarts = Arc::new(Restarts::default());
        self.reconciler.restarts = Some(restarts.clone());
        // Held while a proxy table is computed and handed to the proxy (rounds, prober).
        let feed = Arc::new(tokio::sync::Mutex::new(()));
        tasks.spawn(probe_loop(
            self.reconciler.minions().to_vec(),
            self.opts.project.clone(),
            shared.clone(),
            (proxy.clone(), feed.clone()),
            (probe_tx, restarts),
            wake.clone(),
        ));
        (probe_events, feed)
    }

    /// Followers serve the endpoints the leader records; the leader feeds the proxy itself.
    /// Returns the flag that tells which this daemon is.
    fn spawn_endpoint_follower(
        &self,
        tasks: &mut tokio::task::JoinSet<()>,
        proxy: &Option<Arc<Proxy>>,
    ) -> Arc<AtomicBool> {
        let leading = Arc::new(AtomicBool::new(self.lock.is_some()));
        if let (Some(proxy), Some(changes)) = (proxy, self.store.subscribe()) {
            tasks.spawn(follow_endpoints(
                self.store.clone(),
                proxy.clone(),
                changes,
                leading.clone(),
            ));
        }
        leading
    }

    /// Leadership, before each round: a lapsed lease stops this daemon acting; a follower
    /// tries to lead and, while it cannot, publishes who does. The lease to act under, if
    /// this daemon leads now.
    fn lead_or_follow(
        &mut self,
        shell: &Shell,
        memory: &mut Memory,
        report: &(dyn Fn(Report) + Send + Sync),
    ) -> Option<Arc<StoreLock>> {
        if let Some(why) = self.lock.as_ref().and_then(|l| l.lost_because()) {
            self.lock = None;
            shell.leading.store(false, Ordering::SeqCst);
            memory.leader_said = None;
            report(Report::Deposed(why));
            // Said at once, with no call to a store that may not answer: this daemon no
            // longer leads, whoever does.
            no_longer_leading(&mut shell.status.lock().expect("status").document);
        }
        if self.lock.is_none() {
            match self.try_lead() {
                Ok(true) => {
                    shell.leading.store(true, Ordering::SeqCst);
                    report(Report::Leading);
                    memory.last_round = None;
                }
                Ok(false) => {
                    self.follow(shell, memory, report);
                    return None;
                }
                Err(e) => {
                    let why = format!("cannot lead: {e}; trying again");
                    let mut s = shell.status.lock().expect("status");
                    no_longer_leading(&mut s.document);
                    s.not_ready = Some(format!("store: {why}"));
                    drop(s);
                    report(Report::StoreError(why));
                    return None;
                }
            }
        }
        self.lock.clone()
    }

    /// Another daemon leads: says who (when that changes) and serves the follower's status.
    fn follow(&self, shell: &Shell, memory: &mut Memory, report: &(dyn Fn(Report) + Send + Sync)) {
        // Its own lease, not lapsed in etcd yet, is no leader to follow.
        let holder = self
            .store
            .holder()
            .ok()
            .flatten()
            .filter(|h| !h.is_this_process());
        let who = holder
            .as_ref()
            .map(|h| h.who.clone())
            .unwrap_or_else(|| "another drover (unknown)".into());
        if memory.leader_said.as_deref() != Some(&who) {
            report(Report::Following(who.clone()));
            memory.leader_said = Some(who);
        }
        let document = self.follower_status(holder.as_ref(), &shell.proxy);
        let mut s = shell.status.lock().expect("status");
        (s.document, s.pods, s.not_ready) = (document, Vec::new(), None);
    }

    /// Whether the store may be acted on: a store damaged while running stops acting, as it
    /// stopped the start, and nothing is changed on the minions until it is repaired.
    fn store_sound(
        &self,
        status: &status::SharedStatus,
        report: &(dyn Fn(Report) + Send + Sync),
    ) -> bool {
        match self.store.verify() {
            Ok(_) => true,
            Err(e) => {
                let why = format!("{e}; nothing is changed until it is repaired");
                status.lock().expect("status").not_ready = Some(format!("store: {why}"));
                report(Report::StoreError(why));
                false
            }
        }
    }

    /// One round, under `lock`: plan; take the pods about to go out of the proxy and let
    /// them drain; act once the lease is confirmed; then tell, publish and record what
    /// happened, and say when to look again.
    async fn round(
        &mut self,
        lock: &Arc<StoreLock>,
        shell: &Shell,
        memory: &mut Memory,
        report: &(dyn Fn(Report) + Send + Sync),
    ) {
        let started = Instant::now();
        self.reconciler.probes_passed = Some(shell.shared.lock().expect("shared").passed.clone());
        let (mut round, plan) = self.reconciler.prepare(&self.loaded.desired, false).await;
        let deleted = plan.as_ref().map(deletions).unwrap_or_default();
        let current = shell
            .withdraw_deleted(&self.loaded.desired, &round, &deleted, memory, report)
            .await;
        // A leader paused or cut off past its lease must not act on what it planned.
        let plan = match plan.map(|p| self.store.confirm(lock).map(|()| p)) {
            Some(Err(e)) => {
                report(Report::StoreError(format!("{e}; not acting")));
                return;
            }
            Some(Ok(p)) => Some(p),
            None => None,
        };
        if let Some(plan) = plan {
            round = self
                .reconciler
                .execute(&self.loaded.desired, round, plan)
                .await;
            let backoff = &self.reconciler.backoff;
            for note in
                crate::reconcile::round_events::from_backoff(&round, backoff, Instant::now())
            {
                self.note(note);
            }
        }
        if let Some(problem) = shell.keeper.as_ref().and_then(|s| s.problem()) {
            report(Report::StoreError(problem));
        }
        memory.rounds += 1;
        count_round(&round, started.elapsed());
        for note in crate::reconcile::round_events::from_round(memory.last_round.as_ref(), &round) {
            self.note(note);
        }
        report(Report::Round(&round, started.elapsed()));
        let services = shell.proxy.as_ref().map(|p| p.status()).unwrap_or_default();
        let current = with_listener_errors(current, &services);
        self.publish_status(&shell.status, memory.rounds, &round, &current, &services);
        self.record_round(lock, &round, &current, memory, report);
        self.schedule_next(lock, round, &shell.wake, memory, report);
    }

    /// Serves what `round` ended with at `GET /status` and `/readyz`.
    fn publish_status(
        &self,
        status: &status::SharedStatus,
        number: u64,
        round: &Round,
        current: &[ServiceEndpoints],
        services: &[ServiceStatus],
    ) {
        let mut document = status_document(
            &self.opts.project,
            &self.opts.spec.describe(),
            self.loaded.commit.as_deref(),
            self.source_invalid.as_ref(),
            &self.loaded.desired,
            number,
            round,
            current,
            services,
        );
        if self.store.is_etcd() {
            document["role"] = "leader".into();
            document["leader"] = serde_json::json!({
                "who": "this daemon", "status": self.opts.advertise_status,
            });
        }
        let not_ready = self.not_ready(round);
        let mut s = status.lock().expect("status");
        (s.document, s.pods, s.not_ready) = (document, round.pods.clone(), not_ready);
    }

    /// Records in the store what the round saw (pods, endpoints) and the event log, if it
    /// changed since last written.
    fn record_round(
        &self,
        lock: &StoreLock,
        round: &Round,
        current: &[ServiceEndpoints],
        memory: &mut Memory,
        report: &(dyn Fn(Report) + Send + Sync),
    ) {
        if let Err(e) = project::record_seen(&self.store, lock, &round.observation(), current) {
            report(Report::StoreError(e.to_string()));
        }
        let log = self.events.lock().expect("event log").clone();
        if log != memory.events_written {
            match log.write(&self.store, lock) {
                Ok(()) => memory.events_written = log,
                Err(e) => report(Report::StoreError(e.to_string())),
            }
        }
    }

    /// When to look again after `round` (besides the resync): when the first pod backing off
    /// may retry, while a minion is silent (every few seconds, and when its grace ends), and
    /// soon while work is in flight. A converged round records the source as
    /// applied.
    fn schedule_next(
        &self,
        lock: &StoreLock,
        round: Round,
        wake: &tokio::sync::mpsc::Sender<()>,
        memory: &mut Memory,
        report: &(dyn Fn(Report) + Send + Sync),
    ) {
        let converged = round.converged();
        // Pods backing off are not work in flight: their retry is woken below.
        let working = round.planned > round.held.len() || round.pending;
        if let Some(first) = round.held.iter().map(|h| h.retry_in).min() {
            wake_after(wake, first);
        }
        // A silent minion: look again when its grace ends (its pods are replaced then), and
        // every few seconds before, to see it answer again.
        if let Some(left) = self.reconciler.next_grace_expiry() {
            wake_after(
                wake,
                left.min(SILENT_MINION_LOOK) + Duration::from_millis(50),
            );
        }
        memory.last_round = Some(round);
        if converged {
            let desired = &self.loaded.desired;
            if let Err(e) = project::record_applied(&self.store, lock, desired, true) {
                report(Report::StoreError(e.to_string()));
            }
        } else if working {
            // Work in flight (starting pods, a rollout): look again soon, not at the resync.
            wake_after(wake, Duration::from_millis(200));
        }
    }

    /// The status document of a daemon that does not lead: who does, when known (`None`:
    /// nobody this daemon can name yet).
    fn follower_status(
        &self,
        leader: Option<&crate::store::Holder>,
        proxy: &Option<Arc<Proxy>>,
    ) -> serde_json::Value {
        follower_document(
            &self.opts.project,
            &self.opts.spec.describe(),
            self.loaded.commit.as_deref(),
            leader,
            &project::stored_endpoints(&self.store).unwrap_or_default(),
            &proxy.as_ref().map(|p| p.status()).unwrap_or_default(),
        )
    }

    /// Takes the store's writer lease if nobody holds it, and attaches the reconciler to the
    /// store as the previous leader left it. `Ok(false)`: another daemon leads.
    fn try_lead(&mut self) -> Result<bool, String> {
        let lock =
            match self
                .store
                .lock_as("daemon", self.opts.advertise_status.clone(), Duration::ZERO)
            {
                Ok(l) => Arc::new(l),
                Err(crate::store::StoreError::Locked { .. }) => return Ok(false),
                Err(e) => return Err(e.to_string()),
            };
        project::open_for_writing(
            &mut self.reconciler,
            &self.store,
            Some(lock.clone()),
            &self.opts.spec,
            &self.loaded.desired,
            self.opts.allow_empty,
        )?;
        self.lock = Some(lock);
        Ok(true)
    }

    /// Why `/readyz` says not ready after `round`, if it does.
    fn not_ready(&self, round: &Round) -> Option<String> {
        if let Some((since, why)) = &self.source_invalid {
            let since = crate::clock::rfc3339(*since);
            return Some(format!("source invalid since {since}: {why}"));
        }
        round
            .error
            .as_ref()
            .map(|e| format!("the last round could not run: {e}"))
    }

    /// Reads the source again; an unusable one leaves the last valid state in force.
    fn reload(&mut self, report: &(dyn Fn(Report) + Send + Sync)) {
        let metrics = crate::metrics::global();
        metrics.source_reads.inc();
        self.reload_pending = false;
        let index = match self.store.read_index() {
            Ok(i) => i,
            Err(e) => {
                report(Report::StoreError(format!(
                    "{e}; the source is read again when the store answers"
                )));
                self.reload_pending = true;
                return;
            }
        };
        let loaded = project::load(
            &self.opts.spec,
            &self.opts.git,
            &self.opts.manifest,
            &self.pins,
        )
        .and_then(|l| {
            project::refuse_undelivered(&self.pins)?;
            project::refuse_empty_source(
                &self.opts.spec,
                &l.desired,
                &index,
                self.opts.allow_empty,
            )
            .map_err(LoadError::Refused)?;
            Ok(l)
        });
        match loaded {
            Ok(l) => {
                if let Some(note) = &l.skipped {
                    report(Report::Skipped(note));
                }
                if l.warnings != self.loaded.warnings {
                    report(Report::Warnings(&l.warnings));
                }
                if l.commit != self.loaded.commit {
                    report(Report::SourceAt(l.commit.as_deref()));
                    self.note(Note::normal(
                        ObjectRef::new("Source", &self.opts.spec.describe()),
                        "SourceChanged",
                        format!("Source at {}", l.commit.as_deref().unwrap_or("-")),
                    ));
                }
                self.loaded = l;
                self.source_invalid = None;
            }
            Err(e) => {
                metrics.source_read_errors.inc();
                let why = match &e {
                    LoadError::Invalid(invalid) => {
                        report(Report::Warnings(&invalid.warnings));
                        let diags = &invalid.errors;
                        report(Report::SourceInvalid(diags));
                        let first = diags.first().map(|d| format!(": {d}")).unwrap_or_default();
                        format!("{} errors{first}", diags.len())
                    }
                    LoadError::Source(e) => {
                        report(Report::SourceUnusable(e.to_string()));
                        e.to_string()
                    }
                    LoadError::Refused(e) => {
                        report(Report::SourceUnusable(e.clone()));
                        e.clone()
                    }
                };
                self.note(Note::warning(
                    ObjectRef::new("Source", &self.opts.spec.describe()),
                    "SourceInvalid",
                    format!("{why}; the last valid state stays in force"),
                ));
                // Since the first failure: a source that stays broken keeps its first time.
                let since = match self.source_invalid.take() {
                    Some((since, _)) => since,
                    None => std::time::SystemTime::now(),
                };
                self.source_invalid = Some((since, why));
            }
        }
    }
}

/// What wakes the daemon's loop (kube-runtime's trigger streams): requests on one channel
/// (a source change, a polled git head, a reconcile-now, a retry or the prober asking), probe
/// reports, the leader key changing, a follower's periodic try, and the resync.
struct Triggers {
    requests: tokio::sync::mpsc::Receiver<()>,
    probes: tokio::sync::mpsc::Receiver<ProbeReport>,
    leader_changes: Option<tokio::sync::mpsc::Receiver<()>>,
    /// Ticks only while following (the caller says).
    follow_tick: tokio::time::Interval,
    resync: tokio::time::Interval,
}

/// Why the loop woke.
enum Woken {
    /// A request: the source is read again before the round.
    Asked,
    /// The resync, the leader key or a follower's try: a round on the source as it is.
    Look,
    /// A probe report: told, with no round.
    Probe(ProbeReport),
    Stop,
}

impl Triggers {
    /// Waits for the next trigger. A burst of requests (an editor's save is often several
    /// events) is one.
    async fn next(
        &mut self,
        following: bool,
        stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Woken {
        let Triggers {
            requests,
            probes,
            leader_changes,
            follow_tick,
            resync,
        } = self;
        tokio::select! {
            _ = resync.tick() => Woken::Look,
            Some(()) = requests.recv() => {
                // Debounce: an editor's save is often several events.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while requests.try_recv().is_ok() {}
                Woken::Asked
            }
            Some(p) = probes.recv() => Woken::Probe(p),
            Some(()) = async { leader_changes.as_mut()?.recv().await } => Woken::Look,
            _ = follow_tick.tick(), if following => Woken::Look,
            _ = stop => Woken::Stop,
        }
    }
}

/// What runs beside the loop and what a round hands its results to: the request channel, the
/// status API's state, the proxy (and its record in the store), what the prober shares.
struct Shell {
    wake: tokio::sync::mpsc::Sender<()>,
    status: status::SharedStatus,
    proxy: Option<Arc<Proxy>>,
    keeper: Option<crate::serving::Keeper>,
    shared: Arc<Mutex<LoopState>>,
    /// Held while a proxy table is computed and handed to the proxy (rounds, prober).
    feed: Arc<tokio::sync::Mutex<()>>,
    /// Whether this daemon leads (a follower's proxy follows the store, a leader's its rounds).
    leading: Arc<AtomicBool>,
}

impl Shell {
    /// The proxy first: the pods about to go leave the endpoints and drain. The table is
    /// computed and handed over under `feed`, as the prober's is: a table the prober computed
    /// before this one must not reach the proxy after it (it would serve a pod about to be
    /// deleted again). Returns the endpoints without the deleted pods.
    async fn withdraw_deleted(
        &self,
        desired: &DesiredState,
        round: &Round,
        deleted: &BTreeSet<(String, String)>,
        memory: &mut Memory,
        report: &(dyn Fn(Report) + Send + Sync),
    ) -> Vec<ServiceEndpoints> {
        let fed = self.feed.lock().await;
        let current = {
            let mut s = self.shared.lock().expect("shared");
            s.set_desired(desired);
            s.pods = round
                .pods
                .iter()
                .filter(|p| !deleted.contains(&(p.minion.clone(), p.id.clone())))
                .cloned()
                .collect();
            s.endpoints()
        };
        let errors: Option<Vec<String>> = match &self.proxy {
            Some(proxy) => Some(
                proxy
                    .update(&proxy_table(&current))
                    .await
                    .into_iter()
                    .map(|e| e.to_string())
                    .collect(),
            ),
            None => None,
        };
        drop(fed);
        if let (Some(proxy), Some(errors)) = (&self.proxy, errors) {
            if errors != memory.proxy_errors {
                for e in &errors {
                    report(Report::ProxyError(e.clone()));
                }
                memory.proxy_errors = errors;
            }
            if !deleted.is_empty() {
                drained(proxy, DRAIN_WAIT).await;
            }
        }
        current
    }

    /// Stops serving: the proxy's record in the store goes, then the proxy.
    async fn stop(self) {
        drop(self.keeper);
        if let Some(proxy) = self.proxy {
            proxy.shutdown().await;
        }
    }
}

/// What the loop remembers from one round to the next.
struct Memory {
    /// The event log as last written to the store.
    events_written: EventLog,
    /// The leader last told (a follower says it when it changes).
    leader_said: Option<String>,
    /// Rounds run, for `/status`.
    rounds: u64,
    /// The last round, for the events that tell what changed since.
    last_round: Option<Round>,
    /// The proxy's errors last told (said when they change).
    proxy_errors: Vec<String>,
}

/// Asks for a round after `delay`.
fn wake_after(wake: &tokio::sync::mpsc::Sender<()>, delay: Duration) {
    let tx = wake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = tx.try_send(());
    });
}

/// The endpoints with what the proxy says of each service's listener.
fn with_listener_errors(
    mut current: Vec<ServiceEndpoints>,
    services: &[ServiceStatus],
) -> Vec<ServiceEndpoints> {
    for s in &mut current {
        s.error = services
            .iter()
            .find(|p| p.name == s.name)
            .and_then(|p| p.error.clone());
    }
    current
}

/// How often a follower tries to take the writer lease, besides whenever the leader key
/// changes (a watch): a lease that lapses deletes the key, so this is only a fallback.
const FOLLOWER_TRY: Duration = Duration::from_secs(1);

/// A follower's proxy: the endpoints the leader records, read again on every commit (an etcd
/// watch) while this daemon does not lead.
async fn follow_endpoints(
    store: Store,
    proxy: Arc<Proxy>,
    mut changes: tokio::sync::mpsc::Receiver<()>,
    leading: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut first = true;
    loop {
        if !first && changes.recv().await.is_none() {
            return;
        }
        first = false;
        if leading.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        let s = store.clone();
        // A store unreadable for now leaves the last table in force.
        if let Ok(Ok(services)) =
            tokio::task::spawn_blocking(move || project::stored_endpoints(&s)).await
        {
            if !leading.load(std::sync::atomic::Ordering::SeqCst) {
                proxy.update(&proxy_table(&services)).await;
            }
        }
    }
}

/// The document `GET /status` serves while following: who leads, and the services this
/// daemon's proxy serves from the store.
/// A status document that said this daemon leads, made to say it does not (and that who leads
/// is not known here). A document with no role (a file store) is left as it is.
fn no_longer_leading(document: &mut serde_json::Value) {
    if document.get("role").is_some() {
        document["role"] = "follower".into();
        document["leader"] = serde_json::Value::Null;
    }
}

fn follower_document(
    project: &str,
    source: &str,
    commit: Option<&str>,
    leader: Option<&crate::store::Holder>,
    endpoints: &[ServiceEndpoints],
    proxy: &[ServiceStatus],
) -> serde_json::Value {
    serde_json::json!({
        "project": project,
        "source": source,
        "commit": commit,
        "sourceValid": true,
        "role": "follower",
        "leader": leader.map(|h| serde_json::json!({"who": h.who, "status": h.status})),
        "services": services_status(endpoints, proxy),
    })
}

/// Each service's endpoints and what the proxy says of its listener, for `/status`.
fn services_status(endpoints: &[ServiceEndpoints], proxy: &[ServiceStatus]) -> serde_json::Value {
    endpoints
        .iter()
        .map(|s| {
            let served = proxy.iter().find(|p| p.name == s.name);
            serde_json::json!({
                "name": s.name, "port": s.port, "protocol": s.protocol,
                "endpoints": s.endpoints,
                "listening": served.and_then(|p| p.listening),
                "error": served.and_then(|p| p.error.clone()),
                "active": served.map(|p| p.active),
            })
        })
        .collect()
}

/// The pods a plan deletes, as (minion, pod).
fn deletions(plan: &Plan) -> BTreeSet<(String, String)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::DeletePod { minion, id, .. } => Some((minion.clone(), id.clone())),
            _ => None,
        })
        .collect()
}

/// Waits until no connection remains to a removed endpoint (or `limit` passes).
async fn drained(proxy: &Proxy, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let draining: u64 = proxy
            .status()
            .iter()
            .flat_map(|s| &s.endpoints)
            .filter(|e| e.draining)
            .map(|e| e.active)
            .sum();
        if draining == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A probe report as an event of its pod.
fn probe_note(p: &ProbeReport) -> Note {
    let (minion, pod, container) = (&p.key.0, &p.key.1, &p.key.2);
    let object = ObjectRef::new("Pod", pod);
    match &p.acted {
        None => Note::warning(
            object,
            "Unhealthy",
            format!("Container {container} on {minion}: {}", p.error),
        ),
        Some(Ok(())) => Note::warning(
            object,
            "Killing",
            format!(
                "Container {container} on {minion} failed its liveness probe {} times ({}); restarted",
                probes::FAILURE_THRESHOLD,
                p.error
            ),
        ),
        Some(Err(e)) => Note::warning(
            object,
            "FailedKill",
            format!(
                "Container {container} on {minion} failed its liveness probe ({}); restart failed: {e}",
                p.error
            ),
        ),
    }
}

struct ProbeReport {
    key: ProbeKey,
    error: String,
    acted: Option<Result<(), String>>,
}

/// Every `probes::PERIOD`: probes the due containers of the last round's running pods,
/// restarts those past the failure threshold, and when the set of passing containers changes,
/// gives the proxy the new endpoints at once and asks for a round (which records them).
async fn probe_loop(
    minions: Vec<Arc<Minion>>,
    project: String,
    shared: Arc<Mutex<LoopState>>,
    (proxy, feed): (Option<Arc<Proxy>>, Arc<tokio::sync::Mutex<()>>),
    (reports, restarts): (tokio::sync::mpsc::Sender<ProbeReport>, Arc<Restarts>),
    round: tokio::sync::mpsc::Sender<()>,
) {
    let by_name: BTreeMap<String, Arc<Minion>> = minions
        .into_iter()
        .map(|m| (m.spec.name.clone(), m))
        .collect();
    let mut book = ProbeBook::default();
    let mut tick = tokio::time::interval(probes::PERIOD / 4);
    loop {
        tick.tick().await;
        let jobs = probe_jobs(&shared.lock().expect("shared"), &by_name, &project);
        let now = Instant::now();
        let running: Vec<(ProbeKey, Duration)> =
            jobs.iter().map(|j| (j.key.clone(), j.delay)).collect();
        let mut due: BTreeSet<ProbeKey> = book.due(&running, now).into_iter().collect();
        let addresses = notice_docker_restarts(&jobs, &mut due, &mut book, &reports, now).await;
        let results = run_probes(&jobs, &due, &addresses).await;
        act_on_verdicts(results, &mut book, &reports, &restarts).await;
        let passed = book.passed();
        let fed = feed.lock().await;
        let changed = {
            let mut s = shared.lock().expect("shared");
            let changed = s.passed != passed;
            s.passed = passed;
            changed.then(|| s.endpoints())
        };
        if let (Some(current), Some(proxy)) = (&changed, &proxy) {
            proxy.update(&proxy_table(current)).await;
        }
        drop(fed);
        if changed.is_some() {
            // A round records the new endpoints (and a rollout waiting on readiness goes on).
            let _ = round.try_send(());
        }
    }
}

/// A container to probe: running, with a liveness probe, in a pod of the last round.
struct ProbeJob {
    key: ProbeKey,
    delay: Duration,
    minion: Arc<Minion>,
    container: String,
    ip: Option<String>,
    ports: Vec<crate::model::Port>,
    probe: crate::model::LivenessProbe,
    policy: crate::model::RestartPolicy,
    pre_stop: Option<crate::model::Handler>,
}

/// What to probe, from the last round: its running containers that have a probe.
fn probe_jobs(
    s: &LoopState,
    by_name: &BTreeMap<String, Arc<Minion>>,
    project: &str,
) -> Vec<ProbeJob> {
    let manifests = &s.manifests;
    let mut jobs = Vec::new();
    for p in s.pods.iter().filter(|p| p.phase == Phase::Running) {
        let (Some(manifest), Some(minion)) =
            (manifests.get(&p.template_hash), by_name.get(&p.minion))
        else {
            continue;
        };
        let ports: Vec<crate::model::Port> = manifest
            .containers
            .iter()
            .flat_map(|c| c.ports.clone())
            .collect();
        for c in &manifest.containers {
            let Some(probe) = &c.liveness_probe else {
                continue;
            };
            let running = p
                .containers
                .iter()
                .any(|s| s.name == c.name && s.state == crate::plan::pods::ContainerState::Running);
            if !running {
                continue;
            }
            jobs.push(ProbeJob {
                key: (p.minion.clone(), p.id.clone(), c.name.clone()),
                delay: Duration::from_secs(u64::from(probe.initial_delay_seconds)),
                minion: minion.clone(),
                container: crate::minion::pods::name_in(project, p, &c.name),
                ip: p.ip.clone(),
                ports: ports.clone(),
                probe: probe.clone(),
                policy: manifest.restart_policy,
                pre_stop: c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()),
            });
        }
    }
    jobs
}

/// Docker may have restarted a container since (killed, crashed): then it is not ready until
/// a probe passes again, and is not probed this time. One inspect per due probe tells.
/// Returns the containers' current addresses: a pod that owns its namespace is its
/// container, whose address may change when Docker restarts it.
async fn notice_docker_restarts(
    jobs: &[ProbeJob],
    due: &mut BTreeSet<ProbeKey>,
    book: &mut ProbeBook,
    reports: &tokio::sync::mpsc::Sender<ProbeReport>,
    now: Instant,
) -> BTreeMap<ProbeKey, String> {
    let started = futures_util::future::join_all(
        jobs.iter()
            .filter(|j| due.contains(&j.key))
            .map(|j| async move { (j, j.minion.inspect_container(&j.container).await) }),
    )
    .await;
    let mut addresses: BTreeMap<ProbeKey, String> = BTreeMap::new();
    for (job, inspected) in started {
        let inspected = inspected.ok();
        if let Some(ip) = inspected
            .as_ref()
            .and_then(|i| i.network_settings.as_ref()?.networks.as_ref())
            .and_then(|n| n.values().find_map(|e| e.ip_address.clone()))
            .filter(|ip| !ip.is_empty())
        {
            addresses.insert(job.key.clone(), ip);
        }
        let started_at = inspected
            .and_then(|i| i.state?.started_at)
            .unwrap_or_default();
        if book.started(&job.key, &started_at, job.delay, now) {
            due.remove(&job.key);
            let _ = reports.try_send(ProbeReport {
                key: job.key.clone(),
                error: "restarted by Docker; not ready until its probe passes".into(),
                acted: None,
            });
        }
    }
    addresses
}

/// Runs the due probes at once, each against the container's current address.
async fn run_probes<'j>(
    jobs: &'j [ProbeJob],
    due: &BTreeSet<ProbeKey>,
    addresses: &BTreeMap<ProbeKey, String>,
) -> Vec<(&'j ProbeJob, Result<(), String>)> {
    futures_util::future::join_all(jobs.iter().filter(|j| due.contains(&j.key)).map(
        |j| async move {
            let target = Target {
                pod_ip: addresses.get(&j.key).or(j.ip.as_ref()).map(String::as_str),
                container: &j.container,
                ports: &j.ports,
            };
            (j, probes::probe(&j.minion, &target, &j.probe).await)
        },
    ))
    .await
}

/// Records each probe's result: a failure is reported, and one past the failure threshold
/// restarts (or kills) the container, telling rounds a restart is under way meanwhile.
async fn act_on_verdicts(
    results: Vec<(&ProbeJob, Result<(), String>)>,
    book: &mut ProbeBook,
    reports: &tokio::sync::mpsc::Sender<ProbeReport>,
    restarts: &Restarts,
) {
    let now = Instant::now();
    for (job, result) in results {
        match book.record(&job.key, result, now) {
            Verdict::Ready => {}
            Verdict::NotReady(error) => {
                let _ = reports.try_send(ProbeReport {
                    key: job.key.clone(),
                    error: format!("liveness probe failed: {error}"),
                    acted: None,
                });
            }
            Verdict::Restart(error) => {
                let target = Target {
                    pod_ip: job.ip.as_deref(),
                    container: &job.container,
                    ports: &job.ports,
                };
                let (minion, pod) = (&job.key.0, &job.key.1);
                restarts.begin(minion, pod, Instant::now());
                let (acted, hook_failed) =
                    probes::act_on_failure(&job.minion, &target, job.pre_stop.as_ref(), job.policy)
                        .await;
                restarts.end(minion, pod, Instant::now());
                book.restarted(&job.key, job.delay, Instant::now());
                let error = match hook_failed {
                    Some(why) => format!("{error}; its preStop hook failed: {why}"),
                    None => error,
                };
                let _ = reports.try_send(ProbeReport {
                    key: job.key.clone(),
                    error,
                    acted: Some(acted),
                });
            }
        }
    }
}

/// Counts a round in the process's metrics.
fn count_round(round: &Round, took: Duration) {
    let m = crate::metrics::global();
    m.rounds.inc();
    m.round_duration.observe(took.as_secs_f64());
    if !round.failed.is_empty() || !round.unobserved.is_empty() || round.error.is_some() {
        m.round_failures.inc();
    }
    for a in &round.done {
        m.action(action_kind(a), true);
    }
    for (a, _) in &round.failed {
        m.action(action_kind(a), false);
    }
    let phases: Vec<String> = round
        .pods
        .iter()
        .map(|p| format!("{:?}", p.phase))
        .collect();
    m.set_pods(phases.iter().map(String::as_str));
    let ready = round.minions.iter().filter(|m| m.ready).count();
    m.set_minions(ready, round.minions.len() - ready);
}

/// An action's kind as a metric label.
fn action_kind(action: &Action) -> &'static str {
    match action {
        Action::CreatePod { .. } => "create_pod",
        Action::DeletePod { .. } => "delete_pod",
        Action::DeleteVolumes { .. } => "delete_volumes",
    }
}

/// A pod waiting out its back-off, as `/status` tells it.
fn waiting_json(h: &crate::reconcile::Held) -> serde_json::Value {
    serde_json::json!({
        "id": h.pod, "replicationController": h.owner, "reason": h.reason.as_str(),
        "message": h.message, "failures": h.failures, "retryInSeconds": h.retry_in.as_secs(),
    })
}

/// The document `GET /status` serves.
#[allow(clippy::too_many_arguments)]
fn status_document(
    project: &str,
    source: &str,
    commit: Option<&str>,
    source_invalid: Option<&(std::time::SystemTime, String)>,
    desired: &DesiredState,
    number: u64,
    round: &Round,
    endpoints: &[ServiceEndpoints],
    proxy: &[ServiceStatus],
) -> serde_json::Value {
    let at = crate::clock::rfc3339(std::time::SystemTime::now());
    let describe = |a: &Action| crate::executor::describe(a).1;
    serde_json::json!({
        "project": project,
        "source": source,
        "commit": commit,
        "sourceValid": source_invalid.is_none(),
        "sourceInvalid": source_invalid.map(|(since, why)| serde_json::json!({
            "since": crate::clock::rfc3339(*since), "error": why,
        })),
        "lastRound": {
            "number": number,
            "at": at,
            "planned": round.planned,
            "done": round.done.iter().map(describe).collect::<Vec<_>>(),
            "failed": round.failed.iter().map(|(a, e)| format!("{}: {e}", describe(a))).collect::<Vec<_>>(),
            "unschedulable": round.unschedulable,
            "pending": round.pending,
            "converged": round.converged(),
        },
        "minions": round.minions.iter().map(|m| {
            let pods: Vec<_> = round.pods.iter().filter(|p| p.minion == m.name).collect();
            serde_json::json!({
                "name": m.name, "ready": m.ready, "capacity": m.capacity,
                "unschedulable": m.unschedulable, "draining": m.drain.is_some(),
                "used": {
                    "cpu": pods.iter().map(|p| p.request.cpu).sum::<u64>(),
                    "memory": pods.iter().map(|p| p.request.memory).sum::<u64>(),
                },
                "pods": pods.len(),
            })
        }).collect::<Vec<_>>(),
        "replicationControllers": desired.objects.values().filter_map(|(o, _)| match o {
            crate::model::Object::ReplicationController(rc) => Some(rc),
            _ => None,
        }).map(|rc| {
            let template = &rc.desired_state.pod_template;
            let hash = crate::plan::pods::template_hash(
                &template.desired_state.manifest,
                &template.labels,
                &template.node_selector,
            );
            let pods: Vec<&ObservedPod> =
                round.pods.iter().filter(|p| p.owner.as_deref() == Some(&rc.id)).collect();
            let running = pods.iter().filter(|p| p.phase == Phase::Running);
            serde_json::json!({
                "id": rc.id,
                "images": template.desired_state.manifest.containers.iter()
                    .map(|c| c.image.as_str()).collect::<Vec<_>>(),
                "desired": rc.desired_state.replicas,
                "current": pods.len(),
                "running": running.clone().count(),
                // Running with every probe passed (what a service would send traffic to).
                "ready": running.filter(|p| !p.unready).count(),
                // Made from the template as it is now: fewer than `current` is a rollout.
                "updated": pods.iter().filter(|p| p.template_hash == hash).count(),
                "selector": rc.desired_state.replica_selector,
                "waiting": round.held.iter().filter(|h| h.owner.as_deref() == Some(&rc.id))
                    .map(waiting_json).collect::<Vec<_>>(),
            })
        }).collect::<Vec<_>>(),
        "waiting": round.held.iter().map(waiting_json).collect::<Vec<_>>(),
        "pods": round.pods.iter().map(|p| serde_json::json!({
            "id": p.id, "minion": p.minion, "phase": p.phase, "replicationController": p.owner,
            "ip": p.ip, "containers": p.containers,
        })).collect::<Vec<_>>(),
        "services": services_status(endpoints, proxy),
    })
}
