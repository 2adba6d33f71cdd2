//! `drover get minions` and `drover minions trust`.

use super::output::{self, Item, Listing, Resource};
use super::{fail, Context, EXIT_ERROR, EXIT_OK};
use drover::minion::{minion_specs, Health, MinionSpec, MinionStatus, TransportSpec};
use drover::model::API_VERSION;
use serde_json::json;
use std::process::ExitCode;

/// The minions: config plus the source's Minion manifests when the source can be read.
pub fn specs(cx: &Context) -> Result<Vec<MinionSpec>, String> {
    let spec = cx.settings.source(None, None, None);
    let desired = match super::load_desired(cx, &spec) {
        Ok((d, _)) => Some(d),
        // No source is fine for looking at minions; a broken one is worth a word.
        Err(super::LoadError::Source(_) | super::LoadError::Refused(_)) => None,
        Err(super::LoadError::Invalid(d)) => {
            eprintln!(
                "drover: warning: {} has {} invalid manifest(s); showing configured minions only",
                spec.describe(),
                d.errors.len()
            );
            None
        }
    };
    minion_specs(&cx.settings, &cx.project, desired.as_ref())
}

/// Every minion with its status, for `get minions`. A minion that cannot even be set up (a
/// local Docker socket that does not exist) is listed NotReady with the reason, not left out.
pub fn listing(cx: &Context, detailed: bool) -> Result<Listing, String> {
    let specs = specs(cx)?;
    // Cordoned by a record beside the state, or by git.
    let cordoned = cx
        .store()
        .ok()
        .and_then(|s| drover::reconcile::cordons::read(&s).ok())
        .unwrap_or_default();
    let specs_cordoned: Vec<String> = specs
        .iter()
        .filter(|s| s.unschedulable)
        .map(|s| s.name.clone())
        .collect();
    let runtime = super::runtime();
    let statuses: Vec<MinionStatus> = runtime.block_on(async {
        let checks = specs.into_iter().map(|s| async move {
            match super::kept_minion(s.clone()) {
                Ok(m) => m.status().await,
                Err(e) => MinionStatus {
                    name: s.name.clone(),
                    address: s.address.clone(),
                    health: Health {
                        reachable: matches!(s.transport, TransportSpec::Local),
                        ready: false,
                        last_seen: None,
                        last_error: Some(e.message),
                    },
                    docker_version: None,
                    capacity: s.capacity,
                    labels: s.labels.clone(),
                    project: s.project.clone(),
                    managed_containers: None,
                },
            }
        });
        futures_util::future::join_all(checks).await
    });
    // The table has no room for why a minion is not Ready: say it on stderr.
    if !detailed {
        for s in statuses.iter().filter(|s| !s.health.ready) {
            super::warn_once(&format!(
                "minion {} ({}) is {}: {}",
                s.name,
                s.address,
                state(s),
                s.health.last_error.as_deref().unwrap_or("no answer")
            ));
        }
    }
    Ok(Listing {
        resource: Resource::Minions,
        headers: &[
            "NAME",
            "ADDRESS",
            "STATUS",
            "CPU",
            "MEMORY",
            "CONTAINERS",
            "DOCKER",
            "LABELS",
        ],
        wide_headers: &["PROJECT", "REASON"],
        items: statuses
            .iter()
            .map(|s| {
                let spec_says = specs_cordoned.contains(&s.name);
                item(s, spec_says || cordoned.contains_key(&s.name))
            })
            .collect(),
    })
}

fn state(s: &MinionStatus) -> &'static str {
    match (s.health.reachable, s.health.ready) {
        (_, true) => "Ready",
        (true, false) => "NotReady",
        (false, false) => "Unreachable",
    }
}

/// A minion in v1beta1's shape (`status.conditions` of kinds Reachable and Ready), with
/// `unschedulable` when it is cordoned (shown as kubectl does: `Ready,SchedulingDisabled`).
fn item(s: &MinionStatus, unschedulable: bool) -> Item {
    let shown = if unschedulable {
        format!("{},SchedulingDisabled", state(s))
    } else {
        state(s).to_string()
    };
    let condition = |kind: &str, ok: bool| {
        let mut c = json!({"kind": kind, "status": if ok { "Full" } else { "None" }});
        if let Some(t) = s.health.last_seen {
            c["lastProbeTime"] = json!(output::system_time_rfc3339(t));
        }
        if let (false, Some(e)) = (ok, &s.health.last_error) {
            c["reason"] = json!(e);
        }
        c
    };
    let mut status = json!({
        "phase": state(s),
        "conditions": [
            condition("Reachable", s.health.reachable),
            condition("Ready", s.health.ready),
        ],
    });
    if let Some(v) = &s.docker_version {
        status["nodeInfo"] = json!({"dockerVersion": v});
    }
    if let Some(n) = s.managed_containers {
        status["managedContainers"] = json!(n);
    }
    let object = json!({
        "kind": "Minion",
        "id": s.name,
        "apiVersion": API_VERSION,
        "hostIP": s.address,
        "labels": s.labels,
        "resources": {"capacity": s.capacity},
        "project": s.project,
        "unschedulable": unschedulable,
        "status": status,
    });
    Item {
        id: s.name.clone(),
        labels: s.labels.clone(),
        row: vec![
            s.name.clone(),
            s.address.clone(),
            shown,
            s.capacity
                .cpu
                .map(|c| format!("{c}m"))
                .unwrap_or_else(|| "-".into()),
            s.capacity
                .memory
                .map(human_bytes)
                .unwrap_or_else(|| "-".into()),
            s.managed_containers
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            s.docker_version.clone().unwrap_or_else(|| "-".into()),
            output::labels_text(&s.labels),
        ],
        extra: vec![
            s.project.clone(),
            s.health.last_error.clone().unwrap_or_else(|| "-".into()),
        ],
        object,
    }
}

fn human_bytes(b: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if b >= GIB {
        format!("{:.1}Gi", b as f64 / GIB as f64)
    } else {
        format!("{}Mi", b / MIB)
    }
}

/// Fetches a minion's host key and writes it to known_hosts, after showing its fingerprint.
pub fn trust(cx: &Context, name: &str, replace: bool) -> ExitCode {
    let specs = match specs(cx) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let Some(spec) = specs.into_iter().find(|s| s.name == name) else {
        return fail(&format!("no minion named `{name}`"));
    };
    let TransportSpec::Ssh(target) = spec.transport else {
        return fail(&format!("minion `{name}` is local: it has no host key"));
    };
    match drover::minion::ssh::trust_host_key(&target, replace) {
        Ok((fingerprint, file)) => {
            println!(
                "trusted {} ({}) host key {fingerprint}; written to {}",
                name,
                target.known_hosts_name(),
                file.display()
            );
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("drover: error: minion {name} ({}): {e}", target.host);
            ExitCode::from(EXIT_ERROR)
        }
    }
}
