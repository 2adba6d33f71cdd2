//! The SSH I/O threads: a fixed pool, each pumping many minions' sessions.
//!
//! libssh2 puts a session and all its channels behind one lock, so a blocking read on one
//! channel would stall every other. Instead each session runs in non-blocking mode on one
//! thread of this pool, which pumps bytes between each channel (`direct-streamlocal` to the
//! Docker socket, or `direct-tcpip` for probes) and its in-memory pipe (`pipe.rs`) to hyper.
//! Many calls are in flight at once as many channels. A thread sleeps in `poll(2)` on its
//! sessions' TCP sockets and one wake-up socket that hyper's writes poke.
//!
//! The thread count is fixed (`POOL_THREADS`), whatever the number of minions: a session is
//! given to the thread with the fewest. Per minion this costs one file descriptor (the TCP
//! connection) and no thread.

use super::pipe::{self, ChannelStream, PipeEnd, Poke};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// I/O threads for every minion together. Two keep up with a thousand minions' rounds on two
/// cores (the bench `scale` measures it); the work per byte is libssh2's crypto.
const POOL_THREADS: usize = 2;
const EAGAIN: i32 = -37; // LIBSSH2_ERROR_EAGAIN
const BUF: usize = 64 * 1024;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);

pub(super) fn is_again(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(EAGAIN)
}

/// What the minion said on stderr when a `dial-stdio` relay ended badly, for error messages.
pub(super) type RemoteDiagnostic = Arc<Mutex<Option<String>>>;

/// Where a channel goes on the minion's side.
#[derive(Debug, Clone)]
pub(super) enum Destination {
    /// A unix socket (the Docker socket): `direct-streamlocal`, or the dial-stdio fallback.
    Socket(String),
    /// A TCP address as the minion reaches it (a pod's port, for probes): `direct-tcpip`, as
    /// the kubelet probed from the node.
    Tcp(String, u16),
}

struct OpenRequest {
    to: Destination,
    end: PipeEnd,
    reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// A session handed to the pool: how to ask it for channels, and whether it still lives.
pub(super) struct Worker {
    requests: mpsc::Sender<OpenRequest>,
    poke: Arc<Poke>,
    pub alive: Arc<AtomicBool>,
}

impl Worker {
    /// Asks for a channel to `to`; the stream is usable once the reply says Ok.
    pub fn open(
        &self,
        to: Destination,
    ) -> Option<(
        ChannelStream,
        tokio::sync::oneshot::Receiver<Result<(), String>>,
    )> {
        let (stream, end) = pipe::pipe(self.poke.clone());
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests.send(OpenRequest { to, end, reply }).ok()?;
        self.poke.poke();
        Some((stream, answer))
    }
}

struct PoolThread {
    adopt: Mutex<mpsc::Sender<Session>>,
    poke: Arc<Poke>,
    sessions: Arc<AtomicUsize>,
}

fn pool() -> &'static [PoolThread] {
    static POOL: OnceLock<Vec<PoolThread>> = OnceLock::new();
    POOL.get_or_init(|| {
        (0..POOL_THREADS)
            .map(|i| {
                let (wake, wake_reader) = UnixStream::pair().expect("socketpair for the ssh pool");
                wake_reader
                    .set_nonblocking(true)
                    .expect("non-blocking wake socket");
                wake.set_nonblocking(true)
                    .expect("non-blocking wake socket");
                let poke = Arc::new(Poke::new(wake));
                let (adopt, adopted) = mpsc::channel();
                let sessions = Arc::new(AtomicUsize::new(0));
                let thread = PoolLoop {
                    adopted,
                    wake: wake_reader,
                    poke: poke.clone(),
                    count: sessions.clone(),
                    sessions: Vec::new(),
                    buf: vec![0; BUF],
                    fds: Vec::new(),
                };
                std::thread::Builder::new()
                    .name(format!("ssh-io-{i}"))
                    .spawn(move || thread.run())
                    .expect("start an ssh I/O thread");
                PoolThread {
                    adopt: Mutex::new(adopt),
                    poke,
                    sessions,
                }
            })
            .collect()
    })
}

/// Hands an authenticated, non-blocking session to the least busy pool thread.
pub(super) fn adopt(session: ssh2::Session, socket: RawFd, diagnostic: RemoteDiagnostic) -> Worker {
    let thread = pool()
        .iter()
        .min_by_key(|t| t.sessions.load(Ordering::Relaxed))
        .expect("the pool has threads");
    let (requests, queue) = mpsc::channel();
    let alive = Arc::new(AtomicBool::new(true));
    thread.sessions.fetch_add(1, Ordering::Relaxed);
    let adopted = Session {
        diagnostic,
        dial_stdio: false,
        session,
        socket,
        queue,
        bridges: Vec::new(),
        opening: VecDeque::new(),
        alive: alive.clone(),
        last_keepalive: Instant::now(),
    };
    let _ = thread.adopt.lock().expect("pool queue").send(adopted);
    thread.poke.poke();
    Worker {
        requests,
        poke: thread.poke.clone(),
        alive,
    }
}

struct PoolLoop {
    adopted: mpsc::Receiver<Session>,
    wake: UnixStream,
    poke: Arc<Poke>,
    count: Arc<AtomicUsize>,
    sessions: Vec<Session>,
    buf: Vec<u8>,
    fds: Vec<libc::pollfd>,
}

impl PoolLoop {
    fn run(mut self) {
        loop {
            self.poke.rearm();
            let mut drained = [0u8; 64];
            while (&self.wake).read(&mut drained).is_ok_and(|n| n > 0) {}
            while let Ok(s) = self.adopted.try_recv() {
                self.sessions.push(s);
            }
            let mut progress = false;
            let mut i = 0;
            while i < self.sessions.len() {
                match self.sessions[i].step(&mut self.buf) {
                    Ok(moved) => {
                        progress |= moved;
                        i += 1;
                    }
                    Err(e) => {
                        let mut dead = self.sessions.swap_remove(i);
                        dead.fail_all(&e);
                        self.count.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            if !progress {
                self.wait();
            }
        }
    }

    /// Sleeps until a session's socket or the wake-up socket is ready; a session whose peer
    /// closed is failed.
    fn wait(&mut self) {
        // libssh2 may already hold data for a channel (read from the socket while serving
        // another channel): poll would not report it, so do not sleep on it.
        if self.sessions.iter().any(Session::holds_unread) {
            return;
        }
        self.fds.clear();
        self.fds.push(libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let mut busy = false;
        for s in &self.sessions {
            busy |= s.busy();
            self.fds.push(libc::pollfd {
                fd: s.socket,
                events: s.poll_events(),
                revents: 0,
            });
        }
        // Idle: wake for requests and the keepalive tick. Busy: come back now and then, for
        // states libssh2 keeps that no poll reports.
        let timeout = if busy { 50 } else { 1000 };
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        let n = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout,
            )
        };
        if n <= 0 {
            return;
        }
        // At EOF a socket stays readable forever while libssh2 reports "again": check the
        // peer whenever a socket wakes us, or the loop would spin on a dead connection.
        let mut i = 0;
        let mut fd = 1;
        while i < self.sessions.len() {
            let woke = self.fds[fd].revents != 0;
            fd += 1;
            if woke && peer_closed(self.sessions[i].socket) {
                let mut dead = self.sessions.swap_remove(i);
                dead.fail_all("ssh connection closed by the minion");
                self.count.fetch_sub(1, Ordering::Relaxed);
                // swap_remove moved the last session here; its pollfd is the last one.
                if i < self.sessions.len() {
                    let last = self.fds.len() - 1;
                    self.fds.swap(fd - 1, last);
                    self.fds.pop();
                    fd -= 1;
                }
                continue;
            }
            i += 1;
        }
    }
}

struct Bridge {
    channel: ssh2::Channel,
    end: PipeEnd,
    /// Bytes taken from hyper, not yet written to the channel.
    up: Vec<u8>,
    up_sent: usize,
    local_eof: bool,
    eof_sent: bool,
    remote_eof: bool,
    closing: bool,
    /// For dial-stdio relays: what the remote command wrote to stderr (bounded).
    stderr: Option<Vec<u8>>,
}

impl Bridge {
    fn new(channel: ssh2::Channel, end: PipeEnd) -> Bridge {
        Bridge {
            channel,
            end,
            up: Vec::new(),
            up_sent: 0,
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
    end: PipeEnd,
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

/// One minion's session on a pool thread.
struct Session {
    diagnostic: RemoteDiagnostic,
    /// This sshd refused stream-local forwarding and the dial-stdio fallback worked: use it.
    dial_stdio: bool,
    session: ssh2::Session,
    /// The TCP connection's descriptor, owned by `session`.
    socket: RawFd,
    queue: mpsc::Receiver<OpenRequest>,
    bridges: Vec<Bridge>,
    opening: VecDeque<Opening>,
    alive: Arc<AtomicBool>,
    last_keepalive: Instant,
}

/// What one step of pumping a bridge did.
enum Step {
    Progress,
    Idle,
    Done,
    /// The session itself failed: every channel is gone.
    SessionDead(String),
}

impl Session {
    /// Everything that can move without blocking; whether anything did. `Err`: the session
    /// is dead.
    fn step(&mut self, buf: &mut [u8]) -> Result<bool, String> {
        let mut progress = false;
        while let Ok(OpenRequest { to, end, reply }) = self.queue.try_recv() {
            self.opening.push_back(Opening {
                to,
                end,
                reply,
                streamlocal_error: None,
                exec_channel: None,
            });
            progress = true;
        }
        progress |= self.open_channels()?;
        let mut i = 0;
        while i < self.bridges.len() {
            match pump(&mut self.bridges[i], buf, &self.diagnostic) {
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
                Step::SessionDead(e) => return Err(e),
            }
        }
        if self.last_keepalive.elapsed() > KEEPALIVE_EVERY {
            self.last_keepalive = Instant::now();
            let _ = self.session.keepalive_send();
            if self.bridges.is_empty() && peer_closed(self.socket) {
                return Err("ssh connection closed by the minion".into());
            }
        }
        Ok(progress)
    }

    fn busy(&self) -> bool {
        !self.bridges.is_empty() || !self.opening.is_empty()
    }

    fn poll_events(&self) -> libc::c_short {
        if !self.busy() {
            // Only to notice a peer that closed; libssh2 has nothing to read or send.
            return libc::POLLIN;
        }
        let mut events = libc::POLLIN;
        if matches!(
            self.session.block_directions(),
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        ) {
            events |= libc::POLLOUT;
        }
        events
    }

    fn holds_unread(&self) -> bool {
        self.bridges
            .iter()
            .any(|b| !b.remote_eof && b.channel.read_window().available > 0 && b.end.room() > 0)
    }

    /// Channel opens are serialised on the session; an EAGAIN leaves the rest for later.
    fn open_channels(&mut self) -> Result<bool, String> {
        let mut progress = false;
        while let Some(o) = self.opening.front_mut() {
            if o.end.gone() || o.reply.is_closed() {
                // The caller gave up (timed out) before the channel opened.
                self.opening.pop_front();
                progress = true;
                continue;
            }
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
                    let _ = o.reply.send(Ok(()));
                    let mut bridge = Bridge::new(channel, o.end);
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

    fn fail_all(&mut self, message: &str) {
        self.alive.store(false, Ordering::Release);
        for o in self.opening.drain(..) {
            let _ = o.reply.send(Err(message.to_string()));
        }
        for b in self.bridges.drain(..) {
            b.end.break_with(message);
        }
        // Requests sent after this fail at once: their sender sees the queue closed.
        while let Ok(r) = self.queue.try_recv() {
            let _ = r.reply.send(Err(message.to_string()));
        }
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
pub(super) fn peer_closed(socket: RawFd) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: recv into a 1-byte buffer we own, without blocking.
    let n = unsafe {
        libc::recv(
            socket,
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

/// hyper to channel: takes what hyper wrote once the last of it is sent, sends it, and the
/// end of it once all is sent. Whether anything moved; `Err`: the session is dead.
fn pump_up(b: &mut Bridge) -> Result<bool, Step> {
    let mut progress = false;
    if b.up_sent >= b.up.len() && !b.local_eof {
        let taken = b.end.take_up(&mut b.up);
        b.up_sent = 0;
        progress |= !b.up.is_empty();
        if taken.gone {
            b.closing = true;
        }
        if taken.eof {
            b.local_eof = true;
            progress = true;
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

/// Channel to hyper: reads what the minion sent while hyper has room for it. Whether
/// anything moved; `Err`: the session is dead.
fn pump_down(b: &mut Bridge, buf: &mut [u8]) -> Result<bool, Step> {
    let mut progress = false;
    while !b.remote_eof {
        let room = b.end.room().min(buf.len());
        if room == 0 {
            break; // hyper is behind: leave it in the channel, whose window closes
        }
        match b.channel.read(&mut buf[..room]) {
            Ok(0) => {
                if b.channel.eof() {
                    b.remote_eof = true;
                    progress = true;
                }
                break;
            }
            Ok(n) => {
                b.end.give_down(&buf[..n]);
                progress = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if b.channel.eof() {
                    b.remote_eof = true;
                    progress = true;
                }
                break;
            }
            Err(e) if io_session_dead(&e) => return Err(Step::SessionDead(e.to_string())),
            Err(_) => {
                b.remote_eof = true;
                break;
            }
        }
    }
    Ok(progress)
}

/// Moves what it can in both directions without blocking.
fn pump(b: &mut Bridge, buf: &mut [u8], diagnostic: &RemoteDiagnostic) -> Step {
    let mut progress = match pump_up(b) {
        Ok(moved) => moved,
        Err(dead) => return dead,
    };
    // stderr of a dial-stdio relay: keep the start of it for error messages
    progress |= read_stderr(b, buf) > 0;
    progress |= match pump_down(b, buf) {
        Ok(moved) => moved,
        Err(dead) => return dead,
    };
    if b.remote_eof {
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
        b.end.remote_eof();
        if b.local_eof || b.closing {
            return Step::Done;
        }
    }
    if b.closing && b.up_sent >= b.up.len() {
        return Step::Done;
    }
    if progress {
        Step::Progress
    } else {
        Step::Idle
    }
}

/// Closes a channel fully before it is dropped: dropping an open channel races other users of
/// the session (ssh2-rs #322). Bounded, so a wedged channel cannot stall the thread for long.
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
