//! A located document tree: JSON and TOML both become `Node`s that remember the line:column of
//! every value and key, so that validation can point at the exact place of every error.
//!
//! The JSON reader is hand-written (serde_json does not expose positions); TOML goes through the
//! `toml` crate's spanned parser, YAML through `saphyr-parser`'s events (each with its span). Nothing here knows about drover's object kinds.

use std::borrow::Cow;
use std::fmt;

/// A 1-based line and column (columns count characters, as editors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Strings and keys borrow from the input unless they had escapes: a large document's tree
/// then costs its structure, not a second copy of its text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64, kept as written so range checks can quote it.
    BigInt(String),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<Entry<'a>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub pos: Pos,
    pub value: Value<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    pub key: Cow<'a, str>,
    pub key_pos: Pos,
    pub node: Node<'a>,
}

impl Node<'_> {
    /// The name of this value's type, as error messages say it.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::BigInt(_) => "an integer",
            Value::Float(_) => "a number with a fraction or an exponent",
            Value::Str(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// A syntax error: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Parses one JSON document. Duplicate keys are kept (the decoder reports them with both places).
pub fn parse_json(text: &str) -> Result<Node<'_>, SyntaxError> {
    let mut p = JsonParser {
        bytes: text.as_bytes(),
        text,
        i: 0,
        line: 1,
        line_start: 0,
        col_mark: std::cell::Cell::new((0, 1)),
        non_ascii_line: 0,
        depth: 0,
        entries: Vec::new(),
        items: Vec::new(),
    };
    p.skip_ws();
    let node = p.value()?;
    p.skip_ws();
    if p.i < p.bytes.len() {
        return Err(p.error("unexpected text after the end of the document"));
    }
    Ok(node)
}

struct JsonParser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    i: usize,
    line: u32,
    line_start: usize,
    /// The last column computed: (byte offset, column). Positions are asked for in increasing
    /// order along a line, so counting on from here keeps a long line linear, not quadratic.
    col_mark: std::cell::Cell<(usize, u32)>,
    /// The last line a string with non-ASCII text was read on (0: none yet). Other lines hold
    /// only ASCII before the current offset (anything else outside a string is a syntax
    /// error), so their column is the byte offset: no counting, for nearly every line.
    non_ascii_line: u32,
    depth: u32,
    /// The fields of the objects being read, innermost last; an object takes its own off the
    /// end when it closes, into a vector of exactly their number. One allocation per object
    /// and array instead of growing each (and shrinking it, lest half a large tree be spare).
    entries: Vec<Entry<'a>>,
    /// The same for array items.
    items: Vec<Node<'a>>,
}

/// Deeper nesting than this is refused rather than risking the stack on hostile input.
const MAX_DEPTH: u32 = 128;

impl<'a> JsonParser<'a> {
    fn pos(&self) -> Pos {
        if self.non_ascii_line != self.line {
            return Pos {
                line: self.line,
                col: (self.i - self.line_start) as u32 + 1,
            };
        }
        self.counted_pos()
    }

    /// `pos` by counting the characters before it on its line (an error may stop inside a
    /// string whose text `non_ascii_line` has not seen yet).
    fn counted_pos(&self) -> Pos {
        // Columns count characters, not bytes, so multi-byte text points where an editor would:
        // every byte that does not continue a UTF-8 sequence starts a character. Counting bytes
        // (not slicing the text) also works at an offset inside a character.
        let (mut from, mut col) = self.col_mark.get();
        if from < self.line_start || from > self.i {
            (from, col) = (self.line_start, 1);
        }
        col += self.bytes[from..self.i]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count() as u32;
        self.col_mark.set((self.i, col));
        Pos {
            line: self.line,
            col,
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos: self.counted_pos(),
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        // Indentation first: runs of spaces are most of the whitespace of a formatted file.
        while self.bytes.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
        while let Some(&b) = self.bytes.get(self.i) {
            match b {
                b'\n' => {
                    self.i += 1;
                    self.line += 1;
                    self.line_start = self.i;
                }
                b' ' | b'\t' | b'\r' => self.i += 1,
                _ => break,
            }
        }
    }

    fn value(&mut self) -> Result<Node<'a>, SyntaxError> {
        let pos = self.pos();
        let value = match self.bytes.get(self.i) {
            None => return Err(self.error("unexpected end of input: the document is truncated")),
            Some(b'{') => self.object()?,
            Some(b'[') => self.array()?,
            Some(b'"') => Value::Str(self.string()?),
            Some(b't') => self.literal("true", Value::Bool(true))?,
            Some(b'f') => self.literal("false", Value::Bool(false))?,
            Some(b'n') => self.literal("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => {
                let c = self.text[self.i..].chars().next().unwrap_or('?');
                return Err(self.error(format!("expected a value, found `{c}`")));
            }
        };
        Ok(Node { pos, value })
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Result<Value<'a>, SyntaxError> {
        if self.bytes[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value (true, false, null, a number, a string, [ or {)"))
        }
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Value<'a>, SyntaxError> {
        self.enter()?;
        self.i += 1; // '{'
        let first = self.entries.len();
        self.skip_ws();
        if self.bytes.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Object(Vec::new()));
        }
        loop {
            self.skip_ws();
            match self.bytes.get(self.i) {
                Some(b'"') => {}
                None => return Err(self.error("unexpected end of input inside an object")),
                // Trailing commas are a common hand-editing slip: say so plainly.
                Some(b'}') => return Err(self.error("trailing comma before `}`")),
                Some(_) => return Err(self.error("expected a field name in double quotes")),
            }
            let key_pos = self.pos();
            let key = self.string()?;
            self.skip_ws();
            if self.bytes.get(self.i) != Some(&b':') {
                return Err(self.error(format!("expected `:` after field name \"{key}\"")));
            }
            self.i += 1;
            self.skip_ws();
            let node = self.value()?;
            self.entries.push(Entry { key, key_pos, node });
            self.skip_ws();
            match self.bytes.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Object(self.entries.drain(first..).collect()));
                }
                None => return Err(self.error("unexpected end of input: missing `}`")),
                Some(_) => return Err(self.error("expected `,` or `}` after a field")),
            }
        }
    }

    fn array(&mut self) -> Result<Value<'a>, SyntaxError> {
        self.enter()?;
        self.i += 1; // '['
        let first = self.items.len();
        self.skip_ws();
        if self.bytes.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Array(Vec::new()));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.i) == Some(&b']') {
                return Err(self.error("trailing comma before `]`"));
            }
            let item = self.value()?;
            self.items.push(item);
            self.skip_ws();
            match self.bytes.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Array(self.items.drain(first..).collect()));
                }
                None => return Err(self.error("unexpected end of input: missing `]`")),
                Some(_) => return Err(self.error("expected `,` or `]` after an array item")),
            }
        }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        self.i += 1; // opening quote
        let first = self.i;
        let mut out: Option<String> = None;
        loop {
            let start = self.i;
            while let Some(&b) = self.bytes.get(self.i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            if let Some(out) = out.as_mut() {
                out.push_str(&self.text[start..self.i]);
            }
            match self.bytes.get(self.i) {
                None => return Err(self.error("unexpected end of input inside a string")),
                Some(b'"') => {
                    self.i += 1;
                    if !self.bytes[first..self.i].is_ascii() {
                        self.non_ascii_line = self.line;
                    }
                    return Ok(match out {
                        Some(s) => Cow::Owned(s),
                        None => Cow::Borrowed(&self.text[first..self.i - 1]),
                    });
                }
                Some(b'\\') => {
                    // The first escape: from here on the string is built.
                    let out = out.get_or_insert_with(|| self.text[first..self.i].to_string());
                    self.i += 1;
                    self.escape(out)?;
                }
                Some(_) => return Err(self.error("control character inside a string (use \\n)")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let backslash = self.i - 1;
        let Some(&b) = self.bytes.get(self.i) else {
            return Err(self.error("unexpected end of input inside a string"));
        };
        if !b.is_ascii() {
            // Not an escape letter; report it whole, at the backslash (never mid-character).
            let c = self.text[self.i..].chars().next().unwrap_or('?');
            self.i = backslash;
            return Err(self.error(format!("invalid escape `\\{c}` in a string")));
        }
        self.i += 1;
        match b {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let first = self.hex4()?;
                let c = if (0xD800..0xDC00).contains(&first) {
                    if !self.bytes[self.i..].starts_with(b"\\u") {
                        return Err(self.error("unpaired surrogate in \\u escape"));
                    }
                    self.i += 2;
                    let second = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err(self.error("unpaired surrogate in \\u escape"));
                    }
                    char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
                } else {
                    char::from_u32(first)
                };
                out.push(c.ok_or_else(|| self.error("invalid \\u escape"))?);
            }
            _ => {
                self.i = backslash;
                return Err(self.error(format!(
                    "invalid escape `\\{}` in a string",
                    char::from(b).escape_default()
                )));
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self
            .bytes
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        // Exactly four hex digits: `from_str_radix` alone would take a sign (`\u+041`).
        let mut v = 0;
        for &d in digits {
            let digit = char::from(d)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape: expected four hex digits"))?;
            v = v * 16 + digit;
        }
        self.i += 4;
        Ok(v)
    }

    /// A number by JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<Value<'a>, SyntaxError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while p.bytes.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i - from
        };
        if self.bytes[self.i] == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        let int_digits = digits(self);
        let mut ok = int_digits > 0 && !(int_digits > 1 && self.bytes[int_start] == b'0');
        let mut integer = true;
        if ok && self.bytes.get(self.i) == Some(&b'.') {
            self.i += 1;
            integer = false;
            ok = digits(self) > 0;
        }
        if ok && matches!(self.bytes.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            integer = false;
            if matches!(self.bytes.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            ok = digits(self) > 0;
        }
        // Whatever follows must end the number: `1x`, `01` and `1.` are not numbers.
        while self
            .bytes
            .get(self.i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'))
        {
            ok = false;
            self.i += 1;
        }
        let s = &self.text[start..self.i];
        if !ok {
            let shown: String = s.chars().take(40).collect();
            self.i = start;
            return Err(self.error(format!("invalid number `{shown}`")));
        }
        if integer {
            return Ok(match s.parse::<i64>() {
                Ok(v) => Value::Int(v),
                Err(_) => Value::BigInt(s.to_string()),
            });
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Value::Float(v)),
            _ => {
                self.i = start;
                Err(self.error(format!("number `{s}` is out of range")))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TOML

/// Parses a TOML document into the same located tree. The `toml` crate's tree is consumed as
/// it is converted, so the two are never both whole in memory.
pub fn parse_toml(text: &str) -> Result<Node<'_>, SyntaxError> {
    let lines = LineIndex::new(text);
    let table = toml::de::DeTable::parse(text).map_err(|e| SyntaxError {
        // The parser's recursion limit comes without a place: the most deeply nested line.
        pos: e
            .span()
            .map(|s| lines.pos(s.start))
            .unwrap_or_else(|| deepest_toml_line(text)),
        message: e.message().to_string(),
    })?;
    let pos = lines.pos(table.span().start);
    Ok(Node {
        pos,
        value: toml_table(&lines, table.into_inner()),
    })
}

/// The start of the line that nests deepest: open brackets and braces carried from the lines
/// before, plus the dots of a key (`a.b.c = ...`, `[a.b.c]`); quoted text is skipped.
fn deepest_toml_line(text: &str) -> Pos {
    let (mut depth, mut best, mut best_line) = (0i64, -1i64, 1u32);
    for (i, line) in text.lines().enumerate() {
        let (mut quote, mut most, mut dots, mut in_key) = (None, depth, 0i64, true);
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    most = most.max(depth);
                }
                (None, ']' | '}') => depth -= 1,
                (None, '=') => in_key = false,
                (None, '.') if in_key => dots += 1,
                _ => {}
            }
        }
        if most + dots > best {
            best = most + dots;
            best_line = i as u32 + 1;
        }
    }
    Pos {
        line: best_line,
        col: 1,
    }
}

fn toml_table<'a>(lines: &LineIndex, table: toml::de::DeTable<'a>) -> Value<'a> {
    Value::Object(
        table
            .into_iter()
            .map(|(k, v)| Entry {
                key_pos: lines.pos(k.span().start),
                key: k.into_inner(),
                node: toml_node(lines, v),
            })
            .collect(),
    )
}

fn toml_node<'a>(lines: &LineIndex, v: toml::Spanned<toml::de::DeValue<'a>>) -> Node<'a> {
    use toml::de::DeValue;
    let pos = lines.pos(v.span().start);
    let value = match v.into_inner() {
        DeValue::String(s) => Value::Str(s),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Int(n),
            // Out of i64 range: kept as written, so the range check quotes it.
            Err(_) => Value::BigInt(i.as_str().to_string()),
        },
        DeValue::Float(f) => Value::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(b),
        DeValue::Datetime(d) => Value::Str(Cow::Owned(d.to_string())),
        DeValue::Array(items) => {
            Value::Array(items.into_iter().map(|i| toml_node(lines, i)).collect())
        }
        DeValue::Table(t) => toml_table(lines, t),
    };
    Node { pos, value }
}

// ---------------------------------------------------------------------------------------------
// YAML

/// Parses a YAML stream (one document or several separated by `---`) into located trees, one
/// per non-empty document.
///
/// Scalars are resolved by YAML 1.2's core schema (`null`/`~`/empty, `true`/`false`, integers,
/// floats; quoted scalars and `!!str` are always strings). Anchors and aliases are expanded, with
/// a budget so that an alias bomb is refused rather than exhausting memory; `<<` merge keys are
/// applied as go-yaml did (keys already present win). Strings borrow from the input where the
/// parser could.
pub fn parse_yaml(text: &str) -> Result<Vec<Node<'_>>, SyntaxError> {
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    let mut tree = YamlTree::new(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| SyntaxError {
            pos: yaml_pos(e.marker()),
            message: e.info().to_string(),
        })?;
        if let Some((node, anchor)) = tree.event(event, &span)? {
            tree.remember(anchor, &node)?;
            tree.attach(node)?;
        }
    }
    Ok(tree.finish())
}

/// Where a YAML event starts, as a position of ours (columns from 1).
fn yaml_pos(m: &saphyr_parser::Marker) -> Pos {
    Pos {
        line: m.line() as u32,
        col: m.col() as u32 + 1,
    }
}

/// The trees of a YAML stream as its events build them: the documents done, the collections
/// still open, the anchors of the current document, and what aliases may still copy.
struct YamlTree<'a> {
    text: &'a str,
    docs: Vec<Node<'a>>,
    stack: Vec<YamlFrame<'a>>,
    anchors: std::collections::HashMap<usize, Node<'a>>,
    /// What aliases and the anchor table may still copy, in bytes (nodes and the text of their
    /// strings): as much as the file again, so a file's parsed size stays a small multiple of
    /// its own, however its aliases nest (`a: &a [*a, *a, ...]`), repeat a long string, or its
    /// anchors nest inside each other.
    alias_budget: usize,
    /// The current document's root, once complete.
    root: Option<Node<'a>>,
}

impl<'a> YamlTree<'a> {
    fn new(text: &'a str) -> YamlTree<'a> {
        YamlTree {
            text,
            docs: Vec::new(),
            stack: Vec::new(),
            anchors: Default::default(),
            alias_budget: ALIAS_BUDGET_FLOOR + text.len(),
            root: None,
        }
    }

    /// Takes one event. Returns the node it completed, if any, with the anchor it should be
    /// remembered under (0: none).
    fn event(
        &mut self,
        event: saphyr_parser::Event<'a>,
        span: &saphyr_parser::Span,
    ) -> Result<Option<(Node<'a>, usize)>, SyntaxError> {
        use saphyr_parser::Event;
        let pos = yaml_pos(&span.start);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => Ok(None),
            Event::DocumentStart(_) => {
                self.anchors.clear();
                Ok(None)
            }
            Event::DocumentEnd => {
                self.end_document();
                Ok(None)
            }
            Event::MappingStart(anchor, _) => self.open(pos, anchor, true).map(|()| None),
            Event::SequenceStart(anchor, _) => self.open(pos, anchor, false).map(|()| None),
            Event::MappingEnd | Event::SequenceEnd => Ok(self.close()),
            Event::Alias(id) => self.alias(id, span, pos).map(|node| Some((node, 0))),
            Event::Scalar(value, style, anchor, tag) => {
                Ok(self.scalar(value, style, anchor, tag.as_deref(), pos))
            }
        }
    }

    /// The document ends: its root, unless empty, is one of the stream's.
    fn end_document(&mut self) {
        if let Some(doc) = self.root.take() {
            if doc.value != Value::Null {
                self.docs.push(doc);
            }
        }
    }

    /// A mapping or a sequence starts.
    fn open(&mut self, pos: Pos, anchor: usize, is_map: bool) -> Result<(), SyntaxError> {
        if self.stack.len() as u32 >= MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        if let Some(YamlFrame::Map { key: None, .. }) = self.stack.last() {
            return Err(SyntaxError {
                pos,
                message: "a mapping key must be a plain value, not a list or mapping".into(),
            });
        }
        self.stack.push(if is_map {
            YamlFrame::Map {
                pos,
                anchor,
                entries: Vec::new(),
                key: None,
            }
        } else {
            YamlFrame::Seq {
                pos,
                anchor,
                items: Vec::new(),
            }
        });
        Ok(())
    }

    /// The innermost open mapping or sequence ends: it is a node, its merge keys applied.
    fn close(&mut self) -> Option<(Node<'a>, usize)> {
        match self.stack.pop()? {
            YamlFrame::Map {
                pos,
                anchor,
                mut entries,
                ..
            } => {
                merge_keys(&mut entries);
                entries.shrink_to_fit();
                let value = Value::Object(entries);
                Some((Node { pos, value }, anchor))
            }
            YamlFrame::Seq {
                pos,
                anchor,
                mut items,
            } => {
                items.shrink_to_fit();
                let value = Value::Array(items);
                Some((Node { pos, value }, anchor))
            }
        }
    }

    /// An alias: a copy of its anchor's node, paid from the budget (an alias bomb is refused).
    fn alias(
        &mut self,
        id: usize,
        span: &saphyr_parser::Span,
        pos: Pos,
    ) -> Result<Node<'a>, SyntaxError> {
        let Some(node) = self.anchors.get(&id) else {
            return Err(SyntaxError {
                pos,
                message: "alias to an unknown anchor".into(),
            });
        };
        let size = expanded_bytes(node);
        if size > self.alias_budget {
            // saphyr's marks count characters; the name is looked up only here.
            let name: String = self
                .text
                .chars()
                .skip(span.start.index())
                .take(span.end.index().saturating_sub(span.start.index()))
                .take(80)
                .collect();
            return Err(SyntaxError {
                pos,
                message: format!(
                    "alias {name} would copy {size} bytes, past what this file's aliases and anchors may copy in all ({} bytes, as much as the file again): an alias bomb?",
                    ALIAS_BUDGET_FLOOR + self.text.len()
                ),
            });
        }
        self.alias_budget -= size;
        let mut copy = node.clone();
        copy.pos = pos;
        Ok(copy)
    }

    /// A scalar: a mapping's key (kept as written, waiting for its value), or a value resolved
    /// by the core schema.
    fn scalar(
        &mut self,
        text: Cow<'a, str>,
        style: saphyr_parser::ScalarStyle,
        anchor: usize,
        tag: Option<&saphyr_parser::Tag>,
        pos: Pos,
    ) -> Option<(Node<'a>, usize)> {
        use saphyr_parser::ScalarStyle;
        // A mapping key: kept as written.
        if let Some(YamlFrame::Map { key: k @ None, .. }) = self.stack.last_mut() {
            *k = Some((text, pos, style == ScalarStyle::Plain));
            if anchor != 0 {
                self.anchors.insert(
                    anchor,
                    Node {
                        pos,
                        value: Value::Str(k.as_ref().expect("just set").0.clone()),
                    },
                );
            }
            return None;
        }
        let forced_str = tag.is_some_and(|t| t.suffix == "str");
        let value = if style == ScalarStyle::Plain && !forced_str {
            plain_scalar(text)
        } else {
            Value::Str(text)
        };
        Some((Node { pos, value }, anchor))
    }

    /// Remembers a completed node under its anchor, if it has one.
    fn remember(&mut self, anchor: usize, node: &Node<'a>) -> Result<(), SyntaxError> {
        if anchor == 0 {
            return Ok(());
        }
        // The anchor table keeps a copy, and copies count: nested anchors
        // (`&a0 [&a1 [&a2 [...]]]`) would otherwise copy the file once per level.
        let size = expanded_bytes(node);
        if size > self.alias_budget {
            return Err(SyntaxError {
                pos: node.pos,
                message: format!(
                    "this anchor would copy {size} bytes, past what this file's aliases and anchors may copy in all ({} bytes, as much as the file again): anchors nested too deep?",
                    ALIAS_BUDGET_FLOOR + self.text.len()
                ),
            });
        }
        self.alias_budget -= size;
        self.anchors.insert(anchor, node.clone());
        Ok(())
    }

    /// Puts a completed node where it belongs: the document's root, the open sequence's next
    /// item, or the value of the open mapping's pending key.
    fn attach(&mut self, node: Node<'a>) -> Result<(), SyntaxError> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(YamlFrame::Seq { items, .. }) => items.push(node),
            Some(YamlFrame::Map { entries, key, .. }) => match key.take() {
                Some((k, key_pos, plain)) => entries.push(Entry {
                    key: if plain && k == "<<" {
                        // Marked so that `merge_keys` knows it from a quoted "<<".
                        Cow::Borrowed(MERGE_KEY)
                    } else {
                        k
                    },
                    key_pos,
                    node,
                }),
                None => {
                    return Err(SyntaxError {
                        pos: node.pos,
                        message: "a mapping key must be a plain value, not a list or mapping"
                            .into(),
                    });
                }
            },
        }
        Ok(())
    }

    /// The stream ends: the documents it held, without empty ones.
    fn finish(mut self) -> Vec<Node<'a>> {
        self.end_document();
        self.docs
    }
}

/// The key a plain `<<` becomes while its mapping is built (not a string YAML can write).
const MERGE_KEY: &str = "\u{0}<<";

enum YamlFrame<'a> {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node<'a>>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry<'a>>,
        /// The key waiting for its value: text, place, and whether it was a plain scalar.
        key: Option<(Cow<'a, str>, Pos, bool)>,
    },
}

/// `<<: *base` (or a list of them): the merged mappings' entries are added where the mapping
/// does not already have the key. Anything else under `<<` is left as an ordinary field named
/// `<<`, for the decoder to report.
fn merge_keys(entries: &mut Vec<Entry<'_>>) {
    if !entries.iter().any(|e| e.key == MERGE_KEY) {
        return;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = std::mem::take(entries)
        .into_iter()
        .partition(|e| e.key == MERGE_KEY);
    for m in merges {
        let sources = match m.node.value {
            Value::Object(inner) => vec![inner],
            Value::Array(items) if items.iter().all(|i| matches!(i.value, Value::Object(_))) => {
                items
                    .into_iter()
                    .filter_map(|i| match i.value {
                        Value::Object(inner) => Some(inner),
                        _ => None,
                    })
                    .collect()
            }
            other => {
                own.push(Entry {
                    key: Cow::Borrowed("<<"),
                    key_pos: m.key_pos,
                    node: Node {
                        pos: m.node.pos,
                        value: other,
                    },
                });
                continue;
            }
        };
        for source in sources {
            for e in source {
                if !own.iter().any(|o| o.key == e.key) {
                    own.push(e);
                }
            }
        }
    }
    *entries = own;
}

/// What aliases may copy in any file, however small (bytes).
const ALIAS_BUDGET_FLOOR: usize = 1 << 20;

/// What a copy of `n` costs once decoded: its nodes and the text of its strings and keys.
fn expanded_bytes(n: &Node) -> usize {
    std::mem::size_of::<Node>()
        + match &n.value {
            Value::Str(s) => s.len(),
            Value::Array(items) => items.iter().map(expanded_bytes).sum(),
            Value::Object(entries) => entries
                .iter()
                .map(|e| e.key.len() + std::mem::size_of::<Entry>() + expanded_bytes(&e.node))
                .sum(),
            _ => 0,
        }
}

/// A plain scalar by YAML 1.2's core schema.
fn plain_scalar(text: Cow<'_, str>) -> Value<'_> {
    let s: &str = &text;
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let is_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if is_digits(unsigned) {
        return match s.parse::<i64>() {
            Ok(v) => Value::Int(v),
            Err(_) => Value::BigInt(s.to_string()),
        };
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8)] {
        if let Some(digits) = s.strip_prefix(prefix) {
            if !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)) {
                return match i64::from_str_radix(digits, radix) {
                    Ok(v) => Value::Int(v),
                    Err(_) => Value::BigInt(s.to_string()),
                };
            }
        }
    }
    // Floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (a.is_empty() || is_digits(a))
                && (b.is_empty() || is_digits(b))
                && !(a.is_empty() && b.is_empty())
        }
        None => is_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| is_digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    if mantissa_ok && exponent_ok && (mantissa.contains('.') || exponent.is_some()) {
        if let Ok(v) = s.parse::<f64>() {
            return Value::Float(v);
        }
    }
    Value::Str(text)
}

/// Byte offset -> line:column, for parsers that report spans.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
    /// Columns are bytes + 1 when the text is ASCII.
    ascii: bool,
    /// The last position asked for (offset, line, column): columns are counted on from it, so
    /// asking in order along one long line stays linear.
    last: std::cell::Cell<(usize, u32, u32)>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            text,
            starts,
            ascii: text.is_ascii(),
            last: std::cell::Cell::new((0, 1, 1)),
        }
    }

    pub fn pos(&self, offset: usize) -> Pos {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let end = offset.min(self.text.len());
        if self.ascii {
            return Pos {
                line: line as u32,
                col: (end.saturating_sub(start) + 1) as u32,
            };
        }
        let (last_offset, last_line, last_col) = self.last.get();
        let (from, col_before) =
            if last_line == line as u32 && last_offset >= start && last_offset <= end {
                (last_offset, last_col - 1)
            } else {
                (start, 0)
            };
        let col = self
            .text
            .get(from..end)
            .map(|s| s.chars().count())
            .unwrap_or(0) as u32
            + col_before
            + 1;
        self.last.set((end, line as u32, col));
        Pos {
            line: line as u32,
            col,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_positions_point_at_values_and_keys() {
        let n = parse_json("{\n  \"a\": [1, \"x\"],\n  \"b\": {\"c\": true}\n}").unwrap();
        let Value::Object(entries) = &n.value else {
            panic!("object expected")
        };
        assert_eq!(entries[0].key_pos, Pos { line: 2, col: 3 });
        assert_eq!(entries[0].node.pos, Pos { line: 2, col: 8 });
        assert_eq!(entries[1].key, "b");
        assert_eq!(entries[1].node.pos, Pos { line: 3, col: 8 });
    }

    #[test]
    fn truncated_json_reports_the_end() {
        let err = parse_json("{\n  \"a\": [1,").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(err.message.contains("end of input"), "{}", err.message);
    }

    #[test]
    fn trailing_comma_is_named() {
        let err = parse_json("{\"a\": 1,}").unwrap_err();
        assert!(err.message.contains("trailing comma"));
        assert_eq!(err.pos, Pos { line: 1, col: 9 });
    }

    #[test]
    fn strings_unescape_and_numbers_split_int_from_float() {
        let n = parse_json(r#"["a\"\u00e9\ud83d\ude00", -12, 1.5, 1e3]"#).unwrap();
        let Value::Array(items) = n.value else {
            panic!()
        };
        assert_eq!(items[0].value, Value::Str("a\"é😀".into()));
        assert_eq!(items[1].value, Value::Int(-12));
        assert_eq!(items[2].value, Value::Float(1.5));
        assert_eq!(items[3].value, Value::Float(1000.0));
    }

    #[test]
    fn hostile_nesting_is_refused() {
        let deep = "[".repeat(1000);
        assert!(parse_json(&deep).unwrap_err().message.contains("nesting"));
    }

    #[test]
    fn toml_positions() {
        let n = parse_toml("id = \"x\"\n[desiredState]\nreplicas = 2\n").unwrap();
        let Value::Object(entries) = &n.value else {
            panic!()
        };
        assert_eq!(entries[0].key_pos, Pos { line: 1, col: 1 });
        let Value::Object(inner) = &entries[1].node.value else {
            panic!()
        };
        assert_eq!(inner[0].key_pos, Pos { line: 3, col: 1 });
        assert_eq!(inner[0].node.value, Value::Int(2));
        assert_eq!(inner[0].node.pos, Pos { line: 3, col: 12 });
    }

    #[test]
    fn toml_syntax_error_has_a_position() {
        let err = parse_toml("id = \"x\"\nreplicas = = 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
    }
}
