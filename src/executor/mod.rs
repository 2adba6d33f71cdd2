//! The executor: runs a Plan through the minion driver. Each minion gets its own queue with its
//! own concurrency limit, so one slow or hung engine cannot hold the slots the others need; on
//! each minion deletions go first, and creations that need what they free (a host port, their
//! own pod id) wait for them. It makes no decisions: every action is in the plan. A failing minion fails its own
//! actions with errors naming it; the others go on. A minion that stops answering costs its
//! actions one call timeout: once a call there timed out, its queued actions are not tried.

use crate::images::{Delivered, Delivery, PushProgress};
use crate::minion::{FailureKind, Minion, MinionError, Trace, Warning};
use crate::plan::types::{Action, Plan};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How many actions run at once on one minion.
pub const PER_MINION: usize = 16;

/// How long removing a pod cut off by the deadline half-made may take.
const CUT_OFF_CLEANUP: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<Action>,
    pub failed: Vec<(Action, MinionError)>,
    /// What finished actions (done or not) had to tell besides (a pull that failed with the
    /// minion's image run instead, a lifecycle hook that failed).
    pub warnings: Vec<(Action, Warning)>,
    /// Images drover delivered (or tried to) before creating the pods that run them: per
    /// image, each minion's outcome.
    pub deliveries: Vec<Delivered>,
}

pub type Credentials = Arc<dyn Fn(&str) -> Option<crate::minion::Credentials> + Send + Sync>;

/// Told as a plan runs, so a terminal can show progress. Called from the executor's own task,
/// one action at a time.
pub trait Progress: Send + Sync {
    fn started(&self, _total: usize) {}
    fn finished(&self, _action: &Action, _error: Option<&MinionError>) {}
}

/// No progress shown (the daemon reports per round instead).
pub struct Quiet;
impl Progress for Quiet {}

/// Set to stop a run: actions not begun yet are not begun (they fail as
/// `MinionError::not_started`), those under way finish.
pub type Stop = Arc<AtomicBool>;

/// Runs the plan, minions in parallel; creations' containers get `env` (the services'
/// variables) before their own. With a `deadline`, what has not finished by then fails with an
/// error naming the call it waited on, and what has not started is not tried; so is what has
/// not started once `stop` is set.
pub async fn execute(
    plan: &Plan,
    minions: &HashMap<String, Arc<Minion>>,
    credentials: Credentials,
    env: &[String],
    progress: &dyn Progress,
    (deadline, stop): (Option<Instant>, &Stop),
) -> Outcome {
    let env: Arc<Vec<String>> = Arc::new(env.to_vec());
    progress.started(plan.actions.len());
    let mut outcome = Outcome {
        deliveries: deliver_images(plan, minions).await,
        ..Outcome::default()
    };
    let undelivered = undelivered(&outcome.deliveries);
    let mut queues: BTreeMap<String, (Arc<Minion>, Vec<Action>)> = BTreeMap::new();
    for action in &plan.actions {
        let (minion_name, _) = describe(action);
        if let Some(e) = lacks_its_image(action, &undelivered) {
            progress.finished(action, Some(&e));
            outcome.failed.push((action.clone(), e));
            continue;
        }
        match minions.get(&minion_name) {
            Some(m) => queues
                .entry(minion_name)
                .or_insert_with(|| (m.clone(), Vec::new()))
                .1
                .push(action.clone()),
            None => {
                let e = MinionError::new(&minion_name, "?", "not a configured minion");
                progress.finished(action, Some(&e));
                outcome.failed.push((action.clone(), e));
            }
        }
    }
    let (sender, mut results) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    for (_, (minion, mut actions)) in queues {
        // A stable sort: deletions first, the plan's order otherwise.
        actions.sort_by_key(|a| !a.is_deletion());
        let (sender, credentials, env) = (sender.clone(), credentials.clone(), env.clone());
        tasks.spawn(run_minion(
            minion,
            actions,
            credentials,
            env,
            (deadline, stop.clone()),
            sender,
        ));
    }
    drop(sender);
    while let Some((action, result)) = results.recv().await {
        match result {
            Ok(warnings) => {
                outcome
                    .warnings
                    .extend(warnings.into_iter().map(|w| (action.clone(), w)));
                progress.finished(&action, None);
                outcome.done.push(action)
            }
            Err(e) => {
                progress.finished(&action, Some(&e));
                outcome.failed.push((action, e))
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    outcome
}

/// The images drover delivers that this plan's new pods run (`Container::image_id`), each sent
/// once to all the minions about to run it that lack that build (`images::deliver`).
async fn deliver_images(plan: &Plan, minions: &HashMap<String, Arc<Minion>>) -> Vec<Delivered> {
    let mut wanted: BTreeMap<Delivery, BTreeMap<String, Arc<Minion>>> = BTreeMap::new();
    for action in &plan.actions {
        let Action::CreatePod { minion, pod } = action else {
            continue;
        };
        let Some(m) = minions.get(minion) else {
            continue;
        };
        for c in &pod.manifest.containers {
            if let Some(id) = &c.image_id {
                let delivery = Delivery {
                    reference: crate::image_pins::reference(&c.image),
                    id: id.clone(),
                };
                wanted
                    .entry(delivery)
                    .or_default()
                    .insert(minion.clone(), m.clone());
            }
        }
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<(Delivery, Vec<Arc<Minion>>)> = wanted
        .into_iter()
        .map(|(d, ms)| (d, ms.into_values().collect()))
        .collect();
    crate::images::deliver(&wanted, Arc::new(Unseen))
        .await
        .into_iter()
        .map(|(d, results)| {
            let results = results
                .into_iter()
                .map(|(m, r)| (m, r.map_err(|e| e.to_string())))
                .collect();
            (d, results)
        })
        .collect()
}

/// No bars for a delivery during a plan: its outcome is told per minion afterwards.
struct Unseen;
impl PushProgress for Unseen {
    fn starting(&self, _: &str, _: Option<u64>) {}
    fn sent(&self, _: &str, _: u64) {}
}

/// (minion, reference) → why that build could not be delivered there.
fn undelivered(deliveries: &[Delivered]) -> HashMap<(String, String), String> {
    let mut out = HashMap::new();
    for (d, results) in deliveries {
        for (minion, result) in results {
            if let Err(why) = result {
                out.insert((minion.clone(), d.reference.clone()), why.clone());
            }
        }
    }
    out
}

/// A creation whose image drover could not deliver to its minion fails as a pull would (it
/// backs off), before anything of the pod is made.
fn lacks_its_image(
    action: &Action,
    undelivered: &HashMap<(String, String), String>,
) -> Option<MinionError> {
    let Action::CreatePod { minion, pod } = action else {
        return None;
    };
    pod.manifest.containers.iter().find_map(|c| {
        c.image_id.as_ref()?;
        let reference = crate::image_pins::reference(&c.image);
        let why = undelivered.get(&(minion.clone(), reference.clone()))?;
        Some(
            MinionError::new(minion, &format!("push image {reference}"), why)
                .of_kind(FailureKind::ImagePull),
        )
    })
}

type Finished = (Action, Result<Vec<Warning>, MinionError>);

/// One minion's actions, `PER_MINION` at a time: its deletions first; a creation waits for
/// them only when it could need what they free on the engine (a host port, or its own pod id:
/// an explicit pod replaced in place). Others start beside the deletions, so a rolling update's
/// next replica does not wait for the old one's removal. (Capacity is the scheduler's account;
/// Docker does not reserve it, so it needs no order here.)
async fn run_minion(
    minion: Arc<Minion>,
    actions: Vec<Action>,
    credentials: Credentials,
    env: Arc<Vec<String>>,
    (deadline, stop): (Option<Instant>, Stop),
    results: tokio::sync::mpsc::UnboundedSender<Finished>,
) {
    // The first call that timed out here: what the queued actions are not tried for.
    let hung: Mutex<Option<MinionError>> = Mutex::new(None);
    // Fair: permits go in the order asked, deletions first.
    let limit = tokio::sync::Semaphore::new(PER_MINION);
    let (deletes, creates): (Vec<Action>, Vec<Action>) =
        actions.into_iter().partition(|a| a.is_deletion());
    let freed: std::collections::BTreeSet<&str> = deletes
        .iter()
        .filter_map(|a| match a {
            Action::DeletePod { id, .. } => Some(id.as_str()),
            Action::DeleteVolumes { pod, .. } => Some(pod.as_str()),
            Action::CreatePod { .. } => None,
        })
        .collect();
    let (after, beside): (Vec<&Action>, Vec<&Action>) = creates.iter().partition(|a| match a {
        Action::CreatePod { pod, .. } => {
            freed.contains(pod.id.as_str())
                || pod
                    .manifest
                    .containers
                    .iter()
                    .any(|c| c.ports.iter().any(|p| p.host_port.is_some()))
        }
        _ => true,
    });
    let run = |action: Action| {
        let (minion, credentials, env, hung, limit) = (&minion, &credentials, &env, &hung, &limit);
        let stop = &stop;
        async move {
            let _permit = limit.acquire().await.expect("semaphore open");
            if stop.load(Ordering::SeqCst) {
                let e = MinionError::not_started(&minion.spec.name, &minion.spec.address);
                return (action, Err(e));
            }
            run_action(minion, action, &**credentials, env, deadline, hung).await
        }
    };
    let ordered = async {
        let mut first: futures_util::stream::FuturesUnordered<_> =
            deletes.iter().cloned().map(run).collect();
        while let Some(finished) = first.next().await {
            let _ = results.send(finished);
        }
        let mut then: futures_util::stream::FuturesUnordered<_> =
            after.into_iter().cloned().map(run).collect();
        while let Some(finished) = then.next().await {
            let _ = results.send(finished);
        }
    };
    let free = async {
        let mut now: futures_util::stream::FuturesUnordered<_> =
            beside.into_iter().cloned().map(run).collect();
        while let Some(finished) = now.next().await {
            let _ = results.send(finished);
        }
    };
    futures_util::future::join(ordered, free).await;
}

async fn run_action(
    minion: &Minion,
    action: Action,
    credentials: &(dyn Fn(&str) -> Option<crate::minion::Credentials> + Send + Sync),
    env: &[String],
    deadline: Option<Instant>,
    hung: &Mutex<Option<MinionError>>,
) -> Finished {
    if let Some(first) = hung.lock().expect("hung").clone() {
        let e = MinionError::hung(
            &first.minion,
            &first.address,
            format!("not tried: {}", first.message),
        );
        return (action, Err(e));
    }
    let trace = Trace::default();
    let work = trace.run(async {
        match &action {
            Action::DeletePod { id, legacy, .. } => minion.delete_pod(id, *legacy).await,
            Action::DeleteVolumes { volumes, .. } => {
                minion.delete_volumes(volumes).await.map(|()| Vec::new())
            }
            Action::CreatePod { pod, .. } => minion.create_pod(pod, env, credentials).await,
        }
    });
    let result = match deadline {
        Some(d) => match tokio::time::timeout_at(d.into(), work).await {
            Ok(result) => result,
            Err(_) => {
                // A pod cut off while being made goes again, so its next try starts clean:
                // left, a started container would be found and kept, its postStart hook never
                // run. Bounded: the engine may be the reason the deadline passed.
                if let Action::CreatePod { pod, .. } = &action {
                    let removal = minion.delete_pod(&pod.id, false);
                    let _ = tokio::time::timeout(CUT_OFF_CLEANUP, removal).await;
                }
                Err(minion.deadline_error(&trace))
            }
        },
        None => work.await,
    };
    if let Err(e) = &result {
        if e.timed_out {
            hung.lock().expect("hung").get_or_insert_with(|| e.clone());
        }
    }
    (action, result)
}

/// The minion an action runs on, and a one-line description of it.
pub fn describe(action: &Action) -> (String, String) {
    match action {
        Action::CreatePod { minion, pod } => {
            (minion.clone(), format!("+ pod {} on {minion}", pod.id))
        }
        Action::DeletePod {
            minion, id, reason, ..
        } => (minion.clone(), format!("- pod {id} on {minion} ({reason})")),
        Action::DeleteVolumes {
            minion,
            pod,
            volumes,
        } => (
            minion.clone(),
            format!(
                "- volume{} {} on {minion} (pod {pod} is gone)",
                if volumes.len() == 1 { "" } else { "s" },
                volumes.join(", ")
            ),
        ),
    }
}
