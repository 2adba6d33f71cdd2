//! Manifests: bytes of `*.json` / `*.toml` files in, a validated `DesiredState` out.
//!
//! Every problem is collected, never just the first: a `Diagnostic` carries the file,
//! line:column and field path. This module does no IO; sources hand it bytes.

mod decode;
pub mod node;

use crate::model::{DesiredState, ObjectKey, Origin};
use node::Pos;
use std::collections::BTreeMap;
use std::fmt;

pub use decode::check_name;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    /// Field path inside the document, such as `desiredState.manifest.containers[0].image`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.pos)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// The bytes of one manifest file, as a source read them.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub origin: Origin,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
}

impl Format {
    /// The manifest format of a file name, or `None` if drover does not read such files.
    pub fn of(file: &str) -> Option<Format> {
        if file.ends_with(".json") {
            Some(Format::Json)
        } else if file.ends_with(".toml") {
            Some(Format::Toml)
        } else {
            None
        }
    }
}

/// An object read from a file, with the place of its id (for duplicate reports).
#[derive(Debug)]
pub struct ParsedObject {
    pub object: crate::model::Object,
    pub id_pos: Pos,
}

/// Parses and validates one file. On error, returns every diagnostic found in it.
pub fn parse_file(file: &str, bytes: &[u8]) -> Result<Vec<ParsedObject>, Vec<Diagnostic>> {
    let fail = |pos: Pos, message: String| {
        Err(vec![Diagnostic {
            file: file.to_string(),
            pos,
            path: String::new(),
            message,
        }])
    };
    let Some(format) = Format::of(file) else {
        return fail(Pos::default(), "not a .json or .toml file".into());
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let pos = node::LineIndex::new(valid).pos(valid.len());
            return fail(pos, "the file is not valid UTF-8".into());
        }
    };
    // A byte-order mark is invisible in editors; accept it rather than report column 1.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let parsed = match format {
        Format::Json => node::parse_json(text),
        Format::Toml => node::parse_toml(text),
    };
    let root = match parsed {
        Ok(root) => root,
        Err(e) => return fail(e.pos, e.message),
    };
    let mut cx = decode::Cx {
        file,
        diags: Vec::new(),
    };
    let objects = decode::document(&mut cx, &root);
    if cx.diags.is_empty() {
        Ok(objects)
    } else {
        cx.diags.sort();
        Err(cx.diags)
    }
}

/// Parses every file and assembles the desired state. Any diagnostic anywhere fails the whole
/// source: callers must not apply or prune from a partly read source.
pub fn desired_state(files: &[SourceFile]) -> Result<DesiredState, Vec<Diagnostic>> {
    let results = crate::par::map(files, |f| parse_file(&f.origin.file, &f.bytes));
    let mut diags = Vec::new();
    let mut desired = DesiredState::default();
    let mut first_seen: BTreeMap<ObjectKey, (String, Pos)> = BTreeMap::new();
    for (file, result) in files.iter().zip(results) {
        match result {
            Err(mut d) => diags.append(&mut d),
            Ok(objects) => {
                for parsed in objects {
                    let key = parsed.object.key();
                    if let Some((other, pos)) = first_seen.get(&key) {
                        diags.push(Diagnostic {
                            file: file.origin.file.clone(),
                            pos: parsed.id_pos,
                            path: "id".into(),
                            message: format!(
                                "duplicate id: {key} is also defined at {other}:{pos}"
                            ),
                        });
                        continue;
                    }
                    first_seen.insert(key.clone(), (file.origin.file.clone(), parsed.id_pos));
                    desired
                        .objects
                        .insert(key, (parsed.object, file.origin.clone()));
                }
            }
        }
    }
    if diags.is_empty() {
        Ok(desired)
    } else {
        Err(diags)
    }
}

#[cfg(test)]
mod tests;
