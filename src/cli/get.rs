//! `drover get pods|rc|services`, `drover describe`, `drover logs`: what runs where, read from
//! the minions themselves (the labels on drover's containers) and the source.

use super::output::{self, Format, Item, Listing, Resource, SortBy};
use super::selector::Selector;
use super::{fail, Context, EXIT_DIFFERENCES, EXIT_ERROR, EXIT_OK};
use drover::minion::{Minion, MinionError};
use drover::model::{DesiredState, Labels, Object, API_VERSION};
use drover::plan::objects::{redact_secrets, MaskKey};
use drover::plan::pods::{ContainerState, ObservedPod, Phase};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The desired state (or why the source gave none), every minion, and what they run now.
pub(crate) struct World {
    pub(crate) desired: Result<DesiredState, String>,
    pub(crate) minions: Vec<Arc<Minion>>,
    pub(crate) pods: Vec<ObservedPod>,
    pub(crate) errors: Vec<MinionError>,
    /// What the scheduler would see, capacity read from Docker.
    views: Vec<drover::plan::scheduler::MinionView>,
}

pub(crate) fn observe(cx: &Context) -> Result<World, String> {
    let spec = cx.settings.source(None, None, None);
    // A source that cannot be read blinds no read-only command: they show the objects as
    // last applied, with one warning that names the problem.
    let desired = super::load_desired(cx, &spec).map(|(d, _)| d).or_else(|e| {
        let why = source_problem(&spec, e);
        match cx
            .store()
            .and_then(|s| drover::reconcile::project::applied_state(&s))
        {
            Ok(applied) if !applied.objects.is_empty() => {
                super::warn_once(&format!("{why}; showing the objects as last applied"));
                Ok(applied)
            }
            _ => Err(why),
        }
    });
    // A minion that cannot even be set up (a local socket that does not exist) is an error of
    // that minion, as one that does not answer: the others are still shown.
    let mut minions = Vec::new();
    let mut errors = Vec::new();
    for spec in drover::minion::minion_specs(&cx.settings, &cx.project, desired.as_ref().ok())? {
        match super::kept_minion(spec) {
            Ok(m) => minions.push(m),
            Err(e) => errors.push(e),
        }
    }
    // What this project's store recorded decides which pods of an older drover are its own.
    let index = cx.store()?.read_index().map_err(|e| e.to_string())?;
    let (seen, more) = super::runtime().block_on(drover::reconcile::observe_all(
        &minions,
        &drover::reconcile::project::adoptable(&index),
    ));
    errors.extend(more);
    Ok(World {
        desired,
        minions,
        pods: seen.pods,
        errors,
        views: seen.minions,
    })
}

/// Why the source gave no desired state, in one line that names it: said where rcs and
/// services, which come only from the source, cannot be shown.
fn source_problem(spec: &drover::source::SourceSpec, e: super::LoadError) -> String {
    match e {
        // The source error names the path (or repository) it failed on.
        super::LoadError::Source(e) => format!("the source cannot be read: {e}"),
        super::LoadError::Invalid(invalid) => {
            let mut files: Vec<&str> = invalid.errors.iter().map(|d| d.file.as_str()).collect();
            files.dedup();
            format!(
                "the source {} is invalid ({} error{} in {}; `drover validate` shows them)",
                spec.describe(),
                invalid.errors.len(),
                super::plural(invalid.errors.len()),
                files.join(", ")
            )
        }
        super::LoadError::Refused(why) => {
            format!("the source {} is refused: {why}", spec.describe())
        }
    }
}

fn labels_text(l: &Labels) -> String {
    if l.is_empty() {
        "-".into()
    } else {
        l.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What `get` was asked for, beyond the kind.
pub struct GetOptions<'a> {
    pub names: &'a [String],
    pub selector: &'a Selector,
    pub format: &'a Format,
    pub sort_by: Option<&'a SortBy>,
    pub watch: bool,
}

/// How often `get -w` observes again: one list call per minion each time.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// One kind's listing as the minions and the source show it now; `detailed`: with each
/// container's inspect details (restart counts, times).
/// Also says whether every minion answered (else some objects may be missing only from this
/// look, not from the minions).
fn gather(
    cx: &Context,
    resource: Resource,
    format: &Format,
    detailed: bool,
) -> Result<(Listing, bool), String> {
    match resource {
        // Whether the format shows why a minion is not Ready (else said on stderr).
        Resource::Minions => super::minions::listing(cx, format.detailed()).map(|l| (l, true)),
        other => observe(cx).and_then(|world| {
            for e in &world.errors {
                super::warn_once(&format!("{e}; its pods are not listed"));
            }
            let whole = world.errors.is_empty();
            match other {
                Resource::Pods => Ok(pods(cx, &world, detailed)),
                Resource::ReplicationControllers => rcs(cx, &world),
                _ => services(cx, &world),
            }
            .map(|l| (l, whole))
        }),
    }
}

/// `drover get KIND [NAME...] [-l SELECTOR] [-o FORMAT] [--sort-by PATH] [-w]`: exit 0, or 1
/// when a named object does not exist (the others are still printed), 2 on an error.
pub fn get(cx: &Context, resource: Resource, opts: &GetOptions) -> ExitCode {
    // --sort-by reads the JSON, which holds the per-container details.
    let detailed = opts.format.detailed() || opts.sort_by.is_some();
    let listing = match gather(cx, resource, opts.format, detailed) {
        Ok((l, _)) => l,
        Err(e) => return fail(&e),
    };
    let mut selected = listing.select(opts.names, opts.selector);
    if let Err(e) = output::sort(&mut selected, !opts.names.is_empty(), opts.sort_by) {
        return fail(&e);
    }
    let text = if opts.watch && selected.missing.is_empty() {
        Ok(String::new())
    } else {
        output::render(&listing, &selected, opts.format, opts.names.len() == 1)
    };
    match text {
        Ok(text) => output::print(&text),
        Err(e) => return fail(&e),
    }
    if opts.names.is_empty() && selected.items.is_empty() && opts.format.tabular() {
        eprintln!("No resources found.");
    }
    for name in &selected.missing {
        eprintln!("{}", output::not_found(resource, name));
    }
    if !selected.missing.is_empty() {
        return ExitCode::from(EXIT_DIFFERENCES);
    }
    if opts.watch {
        return watch(cx, resource, opts, detailed, listing);
    }
    ExitCode::from(EXIT_OK)
}

/// `get -w`: the objects as they are, then each object again whenever it changes, until
/// interrupted (SIGINT ends the process as it ended kubectl: by the signal, exit status 130
/// in a shell) or stdout closes (exit 0). Tables print their header once; other formats print
/// one object at a time. An object that is gone prints its last row once more, as kubectl's
/// watch printed every event's object, a deletion's included. Only the last look at each
/// object present is kept.
fn watch(
    cx: &Context,
    resource: Resource,
    opts: &GetOptions,
    detailed: bool,
    first: Listing,
) -> ExitCode {
    // What was last shown of each object: its fingerprint and the item itself.
    let mut shown: BTreeMap<String, (String, Item)> = BTreeMap::new();
    // Set once the header is printed: later rows keep its columns.
    let mut widths: Option<Vec<usize>> = None;
    let mut listing = first;
    let mut whole = true;
    loop {
        let mut selected = listing.select(opts.names, opts.selector);
        // A later poll where no object has the path keeps the name order.
        let _ = output::sort(&mut selected, !opts.names.is_empty(), opts.sort_by);
        let mut now = BTreeMap::new();
        let mut changed = Vec::new();
        for item in &selected.items {
            let print = fingerprint(&item.object);
            if shown.get(&item.id).map(|s| &s.0) != Some(&print) {
                changed.push(*item);
            }
            now.insert(item.id.clone(), (print, (*item).clone()));
        }
        // An object gone since the last look gets its last row once more, as kubectl's watch
        // prints a deleted object; not when a minion did not answer this look (its pods are
        // unknown, not gone: they are kept as last shown).
        let mut gone: Vec<Item> = Vec::new();
        for (id, last) in shown {
            if now.contains_key(&id) {
                continue;
            }
            if whole {
                gone.push(last.1);
            } else {
                now.insert(id, last);
            }
        }
        changed.extend(gone.iter());
        shown = now;
        let text = match watch_text(&listing, &changed, opts.format, &mut widths) {
            Ok(t) => t,
            Err(e) => return fail(&e),
        };
        if !text.is_empty() && !print_watched(&text) {
            return ExitCode::from(EXIT_OK);
        }
        listing = loop {
            std::thread::sleep(WATCH_EVERY);
            match gather(cx, resource, opts.format, detailed) {
                Ok((l, w)) => {
                    whole = w;
                    break l;
                }
                Err(e) => super::warn_once(&e),
            }
        };
    }
}

/// What identifies an object's state: its JSON without what changes at every look (a
/// minion's last probe time).
fn fingerprint(object: &Value) -> String {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("lastProbeTime");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = object.clone();
    strip(&mut v);
    v.to_string()
}

/// The changed objects in the watch's format.
fn watch_text(
    listing: &Listing,
    changed: &[&Item],
    format: &Format,
    widths: &mut Option<Vec<usize>>,
) -> Result<String, String> {
    let mut text = String::new();
    if changed.is_empty() {
        return Ok(text);
    }
    if format.tabular() {
        let mut rows: Vec<Vec<String>> = changed.iter().map(|i| output::row(i, format)).collect();
        let widths = widths.get_or_insert_with(|| {
            rows.insert(0, output::header(listing, format));
            output::widths(&rows)
        });
        for r in &rows {
            text.push_str(&output::table_line(r, widths));
        }
        return Ok(text);
    }
    for item in changed {
        match format {
            Format::Json => {
                text.push_str(&serde_json::to_string_pretty(&item.object).expect("json"));
                text.push('\n');
            }
            // One YAML document per object, so the stream parses as documents.
            Format::Yaml => {
                text.push_str("---\n");
                text.push_str(&serde_norway::to_string(&item.object).map_err(|e| e.to_string())?);
            }
            Format::Name => {
                text.push_str(&format!("{}/{}\n", listing.resource.singular(), item.id));
            }
            Format::JsonPath(template) => text.push_str(&template.render(&item.object)),
            Format::Table | Format::Wide | Format::CustomColumns(_) => unreachable!("tabular"),
        }
    }
    Ok(text)
}

/// Writes what changed; false once stdout is closed (`drover get pods -w | head -3`).
fn print_watched(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_ok()
}

/// v1beta1's pod status words for drover's phases.
fn pod_status(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Waiting",
        Phase::Running => "Running",
        Phase::Succeeded | Phase::Failed => "Terminated",
    }
}

/// One container as Docker's inspect shows it: when it started and finished, how often Docker
/// restarted it.
#[derive(Default)]
struct Detail {
    started: Option<String>,
    finished: Option<String>,
    restarts: i64,
}

/// Inspects every container of these pods (one call each, all minions at once).
fn details(cx: &Context, world: &World) -> BTreeMap<(String, String, String), Detail> {
    let calls = world.pods.iter().flat_map(|p| {
        let minion = world.minions.iter().find(|m| m.spec.name == p.minion);
        p.containers.iter().filter_map(move |c| {
            let minion = minion?.clone();
            let name = drover::minion::pods::name_in(&cx.project, p, &c.name);
            let key = (p.minion.clone(), p.id.clone(), c.name.clone());
            Some(async move {
                let info = minion.inspect_container(&name).await.ok()?;
                let state = info.state.unwrap_or_default();
                let real = |t: Option<String>| t.filter(|t| !t.starts_with("0001-"));
                Some((
                    key,
                    Detail {
                        started: real(state.started_at),
                        finished: real(state.finished_at),
                        restarts: info.restart_count.unwrap_or(0),
                    },
                ))
            })
        })
    });
    let calls: Vec<_> = calls.collect();
    super::runtime()
        .block_on(futures_util::future::join_all(calls))
        .into_iter()
        .flatten()
        .collect()
}

/// Pods (minion, id) the daemon's prober last judged not ready, from what it recorded.
fn judged_unready(cx: &Context) -> std::collections::BTreeSet<(String, String)> {
    let Ok(store) = cx.store() else {
        return Default::default();
    };
    let Ok((_, mut texts)) = store.read_snapshot(&[drover::store::Section::Observed]) else {
        return Default::default();
    };
    let texts = texts
        .remove(&drover::store::Section::Observed)
        .unwrap_or_default();
    drover::plan::observed::from_records(&texts)
        .map(|seen| {
            seen.pods
                .into_iter()
                .filter(|p| p.unready)
                .map(|p| (p.minion, p.id))
                .collect()
        })
        .unwrap_or_default()
}

/// The key that masks secrets in what `get` shows: the state directory's, else one for this
/// run only.
fn mask_key(cx: &Context) -> Option<MaskKey> {
    match cx.store().ok().map(|s| s.mask_key()) {
        Some(Ok(Some(k))) => Some(MaskKey::new(k)),
        _ => drover::store::random_key().ok().map(MaskKey::new),
    }
}

fn pods(cx: &Context, world: &World, detailed: bool) -> Listing {
    let facts = PodFacts::read(cx, world, detailed);
    let mut items: Vec<Item> = world.pods.iter().map(|p| facts.item(p)).collect();
    items.extend(not_made(cx, world));
    Listing {
        resource: Resource::Pods,
        headers: &["NAME", "READY", "STATUS", "RC", "IMAGES", "LABELS"],
        wide_headers: &["MINION", "PORTS", "IP", "RESTARTS", "AGE"],
        items,
    }
}

/// What `get pods` reads once, besides the pods, to show each of them: their containers'
/// details (with `-o wide` and the objects), their manifests, the events that count drover's
/// restarts, and the prober's verdicts.
struct PodFacts<'w> {
    world: &'w World,
    details: BTreeMap<(String, String, String), Detail>,
    manifests: BTreeMap<String, &'w drover::model::ContainerManifest>,
    mask: Option<MaskKey>,
    now: i64,
    events: drover::events::EventLog,
    unready: std::collections::BTreeSet<(String, String)>,
}

impl<'w> PodFacts<'w> {
    fn read(cx: &Context, world: &'w World, detailed: bool) -> PodFacts<'w> {
        let details = if detailed {
            details(cx, world)
        } else {
            BTreeMap::new()
        };
        let manifests = world
            .desired
            .as_ref()
            .map(drover::plan::pods::manifests_by_hash)
            .unwrap_or_default();
        let mask = mask_key(cx);
        let now = output::now_unix();
        let events = cx
            .store()
            .ok()
            .and_then(|s| drover::events::EventLog::read(&s).ok())
            .unwrap_or_default();
        let unready = judged_unready(cx);
        PodFacts {
            world,
            details,
            manifests,
            mask,
            now,
            events,
            unready,
        }
    }

    fn detail(&self, p: &ObservedPod, container: &str) -> Option<&Detail> {
        self.details
            .get(&(p.minion.clone(), p.id.clone(), container.to_string()))
    }

    /// A pod's row, its wide columns and its object.
    fn item(&self, p: &ObservedPod) -> Item {
        let ports: Vec<String> = p
            .ports
            .iter()
            .map(|port| {
                format!(
                    "{}:{}->{}/{}",
                    port.host_ip,
                    port.host_port,
                    port.container_port,
                    port.protocol.as_str()
                )
            })
            .collect();
        Item {
            id: p.id.clone(),
            labels: p.labels.clone(),
            row: vec![
                p.id.clone(),
                format!("{}/{}", self.ready(p), p.containers.len()),
                format!("{:?}", p.phase),
                p.owner.clone().unwrap_or_else(|| "<none>".into()),
                p.images().join(","),
                output::labels_text(&p.labels),
            ],
            extra: vec![
                p.minion.clone(),
                if ports.is_empty() {
                    "<none>".into()
                } else {
                    ports.join(",")
                },
                p.ip.clone().unwrap_or_else(|| "<none>".into()),
                self.restarts(p).to_string(),
                output::age(self.now - p.created as i64),
            ],
            object: self.object(p),
        }
    }

    /// Ready: running, less the probed containers of a pod the daemon's prober judged not
    /// ready (a liveness probe failing or not passed yet).
    fn ready(&self, p: &ObservedPod) -> usize {
        let running = p
            .containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .count();
        let probed = self.manifests.get(&p.template_hash).map_or(0, |m| {
            m.containers
                .iter()
                .filter(|c| c.liveness_probe.is_some())
                .count()
        });
        if self.unready.contains(&(p.minion.clone(), p.id.clone())) {
            running.saturating_sub(probed.max(1))
        } else {
            running
        }
    }

    /// Docker's restarts (its restart policy) and drover's (a failed liveness probe: Docker's
    /// restart API does not count those), told by the pod's events.
    fn restarts(&self, p: &ObservedPod) -> i64 {
        p.containers
            .iter()
            .filter_map(|c| self.detail(p, &c.name))
            .map(|d| d.restarts)
            .sum::<i64>()
            + i64::try_from(self.events.liveness_restarts(&p.id, p.created)).unwrap_or(i64::MAX)
    }

    /// The pod as v1beta1 served it: its manifest (secrets redacted) and its current state.
    fn object(&self, p: &ObservedPod) -> Value {
        let mut desired_state = json!({"host": p.minion});
        if let Some(manifest) = self.manifests.get(&p.template_hash) {
            let mut manifest = serde_json::to_value(manifest).expect("model types serialise");
            if let Some(key) = &self.mask {
                redact_secrets(&mut manifest, key);
            }
            desired_state["manifest"] = manifest;
        }
        let mut object = json!({
            "kind": "Pod",
            "id": p.id,
            "apiVersion": API_VERSION,
            "creationTimestamp": output::rfc3339(p.created as i64),
            "labels": p.labels,
            "desiredState": desired_state,
            "currentState": self.current_state(p),
        });
        if let Some(rc) = &p.owner {
            object["replicationController"] = json!(rc);
        }
        object
    }

    /// The pod's `currentState`: its phase, where it runs, and each container's state.
    fn current_state(&self, p: &ObservedPod) -> Value {
        let mut info = serde_json::Map::new();
        for c in &p.containers {
            let d = self.detail(p, &c.name);
            let state = match c.state {
                ContainerState::Waiting => json!({"waiting": {}}),
                ContainerState::Running => {
                    json!({"running": {"startedAt": d.and_then(|d| d.started.clone())}})
                }
                ContainerState::Exited { code } => json!({"termination": {
                    "exitCode": code,
                    "startedAt": d.and_then(|d| d.started.clone()),
                    "finishedAt": d.and_then(|d| d.finished.clone()),
                }}),
            };
            let mut status = json!({"image": c.image, "state": strip_nulls(state)});
            if let Some(d) = d {
                status["restartCount"] = json!(d.restarts);
            }
            info.insert(c.name.clone(), status);
        }
        let mut current = json!({
            "status": pod_status(p.phase),
            "phase": p.phase,
            "host": p.minion,
            "info": info,
        });
        let minion = self.world.minions.iter().find(|m| m.spec.name == p.minion);
        if let Some(m) = minion {
            current["hostIP"] = json!(m.spec.publish_address);
        }
        if let Some(ip) = &p.ip {
            current["podIP"] = json!(ip);
        }
        if !p.ports.is_empty() {
            // v1beta1's port fields, as in the manifest (`hostIP`).
            let ports: Vec<Value> = p
                .ports
                .iter()
                .map(|port| {
                    let mut v = json!({
                        "containerPort": port.container_port,
                        "protocol": port.protocol.as_str(),
                        "hostIP": port.host_ip,
                        "hostPort": port.host_port,
                    });
                    if let Some(name) = &port.name {
                        v["name"] = json!(name);
                    }
                    v
                })
                .collect();
            current["ports"] = json!(ports);
        }
        current
    }
}

/// Drops `null` members (`startedAt` Docker did not know).
fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.retain(|_, v| !v.is_null());
        for v in map.values_mut() {
            *v = strip_nulls(std::mem::take(v));
        }
    }
    v
}

fn rcs(cx: &Context, world: &World) -> Result<Listing, String> {
    let mask = mask_key(cx);
    let desired = world
        .desired
        .as_ref()
        .map_err(|why| format!("{why}; replication controllers come from it"))?;
    let mut items = Vec::new();
    for (o, origin) in desired.objects.values() {
        let Object::ReplicationController(rc) = o else {
            continue;
        };
        let owned = || {
            world
                .pods
                .iter()
                .filter(|p| p.owner.as_deref() == Some(rc.id.as_str()))
        };
        let current = owned()
            .filter(|p| matches!(p.phase, Phase::Running | Phase::Pending))
            .count();
        let running = owned().filter(|p| p.phase == Phase::Running).count();
        let containers = &rc
            .desired_state
            .pod_template
            .desired_state
            .manifest
            .containers;
        let mut object = serde_json::to_value(Object::ReplicationController(rc.clone()))
            .expect("model types serialise");
        // The pod template is masked like every output of drover that holds env values.
        if let Some(key) = &mask {
            redact_secrets(&mut object, key);
        }
        object["currentState"] = json!({"replicas": current, "runningReplicas": running});
        object["source"] = json!(origin.to_string());
        items.push(Item {
            id: rc.id.clone(),
            labels: rc.labels.clone(),
            row: vec![
                rc.id.clone(),
                rc.desired_state.replicas.to_string(),
                current.to_string(),
                running.to_string(),
            ],
            extra: vec![
                containers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                containers
                    .iter()
                    .map(|c| c.image.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                output::labels_text(&rc.desired_state.replica_selector),
            ],
            object,
        });
    }
    Ok(Listing {
        resource: Resource::ReplicationControllers,
        headers: &["NAME", "DESIRED", "CURRENT", "RUNNING"],
        wide_headers: &["CONTAINERS", "IMAGES", "SELECTOR"],
        items,
    })
}

/// Every service's endpoints as the minions show them now, with what the daemon last knew
/// that a look at the minions cannot tell: probes that fail, a port the proxy cannot bind.
fn service_endpoints(
    cx: &Context,
    world: &World,
    desired: &DesiredState,
) -> Vec<drover::plan::endpoints::ServiceEndpoints> {
    let stored = cx
        .store()
        .and_then(|s| drover::reconcile::project::stored_endpoints(&s))
        .unwrap_or_default();
    // Only the daemon probes: a pod whose containers declare probes is ready once what it
    // recorded says so (a pod it has not judged yet is not ready); apply records pods as it
    // saw them, unprobed.
    let judged_ready: std::collections::BTreeSet<(&str, &str)> = stored
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.ready)
        .map(|e| (e.minion.as_str(), e.pod.as_str()))
        .collect();
    let manifests = drover::plan::pods::manifests_by_hash(desired);
    let probed = |p: &drover::plan::pods::ObservedPod| {
        manifests
            .get(&p.template_hash)
            .is_some_and(|m| m.containers.iter().any(|c| c.liveness_probe.is_some()))
    };
    let publish = world
        .minions
        .iter()
        .map(|m| (m.spec.name.clone(), m.spec.publish_address.clone()))
        .collect();
    let mut services = drover::plan::endpoints::endpoints(desired, &world.pods, &publish, &|p| {
        !probed(p) || judged_ready.contains(&(p.minion.as_str(), p.id.as_str()))
    });
    for s in &mut services {
        s.error = stored
            .iter()
            .find(|t| t.name == s.name)
            .and_then(|t| t.error.clone());
    }
    services
}

/// The processes serving the services now (`drover::serving`); a store that cannot say is
/// said once, and nothing counts as served.
fn live_proxies(cx: &Context) -> Vec<drover::serving::Record> {
    match cx.store().and_then(|s| drover::serving::live(&s)) {
        Ok(live) => live,
        Err(e) => {
            super::warn_once(&format!("what serves the services is unknown: {e}"));
            Vec::new()
        }
    }
}

/// A service's proxy state in `-o json`: `{"state": "served", "servedBy": [...]}`,
/// `{"state": "failing", "error": ...}` or `{"state": "notServed"}`.
fn proxy_json(state: &drover::serving::State) -> serde_json::Value {
    use drover::serving::State;
    match state {
        State::Served(by) => json!({"state": "served", "servedBy": by}),
        State::Failing(why) => json!({"state": "failing", "error": why}),
        State::NotServed => json!({"state": "notServed"}),
    }
}

fn services(cx: &Context, world: &World) -> Result<Listing, String> {
    let desired = world
        .desired
        .as_ref()
        .map_err(|why| format!("{why}; services come from it"))?;
    let endpoints = service_endpoints(cx, world, desired);
    let serving = live_proxies(cx);
    if let Some(why) = super::proxy_settings(cx)
        .ok()
        .and_then(|p| p.advertise_unserved())
    {
        super::warn_once(&why);
    }
    let mut items = Vec::new();
    for (o, origin) in desired.objects.values() {
        let Object::Service(s) = o else { continue };
        let Some(e) = endpoints.iter().find(|e| e.name == s.id) else {
            continue;
        };
        let ready: Vec<&str> = e
            .endpoints
            .iter()
            .filter(|e| e.ready)
            .filter_map(|e| e.address.as_deref())
            .collect();
        let mut object =
            serde_json::to_value(Object::Service(s.clone())).expect("model types serialise");
        let proxy = drover::serving::state_of(&s.id, &serving);
        let mut current = json!({"endpoints": e.endpoints, "proxy": proxy_json(&proxy)});
        if let drover::serving::State::Failing(error) = &proxy {
            current["proxyError"] = json!(error);
        }
        object["currentState"] = current;
        object["source"] = json!(origin.to_string());
        items.push(Item {
            id: s.id.clone(),
            labels: s.labels.clone(),
            row: vec![
                s.id.clone(),
                format!("{}/{}", s.port, s.protocol.as_str()),
                output::labels_text(&s.selector),
                format!("{}/{}", ready.len(), e.endpoints.len()),
                proxy.summary(),
            ],
            extra: vec![if ready.is_empty() {
                "<none>".into()
            } else {
                ready.join(",")
            }],
            object,
        });
    }
    Ok(Listing {
        resource: Resource::Services,
        headers: &["NAME", "PORT", "SELECTOR", "READY", "PROXY"],
        wide_headers: &["ENDPOINTS"],
        items,
    })
}

/// `describe pod NAME` / `describe rc NAME`: where it runs and in what state, and for pods that
/// are not running anywhere, why the scheduler cannot place them.
/// Pods wanted but on no minion: Pending with why (the scheduler's reason, or the back-off
/// the daemon's events tell: `ImagePullBackOff`, `CreateContainerBackOff`).
fn not_made(cx: &Context, world: &World) -> Vec<Item> {
    // Without every minion's answer a pod may well run on the silent one.
    let Some(desired) = world
        .desired
        .as_ref()
        .ok()
        .filter(|_| world.errors.is_empty())
    else {
        return Vec::new();
    };
    let plan = drover::plan::pods::plan(desired, &world.pods, &world.views);
    let events = cx
        .store()
        .ok()
        .and_then(|s| drover::events::EventLog::read(&s).ok())
        .unwrap_or_default();
    // A back-off told in the last ten minutes still holds (the longest wait is five).
    let recent = output::now_unix().saturating_sub(600) as u64;
    let backoff = |id: &str| {
        let object = drover::events::ObjectRef::new("Pod", id);
        events
            .of(&object)
            .filter(|e| e.reason == "BackOff" && e.last_seen >= recent)
            .last()
            .map(|e| {
                let reason = e.message.split(':').next().unwrap_or("BackOff").to_string();
                (reason, e.message.clone())
            })
    };
    let mut items = Vec::new();
    for action in &plan.actions {
        let drover::plan::pods::Action::CreatePod { pod, .. } = action else {
            continue;
        };
        let (status, why) = backoff(&pod.id).unwrap_or(("Pending".into(), String::new()));
        let images: Vec<&str> = pod
            .manifest
            .containers
            .iter()
            .map(|c| c.image.as_str())
            .collect();
        let owner = pod.owner.as_deref();
        items.push(waiting_item(
            &pod.id,
            owner,
            &pod.labels,
            &images,
            &status,
            &why,
        ));
    }
    for (id, why) in &plan.unschedulable {
        items.push(waiting_item(
            id,
            None,
            &Default::default(),
            &[],
            "Pending",
            why,
        ));
    }
    items
}

fn waiting_item(
    id: &str,
    owner: Option<&str>,
    labels: &drover::model::Labels,
    images: &[&str],
    status: &str,
    why: &str,
) -> Item {
    let object = json!({
        "kind": "Pod",
        "id": id,
        "apiVersion": API_VERSION,
        "labels": labels,
        "currentState": {"status": "Waiting", "phase": "Pending", "reason": status, "message": why},
    });
    Item {
        id: id.to_string(),
        labels: labels.clone(),
        row: vec![
            id.to_string(),
            format!("0/{}", images.len()),
            status.to_string(),
            owner.unwrap_or("<none>").to_string(),
            images.join(","),
            output::labels_text(labels),
        ],
        extra: vec![
            "<none>".into(),
            "<none>".into(),
            "<none>".into(),
            "0".into(),
            "-".into(),
        ],
        object,
    }
}

/// `describe`: the object, then its events. An object that is neither running nor wanted is
/// NotFound with nothing on stdout, as kubectl has it (`get events` still shows its past).
pub fn describe(cx: &Context, resource: Resource, name: &str) -> ExitCode {
    if resource == Resource::Minions || resource == Resource::Events {
        return fail(&"describe shows pods, replication controllers and services; for a minion use `drover get minions NAME -o wide`, for events `drover get events --for KIND/NAME`");
    }
    match describe_object(cx, resource, name) {
        Ok(()) => {
            super::events::describe_section(cx, resource.kind(), name);
            ExitCode::from(EXIT_OK)
        }
        Err(code) => code,
    }
}

/// Prints the object; or reports why not (NotFound, the source's problem) and returns the
/// exit code.
fn describe_object(cx: &Context, resource: Resource, name: &str) -> Result<(), ExitCode> {
    let world = observe(cx).map_err(|e| fail(&e))?;
    let mut out = std::io::stdout().lock();
    match resource {
        Resource::Pods => describe_pods(cx, &world, name, &mut out)?,
        Resource::Services => describe_service(cx, &world, name, &mut out)?,
        Resource::ReplicationControllers => describe_rc(&world, name, &mut out)?,
        Resource::Minions | Resource::Events => unreachable!("refused above"),
    }
    for e in &world.errors {
        eprintln!("drover: warning: {e}");
    }
    Ok(())
}

/// `resource` `name` is not found: said, with the minions that did not answer (a silent
/// minion may hold it). The exit code.
fn not_found(world: &World, resource: Resource, name: &str) -> ExitCode {
    for e in &world.errors {
        eprintln!("drover: warning: {e}");
    }
    eprintln!("{}", output::not_found(resource, name));
    ExitCode::from(EXIT_DIFFERENCES)
}

/// Every pod named `name` (one per minion, normally), its containers as the list call gives
/// them and as inspect adds; or, when none runs, why a wanted one does not.
fn describe_pods(
    cx: &Context,
    world: &World,
    name: &str,
    out: &mut impl Write,
) -> Result<(), ExitCode> {
    let found: Vec<&ObservedPod> = world.pods.iter().filter(|p| p.id == name).collect();
    let runtime = super::runtime();
    for p in &found {
        let _ = writeln!(out, "Name:        {}\nMinion:      {}\nPhase:       {:?}\nController:  {}\nLabels:      {}\nContainers:",
            p.id, p.minion, p.phase, p.owner.as_deref().unwrap_or("-"), labels_text(&p.labels));
        let minion = world.minions.iter().find(|m| m.spec.name == p.minion);
        for c in &p.containers {
            let _ = writeln!(
                out,
                "  {}:\n    Image:      {}\n    State:      {}",
                c.name, c.image, c.state
            );
            // The list call gives the state; inspect adds when and how often.
            let Some(minion) = minion else { continue };
            let name = drover::minion::pods::name_in(&cx.project, p, &c.name);
            let inspected = runtime.block_on(minion.inspect_container(&name));
            match inspected {
                Ok(info) => {
                    let state = info.state.unwrap_or_default();
                    let when = |t: Option<String>| {
                        t.filter(|t| !t.starts_with("0001-"))
                            .unwrap_or_else(|| "-".into())
                    };
                    let _ = writeln!(
                        out,
                        "    Started:    {}\n    Finished:   {}\n    Restarts:   {}",
                        when(state.started_at),
                        when(state.finished_at),
                        info.restart_count.unwrap_or(0)
                    );
                    if let Some(error) = state.error.filter(|e| !e.is_empty()) {
                        let _ = writeln!(out, "    Error:      {error}");
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "    Details:    unavailable ({e})");
                }
            }
        }
    }
    if found.is_empty() {
        describe_unmade_pod(world, name, out)?;
    }
    Ok(())
}

/// A pod that does not run: if it is wanted, why it is Pending (or Unknown, behind a silent
/// minion); if not, NotFound.
fn describe_unmade_pod(world: &World, name: &str, out: &mut impl Write) -> Result<(), ExitCode> {
    let Ok(desired) = &world.desired else {
        return Err(not_found(world, Resource::Pods, name));
    };
    let plan = drover::plan::pods::plan(desired, &world.pods, &world.views);
    let to_create = plan
        .actions
        .iter()
        .any(|a| matches!(a, drover::plan::pods::Action::CreatePod { pod, .. } if pod.id == name));
    let unschedulable = plan.unschedulable.iter().find(|(id, _)| id == name);
    let (phase, reason) = match unschedulable {
        _ if !to_create && unschedulable.is_none() => {
            return Err(not_found(world, Resource::Pods, name))
        }
        // A silent minion may well run it (as in `not_made`): not known.
        _ if !world.errors.is_empty() => {
            let silent: Vec<&str> = world.errors.iter().map(|e| e.minion.as_str()).collect();
            let reason = format!(
                "not seen: {} did not answer, and it may run there",
                silent.join(", ")
            );
            ("Unknown", reason)
        }
        Some((_, reason)) => ("Pending", reason.clone()),
        // Placeable but not made yet, or backing off: its events tell why.
        None => ("Pending", "not created yet (see its events)".into()),
    };
    let _ = writeln!(
        out,
        "Name:        {name}\nPhase:       {phase}\nReason:      {reason}"
    );
    Ok(())
}

/// A service: what it selects, what serves it, and each endpoint with its readiness.
fn describe_service(
    cx: &Context,
    world: &World,
    name: &str,
    out: &mut impl Write,
) -> Result<(), ExitCode> {
    let desired = world
        .desired
        .as_ref()
        .map_err(|why| fail(&format!("{why}; services come from it")))?;
    let Some(s) = service_endpoints(cx, world, desired)
        .into_iter()
        .find(|s| s.name == name)
    else {
        return Err(not_found(world, Resource::Services, name));
    };
    let _ = writeln!(
        out,
        "Name:             {}\nPort:             {}/{}\nSelector:         {}\nContainer port:   {}\nSession affinity: {:?}\nProxy:            {}\nEndpoints:",
        s.name,
        s.port,
        s.protocol.as_str(),
        labels_text(&s.selector),
        s.container_port.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "(the first port)".into()),
        s.session_affinity,
        drover::serving::state_of(&s.name, &live_proxies(cx)).detail(),
    );
    if s.endpoints.is_empty() {
        let _ = writeln!(out, "  <none>");
    }
    for e in &s.endpoints {
        let _ = writeln!(
            out,
            "  {:<22} pod {} on {}: {}",
            e.address.as_deref().unwrap_or("-"),
            e.pod,
            e.minion,
            match &e.reason {
                None => "ready".to_string(),
                Some(r) => format!("not ready ({r})"),
            }
        );
    }
    Ok(())
}

/// A replication controller: where it is defined, what it wants, and its pods.
fn describe_rc(world: &World, name: &str, out: &mut impl Write) -> Result<(), ExitCode> {
    let desired = world
        .desired
        .as_ref()
        .map_err(|why| fail(&format!("{why}; replication controllers come from it")))?;
    let rc = desired.objects.values().find_map(|(o, origin)| match o {
        Object::ReplicationController(r) if r.id == name => Some((r.clone(), origin.clone())),
        _ => None,
    });
    let Some((rc, origin)) = rc else {
        return Err(not_found(world, Resource::ReplicationControllers, name));
    };
    let _ = writeln!(
        out,
        "Name:        {}\nSource:      {origin}\nSelector:    {}\nReplicas:    {} desired",
        rc.id,
        labels_text(&rc.desired_state.replica_selector),
        rc.desired_state.replicas
    );
    let _ = writeln!(out, "Pods:");
    for p in world
        .pods
        .iter()
        .filter(|p| p.owner.as_deref() == Some(rc.id.as_str()))
    {
        let _ = writeln!(out, "  {}  {}  {:?}", p.id, p.minion, p.phase);
    }
    Ok(())
}

/// What `drover logs` asks for.
pub struct LogsOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub tail: Option<u64>,
    pub since: Option<std::time::Duration>,
    pub timestamps: bool,
    pub previous: bool,
}

/// The one container of a pod a command means: the one named with -c, or the only one.
pub(crate) fn choose_container(p: &ObservedPod, container: Option<&str>) -> Result<String, String> {
    let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
    match container {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(format!(
            "pod {} has no container `{c}` (it has {})",
            p.id,
            names.join(", ")
        )),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None => Err(format!(
            "pod {} has several containers; choose one with -c ({})",
            p.id,
            names.join(", ")
        )),
    }
}

/// Finds a pod on the minions: the pod and its minion, or the exit code already reported
/// (NotFound: 1; the minions cannot be asked: 2).
pub(crate) fn find_pod(cx: &Context, pod: &str) -> Result<(ObservedPod, Arc<Minion>), ExitCode> {
    let world = observe(cx).map_err(|e| fail(&e))?;
    let Some(p) = world.pods.iter().find(|p| p.id == pod) else {
        for e in &world.errors {
            eprintln!("drover: warning: {e}; its pods were not seen");
        }
        eprintln!("{}", output::not_found(Resource::Pods, pod));
        return Err(ExitCode::from(EXIT_DIFFERENCES));
    };
    let minion = world
        .minions
        .iter()
        .find(|m| m.spec.name == p.minion)
        .cloned()
        .ok_or_else(|| ExitCode::from(EXIT_ERROR))?;
    Ok((p.clone(), minion))
}

/// `logs POD [-c CONTAINER] [-f] [--tail N] [--since D] [--timestamps] [-p]`.
///
/// Docker keeps one log per container across its restarts, so `--previous` is the output
/// written before the current run started (every earlier run, to the second), and only while
/// the container exists: a pod drover replaced took its containers' logs with it.
pub fn logs(cx: &Context, pod: &str, opts: &LogsOptions) -> ExitCode {
    let (p, minion) = match find_pod(cx, pod) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let chosen = match choose_container(&p, opts.container.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let id = drover::minion::pods::name_in(&cx.project, &p, &chosen);
    let runtime = super::runtime();
    let result: Result<(), String> = runtime.block_on(async {
        let mut query = drover::minion::LogQuery {
            follow: opts.follow,
            timestamps: opts.timestamps,
            tail: opts.tail,
            since: opts
                .since
                .map(|d| (output::now_unix() - d.as_secs() as i64).max(0) as i32),
            until: None,
        };
        // With --previous: Docker's restart count, to tell "no earlier run" from "an earlier
        // run that wrote nothing".
        let mut restarts = None;
        if opts.previous {
            let info = minion
                .inspect_container(&id)
                .await
                .map_err(|e| e.to_string())?;
            restarts = Some(info.restart_count.unwrap_or(0));
            let started = info.state.and_then(|s| s.started_at).unwrap_or_default();
            // Docker compares `until` in whole seconds: the second of the restart is
            // included, as a crash's last words come right before it (the current run's first
            // lines of that second show too).
            let start = unix_of_rfc3339(&started).ok_or_else(|| {
                format!("container {chosen}: Docker gave no start time (`{started}`)")
            })?;
            query.until = Some(start as i32);
            query.follow = false;
        }
        let mut stream = Box::pin(minion.logs_with(&id, &query));
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        let mut written = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            written += chunk.as_ref().len();
            let _ = match chunk {
                bollard::container::LogOutput::StdErr { message } => {
                    err.write_all(&message).and_then(|_| err.flush())
                }
                other => out
                    .write_all(&other.into_bytes())
                    .and_then(|_| out.flush()),
            };
        }
        if written == 0 && restarts == Some(0) {
            return Err(format!(
                "previous terminated container \"{chosen}\" in pod \"{pod}\" not found (Docker has not restarted it and it wrote nothing before its current run)"
            ));
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => fail(&e),
    }
}

/// Unix seconds of Docker's RFC 3339 timestamps (`2026-11-28T23:15:04.123456789Z`).
pub(crate) fn unix_of_rfc3339(t: &str) -> Option<i64> {
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let time = time.split(['+', '.']).next()?;
    let mut hms = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    // days-from-civil (Howard Hinnant), the inverse of output::rfc3339.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_timestamps_read_back() {
        for t in [0, 951_782_400, 1_420_070_399, 1_798_500_000] {
            let text = super::output::rfc3339(t);
            assert_eq!(super::unix_of_rfc3339(&text), Some(t), "{text}");
        }
        assert_eq!(
            super::unix_of_rfc3339("2026-12-28T23:20:00.123456789Z"),
            Some(1_798_500_000)
        );
        assert_eq!(super::unix_of_rfc3339("garbage"), None);
    }
}
