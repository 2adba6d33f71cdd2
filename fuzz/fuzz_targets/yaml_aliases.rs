//! YAML anchors and aliases: the input builds YAML streams around `&anchor`s and `*alias`es
//! (long anchored strings, billion-laughs chains, anchors redefined from copies of themselves,
//! anchors nested deep, anchored keys, `<<` merge keys), in Pod manifests; or, when it starts
//! with `#` or `---`, is the YAML itself (the seeds are). Never a panic; what is accepted stays
//! within drover's alias budget (aliases may copy 1 MiB plus the file's size, counted as its
//! `expanded_bytes` counts), the heap while parsing stays a bounded multiple of that, a file
//! over `max_bytes` is refused by its size, and the objects accepted from a file within it
//! serialise to a bounded size.
#![no_main]

use drover::manifest::node::{self, Node, Value};
use drover::manifest::{Options, SourceFile, Validate};
use drover::model::Origin;
use libfuzzer_sys::fuzz_target;
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The per-file limit the reads below are given (`max_manifest_bytes`).
const MAX_BYTES: usize = 64 << 10;
/// Generated text stops growing past this: some files are over `MAX_BYTES`, to be refused.
const MAX_TEXT: usize = MAX_BYTES + (MAX_BYTES >> 2);
/// What aliases may copy in any file, however small (`ALIAS_BUDGET_FLOOR` in
/// src/manifest/node.rs, which is private).
const ALIAS_BUDGET_FLOOR: usize = 1 << 20;
/// How many times `bound` the heap may hold while a text is parsed: the tree, the anchor
/// table's copies and the aliases' (both within the budget), and the parser's own buffers.
const HEAP_FACTOR: usize = 4;

/// The nesting limit of drover's YAML reader (`MAX_DEPTH` in src/manifest/node.rs).
const MAX_DEPTH: usize = 128;

/// Counts live heap bytes and their peak, to bound what a parse holds at once.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = System.realloc(p, layout, new_size);
        if !q.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        q
    }
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The input, a byte at a time (zeros once it is used up).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }
    fn more(&self) -> bool {
        !self.0.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Str,
    Seq,
    Map,
}

/// The anchors defined so far in the current document: their shape, by number (`&a3`).
struct Doc {
    anchors: Vec<Shape>,
}

impl Doc {
    /// A defined anchor, preferring one of `shape` when asked (merges want mappings).
    fn pick(&self, input: &mut Input, shape: Option<Shape>) -> Option<usize> {
        if self.anchors.is_empty() {
            return None;
        }
        let n = input.below(self.anchors.len());
        let Some(want) = shape else {
            return Some(n);
        };
        // Mostly the latest of the wanted shape (the largest, in a chain); otherwise any.
        if input.byte() % 4 != 0 {
            if let Some(i) = self.anchors.iter().rposition(|s| *s == want) {
                return Some(i);
            }
        }
        Some(n)
    }
    /// `*aJ`, or a plain scalar if no anchor is defined yet.
    fn alias(&self, input: &mut Input, shape: Option<Shape>) -> String {
        match self.pick(input, shape) {
            Some(j) => format!("*a{j}"),
            None => "x".into(),
        }
    }
}

/// A scalar of a length and style the input chooses (up to 16 KiB).
fn scalar(input: &mut Input, out: &mut String, indent: &str) {
    let len = (input.byte() as usize * (1 + input.below(64))).min(16 << 10);
    let c = (b'a' + input.below(26) as u8) as char;
    match input.below(5) {
        0 => out.extend(std::iter::repeat_n(c, len.max(1))),
        1 => {
            out.push('\'');
            out.extend(std::iter::repeat_n(c, len));
            out.push('\'');
        }
        // `\L` is two bytes of text and three of string (U+2028).
        2 => {
            out.push('"');
            for i in 0..len / 2 {
                out.push_str(if i % 2 == 0 { "\\L" } else { "\\t" });
            }
            out.push('"');
        }
        3 => {
            out.push_str("|\n");
            for _ in 0..1 + len / 64 {
                out.push_str(indent);
                out.push_str("  ");
                out.extend(std::iter::repeat_n(c, 63));
                out.push('\n');
            }
            // The caller's newline ends the last line.
            out.pop();
        }
        _ => {
            let _ = write!(out, "{}", input.byte() as u32 * 1_000_003);
        }
    }
}

/// One top-level definition (`xN: &aN ...`), chosen by the input.
fn define(input: &mut Input, doc: &mut Doc, out: &mut String) {
    let n = doc.anchors.len();
    let op = input.below(8);
    if doc.anchors.is_empty() || op == 0 {
        let _ = write!(out, "x{n}: &a{n} ");
        scalar(input, out, "");
        out.push('\n');
        doc.anchors.push(Shape::Str);
        return;
    }
    match op {
        // A laugh: a list of aliases to one earlier anchor (often the one just before).
        1 => {
            let j = if input.byte() % 2 == 0 {
                n - 1
            } else {
                input.below(n)
            };
            let count = 1 + input.below(16);
            let _ = write!(out, "x{n}: &a{n} [");
            for i in 0..count {
                let _ = write!(out, "{}*a{j}", if i == 0 { "" } else { ", " });
            }
            out.push_str("]\n");
            doc.anchors.push(Shape::Seq);
        }
        // A mapping of aliases, in flow style.
        2 => {
            let _ = write!(out, "x{n}: &a{n} {{");
            for i in 0..1 + input.below(8) {
                let key = input.below(6);
                let value = doc.alias(input, None);
                let _ = write!(out, "{}k{key}: {value}", if i == 0 { "" } else { ", " });
            }
            out.push_str("}\n");
            doc.anchors.push(Shape::Map);
        }
        // Merge keys: one mapping or a list of them, then keys of its own, in block style.
        3 => {
            let _ = writeln!(out, "x{n}: &a{n}");
            if input.byte() % 2 == 0 {
                let m = doc.alias(input, Some(Shape::Map));
                let _ = writeln!(out, "  <<: {m}");
            } else {
                let (m1, m2) = (
                    doc.alias(input, Some(Shape::Map)),
                    doc.alias(input, Some(Shape::Map)),
                );
                let _ = writeln!(out, "  <<: [{m1}, {m2}]");
            }
            for _ in 0..input.below(4) {
                let key = input.below(6);
                let value = doc.alias(input, None);
                let _ = writeln!(out, "  k{key}: {value}");
            }
            doc.anchors.push(Shape::Map);
        }
        // Anchors nested (up to past the nesting limit), around a long list of plain scalars
        // or of aliases. Each anchor keeps a copy of its node, so the list's items times the
        // depth is what one parse copies: kept under 100,000 so that an input parses in well
        // under a second (64 KiB of `&a0 [&a1 [... [x,x,...]]]` 127 deep takes 7 s and 180 MB
        // of heap under AddressSanitizer, and the read parses it a second time).
        4 => {
            let depth = 1 + input.below(MAX_DEPTH + 4);
            let items = ((input.byte() as usize + 1) * (input.byte() as usize + 1) / 2)
                .min(100_000 / depth);
            let item = if input.byte() % 2 == 0 {
                "x".to_string()
            } else {
                doc.alias(input, None)
            };
            let _ = write!(out, "x{n}: ");
            for d in 0..depth {
                let _ = write!(out, "&a{} [", n + d);
            }
            for i in 0..items {
                if out.len() > MAX_TEXT {
                    break;
                }
                let _ = write!(out, "{}{item}", if i == 0 { "" } else { "," });
            }
            out.extend(std::iter::repeat_n(']', depth));
            out.push('\n');
            doc.anchors.extend(std::iter::repeat_n(Shape::Seq, depth));
        }
        // An anchored key, then its alias as a value.
        5 => {
            let _ = writeln!(out, "&a{n} k{n}: *a{n}");
            doc.anchors.push(Shape::Str);
        }
        // A block list of aliases.
        6 => {
            let _ = writeln!(out, "x{n}:");
            for _ in 0..1 + input.below(8) {
                let value = doc.alias(input, None);
                let _ = writeln!(out, "- {value}");
            }
            // Anchored on its own (a block list under a key takes no anchor in front): the
            // next definition's aliases may name it through this one.
            let _ = writeln!(out, "y{n}: &a{n} [*a{}]", input.below(n));
            doc.anchors.push(Shape::Seq);
        }
        // An anchor redefined from a copy of itself (through another: saphyr gives `&a [*a]` the
        // new anchor at once, so its alias is unknown), four times the size per definition.
        _ => {
            let j = input.below(n);
            let _ = writeln!(out, "x{n}: &a{n} [*a{j}, *a{j}]");
            let _ = writeln!(out, "z{n}: &a{j} [*a{n}, *a{n}]");
            doc.anchors[j] = Shape::Seq;
            doc.anchors.push(Shape::Seq);
        }
    }
}

/// A YAML stream of one to three Pod documents, each with definitions and aliases to them in
/// its fields.
fn generate(input: &mut Input) -> String {
    let mut out = String::new();
    let docs = 1 + input.below(3);
    for d in 0..docs {
        let mut doc = Doc {
            anchors: Vec::new(),
        };
        let _ = writeln!(out, "---\nkind: Pod\nid: p{d}\napiVersion: v1beta1");
        let defs = 1 + input.below(24);
        for _ in 0..defs {
            if !input.more() || out.len() > MAX_TEXT {
                break;
            }
            define(input, &mut doc, &mut out);
        }
        let flags = input.byte();
        if flags & 1 != 0 {
            let l = doc.alias(input, Some(Shape::Map));
            let _ = writeln!(out, "labels: {l}");
        }
        let _ = writeln!(
            out,
            "desiredState:\n  manifest:\n    version: v1beta1\n    id: p{d}\n    containers:"
        );
        let _ = writeln!(out, "    - &c{d}\n      name: c\n      image: busybox");
        if flags & 2 != 0 {
            let c = doc.alias(input, Some(Shape::Seq));
            let _ = writeln!(out, "      command: {c}");
        }
        if flags & 4 != 0 {
            let _ = writeln!(out, "    - <<: *c{d}\n      name: d");
        }
        if flags & 8 != 0 {
            let m = doc.alias(input, Some(Shape::Map));
            let _ = writeln!(out, "    - <<: [{m}, *c{d}]\n      name: e");
        }
        // The most expensive anchor, copied many times at the end.
        if flags & 16 != 0 {
            let a = doc.alias(input, Some(Shape::Seq));
            let count = 1 + input.below(64);
            let _ = write!(out, "w: [{a}");
            for _ in 1..count {
                let _ = write!(out, ", {a}");
            }
            out.push_str("]\n");
        }
    }
    out
}

/// What a node costs once decoded, as drover counts alias copies (`expanded_bytes` in
/// src/manifest/node.rs, private): its nodes and the text of its strings and keys.
fn cost(n: &Node) -> usize {
    std::mem::size_of::<Node>()
        + match &n.value {
            Value::Str(s) => s.len(),
            Value::Array(items) => items.iter().map(cost).sum(),
            Value::Object(entries) => entries
                .iter()
                .map(|e| e.key.len() + std::mem::size_of::<node::Entry>() + cost(&e.node))
                .sum(),
            _ => 0,
        }
}

/// The most a text of `len` bytes may cost parsed: a node and an entry per byte of text (no
/// YAML syntax makes more), the text of its strings (an escape such as `\L` makes three bytes
/// of two), and what its aliases may copy.
fn bound(len: usize) -> usize {
    let own = (std::mem::size_of::<Node>() + std::mem::size_of::<node::Entry>()) * (len + 1);
    own + 2 * len + ALIAS_BUDGET_FLOOR + len
}

fuzz_target!(|data: &[u8]| {
    // An input that starts as YAML does (a comment or a document marker) is the text itself:
    // the seeds, and what libFuzzer makes of them; any other input builds the text.
    let text = match std::str::from_utf8(data) {
        Ok(t) if t.starts_with('#') || t.starts_with("---") => t.to_string(),
        _ => generate(&mut Input(data)),
    };

    // The tree: within the budget; and the heap while parsing a small multiple of that: the
    // anchors' table holds a copy of each anchored node, and those copies count against the
    // same budget as the aliases' (before they did not, and nested anchors held up to one tree
    // per level of nesting: seeds/yaml_aliases/nested-anchors.yaml, 5 KB of YAML, 9.8 MB).
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let parsed = node::parse_yaml(&text);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let limit = bound(text.len());
    if let Ok(docs) = &parsed {
        let size: usize = docs.iter().map(cost).sum();
        assert!(
            size <= limit,
            "{} bytes of YAML parsed to {size} bytes, over {limit}",
            text.len()
        );
    }
    assert!(
        peak <= HEAP_FACTOR * limit,
        "{} bytes of YAML held {peak} bytes of heap while parsing, over {} ({HEAP_FACTOR}x {limit})",
        text.len(),
        HEAP_FACTOR * limit,
    );

    // The manifest reader, with a small size limit: a file over it is refused before it is
    // parsed; one within it that did not parse (an alias bomb, mostly) is not parsed again
    // (the reader's diagnostics are manifest_yaml's business), which halves the time per input.
    if parsed.is_err() && text.len() <= MAX_BYTES {
        return;
    }
    drop(parsed);
    let validate = [Validate::Strict, Validate::Warn, Validate::Ignore][data.len() % 3];
    let opts = Options {
        max_bytes: MAX_BYTES as u64,
        validate,
        ..Options::default()
    };
    let file = SourceFile {
        origin: Origin {
            file: "fuzz.yaml".into(),
            commit: None,
        },
        bytes: text.into_bytes(),
    };
    let len = file.bytes.len();
    match drover::manifest::read(std::slice::from_ref(&file), &opts) {
        Ok(read) => {
            assert!(len <= MAX_BYTES, "{len} bytes accepted, over {MAX_BYTES}");
            let json: usize = read
                .desired
                .objects
                .values()
                .map(|(o, _)| o.normalized_json().len())
                .sum();
            // Pretty JSON of what the tree held: a string's control characters are six bytes
            // each (`\u0001`), the rest less than its cost in the tree, plus fields' defaults.
            assert!(
                json <= 8 * bound(len),
                "{len} bytes of YAML accepted as {json} bytes of objects"
            );
        }
        Err(diags) => {
            if len > MAX_BYTES {
                assert!(
                    diags.iter().any(|d| d.message.contains(&format!(
                        "the file is {len} bytes, more than the limit of {MAX_BYTES} bytes"
                    ))),
                    "{diags:?}"
                );
            }
            for d in diags {
                let shown = d.to_string();
                assert!(!shown.chars().any(char::is_control), "{shown:?}");
            }
        }
    }
});
