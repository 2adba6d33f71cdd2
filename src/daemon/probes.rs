//! Liveness probes, run by drover from outside the minions, as the kubelet ran them from the
//! node: `httpGet` and `tcpSocket` over a TCP connection the minion itself opens to the pod's
//! address (a `direct-tcpip` channel of its SSH session; a plain connection for the local
//! minion), `exec` through Docker's exec API. Nothing is installed on a minion.
//!
//! Timing (documented in the README): every container with a probe is probed every
//! [`PERIOD`], from `initialDelaySeconds` after drover first saw it running, each probe given
//! `timeoutSeconds` (default 1 s). A container is ready once a probe has passed since it
//! (re)started; one failure makes it not ready (its pod leaves the services' endpoints at
//! once); [`FAILURE_THRESHOLD`] failures in a row restart it as its pod's restart policy says
//! (`always`, `onFailure`: restarted; `never`: killed, and the pod fails). Three failures two
//! seconds apart tolerate a busy moment and still replace a hung server within ~6 s.
//!
//! [`ProbeBook`] is the pure part (what is due, what a result means); [`probe`] does the IO.

use crate::minion::hooks::{self, HookTarget};
use crate::minion::Minion;
use crate::model::{Handler, LivenessProbe, PortRef, RestartPolicy};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

pub const PERIOD: Duration = Duration::from_secs(2);
pub const FAILURE_THRESHOLD: u32 = 3;

/// One container's probe: (minion, pod, container).
pub type ProbeKey = (String, String, String);

/// What a probe result means for its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    NotReady(String),
    /// Failed `FAILURE_THRESHOLD` times in a row: restart (or kill, under policy `never`).
    Restart(String),
}

#[derive(Debug, Clone)]
struct ProbeState {
    /// Docker's start time of the container as last seen: a new one means it restarted.
    started_at: Option<String>,
    failures: u32,
    passed: bool,
    next: Instant,
}

/// The probes' memory between periods. Pure: time comes in as an argument.
#[derive(Debug, Default)]
pub struct ProbeBook {
    states: HashMap<ProbeKey, ProbeState>,
}

impl ProbeBook {
    /// Keeps only the given running containers (a container gone or stopped starts afresh),
    /// and returns those due for a probe now.
    pub fn due(&mut self, running: &[(ProbeKey, Duration)], now: Instant) -> Vec<ProbeKey> {
        let live: BTreeSet<&ProbeKey> = running.iter().map(|(k, _)| k).collect();
        self.states.retain(|k, _| live.contains(k));
        let mut due = Vec::new();
        for (key, initial_delay) in running {
            let state = self.states.entry(key.clone()).or_insert(ProbeState {
                started_at: None,
                failures: 0,
                passed: false,
                next: now + *initial_delay,
            });
            if now >= state.next {
                due.push(key.clone());
            }
        }
        due
    }

    /// Records a probe's result.
    pub fn record(&mut self, key: &ProbeKey, result: Result<(), String>, now: Instant) -> Verdict {
        let Some(state) = self.states.get_mut(key) else {
            return Verdict::NotReady("not probed yet".into());
        };
        state.next = now + PERIOD;
        match result {
            Ok(()) => {
                state.failures = 0;
                state.passed = true;
                Verdict::Ready
            }
            Err(e) => {
                state.failures += 1;
                if state.failures >= FAILURE_THRESHOLD {
                    Verdict::Restart(e)
                } else {
                    Verdict::NotReady(e)
                }
            }
        }
    }

    /// The container was restarted: it starts afresh, probed again after its initial delay.
    pub fn restarted(&mut self, key: &ProbeKey, initial_delay: Duration, now: Instant) {
        if let Some(state) = self.states.get_mut(key) {
            *state = ProbeState {
                // Its new start time is learnt at the next look, not taken for another restart.
                started_at: None,
                failures: 0,
                passed: false,
                next: now + initial_delay,
            };
        }
    }

    /// Docker's start time of a container, seen before a probe: a different one than last
    /// time means it restarted (killed, crashed) since: it starts afresh, not ready until a
    /// probe passes again. Returns whether it restarted.
    pub fn started(
        &mut self,
        key: &ProbeKey,
        started_at: &str,
        initial_delay: Duration,
        now: Instant,
    ) -> bool {
        let Some(state) = self.states.get_mut(key) else {
            return false;
        };
        let restarted = state
            .started_at
            .as_deref()
            .is_some_and(|before| before != started_at);
        if restarted {
            self.restarted(key, initial_delay, now);
        }
        if let Some(state) = self.states.get_mut(key) {
            state.started_at = Some(started_at.to_string());
        }
        restarted
    }

    /// Containers whose probe passed since they (re)started and did not fail since. A
    /// container with a probe that is not in it is not ready (`plan::pods::probes_passed`).
    pub fn passed(&self) -> BTreeSet<ProbeKey> {
        self.states
            .iter()
            .filter(|(_, s)| s.passed && s.failures == 0)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Where a probe goes: the pod's address on its minion, its container's Docker name, and
/// the ports declared in the manifest (for ports given by name).
pub struct Target<'a> {
    pub pod_ip: Option<&'a str>,
    pub container: &'a str,
    pub ports: &'a [crate::model::Port],
}

fn resolve(port: &PortRef, ports: &[crate::model::Port]) -> Result<u16, String> {
    crate::minion::hooks::resolve_port(port, ports)
}

/// Runs one probe; `Err` says why it failed.
pub async fn probe(minion: &Minion, target: &Target<'_>, p: &LivenessProbe) -> Result<(), String> {
    let timeout = Duration::from_secs(u64::from(p.timeout_seconds.max(1)));
    let run = async {
        if let Some(http) = &p.http_get {
            let port = resolve(&http.port, target.ports)?;
            let host = match (&http.host, target.pod_ip) {
                (Some(h), _) => h.as_str(),
                (None, Some(ip)) => ip,
                (None, None) => return Err("the pod has no address".to_string()),
            };
            return crate::minion::hooks::http_get(minion, host, port, &http.path, "drover-probe")
                .await;
        }
        if let Some(tcp) = &p.tcp_socket {
            let port = resolve(&tcp.port, target.ports)?;
            let ip = target.pod_ip.ok_or("the pod has no address")?;
            minion
                .connect_tcp(ip, port)
                .await
                .map(|_| ())
                .map_err(|e| e.message)?;
            return Ok(());
        }
        if let Some(exec) = &p.exec {
            let args: Vec<&str> = exec.command.iter().map(String::as_str).collect();
            let (code, _) = minion
                .exec(target.container, &args)
                .await
                .map_err(|e| e.message)?;
            return if code == 0 {
                Ok(())
            } else {
                Err(format!("{} exited with {code}", exec.command.join(" ")))
            };
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
    }
}

/// Restarts a container whose probe failed, as its restart policy says: restarted under
/// `always` and `onFailure`, killed under `never` (the pod then fails). Its preStop hook runs
/// first, within `hooks::PRE_STOP_GRACE`, and the restart follows whatever it did (a failed
/// hook is told in the result's second part). Docker's restart is a new start: the daemon's
/// event follower runs the container's postStart hook after it (`docker_events`).
pub async fn act_on_failure(
    minion: &Minion,
    target: &Target<'_>,
    pre_stop: Option<&Handler>,
    policy: RestartPolicy,
) -> (Result<(), String>, Option<String>) {
    let mut hook_failed = None;
    if let Some(hook) = pre_stop {
        let hook_target = HookTarget {
            container: target.container,
            pod_ip: target.pod_ip,
        };
        let ran = match hooks::resolved(hook, target.ports) {
            Ok(hook) => {
                minion
                    .run_hook(&hook, &hook_target, hooks::PRE_STOP_GRACE)
                    .await
            }
            Err(e) => Err(e),
        };
        hook_failed = ran.err();
    }
    let done = match policy {
        RestartPolicy::Never {} => minion.kill_container(target.container).await,
        _ => minion.restart_container(target.container, 1).await,
    };
    (done.map_err(|e| e.to_string()), hook_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> ProbeKey {
        ("m1".into(), "pod".into(), c.into())
    }

    #[test]
    fn a_container_is_ready_after_its_first_pass_and_restarted_after_the_threshold() {
        let mut book = ProbeBook::default();
        let t0 = Instant::now();
        let running = vec![(key("c"), Duration::from_secs(5))];
        assert!(
            book.due(&running, t0).is_empty(),
            "the initial delay is respected"
        );
        assert!(book.passed().is_empty(), "not ready before its first probe");
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(book.due(&running, t1), vec![key("c")]);
        assert_eq!(book.record(&key("c"), Ok(()), t1), Verdict::Ready);
        assert_eq!(book.passed().len(), 1);
        assert!(
            book.due(&running, t1 + Duration::from_secs(1)).is_empty(),
            "one per period"
        );
        let mut t = t1;
        for n in 1..=FAILURE_THRESHOLD {
            t += PERIOD;
            assert_eq!(book.due(&running, t), vec![key("c")]);
            let verdict = book.record(&key("c"), Err("HTTP 500".into()), t);
            assert!(book.passed().is_empty(), "one failure makes it not ready");
            if n < FAILURE_THRESHOLD {
                assert_eq!(verdict, Verdict::NotReady("HTTP 500".into()));
            } else {
                assert_eq!(verdict, Verdict::Restart("HTTP 500".into()));
            }
        }
        book.restarted(&key("c"), Duration::from_secs(5), t);
        assert!(book.due(&running, t + Duration::from_secs(1)).is_empty());
        // Restarted behind drover's back (Docker's own restart): not ready until it passes.
        t += Duration::from_secs(5);
        assert_eq!(book.due(&running, t), vec![key("c")]);
        assert!(
            !book.started(&key("c"), "t1", Duration::ZERO, t),
            "first sight"
        );
        assert_eq!(book.record(&key("c"), Ok(()), t), Verdict::Ready);
        assert_eq!(book.passed().len(), 1);
        assert!(!book.started(&key("c"), "t1", Duration::ZERO, t));
        assert!(book.started(&key("c"), "t2", Duration::ZERO, t));
        assert!(book.passed().is_empty());
        // A container no longer running is forgotten.
        book.due(&[], t);
        assert!(book.passed().is_empty());
    }

    #[test]
    fn named_ports_resolve_from_the_manifest() {
        let ports = vec![crate::model::Port {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(resolve(&PortRef::Name("http".into()), &ports), Ok(8080));
        assert_eq!(resolve(&PortRef::Number(81), &ports), Ok(81));
        assert!(resolve(&PortRef::Name("nope".into()), &ports).is_err());
    }
}
