//! Images drover delivers itself (drover.toml `[images] push = ["myapp/*", ...]`): which
//! names the patterns take, and each container of those pinned to the drover host's build of
//! its image (`Container::image_id`). Pure: the local engine's ids are looked up by the caller
//! (`images::local_pins`) and handed in.

use crate::model::{Container, Object};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// The `[images] push` patterns and the local engine's id of each name they take.
#[derive(Debug, Default)]
pub struct ImagePins {
    patterns: Vec<String>,
    /// Image reference (`name:tag`) → the local engine's image id.
    ids: BTreeMap<String, String>,
    /// Names the patterns take that the local engine lacked when objects were pinned.
    missing: Mutex<BTreeSet<String>>,
}

impl ImagePins {
    /// `ids` maps references (`name:tag`, as `reference` writes them) to image ids.
    pub fn new(patterns: Vec<String>, ids: BTreeMap<String, String>) -> ImagePins {
        ImagePins {
            patterns,
            ids,
            missing: Mutex::default(),
        }
    }

    /// Whether there is any pattern (without one, drover delivers nothing).
    pub fn any(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// Whether drover delivers `image` (as a manifest writes it).
    pub fn takes(&self, image: &str) -> bool {
        let image = reference(image);
        self.patterns
            .iter()
            .any(|p| glob(p, &image) || glob(p, name_of(&image)))
    }

    /// Sets `image_id` on each container of `object` whose image the patterns take; a name
    /// the local engine lacks is left unpinned and remembered (`missing`).
    pub fn pin(&self, object: &mut Object) {
        if !self.any() {
            return;
        }
        for c in containers_mut(object) {
            if !self.takes(&c.image) {
                continue;
            }
            let image = reference(&c.image);
            match self.ids.get(&image) {
                Some(id) => c.image_id = Some(id.clone()),
                None => {
                    self.missing.lock().expect("missing").insert(image);
                }
            }
        }
    }

    /// Each taken reference's local image id.
    pub fn ids(&self) -> &BTreeMap<String, String> {
        &self.ids
    }

    /// The names the patterns took that the local engine did not hold.
    pub fn missing(&self) -> BTreeSet<String> {
        self.missing.lock().expect("missing").clone()
    }

    /// The references the patterns take among `refs` (the local engine's tags).
    pub fn taken<'a>(&self, refs: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        refs.into_iter().filter(|r| self.takes(r)).collect()
    }
}

/// The containers of an object that runs any (a pod, an RC's template).
pub fn containers_mut(object: &mut Object) -> impl Iterator<Item = &mut Container> {
    let manifest = match object {
        Object::Pod(p) => Some(&mut p.desired_state.manifest),
        Object::ReplicationController(rc) => {
            Some(&mut rc.desired_state.pod_template.desired_state.manifest)
        }
        Object::Service(_) | Object::Minion(_) => None,
    };
    manifest.into_iter().flat_map(|m| m.containers.iter_mut())
}

/// An image reference with its tag: `myapp` is `myapp:latest`, as Docker reads it. One with a
/// digest (`name@sha256:…`) is kept as written.
pub fn reference(image: &str) -> String {
    if image.contains('@') {
        return image.to_string();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// A reference without its tag (`myapp/web:1` → `myapp/web`).
fn name_of(reference: &str) -> &str {
    let cut = reference
        .rfind(':')
        .filter(|i| !reference[*i..].contains('/'));
    match (reference.find('@'), cut) {
        (Some(at), _) => &reference[..at],
        (None, Some(colon)) => &reference[..colon],
        (None, None) => reference,
    }
}

/// Shell-style matching with `*` (any run of characters, `/` included) and `?` (one).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                back = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match back {
                Some((bp, bt)) => {
                    pi = bp + 1;
                    ti = bt + 1;
                    back = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_take_names_with_or_without_their_tag() {
        assert!(glob("myapp/*", "myapp/web:1"));
        assert!(glob("*", "anything"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("myapp/*", "other/web"));
        assert!(!glob("myapp", "myapp2"));
        let pins = ImagePins::new(vec!["myapp/*".into(), "tools".into()], BTreeMap::new());
        assert!(pins.takes("myapp/web"));
        assert!(
            pins.takes("tools"),
            "a pattern without a tag takes the name's tags"
        );
        assert!(pins.takes("tools:2"));
        assert!(!pins.takes("busybox"));
        assert!(!ImagePins::default().any());
    }

    #[test]
    fn references_are_read_as_docker_reads_them() {
        assert_eq!(reference("myapp"), "myapp:latest");
        assert_eq!(reference("myapp:1"), "myapp:1");
        assert_eq!(reference("host:5000/app"), "host:5000/app:latest");
        assert_eq!(reference("host:5000/app:2"), "host:5000/app:2");
        assert_eq!(name_of("host:5000/app:2"), "host:5000/app");
        assert_eq!(name_of("host:5000/app"), "host:5000/app");
    }

    #[test]
    fn a_taken_image_is_pinned_and_one_the_engine_lacks_is_named() {
        use crate::model::{ContainerManifest, Pod, PodState, RestartPolicy};
        let pod = |image: &str| {
            Object::Pod(Pod {
                id: "p".into(),
                api_version: "v1beta1".into(),
                labels: Default::default(),
                node_selector: Default::default(),
                desired_state: PodState {
                    manifest: ContainerManifest {
                        volumes: vec![],
                        restart_policy: RestartPolicy::default(),
                        dns_policy: Default::default(),
                        containers: vec![
                            Container {
                                name: "app".into(),
                                image: image.into(),
                                ..Container::default()
                            },
                            Container {
                                name: "side".into(),
                                image: "busybox".into(),
                                ..Container::default()
                            },
                        ],
                    },
                },
            })
        };
        let pins = ImagePins::new(
            vec!["myapp/*".into()],
            BTreeMap::from([("myapp/web:latest".into(), "sha256:ab".into())]),
        );
        let mut o = pod("myapp/web");
        pins.pin(&mut o);
        let ids: Vec<Option<String>> = containers_mut(&mut o).map(|c| c.image_id.clone()).collect();
        assert_eq!(ids, [Some("sha256:ab".to_string()), None]);
        let mut o = pod("myapp/api:3");
        pins.pin(&mut o);
        assert!(containers_mut(&mut o).all(|c| c.image_id.is_none()));
        assert_eq!(pins.missing(), BTreeSet::from(["myapp/api:3".to_string()]));
        // A pinned container is never pulled on a minion.
        let c = Container {
            image_id: Some("sha256:ab".into()),
            ..Container::default()
        };
        assert_eq!(c.pull_policy(), crate::model::PullPolicy::PullNever);
    }
}
