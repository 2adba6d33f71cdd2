//! SSH host keys against a known_hosts file (OpenSSH's format): checking the key a server
//! offers, and recording one after the user accepted it. Minions (`minion/ssh.rs`) and git
//! sources over SSH (`source/git.rs`) share one file, `[ssh] known_hosts`, and one trust step.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use sha2::{Digest, Sha256};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The host as written in known_hosts: `host`, or `[host]:port` off port 22.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// A public host key: its wire blob (which names its type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub blob: Vec<u8>,
}

impl HostKey {
    /// The key type named at the start of the blob (`ssh-ed25519`, `ssh-rsa`, ...).
    pub fn kind(&self) -> String {
        key_type_of(&self.blob).unwrap_or_else(|| "unknown".into())
    }

    /// OpenSSH's fingerprint: `SHA256:` and the unpadded base64 of the blob's SHA-256.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.blob);
        format!("SHA256:{}", B64.encode(digest).trim_end_matches('='))
    }

    /// The known_hosts line that records this key for `name`.
    pub fn line(&self, name: &str) -> String {
        format!("{name} {} {}", self.kind(), B64.encode(&self.blob))
    }
}

/// The key type named at the start of a key blob.
fn key_type_of(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    String::from_utf8(blob.get(4..4 + len)?.to_vec()).ok()
}

/// What known_hosts says of a key offered by a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match,
    /// The host is not in the file with a key of this type (hashed entries of another key
    /// count here too: their names cannot be read back).
    NotFound,
    /// The host is recorded, by name, with another key of this type.
    Mismatch,
}

/// Reads `file` (a missing file knows no host) into libssh2's known-hosts list.
pub(crate) fn open(session: &ssh2::Session, file: &Path) -> Result<ssh2::KnownHosts, String> {
    let mut known = session.known_hosts().map_err(|e| e.to_string())?;
    if file.exists() {
        known
            .read_file(file, ssh2::KnownHostFileKind::OpenSSH)
            .map_err(|e| format!("{}: {}", file.display(), e.message()))?;
    }
    Ok(known)
}

/// Checks the key `host:port` offered against `file`. libssh2 matches hashed and plain names
/// alike but compares keys of any type (a host known by its ed25519 key that offers its ECDSA
/// one would read as changed), so a key it does not match is told apart here: changed only
/// when the host is named with another key of the same type.
pub fn check(file: &Path, host: &str, port: u16, key: &HostKey) -> Result<Verdict, String> {
    let session = ssh2::Session::new().map_err(|e| e.to_string())?;
    let known = open(&session, file)?;
    match known.check_port(host, port, &key.blob) {
        ssh2::CheckResult::Match => return Ok(Verdict::Match),
        ssh2::CheckResult::NotFound => return Ok(Verdict::NotFound),
        ssh2::CheckResult::Mismatch => {}
        ssh2::CheckResult::Failure => {
            return Err(format!(
                "could not check the host key against {}",
                file.display()
            ))
        }
    }
    let kind = key.kind();
    let same_type = recorded_types(&session, file, &host_name(host, port))?;
    Ok(if same_type.contains(&kind) {
        Verdict::Mismatch
    } else {
        Verdict::NotFound
    })
}

/// The key types `file` records for `name`, in the file's order.
pub(crate) fn recorded_types(
    session: &ssh2::Session,
    file: &Path,
    name: &str,
) -> Result<Vec<String>, String> {
    let known = open(session, file)?;
    let mut types = Vec::new();
    for host in known.iter().map_err(|e| e.to_string())? {
        if host.name() == Some(name) {
            if let Some(kind) = B64.decode(host.key()).ok().and_then(|b| key_type_of(&b)) {
                if !types.contains(&kind) {
                    types.push(kind);
                }
            }
        }
    }
    Ok(types)
}

/// Connects to `host:port` and takes the host key its sshd offers, checking nothing and
/// authenticating nothing: the first half of the explicit "accept this key" step.
pub fn fetch(host: &str, port: u16, timeout: Duration) -> Result<HostKey, String> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("ssh connect to {addr}: {e}"))?;
    let mut session = ssh2::Session::new().map_err(|e| e.to_string())?;
    session.set_timeout(timeout.as_millis() as u32);
    session.set_tcp_stream(tcp);
    session
        .handshake()
        .map_err(|e| format!("ssh handshake with {addr}: {}", e.message()))?;
    let (blob, _) = session.host_key().ok_or("server sent no host key")?;
    Ok(HostKey {
        blob: blob.to_vec(),
    })
}

/// Records `key` for `name` in `file` (0600). An existing, different key for the name is only
/// replaced with `replace`. Returns the file written.
pub fn record(file: &Path, name: &str, key: &HostKey, replace: bool) -> Result<PathBuf, String> {
    // An unreadable file is an error, never an empty one to write over.
    let existing = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let names_host = |l: &str| {
        l.split_whitespace()
            .next()
            .is_some_and(|names| names.split(',').any(|n| n == name))
    };
    let line = key.line(name);
    let key_of = |l: &str| l.split_whitespace().nth(2).map(str::to_string);
    let ours = key_of(&line);
    if existing.lines().any(|l| names_host(l) && key_of(l) == ours) {
        return Ok(file.to_path_buf());
    }
    if existing.lines().any(names_host) && !replace {
        return Err(format!(
            "{} already has a different key for {name}; pass --replace to replace it with {}",
            file.display(),
            key.fingerprint()
        ));
    }
    // The host's old lines go; a line that also names other hosts keeps them.
    let mut text = String::with_capacity(existing.len() + 128);
    for l in existing.lines() {
        if !names_host(l) {
            text.push_str(l);
            text.push('\n');
            continue;
        }
        let (names, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
        let others: Vec<&str> = names.split(',').filter(|n| *n != name).collect();
        if !others.is_empty() {
            text.push_str(&format!("{} {rest}\n", others.join(",")));
        }
    }
    text.push_str(&line);
    text.push('\n');
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    crate::files::write_private_file(file, text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(file.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ed25519 key blob whose key bytes are all `b`.
    fn ed25519(b: u8) -> HostKey {
        HostKey {
            blob: [&[0, 0, 0, 11][..], b"ssh-ed25519", &[0, 0, 0, 32], &[b; 32]].concat(),
        }
    }

    #[test]
    fn a_key_names_its_type_fingerprint_and_line() {
        let key = HostKey {
            blob: [&[0, 0, 0, 11][..], b"ssh-ed25519", &[0, 0, 0, 1, 42]].concat(),
        };
        assert_eq!(key.kind(), "ssh-ed25519");
        assert!(key.fingerprint().starts_with("SHA256:") && !key.fingerprint().ends_with('='));
        assert_eq!(
            key.line(&host_name("10.0.0.2", 2222)),
            format!("[10.0.0.2]:2222 ssh-ed25519 {}", B64.encode(&key.blob))
        );
        assert_eq!(host_name("h", 22), "h");
    }

    #[test]
    fn a_recorded_key_matches_and_another_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let key = ed25519;
        assert_eq!(check(&file, "h", 2222, &key(1)).unwrap(), Verdict::NotFound);
        record(&file, &host_name("h", 2222), &key(1), false).unwrap();
        assert_eq!(check(&file, "h", 2222, &key(1)).unwrap(), Verdict::Match);
        assert_eq!(check(&file, "h", 2222, &key(2)).unwrap(), Verdict::Mismatch);
        assert_eq!(check(&file, "h", 22, &key(1)).unwrap(), Verdict::NotFound);
        let refused = record(&file, &host_name("h", 2222), &key(2), false).unwrap_err();
        assert!(refused.contains("--replace"), "{refused}");
        record(&file, &host_name("h", 2222), &key(2), true).unwrap();
        assert_eq!(check(&file, "h", 2222, &key(2)).unwrap(), Verdict::Match);
        // A key of another type is unknown, not changed.
        let ecdsa = HostKey {
            blob: [
                &[0, 0, 0, 19][..],
                b"ecdsa-sha2-nistp256",
                &[0, 0, 0, 8],
                b"nistp256",
            ]
            .concat(),
        };
        assert_eq!(check(&file, "h", 2222, &ecdsa).unwrap(), Verdict::NotFound);
    }

    #[test]
    fn replacing_a_key_keeps_the_other_names_of_its_line_and_an_unreadable_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let key = ed25519;
        std::fs::write(
            &file,
            format!("h,other {}\n", key(1).line("x").split_once(' ').unwrap().1),
        )
        .unwrap();
        record(&file, "h", &key(2), true).unwrap();
        assert_eq!(check(&file, "other", 22, &key(1)).unwrap(), Verdict::Match);
        assert_eq!(check(&file, "h", 22, &key(2)).unwrap(), Verdict::Match);
        std::fs::write(&file, [0xff, 0xfe, b'\n']).unwrap();
        assert!(record(&file, "h", &key(3), true).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), [0xff, 0xfe, b'\n']);
    }
}
