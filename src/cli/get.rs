//! `drover get pods|rc|services`, `drover describe`, `drover logs`: what runs where, read from
//! the minions themselves (the labels on drover's containers) and the source.

use super::{fail, Context, EXIT_ERROR, EXIT_OK};
use drover::minion::{Minion, MinionError};
use drover::model::{selector_matches, DesiredState, Labels, Object};
use drover::plan::pods::{ObservedPod, Phase};
use futures_util::StreamExt;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// `key=value,key=value` as a label selector.
pub fn parse_selector(s: &str) -> Result<Labels, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("bad selector `{p}`: use key=value[,key=value]"))
        })
        .collect()
}

struct World {
    desired: Option<DesiredState>,
    minions: Vec<Arc<Minion>>,
    pods: Vec<ObservedPod>,
    errors: Vec<MinionError>,
    /// What the scheduler would see, capacity read from Docker.
    views: Vec<drover::plan::scheduler::MinionView>,
}

fn observe(cx: &Context) -> Result<World, String> {
    let spec = cx.settings.source(None, None, None);
    let desired = super::load_desired(cx, &spec).ok().map(|(d, _)| d);
    let minions = super::minions(cx, desired.as_ref())?;
    // What this project's store recorded decides which pods of an older drover are its own.
    let index = drover::store::Store::new(&cx.state_dir)
        .read_index()
        .map_err(|e| e.to_string())?;
    let (seen, errors) = super::runtime().block_on(drover::reconcile::observe_all(
        &minions,
        &drover::reconcile::project::adoptable(&index),
    ));
    Ok(World {
        desired,
        minions,
        pods: seen.pods,
        errors,
        views: seen.minions,
    })
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodRow<'a> {
    id: &'a str,
    minion: &'a str,
    phase: Phase,
    replication_controller: Option<&'a str>,
    labels: &'a Labels,
    images: Vec<&'a str>,
}

pub fn pods(cx: &Context, name: Option<&str>, selector: &Labels, json: bool) -> ExitCode {
    let world = match observe(cx) {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    for e in &world.errors {
        eprintln!("drover: warning: {e}");
    }
    let rows: Vec<PodRow> = world
        .pods
        .iter()
        .filter(|p| name.is_none_or(|n| p.id == n))
        .filter(|p| selector.is_empty() || selector_matches(selector, &p.labels))
        .map(|p| PodRow {
            id: &p.id,
            minion: &p.minion,
            phase: p.phase,
            replication_controller: p.owner.as_deref(),
            labels: &p.labels,
            images: p.images(),
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serialises")
        );
    } else {
        let mut table = vec![["NAME", "MINION", "PHASE", "RC", "IMAGES", "LABELS"]
            .map(String::from)
            .to_vec()];
        for r in &rows {
            table.push(vec![
                r.id.to_string(),
                r.minion.to_string(),
                format!("{:?}", r.phase),
                r.replication_controller.unwrap_or("-").to_string(),
                r.images.join(","),
                labels_text(r.labels),
            ]);
        }
        super::print_table(table);
    }
    ExitCode::from(EXIT_OK)
}

pub fn rcs(cx: &Context, name: Option<&str>, selector: &Labels, json: bool) -> ExitCode {
    let world = match observe(cx) {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    let Some(desired) = &world.desired else {
        return fail(&"the source cannot be read; replication controllers come from it");
    };
    let mut table = vec![["NAME", "DESIRED", "CURRENT", "SELECTOR", "IMAGES"]
        .map(String::from)
        .to_vec()];
    let mut rows = Vec::new();
    for (o, _) in desired.objects.values() {
        let Object::ReplicationController(rc) = o else {
            continue;
        };
        if name.is_some_and(|n| rc.id != n)
            || !(selector.is_empty() || selector_matches(selector, &rc.labels))
        {
            continue;
        }
        let current = world
            .pods
            .iter()
            .filter(|p| {
                p.owner.as_deref() == Some(rc.id.as_str())
                    && matches!(p.phase, Phase::Running | Phase::Pending)
            })
            .count();
        let images: Vec<String> = rc
            .desired_state
            .pod_template
            .desired_state
            .manifest
            .containers
            .iter()
            .map(|c| c.image.clone())
            .collect();
        table.push(vec![
            rc.id.clone(),
            rc.desired_state.replicas.to_string(),
            current.to_string(),
            labels_text(&rc.desired_state.replica_selector),
            images.join(","),
        ]);
        rows.push(serde_json::json!({"id": rc.id, "replicas": rc.desired_state.replicas, "current": current,
            "selector": rc.desired_state.replica_selector, "images": images}));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serialises")
        );
    } else {
        super::print_table(table);
    }
    ExitCode::from(EXIT_OK)
}

/// Every service's endpoints as the minions show them now, with what the daemon last knew
/// that a look at the minions cannot tell: probes that fail, a port the proxy cannot bind.
fn service_endpoints(
    cx: &Context,
    world: &World,
    desired: &DesiredState,
) -> Vec<drover::plan::endpoints::ServiceEndpoints> {
    let stored =
        drover::reconcile::project::stored_endpoints(&drover::store::Store::new(&cx.state_dir))
            .unwrap_or_default();
    let failing: std::collections::BTreeSet<(&str, &str)> = stored
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.reason.as_deref() == Some("liveness probe failing"))
        .map(|e| (e.minion.as_str(), e.pod.as_str()))
        .collect();
    let publish = world
        .minions
        .iter()
        .map(|m| (m.spec.name.clone(), m.spec.publish_address.clone()))
        .collect();
    let mut services = drover::plan::endpoints::endpoints(desired, &world.pods, &publish, &|p| {
        !failing.contains(&(p.minion.as_str(), p.id.as_str()))
    });
    for s in &mut services {
        s.error = stored
            .iter()
            .find(|t| t.name == s.name)
            .and_then(|t| t.error.clone());
    }
    services
}

pub fn services(cx: &Context, name: Option<&str>, selector: &Labels, json: bool) -> ExitCode {
    let world = match observe(cx) {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    let Some(desired) = &world.desired else {
        return fail(&"the source cannot be read; services come from it");
    };
    let wanted: std::collections::BTreeSet<&str> = desired
        .objects
        .values()
        .filter_map(|(o, _)| match o {
            Object::Service(s)
                if name.is_none_or(|n| s.id == n)
                    && (selector.is_empty() || selector_matches(selector, &s.labels)) =>
            {
                Some(s.id.as_str())
            }
            _ => None,
        })
        .collect();
    let services: Vec<_> = service_endpoints(cx, &world, desired)
        .into_iter()
        .filter(|s| wanted.contains(s.name.as_str()))
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&services).expect("serialises")
        );
        return ExitCode::from(EXIT_OK);
    }
    let mut table = vec![["NAME", "PORT", "SELECTOR", "ENDPOINTS", "PROXY"]
        .map(String::from)
        .to_vec()];
    for s in &services {
        let ready: Vec<String> = s
            .endpoints
            .iter()
            .filter(|e| e.ready)
            .filter_map(|e| e.address.clone())
            .collect();
        let not_ready = s.endpoints.len() - ready.len();
        let mut endpoints = if ready.is_empty() {
            "<none>".to_string()
        } else {
            ready.join(",")
        };
        if not_ready > 0 {
            endpoints.push_str(&format!(" (+{not_ready} not ready)"));
        }
        table.push(vec![
            s.name.clone(),
            format!("{}/{}", s.port, s.protocol.as_str()),
            labels_text(&s.selector),
            endpoints,
            s.error.clone().unwrap_or_else(|| "ok".into()),
        ]);
    }
    super::print_table(table);
    ExitCode::from(EXIT_OK)
}

/// `describe pod NAME` / `describe rc NAME`: where it runs and in what state, and for pods that
/// are not running anywhere, why the scheduler cannot place them.
/// `describe`: the object, then its events (also when the object is gone: they tell why).
pub fn describe(cx: &Context, kind: &str, name: &str) -> ExitCode {
    let code = describe_object(cx, kind, name);
    super::events::describe_section(cx, kind, name);
    code
}

fn describe_object(cx: &Context, kind: &str, name: &str) -> ExitCode {
    let world = match observe(cx) {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    let mut out = std::io::stdout().lock();
    match kind {
        "pod" | "pods" => {
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
                // Not running: if it is wanted, say why it is Pending.
                let Some(desired) = &world.desired else {
                    return fail(&format!("no pod named `{name}`"));
                };
                let plan = drover::plan::pods::plan(desired, &world.pods, &world.views);
                match plan.unschedulable.iter().find(|(id, _)| id == name) {
                    Some((_, reason)) => {
                        let _ = writeln!(
                            out,
                            "Name:        {name}\nPhase:       Pending\nReason:      {reason}"
                        );
                    }
                    None => {
                        return fail(&format!(
                            "no pod named `{name}` is running or waiting to be placed"
                        ))
                    }
                }
            }
        }
        "service" | "services" | "svc" => {
            let Some(desired) = &world.desired else {
                return fail(&"the source cannot be read; services come from it");
            };
            let Some(s) = service_endpoints(cx, &world, desired)
                .into_iter()
                .find(|s| s.name == name)
            else {
                return fail(&format!("no service named `{name}` in the source"));
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
                s.error.as_deref().unwrap_or("ok"),
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
        }
        "rc" | "replicationcontroller" | "replicationcontrollers" => {
            let rc = world.desired.as_ref().and_then(|d| {
                d.objects.values().find_map(|(o, origin)| match o {
                    Object::ReplicationController(r) if r.id == name => {
                        Some((r.clone(), origin.clone()))
                    }
                    _ => None,
                })
            });
            let Some((rc, origin)) = rc else {
                return fail(&format!(
                    "no replication controller named `{name}` in the source"
                ));
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
        }
        other => {
            return fail(&format!(
                "cannot describe `{other}`: use pod, rc or service"
            ))
        }
    }
    for e in &world.errors {
        eprintln!("drover: warning: {e}");
    }
    ExitCode::from(EXIT_OK)
}

/// `logs POD [-c CONTAINER] [-f]`.
pub fn logs(cx: &Context, pod: &str, container: Option<&str>, follow: bool) -> ExitCode {
    let world = match observe(cx) {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    let Some(p) = world.pods.iter().find(|p| p.id == pod) else {
        return fail(&format!("no pod named `{pod}` on any reachable minion"));
    };
    let Some(minion) = world
        .minions
        .iter()
        .find(|m| m.spec.name == p.minion)
        .cloned()
    else {
        return ExitCode::from(EXIT_ERROR);
    };
    let runtime = super::runtime();
    let result: Result<(), String> = runtime.block_on(async {
        let names: Vec<String> = p.containers.iter().map(|c| c.name.clone()).collect();
        let chosen = match container {
            Some(c) if names.iter().any(|n| n == c) => c.to_string(),
            Some(c) => {
                return Err(format!(
                    "pod {pod} has no container `{c}` (it has {})",
                    names.join(", ")
                ))
            }
            None if names.len() == 1 => names[0].clone(),
            None => {
                return Err(format!(
                    "pod {pod} has several containers; choose one with -c ({})",
                    names.join(", ")
                ))
            }
        };
        let mut stream = Box::pin(minion.logs(
            &drover::minion::pods::name_in(&cx.project, p, &chosen),
            follow,
        ));
        let mut out = std::io::stdout();
        while let Some(chunk) = stream.next().await {
            let text = chunk.map_err(|e| e.to_string())?;
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => fail(&e),
    }
}
