//! `drover state migrate --to LOCATION`: copies the project's state between a directory and
//! etcd (either way). Both stores are locked while it copies (nobody writes the source, nobody
//! else fills the target); the target must hold no state; its index goes last, so a copy cut
//! short leaves the target without state, never half of one.

use super::{fail, Context, EXIT_OK};
use std::process::ExitCode;
use std::time::Duration;

pub fn migrate(cx: &Context, to: &str) -> ExitCode {
    let location = match cx.settings.state_location(Some(std::path::Path::new(to))) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    if location == cx.state {
        return fail(&format!("--to {to}: that is where the state is already"));
    }
    if cx.settings.config.project.is_none() {
        // A derived name comes from where the state is: at the target it would be another
        // name, whose project owns none of the running pods.
        return fail(&format!(
            "this project's name, `{0}`, is derived from where its state is, and would be another at {to}: set `project = \"{0}\"` in drover.toml first, then migrate",
            cx.project
        ));
    }
    let (from, target) = match (cx.store(), drover::store::Store::open(&location)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) => return fail(&e),
        (_, Err(e)) => return fail(&e),
    };
    let wait = Duration::from_secs(10);
    let _from_lock = match from.lock("state migrate", wait) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let to_lock = match target.lock("state migrate", wait) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let places = match from.export() {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if let Err(e) = target
        .import(&to_lock, &places)
        .and_then(|()| target.record_project(&to_lock, &cx.project))
    {
        return fail(&e);
    }
    let index = target.read_index().map(|i| i.resource_version).unwrap_or(0);
    let objects = places
        .iter()
        .filter(|(rel, _)| rel.starts_with("objects/"))
        .count();
    println!(
        "copied {objects} objects (resource version {index}) from {} to {}",
        from.describe(),
        target.describe()
    );
    println!(
        "point drover at it: {} in drover.toml (the old state stays as it was)",
        match &location {
            drover::store::StateLocation::Etcd(e) => format!("state = \"{}\"", e.url),
            drover::store::StateLocation::Dir(d) =>
                format!("state_dir = \"{}\" (and no `state`)", d.display()),
        }
    );
    ExitCode::from(EXIT_OK)
}
