//! A real etcd cluster for tests: members of Debian's etcd (`/usr/bin/etcd`, 3.4) on loopback
//! ports chosen free, data under a temp dir (in `/dev/shm` when there is one: fsyncs cost
//! nothing there). Members are started from one thread that lives as long as the process, with
//! `PR_SET_PDEATHSIG`, so they die with the test binary however it ends; `Drop` kills them too.
//! Included with `#[path]` by the tests and the benchmark that need etcd.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

pub struct EtcdCluster {
    members: Mutex<Vec<Member>>,
    cluster: String,
    dir: tempfile::TempDir,
}

/// A port nobody listens on now (the kernel's pick for an ephemeral bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

type Job = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns from a thread that never ends: a child's PR_SET_PDEATHSIG fires when the thread
/// that forked it exits, and test threads end after each test.
pub fn spawn(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (reply, rx) = mpsc::channel();
    tx.lock().unwrap().send((cmd, reply)).unwrap();
    rx.recv().unwrap()
}

impl EtcdCluster {
    /// Starts `n` members and waits (bounded) until every one reports healthy.
    pub fn start(n: usize) -> EtcdCluster {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        EtcdCluster::start_in(n, std::path::Path::new(base))
    }

    /// `start`, with the members' data under `base` (a disk, for a benchmark).
    pub fn start_in(n: usize, base: &std::path::Path) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("drover-etcd-")
            .tempdir_in(base)
            .unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let c = EtcdCluster {
            members: Mutex::new(members),
            cluster,
            dir,
        };
        for i in 0..n {
            c.start_member(i);
        }
        c.wait_healthy(&(0..n).collect::<Vec<_>>(), Duration::from_secs(30));
        c
    }

    fn start_member(&self, i: usize) {
        let mut members = self.members.lock().unwrap();
        let m = &mut members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let mut cmd = Command::new(ETCD);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{}",
                m.client
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{}",
                m.client
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", m.peer))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                m.peer
            ))
            .arg(format!("--initial-cluster={}", self.cluster))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=drover-test")
            // Fast elections on loopback, so a lost member costs tests little time.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        m.child = Some(spawn(cmd).expect("etcd starts (Debian package etcd-server)"));
    }

    /// `host:port` of every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .lock()
            .unwrap()
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect()
    }

    /// `etcd://...` for a prefix of this cluster.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints().join(","))
    }

    /// SIGKILLs member `i`.
    pub fn kill(&self, i: usize) {
        if let Some(mut c) = self.members.lock().unwrap()[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data and waits until it is healthy.
    pub fn restart(&self, i: usize) {
        self.start_member(i);
        self.wait_healthy(&[i], Duration::from_secs(30));
    }

    /// Waits until the members `which` answer `/health` with true.
    pub fn wait_healthy(&self, which: &[usize], limit: Duration) {
        let deadline = Instant::now() + limit;
        let ports: Vec<(String, u16)> = {
            let m = self.members.lock().unwrap();
            which
                .iter()
                .map(|&i| (m[i].name.clone(), m[i].client))
                .collect()
        };
        for (name, port) in ports {
            loop {
                if health(port) {
                    break;
                }
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                        .unwrap_or_default();
                    panic!("etcd member {name} not healthy within {limit:?}; its log:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Whether the member at `port` says it is healthy (it has a leader and a quorum).
fn health(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in self.members.get_mut().unwrap().iter_mut() {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// One 3-member cluster shared by the tests of a binary (each test uses its own prefix).
pub fn shared() -> &'static EtcdCluster {
    static CLUSTER: OnceLock<EtcdCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| EtcdCluster::start(3))
}

/// A prefix no other test of this run uses.
pub fn unique_prefix(name: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "t{}-{}/{name}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// A key as etcd holds it, read behind drover's back.
pub struct RawKv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

impl EtcdCluster {
    /// One call of etcd's JSON gateway by curl, on the first member that answers: the answer.
    fn gateway(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let mut last = String::new();
        for endpoint in self.endpoints() {
            let out = Command::new("curl")
                .args(["-sS", "--fail-with-body", "--max-time", "5", "-d"])
                .arg(body.to_string())
                .arg(format!("http://{endpoint}{path}"))
                .output()
                .expect("curl runs");
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).expect("etcd answers JSON");
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
        }
        panic!("no etcd member answered {path}: {last}");
    }

    /// Every key starting with `prefix` (or exactly `prefix`, with `exact`).
    pub fn raw_range(&self, prefix: &str, exact: bool) -> Vec<RawKv> {
        use base64::{engine::general_purpose::STANDARD as B64, Engine};
        let mut body = serde_json::json!({ "key": B64.encode(prefix) });
        if !exact {
            let mut end = prefix.as_bytes().to_vec();
            *end.last_mut().expect("a prefix") += 1;
            body["range_end"] = B64.encode(end).into();
        }
        let answer = self.gateway("/v3/kv/range", &body);
        let kvs = answer["kvs"].as_array().cloned().unwrap_or_default();
        kvs.iter()
            .map(|kv| RawKv {
                key: B64.decode(kv["key"].as_str().unwrap_or("")).unwrap(),
                value: B64.decode(kv["value"].as_str().unwrap_or("")).unwrap(),
                mod_revision: kv["mod_revision"].as_str().unwrap_or("0").parse().unwrap(),
            })
            .collect()
    }

    /// Puts `value` at `key`, or with `None` deletes it, behind drover's back.
    pub fn raw_set(&self, key: &str, value: Option<&[u8]>) {
        use base64::{engine::general_purpose::STANDARD as B64, Engine};
        match value {
            Some(v) => self.gateway(
                "/v3/kv/put",
                &serde_json::json!({ "key": B64.encode(key), "value": B64.encode(v) }),
            ),
            None => self.gateway(
                "/v3/kv/deleterange",
                &serde_json::json!({ "key": B64.encode(key) }),
            ),
        };
    }
}
