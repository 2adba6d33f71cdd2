//! The executor: runs a Plan through the minion driver, in parallel across minions with
//! bounded concurrency. It makes no decisions: every action is in the plan. A failing minion
//! fails its own actions with errors naming it; the others go on.

use crate::minion::{Minion, MinionError};
use crate::plan::pods::{Action, Plan};
use std::collections::HashMap;
use std::sync::Arc;

/// How many actions run at once across all minions.
pub const CONCURRENCY: usize = 16;

#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<Action>,
    pub failed: Vec<(Action, MinionError)>,
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

/// Runs the plan: all deletions first (they free ports and capacity), then all creations,
/// whose containers get `env` (the services' variables) before their own.
pub async fn execute(
    plan: &Plan,
    minions: &HashMap<String, Arc<Minion>>,
    credentials: Credentials,
    env: &[String],
    progress: &dyn Progress,
) -> Outcome {
    let env: Arc<Vec<String>> = Arc::new(env.to_vec());
    progress.started(plan.actions.len());
    let mut outcome = Outcome::default();
    let (deletes, creates): (Vec<&Action>, Vec<&Action>) =
        plan.actions.iter().partition(|a| a.is_deletion());
    for batch in [deletes, creates] {
        let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for action in batch {
            let action = action.clone();
            let (minion_name, _) = describe(&action);
            let Some(minion) = minions.get(&minion_name).cloned() else {
                let e = MinionError::new(&minion_name, "?", "not a configured minion");
                progress.finished(&action, Some(&e));
                outcome.failed.push((action, e));
                continue;
            };
            let (limit, credentials, env) = (limit.clone(), credentials.clone(), env.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                let result = match &action {
                    Action::DeletePod { id, legacy, .. } => minion.delete_pod(id, *legacy).await,
                    Action::DeleteVolumes { volumes, .. } => minion.delete_volumes(volumes).await,
                    Action::CreatePod { pod, .. } => {
                        minion.create_pod(pod, &env, &*credentials).await
                    }
                };
                (action, result)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((action, Ok(()))) => {
                    progress.finished(&action, None);
                    outcome.done.push(action)
                }
                Ok((action, Err(e))) => {
                    progress.finished(&action, Some(&e));
                    outcome.failed.push((action, e))
                }
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }
    outcome
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
