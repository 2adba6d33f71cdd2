//! A `drover daemon` run by a test: its output in the test directory, its status API found
//! in that output, and SIGTERM (then SIGKILL) when the test ends, passed or not, so a failed
//! test cannot leave a daemon changing the cluster under the next ones.

use super::TestDir;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    /// `drover daemon --resync 2 --listen 127.0.0.1:0` in `t`, with `extra` arguments.
    pub fn start(t: &TestDir, extra: &[&str]) -> Daemon {
        let mut args = vec!["daemon", "--resync", "2", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        Daemon::spawn(t, &args, "daemon.log")
    }

    /// Any long-running drover command (`proxy`, ...), its output in `log` in `t`.
    pub fn spawn(t: &TestDir, args: &[&str], log: &str) -> Daemon {
        let log = t.join(log);
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .current_dir(t.path())
            .args(args)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The status API's address, once the daemon has said it.
    pub fn status_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.log().lines().find_map(|l| {
                l.split_once("status API on http://")?
                    .1
                    .strip_suffix("/status")
                    .map(str::to_string)
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "no status API in\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid and a signal touches no memory of ours.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to `addr`; the whole answer (head and body).
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// The body of an HTTP answer.
pub fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}
