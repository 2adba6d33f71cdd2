//! Saved plans that cannot go stale (`drover diff --out FILE`, `drover apply --plan FILE`): the
//! desired objects a diff was made from, with the store revision and the source (commit, and
//! a digest of the objects read) it was made against. Applying one checks both first and
//! refuses, changing nothing, when either moved, as Terraform refuses a stale plan file.

use crate::model::{DesiredState, Object, Origin};
use serde::{Deserialize, Serialize};

/// The format this drover writes and reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedPlan {
    /// The plan file format (`FORMAT`).
    pub drover_plan: u32,
    pub project: String,
    /// The source as `diff` described it (`dir manifests`, `git repo@main`).
    pub source: String,
    /// The commit it was read at (git sources).
    pub commit: Option<String>,
    /// `source_digest` of the objects read.
    pub source_digest: String,
    /// The store's revision (`resourceVersion`, one more with every commit) the diff read.
    pub store_revision: u64,
    /// What the diff showed, for people and scripts: the object changes and the pod actions
    /// (as `diff -o json` gives them).
    pub changes: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<serde_json::Value>,
    /// Every desired object, as apply will record it.
    pub objects: Vec<SavedObject>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedObject {
    pub origin: Origin,
    pub object: Object,
}

/// A digest of a desired state as drover read it: every object's key and normalised JSON, in
/// key order. The same objects give the same digest whatever the files' layout or comments.
pub fn source_digest(desired: &DesiredState) -> String {
    let mut text = Vec::new();
    for (key, (object, _)) in &desired.objects {
        text.extend_from_slice(key.to_string().as_bytes());
        text.push(b'\n');
        object.write_normalized_json(&mut text);
    }
    format!("sha256:{}", crate::store::content_hash(&text))
}

/// A desired state's objects as a plan keeps them.
pub fn saved_objects(desired: &DesiredState) -> Vec<SavedObject> {
    desired
        .objects
        .values()
        .map(|(object, origin)| SavedObject {
            origin: origin.clone(),
            object: object.clone(),
        })
        .collect()
}

impl SavedPlan {
    /// The desired state the plan applies.
    pub fn desired(&self) -> DesiredState {
        DesiredState {
            objects: self
                .objects
                .iter()
                .map(|o| (o.object.key(), (o.object.clone(), o.origin.clone())))
                .collect(),
        }
    }

    /// Why this plan may not be applied now, if it may not: another format or project, the
    /// store or the source moved since it was made. Pure: the caller reads the store's revision
    /// and the source.
    pub fn stale(
        &self,
        project: &str,
        store_revision: u64,
        commit: Option<&str>,
        desired_now: &DesiredState,
    ) -> Option<String> {
        if self.drover_plan != FORMAT {
            return Some(format!(
                "this plan file is format {}; this drover reads format {FORMAT}",
                self.drover_plan
            ));
        }
        if self.project != project {
            return Some(format!(
                "this plan was made for project {}, not {project}",
                self.project
            ));
        }
        if self.store_revision != store_revision {
            return Some(format!(
                "the store changed since this plan was made: revision {}, now {store_revision}",
                self.store_revision
            ));
        }
        if self.commit.as_deref() != commit {
            let short =
                |c: Option<&str>| c.map_or("none".to_string(), |c| c.chars().take(12).collect());
            return Some(format!(
                "the source changed since this plan was made: commit {}, now {}",
                short(self.commit.as_deref()),
                short(commit)
            ));
        }
        let digest = source_digest(desired_now);
        if self.source_digest != digest {
            return Some(format!(
                "the source changed since this plan was made: its objects' digest was {}, now {}",
                short(&self.source_digest),
                short(&digest)
            ));
        }
        None
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(text: &str) -> DesiredState {
        let parsed = crate::manifest::parse_file("a.json", text.as_bytes()).unwrap();
        DesiredState::of(parsed.into_iter().map(|p| p.object).collect(), "a.json")
    }

    const SERVICE: &str = r#"{"kind": "Service", "id": "web", "apiVersion": "v1beta1",
        "port": 80, "selector": {"app": "web"}, "containerPort": 80}"#;

    fn plan(desired: &DesiredState) -> SavedPlan {
        SavedPlan {
            drover_plan: FORMAT,
            project: "shop".into(),
            source: "dir manifests".into(),
            commit: Some("abc".into()),
            source_digest: source_digest(desired),
            store_revision: 41,
            changes: serde_json::Value::Null,
            pods: None,
            objects: saved_objects(desired),
        }
    }

    #[test]
    fn a_plan_is_refused_when_the_store_or_the_source_moved() {
        let desired = state(SERVICE);
        let p = plan(&desired);
        assert_eq!(p.stale("shop", 41, Some("abc"), &desired), None);
        assert_eq!(
            p.stale("shop", 42, Some("abc"), &desired).unwrap(),
            "the store changed since this plan was made: revision 41, now 42"
        );
        assert!(p
            .stale("shop", 41, Some("def"), &desired)
            .unwrap()
            .contains("commit abc, now def"));
        let moved = state(&SERVICE.replace("\"port\": 80", "\"port\": 81"));
        assert!(p
            .stale("shop", 41, Some("abc"), &moved)
            .unwrap()
            .starts_with("the source changed since this plan was made: its objects' digest"));
        assert!(p.stale("other", 41, Some("abc"), &desired).is_some());
        // The plan's objects round-trip: what apply records is what diff read.
        let text = serde_json::to_string(&p).unwrap();
        let back: SavedPlan = serde_json::from_str(&text).unwrap();
        assert_eq!(source_digest(&back.desired()), p.source_digest);
    }
}
