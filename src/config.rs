//! `drover.toml`: where the source is, where the state lives, how to reach the minions.
//! Connection details and keys live only here, never in git. Relative paths are relative to the
//! config file. No config at all means: source `./manifests`, state `./.drover`, one local minion.

use crate::manifest::node::LineIndex;
use crate::model::{check_project, project_chars, Labels, PROJECT_MAX};
use crate::source::{GitOptions, SourceSpec};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The project: the owner of every container and volume this config makes. Default: a
    /// name derived from the state directory (`Settings::project`).
    pub project: Option<String>,
    /// Let a source with no objects prune everything applied before (the daemon's
    /// `--allow-empty`).
    #[serde(default)]
    pub allow_empty: bool,
    pub source: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub path: Option<String>,
    pub state_dir: Option<String>,
    /// The state in etcd instead of a directory: `etcd://host:2379,host2:2379/prefix`
    /// (`state_dir` then only holds the git cache).
    pub state: Option<String>,
    /// TLS for `state` in etcd.
    pub etcd: Option<EtcdConfig>,
    #[serde(default)]
    pub ssh: SshDefaults,
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub minions: Vec<MinionConfig>,
    #[serde(default)]
    pub registries: Vec<RegistryConfig>,
    /// Images drover delivers to the minions itself, from the local Docker Engine.
    #[serde(default)]
    pub images: ImagesConfig,
    /// Largest manifest file read, in bytes (default `manifest::DEFAULT_MAX_MANIFEST_BYTES`).
    pub max_manifest_bytes: Option<u64>,
    /// How strictly manifests are read: `strict` (default), `warn` or `ignore`; `--validate`
    /// wins over it.
    pub validate: Option<crate::manifest::Validate>,
    /// Allow `privileged: true` containers (off by default, as the API server's
    /// `--allow_privileged` was).
    #[serde(default)]
    pub allow_privileged: bool,
    /// Minion paths `hostDir` volumes may mount although they are guarded
    /// (`manifest::GUARDED_HOST_PATHS`: `/`, `/etc`, `/proc`, `/sys`, the Docker socket, ...).
    #[serde(default)]
    pub allowed_host_paths: Vec<String>,
    /// Host names the daemon's status API and page answer to besides IP addresses and
    /// `localhost` (a name of this host that scrapers use; any other name is refused, so a
    /// hostile name rebound to this address cannot read or act).
    #[serde(default)]
    pub status_hosts: Vec<String>,
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

/// `[etcd]`: the CA of the members' certificates, and a client certificate and key (paths
/// relative to the config file). Given, the connection uses TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshDefaults {
    pub user: Option<String>,
    pub identity: Option<String>,
    pub known_hosts: Option<String>,
    pub port: Option<u16>,
}

/// `[images]`: `push = ["myapp/*", "tools:2"]` names (shell patterns, `*` and `?`) of images
/// built or pulled on the drover host that drover sends to a minion before it runs a container
/// of one there, and pins to the local build, so a rebuild under the same tag rolls out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    #[serde(default)]
    pub push: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The address the service ports are served on (default 127.0.0.1).
    pub listen: Option<String>,
    /// The proxy's address as containers on the minions reach it: `{NAME}_SERVICE_HOST`.
    pub advertise: Option<String>,
}

/// Where the proxy serves and what containers are told.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub listen: std::net::IpAddr,
    pub advertise: Option<String>,
}

impl ProxyConfig {
    /// `listen` (default loopback) and `advertise` (default: `listen` when containers could
    /// reach it, i.e. neither loopback nor the unspecified address).
    pub fn settings(&self) -> Result<ProxySettings, String> {
        let listen: std::net::IpAddr = match &self.listen {
            Some(l) => l
                .parse()
                .map_err(|_| format!("[proxy] listen: `{l}` is not an IP address"))?,
            None => std::net::Ipv4Addr::LOCALHOST.into(),
        };
        let advertise = self.advertise.clone().or_else(|| {
            (!listen.is_loopback() && !listen.is_unspecified()).then(|| listen.to_string())
        });
        Ok(ProxySettings { listen, advertise })
    }
}

impl ProxySettings {
    /// Why containers sent to the advertised address would find no proxy there: the proxy
    /// listens on one address and `advertise` names another. None when `listen` covers it
    /// (the same address, or every address) or `advertise` is a name drover cannot judge.
    pub fn advertise_unserved(&self) -> Option<String> {
        let advertised: std::net::IpAddr = self.advertise.as_deref()?.parse().ok()?;
        (!self.listen.is_unspecified() && self.listen != advertised).then(|| {
            format!(
                "[proxy] advertise = \"{advertised}\" but the proxy listens on {} only: \
                 containers get connection refused at the advertised address (set [proxy] \
                 listen to it, or to 0.0.0.0)",
                self.listen
            )
        })
    }
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
    /// Cordoned: no new pod is placed there (`drover minions cordon` says it from outside git).
    #[serde(default)]
    pub unschedulable: bool,
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
        if let Some(p) = &config.project {
            check_project(p).map_err(|e| {
                // Top-level keys come before any table: the first `project =` line is it.
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with("project"))
                    .map_or(1, |n| n as u32 + 1);
                ConfigError::Invalid {
                    path: path.clone(),
                    line,
                    col: 1,
                    message: format!("project `{p}`: {e}"),
                }
            })?;
        }
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

    /// Where the state lives: `--state` (a directory or an `etcd://` URL), else `state` from
    /// the config (etcd), else the state directory.
    pub fn state_location(
        &self,
        flag: Option<&Path>,
    ) -> Result<crate::store::StateLocation, crate::store::StoreError> {
        let tls = self.config.etcd.as_ref().map(|e| crate::store::EtcdTls {
            ca: e.ca.as_deref().map(|p| self.resolve(p)),
            cert: e.cert.as_deref().map(|p| self.resolve(p)),
            key: e.key.as_deref().map(|p| self.resolve(p)),
        });
        let flag = flag.map(|f| f.to_string_lossy().into_owned());
        match flag.as_deref().or(self.config.state.as_deref()) {
            Some(url) if url.starts_with("etcd://") => crate::store::StateLocation::parse(url, tls),
            _ => Ok(crate::store::StateLocation::Dir(self.state_dir(None))),
        }
        .map(|l| match (l, flag) {
            (crate::store::StateLocation::Dir(_), Some(dir)) => {
                crate::store::StateLocation::Dir(PathBuf::from(dir))
            }
            (l, _) => l,
        })
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

    /// The project name: `project` from the config, else derived from the state directory
    /// (`<directory holding it>-<8 hex digits of its absolute path's SHA-256>`, e.g.
    /// `shop-1f2e3d4c`), so two checkouts with their own state never share a name. Moving the
    /// state directory changes a derived name: teams set `project` explicitly.
    pub fn project(&self, state_dir: &Path) -> Result<String, ConfigError> {
        if let Some(p) = &self.config.project {
            // Checked when the config was loaded.
            return Ok(p.clone());
        }
        let absolute = if state_dir.is_absolute() {
            state_dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|source| ConfigError::Io {
                    path: ".".into(),
                    source,
                })?
                .join(state_dir)
        };
        Ok(derived_project(&normalise(&absolute)))
    }

    /// How manifests are read: the `--validate` flag if given, else the config's.
    pub fn manifest_options(
        &self,
        validate: Option<crate::manifest::Validate>,
    ) -> crate::manifest::Options {
        let c = &self.config;
        crate::manifest::Options {
            max_bytes: c
                .max_manifest_bytes
                .unwrap_or(crate::manifest::DEFAULT_MAX_MANIFEST_BYTES),
            validate: validate.or(c.validate).unwrap_or_default(),
            allow_privileged: c.allow_privileged,
            allowed_host_paths: c.allowed_host_paths.clone(),
        }
    }

    pub fn git_options(&self, state_dir: &Path) -> GitOptions {
        GitOptions {
            cache_dir: state_dir.join("git"),
            ssh_identity: self.config.ssh.identity.as_deref().map(|p| self.resolve(p)),
            known_hosts: self.known_hosts(),
            max_file_bytes: Some(
                self.config
                    .max_manifest_bytes
                    .unwrap_or(crate::manifest::DEFAULT_MAX_MANIFEST_BYTES),
            ),
        }
    }

    /// The known_hosts file of minions and git sources: `[ssh] known_hosts`, else
    /// `~/.ssh/known_hosts`.
    pub fn known_hosts(&self) -> PathBuf {
        match &self.config.ssh.known_hosts {
            Some(p) => self.resolve(p),
            None => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".ssh").join("known_hosts"))
                .unwrap_or_else(|| PathBuf::from("known_hosts")),
        }
    }
}

/// `.` and `..` taken out without touching the disk (the state directory may not exist yet).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The project name derived from an absolute state directory path.
fn derived_project(state_dir: &Path) -> String {
    let parent = state_dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut base = project_chars(&parent).trim_matches('-').to_string();
    base.truncate(PROJECT_MAX - 9);
    let base = base.trim_end_matches('-');
    let hash = &crate::store::content_hash(state_dir.as_os_str().as_encoded_bytes())[..8];
    if base.is_empty() {
        format!("drover-{hash}")
    } else {
        format!("{base}-{hash}")
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
    fn an_advertised_address_the_proxy_does_not_listen_on_is_told() {
        let settings = |listen: Option<&str>, advertise: Option<&str>| {
            ProxyConfig {
                listen: listen.map(String::from),
                advertise: advertise.map(String::from),
            }
            .settings()
            .unwrap()
        };
        let unserved = settings(Some("127.0.0.1"), Some("10.0.0.2")).advertise_unserved();
        assert!(
            unserved
                .as_deref()
                .is_some_and(|w| w.contains("10.0.0.2") && w.contains("127.0.0.1")),
            "{unserved:?}"
        );
        for (listen, advertise) in [
            (Some("0.0.0.0"), Some("10.0.0.2")),
            (Some("10.0.0.2"), None),
            (Some("10.0.0.2"), Some("10.0.0.2")),
            (None, None),
            (None, Some("proxy.internal")),
        ] {
            assert_eq!(
                settings(listen, advertise).advertise_unserved(),
                None,
                "{listen:?} {advertise:?}"
            );
        }
    }

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
    fn a_derived_project_is_stable_and_tells_state_directories_apart() {
        let a = derived_project(Path::new("/srv/shop/.drover"));
        assert_eq!(a, derived_project(Path::new("/srv/shop/.drover")));
        assert!(
            a.starts_with("shop-") && a.len() == "shop-".len() + 8,
            "{a}"
        );
        assert_ne!(a, derived_project(Path::new("/home/x/shop/.drover")));
        assert!(check_project(&a).is_ok());
        let odd = derived_project(Path::new("/Srv/My Shop_2/.drover"));
        assert!(odd.starts_with("my-shop-2-"), "{odd}");
        assert!(check_project(&odd).is_ok());
        assert!(check_project(&derived_project(Path::new("/.drover"))).is_ok());
        let long = derived_project(Path::new(&format!("/{}/.drover", "a".repeat(100))));
        assert!(check_project(&long).is_ok(), "{long}");
        assert_eq!(
            normalise(Path::new("/a/./b/../c/.drover")),
            Path::new("/a/c/.drover")
        );
    }

    #[test]
    fn project_names_are_dns_labels() {
        assert!(check_project("shop").is_ok());
        assert!(check_project("shop-2").is_ok());
        for bad in [
            "",
            "Shop",
            "-shop",
            "shop-",
            "sh_op",
            "sh.op",
            &"a".repeat(41),
        ] {
            assert!(check_project(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_mode_and_privileged_come_from_the_config_and_the_flag_wins() {
        use crate::manifest::Validate;
        let settings = |text: &str| Settings {
            config: parse(text).unwrap(),
            file: None,
            base_dir: PathBuf::from("/"),
        };
        let s = settings("validate = \"warn\"\nallow_privileged = true\n");
        assert_eq!(s.manifest_options(None).validate, Validate::Warn);
        assert_eq!(
            s.manifest_options(Some(Validate::Strict)).validate,
            Validate::Strict
        );
        assert!(s.manifest_options(None).allow_privileged);
        let d = settings("");
        assert_eq!(d.manifest_options(None).validate, Validate::Strict);
        assert!(!d.manifest_options(None).allow_privileged);
        assert!(parse("validate = \"loose\"\n").is_err());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_place() {
        let (line, _, msg) = parse("source = \"m\"\n[ssh]\nusr = \"root\"\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("unknown field `usr`"), "{msg}");
    }
}
