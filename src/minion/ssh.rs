//! The SSH link to one minion: one ssh2 session, opened once and reused for every Docker call.
//!
//! libssh2 puts a session and all its channels behind one lock, so a blocking read on one
//! channel would stall every other. Instead one I/O thread per minion owns the session in
//! non-blocking mode and pumps bytes between each `direct-streamlocal` channel (to the minion's
//! Docker socket) and one end of a local `UnixStream` pair; the other end goes to hyper, which
//! speaks HTTP over it as over any socket. Many calls are in flight at once as many channels.
//! The thread sleeps in `poll(2)` on the TCP socket, the local sockets and a wake-up socket.
//!
//! Host keys are verified against known_hosts before anything else is sent.

use super::MinionError;
use crate::known_hosts;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
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

const EAGAIN: i32 = -37; // LIBSSH2_ERROR_EAGAIN
const BUF: usize = 64 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(4);

fn is_again(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(EAGAIN)
}

enum Command {
    Open {
        to: Destination,
        local: UnixStream,
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// Where a channel goes on the minion's side.
#[derive(Debug, Clone)]
enum Destination {
    /// A unix socket (the Docker socket): `direct-streamlocal`, or the dial-stdio fallback.
    Socket(String),
    /// A TCP address as the minion reaches it (a pod's port, for probes): `direct-tcpip`, as
    /// the kubelet probed from the node.
    Tcp(String, u16),
}

struct Worker {
    commands: mpsc::Sender<Command>,
    wake: UnixStream,
    alive: Arc<AtomicBool>,
}

/// What the minion said on stderr when a `dial-stdio` relay ended badly, for error messages.
type RemoteDiagnostic = Arc<Mutex<Option<String>>>;

#[derive(Default)]
struct LinkState {
    worker: Option<Worker>,
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

    /// The last failure the minion itself reported (stderr of the dial-stdio fallback), once.
    pub fn take_remote_diagnostic(&self) -> Option<String> {
        self.diagnostic.lock().expect("diagnostic").take()
    }

    fn err(&self, message: impl Into<String>) -> MinionError {
        MinionError::new(&self.target.minion, &self.target.host, message)
    }

    /// Opens a stream to a unix socket on the minion (its Docker socket), connecting or
    /// reconnecting the session first when needed.
    pub async fn open_stream(
        &self,
        socket_path: &str,
    ) -> Result<tokio::net::UnixStream, MinionError> {
        self.open(Destination::Socket(socket_path.to_string()))
            .await
    }

    /// Opens a TCP connection from the minion to `host:port` (a `direct-tcpip` channel): what
    /// the minion reaches, such as a pod's address on its bridge, without an agent there.
    pub async fn open_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<tokio::net::UnixStream, MinionError> {
        self.open(Destination::Tcp(host.to_string(), port)).await
    }

    async fn open(&self, to: Destination) -> Result<tokio::net::UnixStream, MinionError> {
        let (commands, wake_fd) = self.worker().await?;
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| self.err(format!("socketpair: {e}")))?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let what = match &to {
            Destination::Socket(_) => "the Docker socket".to_string(),
            Destination::Tcp(h, p) => format!("{h}:{p}"),
        };
        let sent = commands.send(Command::Open {
            to,
            local: theirs,
            reply,
        });
        if sent.is_err() {
            return Err(self.err("ssh session closed"));
        }
        let _ = (&wake_fd).write(&[1]);
        match tokio::time::timeout(self.target.connect_timeout, answer).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(message))) => return Err(self.err(message)),
            Ok(Err(_)) => return Err(self.err("ssh session closed while opening a channel")),
            Err(_) => return Err(self.err(format!("timed out opening a channel to {what}"))),
        }
        ours.set_nonblocking(true)
            .map_err(|e| self.err(e.to_string()))?;
        tokio::net::UnixStream::from_std(ours).map_err(|e| self.err(e.to_string()))
    }

    /// The running worker, started (with backoff) if there is none or it died.
    async fn worker(&self) -> Result<(mpsc::Sender<Command>, UnixStream), MinionError> {
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
        let target = self.target.clone();
        let diagnostic = self.diagnostic.clone();
        let connecting = std::time::Instant::now();
        let started = tokio::task::spawn_blocking(move || start_worker(&target, diagnostic))
            .await
            .map_err(|e| self.err(format!("connect task failed: {e}")))?;
        crate::metrics::global().minion_call(
            &self.target.minion,
            "ssh_connect",
            connecting.elapsed(),
            started.is_ok(),
        );
        let mut state = self.state.lock().expect("link state");
        match started {
            Ok(worker) => {
                let handles = (
                    worker.commands.clone(),
                    worker
                        .wake
                        .try_clone()
                        .map_err(|e| self.err(e.to_string()))?,
                );
                state.worker = Some(worker);
                state.retry_at = None;
                state.backoff = Duration::ZERO;
                state.last_error = None;
                Ok(handles)
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

    fn live_worker(&self) -> Option<(mpsc::Sender<Command>, UnixStream)> {
        let mut state = self.state.lock().expect("link state");
        match &state.worker {
            Some(w) if w.alive.load(Ordering::Acquire) => {
                Some((w.commands.clone(), w.wake.try_clone().ok()?))
            }
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
    let poll_socket = tcp.try_clone().map_err(|e| e.to_string())?;
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

    let (commands, queue) = mpsc::channel();
    let (wake, wake_reader) = UnixStream::pair().map_err(|e| e.to_string())?;
    wake_reader
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let alive = Arc::new(AtomicBool::new(true));
    let thread_alive = alive.clone();
    let name = format!("ssh-{}", t.minion);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut io = IoLoop {
                diagnostic,
                dial_stdio: false,
                session,
                socket: poll_socket,
                queue,
                wake: wake_reader,
                bridges: Vec::new(),
                opening: VecDeque::new(),
                buf: vec![0; BUF],
            };
            io.run();
            thread_alive.store(false, Ordering::Release);
        })
        .map_err(|e| e.to_string())?;
    Ok(Worker {
        commands,
        wake,
        alive,
    })
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

// ---------------------------------------------------------------------------------------------
// The I/O thread

struct Bridge {
    channel: ssh2::Channel,
    local: UnixStream,
    /// Bytes read from the local socket, not yet written to the channel.
    up: Vec<u8>,
    up_sent: usize,
    /// Bytes read from the channel, not yet written to the local socket.
    down: Vec<u8>,
    down_sent: usize,
    local_eof: bool,
    eof_sent: bool,
    remote_eof: bool,
    closing: bool,
    /// For dial-stdio relays: what the remote command wrote to stderr (bounded).
    stderr: Option<Vec<u8>>,
}

impl Bridge {
    fn new(channel: ssh2::Channel, local: UnixStream) -> Bridge {
        Bridge {
            channel,
            local,
            up: Vec::new(),
            up_sent: 0,
            down: Vec::new(),
            down_sent: 0,
            local_eof: false,
            eof_sent: false,
            remote_eof: false,
            closing: false,
            stderr: None,
        }
    }
}

struct Opening {
    to: Destination,
    local: UnixStream,
    reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    /// Set once the direct-streamlocal attempt failed: the reason, and the exec channel of the
    /// `docker system dial-stdio` fallback while it is being set up.
    streamlocal_error: Option<String>,
    exec_channel: Option<ssh2::Channel>,
}

/// The fallback for minions whose sshd forbids stream-local forwarding: the Docker CLI on the
/// minion relays stdin/stdout to its engine. Only the configured socket path is interpolated,
/// single-quoted; no manifest text ever gets here.
fn dial_stdio_command(socket_path: &str) -> Option<String> {
    // minion_specs refuses such paths already; this keeps the quoting sound on its own.
    (!socket_path.contains('\''))
        .then(|| format!("docker -H 'unix://{socket_path}' system dial-stdio"))
}

struct IoLoop {
    diagnostic: RemoteDiagnostic,
    /// This sshd refused stream-local forwarding and the dial-stdio fallback worked: use it.
    dial_stdio: bool,
    session: ssh2::Session,
    socket: TcpStream,
    queue: mpsc::Receiver<Command>,
    wake: UnixStream,
    bridges: Vec<Bridge>,
    opening: VecDeque<Opening>,
    buf: Vec<u8>,
}

/// What one step of pumping a bridge did.
enum Step {
    Progress,
    Idle,
    Done,
    /// The session itself failed: every channel is gone.
    SessionDead(String),
}

impl IoLoop {
    fn run(&mut self) {
        let mut last_keepalive = Instant::now();
        loop {
            let mut progress = self.take_commands();
            match self.open_channels() {
                Ok(p) => progress |= p,
                Err(e) => return self.fail_all(&e),
            }
            let mut i = 0;
            while i < self.bridges.len() {
                match pump(&mut self.bridges[i], &mut self.buf, &self.diagnostic) {
                    Step::Progress => {
                        progress = true;
                        i += 1;
                    }
                    Step::Idle => i += 1,
                    Step::Done => {
                        let mut b = self.bridges.swap_remove(i);
                        close_channel(&mut b.channel);

                        progress = true;
                    }
                    Step::SessionDead(e) => return self.fail_all(&e),
                }
            }
            if last_keepalive.elapsed() > Duration::from_secs(5) {
                last_keepalive = Instant::now();
                let _ = self.session.keepalive_send();
                if self.bridges.is_empty() && peer_closed(&self.socket) {
                    return self.fail_all("ssh connection closed by the minion");
                }
            }
            if !progress && !self.wait() {
                return self.fail_all("ssh connection closed by the minion");
            }
        }
    }

    fn take_commands(&mut self) -> bool {
        let mut drained = [0u8; 64];
        while (&self.wake).read(&mut drained).is_ok_and(|n| n > 0) {}
        let mut any = false;
        while let Ok(Command::Open { to, local, reply }) = self.queue.try_recv() {
            self.opening.push_back(Opening {
                to,
                local,
                reply,
                streamlocal_error: None,
                exec_channel: None,
            });
            any = true;
        }
        any
    }

    /// Channel opens are serialised on the session; an EAGAIN leaves the rest for later.
    fn open_channels(&mut self) -> Result<bool, String> {
        let mut progress = false;
        while let Some(o) = self.opening.front_mut() {
            let attempt = match &o.to {
                Destination::Tcp(host, port) => {
                    match self.session.channel_direct_tcpip(host, *port, None) {
                        Err(e) if !is_again(&e) && !is_session_error(&e) => {
                            let message = format!(
                                "cannot open {host}:{port} from the minion: {}",
                                e.message()
                            );
                            let o = self.opening.pop_front().expect("front exists");
                            let _ = o.reply.send(Err(message));
                            progress = true;
                            continue;
                        }
                        other => other.map(Some),
                    }
                }
                Destination::Socket(path) if o.streamlocal_error.is_none() && !self.dial_stdio => {
                    self.session
                        .channel_direct_streamlocal(path, None)
                        .map(Some)
                }
                Destination::Socket(_) => open_dial_stdio(&self.session, o),
            };
            let tcp = matches!(o.to, Destination::Tcp(..));
            match attempt {
                Ok(Some(channel)) => {
                    let o = self.opening.pop_front().expect("front exists");
                    if !tcp && (o.streamlocal_error.is_some() || self.dial_stdio) {
                        self.dial_stdio = true; // remember: this sshd only allows the fallback
                    }
                    if o.local.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = o.reply.send(Ok(()));
                    let mut bridge = Bridge::new(channel, o.local);
                    if self.dial_stdio && !tcp {
                        bridge.stderr = Some(Vec::new());
                    }
                    self.bridges.push(bridge);
                    progress = true;
                }
                Ok(None) => break, // the fallback is half-way set up
                Err(e) if is_again(&e) => break,
                Err(e) if is_session_error(&e) => {
                    return Err(format!("ssh session failed: {}", e.message()))
                }
                Err(e) if o.streamlocal_error.is_none() && !self.dial_stdio => {
                    o.streamlocal_error = Some(e.message().to_string());
                    progress = true;
                }
                Err(e) => {
                    let o = self.opening.pop_front().expect("front exists");
                    let streamlocal = o.streamlocal_error.unwrap_or_else(|| "not tried".into());
                    let path = match &o.to {
                        Destination::Socket(p) => p.as_str(),
                        Destination::Tcp(..) => "?",
                    };
                    let _ = o.reply.send(Err(format!(
                        "cannot open the Docker socket {path} over ssh: {streamlocal} (is the path right, and is AllowStreamLocalForwarding on?); the `docker system dial-stdio` fallback failed too: {}",
                        e.message()
                    )));
                    progress = true;
                }
            }
        }
        Ok(progress)
    }

    /// Sleeps until the TCP socket, a local socket or the wake-up socket is ready.
    /// Returns false if the TCP connection is gone.
    fn wait(&mut self) -> bool {
        let mut fds = Vec::with_capacity(self.bridges.len() + 2);
        fds.push(libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let busy = !self.bridges.is_empty() || !self.opening.is_empty();
        let mut tcp_events = 0;
        if busy {
            let dirs = self.session.block_directions();
            tcp_events = libc::POLLIN;
            if matches!(
                dirs,
                ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
            ) {
                tcp_events |= libc::POLLOUT;
            }
        }
        fds.push(libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: tcp_events,
            revents: 0,
        });
        for b in &self.bridges {
            let mut events = 0;
            if b.up_sent >= b.up.len() && !b.local_eof {
                events |= libc::POLLIN;
            }
            if b.down_sent < b.down.len() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd {
                fd: b.local.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        // libssh2 may already hold data for a channel (read from the socket while serving
        // another channel): poll would not report it, so do not sleep on it.
        let buffered = self.bridges.iter().any(|b| {
            b.down_sent >= b.down.len() && !b.remote_eof && b.channel.read_window().available > 0
        });
        if buffered {
            return true;
        }
        // Idle: wake for commands and the keepalive tick. Busy: come back now and then, for
        // states libssh2 keeps that no poll reports.
        let timeout = if busy { 50 } else { 1000 };
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        // A local end closed for good (hyper gave up on a call that never got an answer) keeps
        // reporting POLLHUP whatever we ask for: close its channel, or the loop would spin.
        for (b, fd) in self.bridges.iter_mut().zip(&fds[2..]) {
            if fd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                b.closing = true;
                b.local_eof = true;
                b.up_sent = b.up.len();
                b.down_sent = b.down.len();
            }
        }
        // At EOF the socket stays readable forever while libssh2 reports "again": check the
        // peer whenever the socket wakes us, or the loop would spin on a dead connection.
        !(n > 0 && fds[1].revents != 0 && peer_closed(&self.socket))
    }

    fn fail_all(&mut self, message: &str) {
        for o in self.opening.drain(..) {
            let _ = o.reply.send(Err(message.to_string()));
        }
        // Dropping the local ends tells hyper the connections are gone.
        self.bridges.clear();
    }
}

/// One non-blocking step of opening the dial-stdio fallback: an exec channel running the
/// Docker CLI. `Ok(None)` means "call again".
fn open_dial_stdio(
    session: &ssh2::Session,
    o: &mut Opening,
) -> Result<Option<ssh2::Channel>, ssh2::Error> {
    let Destination::Socket(path) = &o.to else {
        unreachable!("only unix sockets fall back to dial-stdio");
    };
    let command = dial_stdio_command(path).ok_or_else(|| {
        ssh2::Error::new(
            ssh2::ErrorCode::Session(-34),
            "the docker socket path contains a quote",
        )
    })?;
    if o.exec_channel.is_none() {
        o.exec_channel = Some(session.channel_session()?);
    }
    let channel = o.exec_channel.as_mut().expect("just set");
    match channel.exec(&command) {
        Ok(()) => Ok(o.exec_channel.take()),
        Err(e) if is_again(&e) => Ok(None),
        Err(e) => {
            o.exec_channel = None;
            Err(e)
        }
    }
}

/// Has the peer closed the TCP connection? (A zero-byte peek is an orderly shutdown.)
fn peer_closed(socket: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: recv into a 1-byte buffer we own, without blocking.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            byte.as_mut_ptr() as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n == 0 {
        return true;
    }
    n < 0 && {
        let err = std::io::Error::last_os_error();
        !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
    }
}

fn is_session_error(e: &ssh2::Error) -> bool {
    // Socket send/recv failures, disconnects and timeouts end the session, not one channel.
    matches!(e.code(), ssh2::ErrorCode::Session(-7 | -9 | -13 | -43))
}

fn io_session_dead(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
    )
}

/// Reads what a dial-stdio relay wrote to stderr, keeping at most 4 KiB; returns bytes read.
fn read_stderr(b: &mut Bridge, buf: &mut [u8]) -> usize {
    let Some(err) = &mut b.stderr else { return 0 };
    match b.channel.stderr().read(buf) {
        Ok(n) => {
            let room = 4096usize.saturating_sub(err.len());
            err.extend_from_slice(&buf[..n.min(room)]);
            n
        }
        Err(_) => 0,
    }
}

/// Local to channel: reads what hyper wrote once the last of it is sent, sends it, and the
/// end of it once all is sent. Whether anything moved; `Err`: the session is dead.
fn pump_up(b: &mut Bridge, buf: &mut [u8]) -> Result<bool, Step> {
    let mut progress = false;
    if b.up_sent >= b.up.len() && !b.local_eof {
        match b.local.read(buf) {
            Ok(0) => {
                b.local_eof = true;
                progress = true;
            }
            Ok(n) => {
                b.up.clear();
                b.up.extend_from_slice(&buf[..n]);
                b.up_sent = 0;
                progress = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                b.local_eof = true;
                b.closing = true;
            }
        }
    }
    while b.up_sent < b.up.len() {
        match b.channel.write(&b.up[b.up_sent..]) {
            Ok(0) => break,
            Ok(n) => {
                b.up_sent += n;
                progress = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if io_session_dead(&e) => return Err(Step::SessionDead(e.to_string())),
            Err(_) => {
                b.closing = true;
                break;
            }
        }
    }
    if b.local_eof && b.up_sent >= b.up.len() && !b.eof_sent {
        match b.channel.send_eof() {
            Ok(()) => {
                b.eof_sent = true;
                progress = true;
            }
            Err(e) if is_again(&e) => {}
            Err(_) => b.eof_sent = true,
        }
    }
    Ok(progress)
}

/// Channel to local: reads what the minion sent once the last of it is written, and writes
/// it to hyper. Whether anything moved; `Err`: the session is dead.
fn pump_down(b: &mut Bridge, buf: &mut [u8]) -> Result<bool, Step> {
    let mut progress = false;
    if b.down_sent >= b.down.len() && !b.remote_eof {
        match b.channel.read(buf) {
            Ok(0) => {
                if b.channel.eof() {
                    b.remote_eof = true;
                    progress = true;
                }
            }
            Ok(n) => {
                b.down.clear();
                b.down.extend_from_slice(&buf[..n]);
                b.down_sent = 0;
                progress = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if b.channel.eof() {
                    b.remote_eof = true;
                    progress = true;
                }
            }
            Err(e) if io_session_dead(&e) => return Err(Step::SessionDead(e.to_string())),
            Err(_) => b.remote_eof = true,
        }
    }
    while b.down_sent < b.down.len() {
        match b.local.write(&b.down[b.down_sent..]) {
            Ok(n) => {
                b.down_sent += n;
                progress = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                break
            }
            Err(_) => {
                // hyper went away: drop what the minion still sends.
                b.closing = true;
                b.down_sent = b.down.len();
            }
        }
    }
    Ok(progress)
}

/// Moves what it can in both directions without blocking.
fn pump(b: &mut Bridge, buf: &mut [u8], diagnostic: &RemoteDiagnostic) -> Step {
    let mut progress = match pump_up(b, buf) {
        Ok(moved) => moved,
        Err(dead) => return dead,
    };
    // stderr of a dial-stdio relay: keep the start of it for error messages
    progress |= read_stderr(b, buf) > 0;
    progress |= match pump_down(b, buf) {
        Ok(moved) => moved,
        Err(dead) => return dead,
    };
    let drained = b.down_sent >= b.down.len();
    if b.remote_eof && drained {
        // Record what a failed dial-stdio said *before* hyper learns the connection is gone,
        // so the error it raises can carry the reason.
        while read_stderr(b, buf) > 0 {}
        if let Some(err) = b.stderr.take() {
            let text = String::from_utf8_lossy(&err).trim().to_string();
            if !text.is_empty() {
                *diagnostic.lock().expect("diagnostic") = Some(format!(
                    "docker system dial-stdio on the minion failed: {text}"
                ));
            }
        }
        let _ = b.local.shutdown(std::net::Shutdown::Write);
        if b.local_eof || b.closing {
            return Step::Done;
        }
    }
    if b.closing && drained && b.up_sent >= b.up.len() {
        return Step::Done;
    }
    if progress {
        Step::Progress
    } else {
        Step::Idle
    }
}

/// Closes a channel fully before it is dropped: dropping an open channel races other users of
/// the session (ssh2-rs #322). Bounded, so a wedged channel cannot stall the loop for long.
fn close_channel(channel: &mut ssh2::Channel) {
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline {
        match channel.close() {
            Ok(()) => return,
            Err(e) if is_again(&e) => std::thread::yield_now(),
            Err(_) => return,
        }
    }
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
