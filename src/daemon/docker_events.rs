//! Follows each minion's Docker event stream (`GET /events`, filtered to this project's
//! containers) and turns container exits, OOM kills and restarts into events
//! (`crate::events::from_docker`). One stream per minion over its usual transport; a stream
//! that ends or fails is opened again after a pause, from where it left off (`since`), so an
//! exit that happened while the minion was unreachable is still told. A container with a
//! postStart hook that Docker started again (its restart policy, a liveness-probe restart) runs
//! the hook again, as each new start did in Kubernetes (`Minion::post_start_again`).

use crate::events::EventLog;
use crate::minion::hooks;
use crate::minion::pods::{LABEL_CONTAINER, LABEL_POD};
use crate::minion::{Minion, LABEL_PROJECT};
use futures_util::StreamExt;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The pause before a stream is opened again.
const RECONNECT: Duration = Duration::from_secs(5);

/// Runs until the task is dropped.
pub async fn follow(minion: Arc<Minion>, project: String, log: Arc<Mutex<EventLog>>) {
    let mut since: Option<i64> = None;
    // Containers seen to die: their next start is a restart.
    let mut died: BTreeSet<String> = BTreeSet::new();
    // Containers sent a signal through Docker's API (drover stopping a pod, removing a pod it
    // could not make, restarting one whose probe failed; or someone by hand): their exit is
    // no failure, and their next start no restart by Docker's policy. A crash or an OOM kill
    // comes with no such event.
    let mut signalled: BTreeSet<String> = BTreeSet::new();
    loop {
        let filters: HashMap<&str, Vec<String>> = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", vec![format!("{LABEL_PROJECT}={project}")]),
            (
                "event",
                ["kill", "die", "oom", "start", "destroy"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        let mut options = bollard::query_parameters::EventsOptionsBuilder::new().filters(&filters);
        if let Some(t) = since {
            options = options.since(&t.to_string());
        }
        let mut stream = minion.docker().events(Some(options.build()));
        while let Some(Ok(message)) = stream.next().await {
            if let Some(t) = message.time {
                since = Some(t + 1);
            }
            let action = message.action.unwrap_or_default();
            let actor = message.actor.unwrap_or_default();
            let id = actor.id.unwrap_or_default();
            let attributes = actor.attributes.unwrap_or_default();
            let (Some(pod), Some(container)) =
                (attributes.get(LABEL_POD), attributes.get(LABEL_CONTAINER))
            else {
                continue; // not a container of a drover pod
            };
            let exit_code = attributes.get("exitCode").and_then(|c| c.parse().ok());
            let note = match action.as_str() {
                "kill" => {
                    signalled.insert(id.clone());
                    None
                }
                // Removed: nothing more will be said of it (the sets stay as small as the
                // containers there are).
                "destroy" => {
                    died.remove(&id);
                    signalled.remove(&id);
                    None
                }
                "die" => {
                    died.insert(id.clone());
                    if signalled.contains(&id) {
                        None
                    } else {
                        crate::events::from_docker(minion.name(), pod, container, "die", exit_code)
                    }
                }
                "start" if died.remove(&id) => {
                    let on_purpose = signalled.remove(&id);
                    if let Some(hook) = hooks::from_label(
                        attributes.get(hooks::LABEL_POST_START).map(String::as_str),
                    ) {
                        let (minion, log) = (minion.clone(), log.clone());
                        let (pod, container, project) =
                            (pod.clone(), container.clone(), project.clone());
                        tokio::spawn(async move {
                            let failed = minion
                                .post_start_again(&project, &id, &pod, &container, &hook)
                                .await;
                            if let Some(w) = failed {
                                let object = crate::events::ObjectRef::new("Pod", &pod);
                                let note =
                                    crate::events::Note::warning(object, w.reason, w.message);
                                log.lock().expect("event log").record_now(note);
                            }
                        });
                    }
                    if on_purpose {
                        None
                    } else {
                        crate::events::from_docker(minion.name(), pod, container, "restart", None)
                    }
                }
                other => {
                    crate::events::from_docker(minion.name(), pod, container, other, exit_code)
                }
            };
            if let Some(note) = note {
                log.lock().expect("event log").record_now(note);
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}
