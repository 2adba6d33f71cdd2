//! kubectl's JSONPath template dialect, for `get -o jsonpath=...`, `--sort-by` and
//! `-o custom-columns`: literal text, `{.a.b}`, `{.items[*].id}`, `{.items[0]}`, `[-1]`,
//! `[0:2]`, `['key']`, `[0,2]`, `..field`, `.*`, `[?(@.a == "x")]`, `{range ...}...{end}`
//! and `{"\n"}` string literals. Pure: it parses text and walks `serde_json` values, nothing
//! else. Written by hand: no crate implements exactly kubectl's dialect (its `range`/`end`,
//! its relaxed `.id` form, results joined by a space).
//!
//! As `kubectl get -o jsonpath` (whose `--allow-missing-template-keys` defaults to true), a
//! path that leads nowhere prints nothing; only a template that cannot be parsed is an error,
//! and it names the position.

use serde_json::Value;
use std::fmt;

/// A template that could not be parsed: where (a 1-based character column) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

/// A parsed template: text and `{...}` actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Text outside braces, or a `{"..."}` literal: printed as is.
    Text(String),
    Path(Path),
    Range {
        path: Path,
        body: Vec<Node>,
    },
}

/// One path expression: where it starts and its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// `$`: the document's root; otherwise the current value (`@`, or a leading `.`), which
    /// is the root outside `range` and the element inside it.
    from_root: bool,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    /// `.*` and `[*]`: every element of an array, every value of an object.
    Wildcard,
    /// `..`: the value and everything under it, for the next step to pick from.
    Descend,
    /// `[0]`, `[-1]`, `['a']`, `[0,2]`.
    Union(Vec<Key>),
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: Option<i64>,
    },
    Filter(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Index(i64),
    Name(String),
}

/// `[?(@.a)]` or `[?(@.a OP operand)]`.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Operand,
    compare: Option<(Op, Operand)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Path),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Template {
    /// Parses kubectl's template syntax.
    pub fn parse(text: &str) -> Result<Template, ParseError> {
        let mut p = Parser::new(text);
        let nodes = p.nodes(None)?;
        Ok(Template { nodes })
    }

    /// The template applied to `root`: each action's results joined by a space.
    pub fn render(&self, root: &Value) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, root, root, &mut out);
        out
    }
}

fn render_nodes(nodes: &[Node], root: &Value, current: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(path) => {
                let values = path.eval_from(root, current);
                let texts: Vec<String> = values.into_iter().map(text_of).collect();
                out.push_str(&texts.join(" "));
            }
            // kubectl's range walks the path's results, each becoming the current value.
            Node::Range { path, body } => {
                for v in path.eval_from(root, current) {
                    render_nodes(body, root, v, out);
                }
            }
        }
    }
}

/// A value as kubectl prints it: strings bare, everything else as compact JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Path {
    /// kubectl's relaxed form for `--sort-by` and custom columns: `{.a.b}`, `.a.b` or `a.b`.
    pub fn parse_relaxed(text: &str) -> Result<Path, ParseError> {
        let trimmed = text.trim();
        let inner = match trimmed.strip_prefix('{') {
            Some(rest) => rest.strip_suffix('}').ok_or_else(|| ParseError {
                column: trimmed.chars().count() + 1,
                message: "missing closing `}`".into(),
            })?,
            None => trimmed,
        };
        let offset = usize::from(trimmed.starts_with('{'));
        let inner = inner.trim();
        if inner.is_empty() {
            return Err(ParseError {
                column: 1,
                message: "empty path".into(),
            });
        }
        // `id` means `.id`, as kubectl reads it.
        let (source, shift) = if inner.starts_with(['.', '$', '@', '[']) {
            (inner.to_string(), 0)
        } else {
            (format!(".{inner}"), 1)
        };
        let mut p = Parser::new(&source);
        let path = p.path().map_err(|mut e| {
            e.column = (e.column + offset).saturating_sub(shift).max(1);
            e
        })?;
        if !p.at_end() {
            return Err(ParseError {
                column: (p.column() + offset).saturating_sub(shift).max(1),
                message: format!("unexpected `{}` after the path", p.rest()),
            });
        }
        Ok(path)
    }

    /// Every value the path leads to from `root`.
    pub fn eval<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        self.eval_from(root, root)
    }

    fn eval_from<'a>(&self, root: &'a Value, current: &'a Value) -> Vec<&'a Value> {
        let mut values = vec![if self.from_root { root } else { current }];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in values {
                apply(step, root, v, &mut next);
            }
            values = next;
        }
        values
    }
}

fn apply<'a>(step: &Step, root: &'a Value, v: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Field(name) => {
            if let Some(x) = v.get(name.as_str()) {
                out.push(x);
            }
        }
        Step::Wildcard => match v {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(m) => out.extend(m.values()),
            _ => {}
        },
        Step::Descend => descend(v, out),
        Step::Union(keys) => {
            for k in keys {
                let found = match (k, v) {
                    (Key::Index(i), Value::Array(a)) => index(a.len(), *i).map(|i| &a[i]),
                    (Key::Name(n), Value::Object(m)) => m.get(n),
                    _ => None,
                };
                out.extend(found);
            }
        }
        Step::Slice { start, end, step } => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
                let (s, e) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(len)));
                let step = step.unwrap_or(1).max(1) as usize;
                if s < e {
                    out.extend(a[s as usize..e as usize].iter().step_by(step));
                }
            }
        }
        Step::Filter(f) => {
            let items: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                Value::Object(m) => m.values().collect(),
                _ => Vec::new(),
            };
            out.extend(items.into_iter().filter(|x| f.holds(root, x)));
        }
    }
}

/// A position in an array of `len`, counting from the end when negative.
fn index(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn descend<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Array(a) => a.iter().for_each(|x| descend(x, out)),
        Value::Object(m) => m.values().for_each(|x| descend(x, out)),
        _ => {}
    }
}

impl Filter {
    fn holds(&self, root: &Value, item: &Value) -> bool {
        let operand = |o: &Operand| -> Option<Value> {
            match o {
                Operand::Literal(v) => Some(v.clone()),
                Operand::Path(p) => p.eval_from(root, item).first().map(|v| (*v).clone()),
            }
        };
        let left = operand(&self.left);
        let Some((op, right)) = &self.compare else {
            return left.is_some();
        };
        let (Some(l), Some(r)) = (left, operand(right)) else {
            return false;
        };
        let order = match (&l, &r) {
            (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            _ => (l == r).then_some(std::cmp::Ordering::Equal),
        };
        use std::cmp::Ordering::*;
        match op {
            Op::Eq => order == Some(Equal),
            Op::Ne => order != Some(Equal),
            Op::Lt => order == Some(Less),
            Op::Le => matches!(order, Some(Less | Equal)),
            Op::Gt => order == Some(Greater),
            Op::Ge => matches!(order, Some(Greater | Equal)),
        }
    }
}

/// A cursor over the template's characters.
struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn new(text: &str) -> Parser {
        Parser {
            chars: text.chars().collect(),
            at: 0,
        }
    }

    fn at_end(&self) -> bool {
        self.at >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn column(&self) -> usize {
        self.at + 1
    }

    fn rest(&self) -> String {
        self.chars[self.at.min(self.chars.len())..].iter().collect()
    }

    fn error<T>(&self, column: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            column,
            message: message.into(),
        })
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
            self.at += 1;
        }
    }

    /// Text and actions up to the end, or up to the `{end}` of a range opened at `range`.
    fn nodes(&mut self, range: Option<usize>) -> Result<Vec<Node>, ParseError> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c != '{' {
                text.push(c);
                self.at += 1;
                continue;
            }
            if !text.is_empty() {
                nodes.push(Node::Text(std::mem::take(&mut text)));
            }
            let open = self.column();
            self.at += 1;
            self.skip_spaces();
            if self.keyword("end") {
                self.close(open)?;
                return match range {
                    Some(_) => Ok(nodes),
                    None => self.error(open, "`{end}` without a `{range ...}`"),
                };
            }
            if self.keyword("range") {
                self.skip_spaces();
                let path = self.path()?;
                self.close(open)?;
                let body = self.nodes(Some(open))?;
                nodes.push(Node::Range { path, body });
                continue;
            }
            if matches!(self.peek(), Some('"' | '\'')) {
                let literal = self.string()?;
                self.close(open)?;
                nodes.push(Node::Text(literal));
                continue;
            }
            let path = self.path()?;
            self.close(open)?;
            nodes.push(Node::Path(path));
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        match range {
            Some(open) => self.error(open, "`{range ...}` without its `{end}`"),
            None => Ok(nodes),
        }
    }

    /// A word followed by a space or the closing brace.
    fn keyword(&mut self, word: &str) -> bool {
        let end = self.at + word.len();
        let matches = self
            .chars
            .get(self.at..end)
            .is_some_and(|w| w.iter().copied().eq(word.chars()));
        if matches && matches!(self.chars.get(end), Some(' ' | '\t' | '}')) {
            self.at = end;
            return true;
        }
        false
    }

    /// The `}` that closes the action opened at `open`.
    fn close(&mut self, open: usize) -> Result<(), ParseError> {
        self.skip_spaces();
        match self.peek() {
            Some('}') => {
                self.at += 1;
                Ok(())
            }
            None => self.error(open, "unclosed action: expected `}`"),
            Some(c) => self.error(self.column(), format!("unexpected `{c}` in the action")),
        }
    }

    /// A quoted string with `\n`, `\t`, `\r`, `\\` and quote escapes.
    fn string(&mut self) -> Result<String, ParseError> {
        let open = self.column();
        let quote = self.peek().expect("called on a quote");
        self.at += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return self.error(open, "unterminated string"),
                Some(c) if c == quote => {
                    self.at += 1;
                    return Ok(s);
                }
                Some('\\') => {
                    self.at += 1;
                    let escaped = match self.peek() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some(c @ ('\\' | '"' | '\'')) => c,
                        Some(c) => {
                            return self.error(self.column(), format!("unknown escape `\\{c}`"))
                        }
                        None => return self.error(open, "unterminated string"),
                    };
                    s.push(escaped);
                    self.at += 1;
                }
                Some(c) => {
                    s.push(c);
                    self.at += 1;
                }
            }
        }
    }

    fn path(&mut self) -> Result<Path, ParseError> {
        let start = self.column();
        let from_root = match self.peek() {
            Some('$') => {
                self.at += 1;
                true
            }
            Some('@') => {
                self.at += 1;
                false
            }
            Some('.' | '[') => false,
            Some(c) => {
                return self.error(
                    start,
                    format!("unexpected `{c}`: a path starts with `.`, `$` or `@`"),
                )
            }
            None => return self.error(start, "expected a path"),
        };
        let mut steps = Vec::new();
        loop {
            match self.peek() {
                Some('.') => {
                    self.at += 1;
                    if self.eat('.') {
                        steps.push(Step::Descend);
                        if self.peek() == Some('[') {
                            continue;
                        }
                    }
                    if self.eat('*') {
                        steps.push(Step::Wildcard);
                        continue;
                    }
                    let name = self.field_name();
                    if name.is_empty() {
                        // A lone `.` is the current value itself (`{.}`).
                        if steps.is_empty() && matches!(self.peek(), None | Some('}' | ' ')) {
                            break;
                        }
                        return self.error(self.column(), "expected a field name after `.`");
                    }
                    steps.push(Step::Field(name));
                }
                Some('[') => steps.push(self.bracket()?),
                _ => break,
            }
        }
        Ok(Path { from_root, steps })
    }

    fn field_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || c == '-' || c == '/' {
                name.push(c);
                self.at += 1;
            } else {
                break;
            }
        }
        name
    }

    /// `[*]`, `[n]`, `[a:b:c]`, `['k']`, `[0,1]`, `[?(...)]`.
    fn bracket(&mut self) -> Result<Step, ParseError> {
        let open = self.column();
        self.at += 1;
        self.skip_spaces();
        let step = if self.eat('*') {
            Step::Wildcard
        } else if self.eat('?') {
            Step::Filter(Box::new(self.filter()?))
        } else {
            let first = self.key()?;
            self.skip_spaces();
            if self.peek() == Some(':') {
                let start = match first {
                    None => None,
                    Some(Key::Index(i)) => Some(i),
                    Some(Key::Name(_)) => return self.error(open, "a slice takes numbers"),
                };
                self.at += 1;
                let end = self.number()?;
                let step = if self.eat(':') { self.number()? } else { None };
                Step::Slice { start, end, step }
            } else {
                let Some(first) = first else {
                    return self.error(open, "empty `[]`");
                };
                let mut keys = vec![first];
                while self.eat(',') {
                    self.skip_spaces();
                    match self.key()? {
                        Some(k) => keys.push(k),
                        None => {
                            return self.error(self.column(), "expected an index or a quoted name")
                        }
                    }
                    self.skip_spaces();
                }
                Step::Union(keys)
            }
        };
        self.skip_spaces();
        if !self.eat(']') {
            return match self.peek() {
                None => self.error(open, "unclosed `[`: expected `]`"),
                Some(c) => self.error(
                    self.column(),
                    format!("expected `]` to close the `[` at column {open}, found `{c}`"),
                ),
            };
        }
        Ok(step)
    }

    fn key(&mut self) -> Result<Option<Key>, ParseError> {
        match self.peek() {
            Some('\'' | '"') => Ok(Some(Key::Name(self.string()?))),
            _ => Ok(self.number()?.map(Key::Index)),
        }
    }

    fn number(&mut self) -> Result<Option<i64>, ParseError> {
        self.skip_spaces();
        let start = self.at;
        self.eat('-');
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        if text.is_empty() {
            return Ok(None);
        }
        self.skip_spaces();
        text.parse()
            .map(Some)
            .or_else(|_| self.error(start + 1, format!("bad number `{text}`")))
    }

    /// `(@.a)` or `(@.a OP operand)`, after `[?`.
    fn filter(&mut self) -> Result<Filter, ParseError> {
        if !self.eat('(') {
            return self.error(self.column(), "expected `(` after `[?`");
        }
        self.skip_spaces();
        let left = self.operand()?;
        self.skip_spaces();
        let op = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .into_iter()
        .find(|(text, _)| {
            let end = self.at + text.len();
            self.chars
                .get(self.at..end)
                .is_some_and(|w| w.iter().copied().eq(text.chars()))
        });
        let compare = match op {
            Some((text, op)) => {
                self.at += text.len();
                self.skip_spaces();
                Some((op, self.operand()?))
            }
            None => None,
        };
        self.skip_spaces();
        if !self.eat(')') {
            return self.error(self.column(), "expected `)` to close the filter");
        }
        Ok(Filter { left, compare })
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        match self.peek() {
            Some('@' | '$' | '.') => Ok(Operand::Path(self.path()?)),
            Some('"' | '\'') => Ok(Operand::Literal(Value::String(self.string()?))),
            _ => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+'))
                {
                    self.at += 1;
                }
                let word: String = self.chars[start..self.at].iter().collect();
                match serde_json::from_str::<Value>(&word) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                        Ok(Operand::Literal(v))
                    }
                    _ => self.error(
                        start + 1,
                        format!("expected a path, a quoted string or a number, found `{word}`"),
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"kind": "PodList", "items": [
            {"id": "web-1", "currentState": {"host": "m1"}, "desiredState": {"manifest": {"containers": [{"image": "a"}, {"image": "b"}]}}},
            {"id": "web-2", "currentState": {"host": "m2"}, "desiredState": {"replicas": 3}},
        ]})
    }

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v)
    }

    #[test]
    fn paths_wildcards_and_indexes_pick_as_kubectl_does() {
        let v = list();
        assert_eq!(render("{.items[*].id}", &v), "web-1 web-2");
        assert_eq!(render("{.items[0].id}", &v), "web-1");
        assert_eq!(render("{.items[-1].id}", &v), "web-2");
        assert_eq!(render("{$.items[1:].id}", &v), "web-2");
        assert_eq!(render("{.items[0,1].currentState.host}", &v), "m1 m2");
        assert_eq!(render("{.items[0]['id']}", &v), "web-1");
        assert_eq!(render("{..image}", &v), "a b");
        assert_eq!(render("{.items[0].currentState.*}", &v), "m1");
        assert_eq!(render("{.kind}", &v), "PodList");
        assert_eq!(render("{.items[1].desiredState}", &v), r#"{"replicas":3}"#);
        assert_eq!(
            render(r#"{.items[?(@.currentState.host=="m2")].id}"#, &v),
            "web-2"
        );
        assert_eq!(
            render("{.items[?(@.desiredState.replicas>2)].id}", &v),
            "web-2"
        );
        assert_eq!(
            render("{.items[?(@.desiredState.replicas)].id}", &v),
            "web-2"
        );
    }

    #[test]
    fn missing_keys_print_nothing() {
        let v = list();
        assert_eq!(render("a{.nope}b{.items[7].id}c", &v), "abc");
    }

    #[test]
    fn range_literals_and_text_make_lines() {
        let v = list();
        assert_eq!(
            render(
                r#"{range .items[*]}{.id}{"\t"}{.currentState.host}{"\n"}{end}"#,
                &v
            ),
            "web-1\tm1\nweb-2\tm2\n"
        );
        assert_eq!(
            render("{range .items[*]}[{.id}: {range .desiredState.manifest.containers[*]}{.image},{end}] {end}", &v),
            "[web-1: a,b,] [web-2: ] "
        );
        assert_eq!(render("no actions at all", &v), "no actions at all");
        // `$` is the document's root inside a range too.
        assert_eq!(
            render("{range .items[*]}{$.kind} {end}", &v),
            "PodList PodList "
        );
    }

    #[test]
    fn syntax_errors_name_the_column() {
        let e = |t: &str| Template::parse(t).unwrap_err();
        assert_eq!(e("{.items[*}").column, 10);
        assert_eq!(e("ab{.items").column, 3);
        assert!(e("ab{.items").message.contains("unclosed"));
        assert!(e("{range .items[*]}{.id}")
            .message
            .contains("without its `{end}`"));
        assert_eq!(e("x{end}").column, 2);
        assert!(e("{.a.}").message.contains("field name"));
        assert!(e("{items}").message.contains("starts with"));
        assert!(e(r#"{"\q"}"#).message.contains("unknown escape"));
        assert_eq!(e("{.items[?(@.a ~ 1)]}").column, 15);
    }

    #[test]
    fn relaxed_paths_take_braces_dots_or_neither() {
        let v = list();
        for form in [
            "{.items[0].id}",
            ".items[0].id",
            "items[0].id",
            " {.items[0].id} ",
        ] {
            let p = Path::parse_relaxed(form).unwrap();
            assert_eq!(p.eval(&v), vec![&json!("web-1")], "{form}");
        }
        assert!(Path::parse_relaxed("{.a").is_err());
        assert!(Path::parse_relaxed("").is_err());
        let e = Path::parse_relaxed(".a b").unwrap_err();
        assert_eq!(e.column, 3, "{e}");
    }
}
