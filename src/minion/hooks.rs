//! Lifecycle hooks (v1beta1 `lifecycle.postStart` / `preStop`), run from outside the minion as
//! the kubelet ran them from the node: `exec` through Docker's exec API (the words go to Docker
//! as a list; no shell sees them), `httpGet` over a TCP connection the minion itself opens to the
//! pod's address (a `direct-tcpip` channel of its SSH session; probes use the same request).
//!
//! - **postStart** runs right after its container starts (`Minion::create_pod`, and in the
//!   daemon after Docker restarts the container). It may take [`POST_START_TIMEOUT`]; a hook that
//!   fails (non-zero exit, HTTP status outside 200-399, an error, the timeout) gets its container
//!   killed, as Kubernetes' kubelet did, and the pod's restart policy decides what follows.
//! - **preStop** runs before drover stops a container (pod deletion: rollout, scale down,
//!   pruning; a liveness-probe restart). It may take [`PRE_STOP_GRACE`]; the stop then goes on
//!   whatever the hook's outcome. v1beta1 as of v0.8.0 has no `terminationGracePeriodSeconds`,
//!   so the bound is Kubernetes' later default for it.
//!
//! A container's preStop hook travels in a label ([`LABEL_PRE_STOP`], named ports resolved to
//! numbers), so a pod is stopped properly even when its definition has left the source.
//! [`LABEL_POST_START`] says the container has a postStart hook to run again after a restart.

use super::Minion;
use crate::model::{Handler, HttpGetAction, Port, PortRef};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The container's preStop hook (JSON of `model::Handler`, ports as numbers).
pub const LABEL_PRE_STOP: &str = "io.drover.pre-stop";
/// The container's postStart hook (JSON of `model::Handler`, ports as numbers).
pub const LABEL_POST_START: &str = "io.drover.post-start";

/// How long a preStop hook may run before the container is stopped anyway.
pub const PRE_STOP_GRACE: Duration = Duration::from_secs(30);
/// How long a postStart hook may run before it counts as failed.
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How a failed postStart hook's error begins (the back-off tells it by these words).
pub const POST_START_FAILED: &str = "postStart hook";
/// How much of a failed exec hook's output its error keeps.
const OUTPUT_KEPT: usize = 200;

/// Where a hook runs: the container's Docker name and its pod's address on the minion.
pub struct HookTarget<'a> {
    pub container: &'a str,
    pub pod_ip: Option<&'a str>,
}

/// The handler with its port given as a number, named ports looked up in the pod's ports (for
/// the label, read when the manifest may be gone). Pure.
pub fn resolved(handler: &Handler, ports: &[Port]) -> Result<Handler, String> {
    let mut out = handler.clone();
    if let Some(http) = &mut out.http_get {
        http.port = PortRef::Number(resolve_port(&http.port, ports)?);
    }
    Ok(out)
}

/// A port by number or by the name of one of the pod's ports. Pure.
pub fn resolve_port(port: &PortRef, ports: &[Port]) -> Result<u16, String> {
    match port {
        PortRef::Number(n) => Ok(*n),
        PortRef::Name(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("no container port named `{name}`")),
    }
}

/// A hook as kept in a label; `None` when absent or unreadable.
pub fn from_label(text: Option<&str>) -> Option<Handler> {
    serde_json::from_str(text?).ok()
}

/// One line of a hook's output for an error message: control characters and surplus spaces
/// dropped, at most `OUTPUT_KEPT` characters. Pure.
pub fn summary(output: &str) -> String {
    let words: Vec<&str> = output
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let mut line = words.join(" ");
    if line.chars().count() > OUTPUT_KEPT {
        line = line.chars().take(OUTPUT_KEPT).collect::<String>() + "...";
    }
    line
}

/// Sends `GET path` to `host:port` as the minion reaches it; Ok for a status of 200-399.
/// Liveness probes and httpGet hooks share it.
pub async fn http_get(
    minion: &Minion,
    host: &str,
    port: u16,
    path: &str,
    agent: &str,
) -> Result<(), String> {
    let mut stream = minion
        .connect_tcp(host, port)
        .await
        .map_err(|e| e.message)?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: {agent}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    // The status line is all that matters.
    while !head.contains(&b'\n') && head.len() < 256 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: no HTTP answer"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET {path}: HTTP {code}"))
    }
}

impl Minion {
    /// Runs a hook (ports already numbers: `resolved`) within `limit`; `Err` says why it
    /// failed. An exec hook cut off by the limit keeps running in the container (Docker cannot
    /// stop an exec); its container is stopped or killed next anyway.
    pub async fn run_hook(
        &self,
        handler: &Handler,
        target: &HookTarget<'_>,
        limit: Duration,
    ) -> Result<(), String> {
        let run = async {
            if let Some(exec) = &handler.exec {
                let args: Vec<&str> = exec.command.iter().map(String::as_str).collect();
                let (code, output) = self
                    .exec(target.container, &args)
                    .await
                    .map_err(|e| e.message)?;
                return match code {
                    0 => Ok(()),
                    code => {
                        let said = summary(&output);
                        Err(format!(
                            "{} exited with {code}{}",
                            exec.command.join(" "),
                            if said.is_empty() {
                                String::new()
                            } else {
                                format!(": {said}")
                            }
                        ))
                    }
                };
            }
            if let Some(HttpGetAction { path, port, host }) = &handler.http_get {
                let port = resolve_port(port, &[])?;
                let host = match (host, target.pod_ip) {
                    (Some(h), _) => h.as_str(),
                    (None, Some(ip)) => ip,
                    (None, None) => return Err("the pod has no address".to_string()),
                };
                return http_get(self, host, port, path, "drover-hook").await;
            }
            Ok(())
        };
        match tokio::time::timeout(limit, run).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {} s", limit.as_secs())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExecAction;

    #[test]
    fn named_hook_ports_resolve_for_the_label() {
        let ports = vec![Port {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }];
        let hook = Handler {
            exec: None,
            http_get: Some(HttpGetAction {
                path: "/quit".into(),
                port: PortRef::Name("http".into()),
                host: None,
            }),
        };
        let label = serde_json::to_string(&resolved(&hook, &ports).unwrap()).unwrap();
        let back = from_label(Some(&label)).unwrap();
        assert_eq!(back.http_get.unwrap().port, PortRef::Number(8080));
        assert!(resolved(&hook, &[]).is_err());
        let exec = Handler {
            exec: Some(ExecAction {
                command: vec!["sh".into(), "-c".into(), "echo bye".into()],
            }),
            http_get: None,
        };
        assert_eq!(resolved(&exec, &[]).unwrap(), exec);
        assert_eq!(from_label(Some("not json")), None);
        assert_eq!(from_label(None), None);
    }

    #[test]
    fn hook_output_is_one_short_line() {
        assert_eq!(summary("  no such\nfile\x1b[0m \t "), "no such file [0m");
        let long = "x".repeat(500);
        assert_eq!(summary(&long).chars().count(), OUTPUT_KEPT + 3);
        assert_eq!(summary(""), "");
    }
}
