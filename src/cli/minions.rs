//! `drover get minions` and `drover minions trust`.

use super::{fail, Context, EXIT_ERROR, EXIT_OK};
use drover::minion::{minion_specs, Minion, MinionSpec, MinionStatus, TransportSpec};
use std::io::Write;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum GetOutput {
    Table,
    Wide,
    Json,
}

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
                d.len()
            );
            None
        }
    };
    minion_specs(&cx.settings, &cx.project, desired.as_ref())
}

pub fn get(cx: &Context, name: Option<&str>, output: GetOutput) -> ExitCode {
    let specs = match specs(cx) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let specs: Vec<MinionSpec> = specs
        .into_iter()
        .filter(|s| name.is_none_or(|n| s.name == n))
        .collect();
    if let (Some(n), true) = (name, specs.is_empty()) {
        return fail(&format!("no minion named `{n}`"));
    }
    let runtime = super::runtime();
    let statuses: Vec<MinionStatus> = runtime.block_on(async {
        let minions: Vec<Minion> = specs
            .into_iter()
            .filter_map(|s| Minion::new(s).ok())
            .collect();
        futures_util::future::join_all(minions.iter().map(|m| m.status())).await
    });
    let mut out = std::io::stdout().lock();
    let _ = match output {
        GetOutput::Json => serde_json::to_writer_pretty(&mut out, &statuses)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out)),
        GetOutput::Table | GetOutput::Wide => table(&statuses, matches!(output, GetOutput::Wide)),
    };
    ExitCode::from(EXIT_OK)
}

fn state(s: &MinionStatus) -> &'static str {
    match (s.health.reachable, s.health.ready) {
        (_, true) => "Ready",
        (true, false) => "NotReady",
        (false, false) => "Unreachable",
    }
}

fn table(statuses: &[MinionStatus], wide: bool) -> std::io::Result<()> {
    let mut rows = vec![vec![
        "NAME",
        "ADDRESS",
        "STATUS",
        "CPU",
        "MEMORY",
        "CONTAINERS",
        "DOCKER",
        "LABELS",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>()];
    if wide {
        rows[0].push("PROJECT".into());
        rows[0].push("LAST ERROR".into());
    }
    for s in statuses {
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut row = vec![
            s.name.clone(),
            s.address.clone(),
            state(s).to_string(),
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
            if labels.is_empty() {
                "-".into()
            } else {
                labels.join(",")
            },
        ];
        if wide {
            row.push(s.project.clone());
            row.push(s.health.last_error.clone().unwrap_or_else(|| "-".into()));
        }
        rows.push(row);
    }
    super::print_table(rows);
    Ok(())
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
