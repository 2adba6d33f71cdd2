//! The SSH link to one minion: one ssh2 session, opened once and reused for every Docker call.
//!
//! This file connects: TCP, the host key checked against known_hosts before anything else is
//! sent, authentication, and reconnection with back-off. Handshakes are paced process-wide
//! (`HANDSHAKES`), so a thousand minions connecting at once never exceed what a default sshd
//! accepts unauthenticated (`MaxStartups 10`). The connected session is handed to the fixed
//! pool of I/O threads in `ssh_pool.rs`, which pumps every channel of it.

use super::pipe::ChannelStream;
use super::ssh_pool::{self, Destination, RemoteDiagnostic, Worker};
use super::MinionError;
use crate::known_hosts;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where and how to reach one minion's sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub minion: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key file; `None` means: the ssh-agent, then ~/.ssh/id_ed25519 and id_rsa.
    pub identity: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub connect_timeout: Duration,
}

impl SshTarget {
    /// The host as written in known_hosts: `host`, or `[host]:port` off port 22.
    pub fn known_hosts_name(&self) -> String {
        crate::known_hosts::host_name(&self.host, self.port)
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// SSH handshakes in flight at once, across all minions. OpenSSH's default `MaxStartups
/// 10:30:100` starts dropping unauthenticated connections beyond 10 to one sshd; staying
/// well under it means none is dropped even when every minion sits behind one sshd. This
/// also bounds the blocking threads that connecting borrows from tokio. Handshakes cost
/// CPU on both ends, so more at once would not connect a thousand minions sooner on a few
/// cores.
const HANDSHAKES: usize = 4;

/// sshd counts a connection as unauthenticated until its listener hears from the child, a
/// little after the client is in: so even paced handshakes can meet a full `MaxStartups` when
/// many minions share one sshd (and other clients connect too). A connection closed before
/// the server's banner is such a drop, and is tried again.
const DROPPED_RETRIES: u32 = 2;

fn dropped_before_banner(error: &str) -> bool {
    error.contains("Failed getting banner")
}

fn handshakes() -> &'static tokio::sync::Semaphore {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HANDSHAKES);
    &PERMITS
}

#[derive(Default)]
struct LinkState {
    worker: Option<Arc<Worker>>,
    /// No new connection attempt before this instant (backoff after failures).
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
}

/// A persistent, self-healing SSH link to one minion.
pub struct SshLink {
    target: SshTarget,
    diagnostic: RemoteDiagnostic,
    state: Mutex<LinkState>,
    /// Serialises connection attempts; calls arriving meanwhile wait for the one attempt.
    connecting: tokio::sync::Mutex<()>,
}

impl SshLink {
    pub fn new(target: SshTarget) -> SshLink {
        SshLink {
            target,
            diagnostic: RemoteDiagnostic::default(),
            state: Mutex::new(LinkState::default()),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Is the SSH session up right now?
    pub fn is_connected(&self) -> bool {
        let state = self.state.lock().expect("link state");
        state
            .worker
            .as_ref()
            .is_some_and(|w| w.alive.load(Ordering::Acquire))
    }

    /// Makes sure the session is up (waiting for a handshake slot if need be), so a caller
    /// can time what follows without the time it took to connect.
    pub async fn connect(&self) -> Result<(), MinionError> {
        self.worker().await.map(|_| ())
    }

    /// The last failure the minion itself reported (stderr of the dial-stdio fallback), once.
    pub fn take_remote_diagnostic(&self) -> Option<String> {
        self.diagnostic.lock().expect("diagnostic").take()
    }

    fn err(&self, message: impl Into<String>) -> MinionError {
        MinionError::new(&self.target.minion, &self.target.host, message)
    }

    /// Opens a stream to a unix socket on the minion (its Docker socket), connecting or
    /// reconnecting the session first when needed.
    pub async fn open_stream(&self, socket_path: &str) -> Result<ChannelStream, MinionError> {
        self.open(Destination::Socket(socket_path.to_string()))
            .await
    }

    /// Opens a TCP connection from the minion to `host:port` (a `direct-tcpip` channel): what
    /// the minion reaches, such as a pod's address on its bridge, without an agent there.
    pub async fn open_tcp(&self, host: &str, port: u16) -> Result<ChannelStream, MinionError> {
        self.open(Destination::Tcp(host.to_string(), port)).await
    }

    async fn open(&self, to: Destination) -> Result<ChannelStream, MinionError> {
        let worker = self.worker().await?;
        let what = match &to {
            Destination::Socket(_) => "the Docker socket".to_string(),
            Destination::Tcp(h, p) => format!("{h}:{p}"),
        };
        let Some((stream, answer)) = worker.open(to) else {
            return Err(self.err("ssh session closed"));
        };
        match tokio::time::timeout(self.target.connect_timeout, answer).await {
            Ok(Ok(Ok(()))) => Ok(stream),
            Ok(Ok(Err(message))) => Err(self.err(message)),
            Ok(Err(_)) => Err(self.err("ssh session closed while opening a channel")),
            Err(_) => Err(self.err(format!("timed out opening a channel to {what}"))),
        }
    }

    /// The running session, connected (with backoff) if there is none or it died.
    async fn worker(&self) -> Result<Arc<Worker>, MinionError> {
        if let Some(w) = self.live_worker() {
            return Ok(w);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(w) = self.live_worker() {
            return Ok(w);
        }
        {
            let state = self.state.lock().expect("link state");
            if let Some(at) = state.retry_at {
                if Instant::now() < at {
                    let last = state.last_error.clone().unwrap_or_default();
                    return Err(self.err(format!(
                        "unreachable: {last} (retrying in {:.1}s)",
                        (at - Instant::now()).as_secs_f64()
                    )));
                }
            }
        }
        let connecting = std::time::Instant::now();
        let mut started = Err(String::new());
        for attempt in 0..=DROPPED_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let _permit = handshakes().acquire().await.expect("never closed");
            let target = self.target.clone();
            let diagnostic = self.diagnostic.clone();
            started = tokio::task::spawn_blocking(move || start_worker(&target, diagnostic))
                .await
                .map_err(|e| self.err(format!("connect task failed: {e}")))?;
            match &started {
                Err(e) if dropped_before_banner(e) => continue,
                _ => break,
            }
        }
        crate::metrics::global().minion_call(
            &self.target.minion,
            "ssh_connect",
            connecting.elapsed(),
            started.is_ok(),
        );
        let mut state = self.state.lock().expect("link state");
        match started {
            Ok(worker) => {
                let worker = Arc::new(worker);
                state.worker = Some(worker.clone());
                state.retry_at = None;
                state.backoff = Duration::ZERO;
                state.last_error = None;
                Ok(worker)
            }
            Err(message) => {
                // Back off 0.25 s, 0.5 s, ... up to a few seconds: a revived minion is found
                // again quickly, a dead one is not hammered.
                state.backoff = (state.backoff * 2).clamp(Duration::from_millis(250), MAX_BACKOFF);
                state.retry_at = Some(Instant::now() + state.backoff);
                state.last_error = Some(message.clone());
                Err(self.err(message))
            }
        }
    }

    fn live_worker(&self) -> Option<Arc<Worker>> {
        let mut state = self.state.lock().expect("link state");
        match &state.worker {
            Some(w) if w.alive.load(Ordering::Acquire) => Some(w.clone()),
            Some(_) => {
                state.worker = None;
                state.last_error = Some("ssh session lost".into());
                None
            }
            None => None,
        }
    }
}

/// Connects, verifies the host key, authenticates and starts the I/O thread.
fn start_worker(t: &SshTarget, diagnostic: RemoteDiagnostic) -> Result<Worker, String> {
    let addr = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", t.host))?
        .next()
        .ok_or_else(|| format!("cannot resolve {}", t.host))?;
    let tcp = TcpStream::connect_timeout(&addr, t.connect_timeout)
        .map_err(|e| format!("ssh connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    set_tcp_keepalive(&tcp);
    let socket = tcp.as_raw_fd();
    let mut session = ssh2::Session::new().map_err(|e| e.to_string())?;
    session.set_timeout(t.connect_timeout.as_millis() as u32);
    pin_host_key_types(&session, t)?;
    session.set_tcp_stream(tcp);
    session
        .handshake()
        .map_err(|e| format!("ssh handshake with {addr}: {}", e.message()))?;
    verify_host_key(&session, t)?;
    authenticate(&session, t)?;
    session.set_keepalive(false, 15);
    session.set_blocking(false);

    Ok(ssh_pool::adopt(session, socket, diagnostic))
}

/// Kernel keepalive finds a peer that vanished without closing (libssh2's own keepalive only
/// sends and never learns of a dead peer).
fn set_tcp_keepalive(tcp: &TcpStream) {
    let fd = tcp.as_raw_fd();
    let set = |level, name, value: libc::c_int| {
        // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the given size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                &value as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 10);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 5);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
}

/// Asks the server for the host key types we already know for it, so a host known by, say,
/// an RSA line is checked against its RSA key rather than reported as changed.
fn pin_host_key_types(session: &ssh2::Session, t: &SshTarget) -> Result<(), String> {
    let name = t.known_hosts_name();
    let mut types: Vec<String> = Vec::new();
    for kind in known_hosts::recorded_types(session, &t.known_hosts, &name)? {
        for method in host_key_methods(&kind) {
            if !types.contains(&method) {
                types.push(method);
            }
        }
    }
    if !types.is_empty() {
        session
            .method_pref(ssh2::MethodType::HostKey, &types.join(","))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The host key algorithms that verify a key of `kind`. An RSA key (`ssh-rsa` in known_hosts)
/// is signed with SHA-2 by current servers (`rsa-sha2-512`/`-256`; plain `ssh-rsa` is SHA-1,
/// which OpenSSH no longer offers and this libssh2 build does not support): asking for
/// `ssh-rsa` alone fails with "method not currently supported" (-33).
fn host_key_methods(kind: &str) -> Vec<String> {
    match kind {
        "ssh-rsa" => ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
            .map(String::from)
            .to_vec(),
        other => vec![other.to_string()],
    }
}

fn verify_host_key(session: &ssh2::Session, t: &SshTarget) -> Result<(), String> {
    let (blob, _) = session.host_key().ok_or("server sent no host key")?;
    let key = known_hosts::HostKey {
        blob: blob.to_vec(),
    };
    let fingerprint = key.fingerprint();
    match known_hosts::check(&t.known_hosts, &t.host, t.port, &key)? {
        known_hosts::Verdict::Match => Ok(()),
        known_hosts::Verdict::NotFound => Err(format!(
            "unknown host key {fingerprint} for {} (not in {}); if it is right, accept it with `drover minions trust {}`",
            t.known_hosts_name(),
            t.known_hosts.display(),
            t.minion
        )),
        known_hosts::Verdict::Mismatch => Err(format!(
            "HOST KEY CHANGED for {}: it now offers {fingerprint}, which does not match {}. This may be an attack; if the change is expected, replace it with `drover minions trust {} --replace`",
            t.known_hosts_name(),
            t.known_hosts.display(),
            t.minion
        )),
    }
}

fn authenticate(session: &ssh2::Session, t: &SshTarget) -> Result<(), String> {
    let mut tried = Vec::new();
    if let Some(identity) = &t.identity {
        if let Err(e) = session.userauth_pubkey_file(&t.user, None, identity, None) {
            return Err(format!(
                "public key authentication as {} with {} failed: {}",
                t.user,
                identity.display(),
                e.message()
            ));
        }
    } else {
        if session.userauth_agent(&t.user).is_ok() {
            return Ok(());
        }
        tried.push("ssh-agent".to_string());
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        for name in ["id_ed25519", "id_rsa", "id_ecdsa"] {
            let key = home.join(".ssh").join(name);
            if key.exists() {
                if session
                    .userauth_pubkey_file(&t.user, None, &key, None)
                    .is_ok()
                {
                    return Ok(());
                }
                tried.push(key.display().to_string());
            }
        }
    }
    if session.authenticated() {
        Ok(())
    } else {
        Err(format!(
            "authentication as {} failed (tried {})",
            t.user,
            tried.join(", ")
        ))
    }
}

/// Connects without checking the host key, and records the key the server offers in
/// known_hosts (the explicit "accept this key" step). An existing, different key for the host
/// is only replaced with `replace`. Returns the fingerprint and the file written.
pub fn trust_host_key(t: &SshTarget, replace: bool) -> Result<(String, PathBuf), String> {
    let key = known_hosts::fetch(&t.host, t.port, t.connect_timeout)?;
    let file = known_hosts::record(&t.known_hosts, &t.known_hosts_name(), &key, replace)?;
    Ok((key.fingerprint(), file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_known_only_by_an_rsa_line_pins_methods_libssh2_supports() {
        // Pinning plain `ssh-rsa` fails with [Session(-33)] "not currently supported".
        let session = ssh2::Session::new().unwrap();
        let methods = host_key_methods("ssh-rsa").join(",");
        session
            .method_pref(ssh2::MethodType::HostKey, &methods)
            .unwrap_or_else(|e| panic!("{methods}: {e}"));
        assert!(methods.starts_with("rsa-sha2-512"));
        assert_eq!(host_key_methods("ssh-ed25519"), ["ssh-ed25519"]);
    }
}
