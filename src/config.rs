//! `drover.toml`: where the source is, where the state lives, how to reach the minions.
//! Connection details and keys live only here, never in git. Relative paths are relative to the
//! config file. No config at all means: source `./manifests`, state `./.drover`, one local minion.

use crate::manifest::node::LineIndex;
use crate::model::Labels;
use crate::source::{GitOptions, SourceSpec};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub path: Option<String>,
    pub state_dir: Option<String>,
    #[serde(default)]
    pub ssh: SshDefaults,
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub minions: Vec<MinionConfig>,
    #[serde(default)]
    pub registries: Vec<RegistryConfig>,
    /// Largest manifest file read, in bytes (default `manifest::DEFAULT_MAX_MANIFEST_BYTES`).
    pub max_manifest_bytes: Option<u64>,
}

/// Credentials for pulling from one registry. The password comes from the config or, better,
/// from an environment variable; it is never printed (Debug redacts it).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry host as it appears in image names (`registry.example.com:5000`); `docker.io`
    /// for Docker Hub.
    pub server: String,
    pub username: String,
    pub password: Option<String>,
    pub password_env: Option<String>,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .finish()
    }
}

/// The registry host of an image reference: its first path part when that looks like a host
/// (has a `.` or `:`, or is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

impl Config {
    /// Pull credentials for an image, if a `[[registries]]` entry matches its registry.
    pub fn credentials_for(&self, image: &str) -> Option<bollard::auth::DockerCredentials> {
        let server = registry_of(image);
        let r = self.registries.iter().find(|r| r.server == server)?;
        let password = r
            .password
            .clone()
            .or_else(|| r.password_env.as_ref().and_then(|v| std::env::var(v).ok()));
        Some(bollard::auth::DockerCredentials {
            username: Some(r.username.clone()),
            password,
            serveraddress: Some(r.server.clone()),
            ..Default::default()
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshDefaults {
    pub user: Option<String>,
    pub identity: Option<String>,
    pub known_hosts: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Ssh,
    Local,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinionConfig {
    pub name: String,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity: Option<String>,
    pub docker_socket: Option<String>,
    pub publish_address: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    pub capacity: Option<CapacityConfig>,
    #[serde(default)]
    pub transport: Transport,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    pub cpu: Option<u64>,
    pub memory: Option<u64>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {message}")]
    Invalid {
        path: PathBuf,
        line: u32,
        col: u32,
        message: String,
    },
}

/// A loaded config with the directory its relative paths are resolved against.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    /// The config file, if one was read.
    pub file: Option<PathBuf>,
    pub base_dir: PathBuf,
}

impl Settings {
    /// Finds and reads the config: `explicit` (from `--config` or `$DROVER_CONFIG`) must exist;
    /// `./drover.toml` is read if present; otherwise the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Settings, ConfigError> {
        let cwd = std::env::current_dir().map_err(|source| ConfigError::Io {
            path: ".".into(),
            source,
        })?;
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("drover.toml"), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Settings {
                    config: Config::default(),
                    file: None,
                    base_dir: cwd,
                })
            }
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        let config = parse(&text).map_err(|(line, col, message)| ConfigError::Invalid {
            path: path.clone(),
            line,
            col,
            message,
        })?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => cwd.join(p),
            _ => cwd,
        };
        Ok(Settings {
            config,
            file: Some(path),
            base_dir,
        })
    }

    pub fn resolve(&self, p: &str) -> PathBuf {
        let expanded = expand_home(p);
        // Paths relative to the working directory stay relative, so messages show them as
        // the user typed them.
        let in_cwd = std::env::current_dir().is_ok_and(|cwd| cwd == self.base_dir);
        if expanded.is_absolute() || in_cwd {
            expanded
        } else {
            self.base_dir.join(expanded)
        }
    }

    /// The state directory: `--state`, else `state_dir` from the config, else `.drover`.
    pub fn state_dir(&self, flag: Option<&Path>) -> PathBuf {
        match flag {
            Some(p) => p.to_path_buf(),
            None => self.resolve(self.config.state_dir.as_deref().unwrap_or(".drover")),
        }
    }

    /// The source: the command line's words win over the config's, which win over `manifests`.
    pub fn source(
        &self,
        location: Option<&str>,
        reference: Option<&str>,
        subdir: Option<&str>,
    ) -> SourceSpec {
        let c = &self.config;
        match location {
            Some(l) => SourceSpec::new(l, reference, subdir),
            None => {
                let l = c.source.as_deref().unwrap_or("manifests");
                let l = if crate::source::is_url(l) {
                    l.to_string()
                } else {
                    self.resolve(l).display().to_string()
                };
                SourceSpec::new(
                    &l,
                    reference.or(c.reference.as_deref()),
                    subdir.or(c.path.as_deref()),
                )
            }
        }
    }

    pub fn git_options(&self, state_dir: &Path) -> GitOptions {
        GitOptions {
            cache_dir: state_dir.join("git"),
            ssh_identity: self.config.ssh.identity.as_deref().map(|p| self.resolve(p)),
        }
    }
}

/// Parses config text; errors carry line, column and a message naming the key.
pub fn parse(text: &str) -> Result<Config, (u32, u32, String)> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let pos = e
            .span()
            .map(|s| LineIndex::new(text).pos(s.start))
            .unwrap_or_default();
        (pos.line, pos.col, e.message().trim().to_string())
    })
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_example_parses() {
        let c = parse(
            r#"
source = "manifests"
state_dir = ".drover"
[ssh]
user = "root"
identity = "~/.ssh/id_ed25519"
known_hosts = "~/.ssh/known_hosts"
[proxy]
listen = "127.0.0.1"
[[minions]]
name = "m1"
address = "10.0.0.5"
docker_socket = "/var/run/docker.sock"
publish_address = "10.0.0.5"
labels = { zone = "a" }
capacity = { cpu = 2000, memory = 4294967296 }
[[minions]]
name = "laptop"
transport = "local"
"#,
        )
        .unwrap();
        assert_eq!(c.minions.len(), 2);
        assert_eq!(c.minions[1].transport, Transport::Local);
        assert_eq!(c.minions[0].capacity.unwrap().cpu, Some(2000));
    }

    #[test]
    fn registry_credentials_match_the_image_host_and_stay_secret() {
        let c = parse(
            "[[registries]]\nserver = \"reg.example.com:5000\"\nusername = \"deploy\"\npassword = \"s3cret\"\n",
        )
        .unwrap();
        assert_eq!(
            registry_of("reg.example.com:5000/app:1"),
            "reg.example.com:5000"
        );
        assert_eq!(registry_of("library/redis"), "docker.io");
        assert_eq!(registry_of("redis"), "docker.io");
        let creds = c.credentials_for("reg.example.com:5000/app:1").unwrap();
        assert_eq!(creds.password.as_deref(), Some("s3cret"));
        assert!(c.credentials_for("redis").is_none());
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_place() {
        let (line, _, msg) = parse("source = \"m\"\n[ssh]\nusr = \"root\"\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("unknown field `usr`"), "{msg}");
    }
}
