//! Git sources: the committed tree at a ref, read with git2 straight from the object database
//! (no checkout, so a dirty or absent work tree never leaks into the desired state). Remote
//! repositories are kept as bare clones under the state directory and fetched before each read.

use super::{is_hidden, is_url, GitOptions, Snapshot, SourceError};
use crate::manifest::{Format, SourceFile};
use crate::model::Origin;
use git2::{
    FetchOptions, ObjectType, RemoteCallbacks, Repository, Tree, TreeWalkMode, TreeWalkResult,
};
use std::path::{Path, PathBuf};

pub fn read(
    repo: &str,
    reference: &str,
    subdir: Option<&str>,
    opts: &GitOptions,
) -> Result<Snapshot, SourceError> {
    let err = |e: git2::Error| SourceError::Git {
        repo: repo.to_string(),
        message: e.message().to_string(),
    };
    let repository = open(repo, opts)?;
    let commit = repository
        .revparse_single(reference)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| SourceError::Git {
            repo: repo.to_string(),
            message: format!("cannot resolve ref `{reference}`: {}", e.message()),
        })?;
    let commit_id = commit.id().to_string();
    let root = commit.tree().map_err(err)?;
    let tree = match subdir {
        None => root,
        Some(dir) => {
            let entry = root
                .get_path(Path::new(dir))
                .map_err(|_| SourceError::Git {
                    repo: repo.to_string(),
                    message: format!("path `{dir}` does not exist at {reference} ({commit_id})"),
                })?;
            entry
                .to_object(&repository)
                .and_then(|o| o.peel_to_tree())
                .map_err(|_| SourceError::Git {
                    repo: repo.to_string(),
                    message: format!("path `{dir}` is not a directory at {reference}"),
                })?
        }
    };
    let prefix = subdir.map(|d| format!("{d}/")).unwrap_or_default();
    let (files, skipped) = collect(&repository, &tree, &prefix, &commit_id, opts.max_file_bytes)
        .map_err(|message| SourceError::Git {
            repo: repo.to_string(),
            message,
        })?;
    Ok(Snapshot {
        files,
        commit: Some(commit_id),
        skipped,
    })
}

pub fn resolve(repo: &str, reference: &str, opts: &GitOptions) -> Result<String, SourceError> {
    let repository = open(repo, opts)?;
    repository
        .revparse_single(reference)
        .and_then(|o| o.peel_to_commit())
        .map(|c| c.id().to_string())
        .map_err(|e| SourceError::Git {
            repo: repo.to_string(),
            message: format!("cannot resolve ref `{reference}`: {}", e.message()),
        })
}

fn collect(
    repository: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
    commit: &str,
    max_bytes: Option<u64>,
) -> Result<(Vec<SourceFile>, Vec<String>), String> {
    let odb = repository.odb().map_err(|e| e.message().to_string())?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut failure = None;
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        if is_hidden(name) {
            return TreeWalkResult::Skip;
        }
        if entry.kind() != Some(ObjectType::Blob) {
            return TreeWalkResult::Ok;
        }
        if Format::of(name).is_none() {
            skipped.push(format!("{prefix}{dir}{name}"));
            return TreeWalkResult::Ok;
        }
        let path = format!("{prefix}{dir}{name}");
        if entry.filemode() == 0o120000 {
            failure = Some(format!(
                "{path}: is a symlink; drover does not follow symlinks in git sources"
            ));
            return TreeWalkResult::Abort;
        }
        // The size from the object's header: a huge blob is refused before it is inflated.
        if let Some(limit) = max_bytes {
            match odb.read_header(entry.id()) {
                Ok((size, _)) if size as u64 > limit => {
                    failure = Some(format!(
                        "{path}: the file is {size} bytes, more than the limit of {limit} bytes per manifest (max_manifest_bytes in drover.toml)"
                    ));
                    return TreeWalkResult::Abort;
                }
                Ok(_) => {}
                Err(e) => {
                    failure = Some(format!("{path}: {}", e.message()));
                    return TreeWalkResult::Abort;
                }
            }
        }
        match repository.find_blob(entry.id()) {
            Ok(blob) => files.push(SourceFile {
                origin: Origin {
                    file: path,
                    commit: Some(commit.to_string()),
                },
                bytes: blob.content().to_vec(),
            }),
            Err(e) => {
                failure = Some(format!("{path}: {}", e.message()));
                return TreeWalkResult::Abort;
            }
        }
        TreeWalkResult::Ok
    })
    .map_err(|e| failure.clone().unwrap_or_else(|| e.message().to_string()))?;
    if let Some(f) = failure {
        return Err(f);
    }
    files.sort_by(|a, b| a.origin.file.cmp(&b.origin.file));
    skipped.sort();
    Ok((files, skipped))
}

/// Opens a local repository, or brings the bare cache of a remote one up to date.
fn open(repo: &str, opts: &GitOptions) -> Result<Repository, SourceError> {
    let err = |e: git2::Error| SourceError::Git {
        repo: repo.to_string(),
        message: e.message().to_string(),
    };
    if !is_url(repo) {
        return Repository::open(repo).map_err(err);
    }
    let dir = cache_path(&opts.cache_dir, repo);
    let repository = match Repository::open_bare(&dir) {
        Ok(r) => r,
        Err(_) => {
            // The cache sits in the state directory: private, like the store (git2 would
            // make it 0755 under the usual umask).
            crate::files::create_private_dir(&dir).map_err(|e| SourceError::Io {
                path: dir.display().to_string(),
                source: e.source,
            })?;
            Repository::init_bare(&dir).map_err(err)?
        }
    };
    fetch(&repository, repo, opts).map_err(err)?;
    Ok(repository)
}

/// Mirrors the remote's branches and tags (pruning deleted ones) and points HEAD at the
/// remote's default branch, so that `HEAD`, branch names, tags and commit ids all resolve.
fn fetch(repository: &Repository, url: &str, opts: &GitOptions) -> Result<(), git2::Error> {
    let mut remote = repository.remote_anonymous(url)?;
    // libgit2 replaces a refused host key's reason with its own "invalid or unknown remote
    // ssh hostkey": the callback keeps it here.
    let refused = std::cell::RefCell::new(None);
    let mut fetch_options = FetchOptions::new();
    fetch_options.remote_callbacks(callbacks(url, opts, &refused));
    fetch_options.prune(git2::FetchPrune::On);
    fetch_options.download_tags(git2::AutotagOption::All);
    let fetched = remote.fetch(
        &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
        Some(&mut fetch_options),
        None,
    );
    drop(fetch_options);
    if let Err(e) = fetched {
        return Err(match refused.take() {
            Some(reason) => git2::Error::from_str(&reason),
            None => e,
        });
    }
    let default_branch = remote
        .default_branch()
        .ok()
        .and_then(|b| b.as_str().ok().map(str::to_string));
    if let Some(branch) = default_branch {
        if repository.find_reference(&branch).is_ok() {
            repository.set_head(&branch)?;
        }
    }
    Ok(())
}

/// Credentials from the agent or the configured identity; an SSH host key checked against
/// `[ssh] known_hosts` (libgit2 alone reads only `~/.ssh/known_hosts` and names neither the
/// host nor the key when it refuses).
fn callbacks<'a>(
    url: &str,
    opts: &'a GitOptions,
    refused: &'a std::cell::RefCell<Option<String>>,
) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let port = ssh_host(url).map_or(22, |(_, port)| port);
    callbacks.certificate_check(move |cert, host| {
        let Some(offered) = cert.as_hostkey() else {
            // A TLS certificate: libgit2's own check against the system's roots.
            return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
        };
        let key = crate::known_hosts::HostKey {
            blob: offered
                .hostkey()
                .ok_or_else(|| {
                    git2::Error::from_str("the SSH server's host key could not be read")
                })?
                .to_vec(),
        };
        check_host_key(&opts.known_hosts, host, port, &key)
            .map(|()| git2::CertificateCheckStatus::CertificateOk)
            .map_err(|e| {
                let error = git2::Error::from_str(&e);
                *refused.borrow_mut() = Some(e);
                error
            })
    });
    let mut attempts = 0;
    callbacks.credentials(move |url, username, allowed| {
        attempts += 1;
        let user = username.unwrap_or("git");
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            // First the agent, then the configured identity; then give up instead of looping.
            match (attempts, &opts.ssh_identity) {
                (1, _) => return git2::Cred::ssh_key_from_agent(user),
                (2, Some(key)) => return git2::Cred::ssh_key(user, None, key, None),
                _ => {}
            }
        } else if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) && attempts == 1 {
            let config = git2::Config::open_default()?;
            return git2::Cred::credential_helper(&config, url, username);
        } else if allowed.contains(git2::CredentialType::DEFAULT) && attempts == 1 {
            return git2::Cred::default();
        }
        Err(git2::Error::from_str("authentication failed (tried ssh-agent, the configured identity and git credential helpers)"))
    });
    callbacks
}

/// A git source's SSH host key against `known_hosts`, with the trust step in the refusal.
fn check_host_key(
    known_hosts: &Path,
    host: &str,
    port: u16,
    key: &crate::known_hosts::HostKey,
) -> Result<(), String> {
    use crate::known_hosts::{check, host_name, Verdict};
    let name = host_name(host, port);
    let (kind, fingerprint) = (key.kind(), key.fingerprint());
    match check(known_hosts, host, port, key)? {
        Verdict::Match => Ok(()),
        Verdict::NotFound => Err(format!(
            "unknown {kind} host key {fingerprint} for {name} (not in {}); if it is right, accept it with `drover source trust`",
            known_hosts.display()
        )),
        Verdict::Mismatch => Err(format!(
            "HOST KEY CHANGED for {name}: it now offers {kind} {fingerprint}, which does not match {}. This may be an attack; if the change is expected, replace it with `drover source trust --replace`",
            known_hosts.display()
        )),
    }
}

/// The host and port of an `ssh://` (or `git+ssh://`) URL, or of scp's `[user@]host:path`
/// (port 22); `None` for other schemes and for local paths.
pub fn ssh_host(url: &str) -> Option<(String, u16)> {
    if !url.contains("://") {
        let (authority, _) = url.split_once(':')?;
        if authority.contains('/') || authority.is_empty() {
            return None;
        }
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return (!host.is_empty()).then(|| (host.to_string(), 22));
    }
    let rest = ["ssh://", "git+ssh://", "ssh+git://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port = match port {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => 22,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// One cache directory per URL, named so a person can tell which is which.
fn cache_path(cache_dir: &Path, url: &str) -> PathBuf {
    let readable: String = url
        .split("://")
        .last()
        .unwrap_or(url)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = git2::Oid::hash_object(ObjectType::Blob, url.as_bytes())
        .map(|o| o.to_string()[..12].to_string())
        .unwrap_or_default();
    cache_dir.join(format!("{readable}-{hash}.git"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ssh_url_names_its_host_and_port() {
        for (url, want) in [
            ("ssh://git@example.org/shop.git", Some(("example.org", 22))),
            (
                "ssh://git@127.0.0.1:2222/srv/repo.git",
                Some(("127.0.0.1", 2222)),
            ),
            ("git+ssh://[::1]:2200/r", Some(("::1", 2200))),
            ("ssh://host:/r", Some(("host", 22))),
            ("https://example.org/shop.git", None),
            ("ssh://git@/r", None),
            ("git@example.org:shop.git", Some(("example.org", 22))),
            ("./repo:x", None),
            ("/srv/repo", None),
        ] {
            let got = ssh_host(url);
            assert_eq!(got.as_ref().map(|(h, p)| (h.as_str(), *p)), want, "{url}");
        }
    }
}
