//! The LVM2 text metadata syntax (the same one as lvm.conf and `vgcfgbackup` files):
//!
//! ```text
//! vg0 {                       # a section
//!     id = "abc..."           # key = value: a string, an integer, a float or a list
//!     status = ["READ", "WRITE"]
//!     physical_volumes { pv0 { pe_start = 2048 } }
//! }
//! ```
//!
//! A small hand-written recursive-descent parser: no crate parses this dialect. Nesting depth is
//! capped (recursion stays shallow) and every allocation is proportional to the input, which
//! the caller caps.

use crate::error::{Error, Result};

/// Deeper nesting than this is refused; real metadata nests 5 levels.
pub const MAX_DEPTH: usize = 32;

/// A value on the right of `=`, or a section body.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Section(Section),
}

/// The entries of a section, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    pub entries: Vec<(String, Value)>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn section(&self, key: &str) -> Option<&Section> {
        match self.get(key) {
            Some(Value::Section(s)) => Some(s),
            _ => None,
        }
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn list(&self, key: &str) -> Option<&[Value]> {
        match self.get(key) {
            Some(Value::List(l)) => Some(l),
            _ => None,
        }
    }
    /// The subsections, with their names.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.entries.iter().filter_map(|(k, v)| match v {
            Value::Section(s) => Some((k.as_str(), s)),
            _ => None,
        })
    }
}

/// Parses a whole metadata text (stopping at a NUL byte, which ends the on-disk copy).
pub fn parse(text: &[u8]) -> Result<Section> {
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let mut p = Parser {
        s: text.get(..end).unwrap_or_default(),
        pos: 0,
    };
    let root = p.section_body(0)?;
    p.skip_blank();
    if p.pos < p.s.len() {
        return Err(p.error("unexpected '}' at top level"));
    }
    Ok(root)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'+' | b'/' | b':' | b'@')
}

impl Parser<'_> {
    fn error(&self, what: impl Into<String>) -> Error {
        let consumed = self.s.get(..self.pos).unwrap_or_default();
        Error::Metadata {
            line: 1 + consumed.iter().filter(|&&b| b == b'\n').count(),
            offset: self.pos,
            what: what.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Skips whitespace and `#` comments.
    fn skip_blank(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'#' {
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.pos += 1;
                }
            } else if b.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        self.skip_blank();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected '{}'", c as char)))
        }
    }

    fn depth_check(&self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Entries until `}` or the end of input (the caller checks which).
    fn section_body(&mut self, depth: usize) -> Result<Section> {
        self.depth_check(depth)?;
        let mut section = Section::default();
        loop {
            self.skip_blank();
            match self.peek() {
                None | Some(b'}') => return Ok(section),
                Some(_) => {}
            }
            let key = self.ident()?;
            self.skip_blank();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    let body = self.section_body(depth + 1)?;
                    self.expect(b'}')?;
                    section.entries.push((key, Value::Section(body)));
                }
                Some(b'=') => {
                    self.pos += 1;
                    let value = self.value(depth + 1)?;
                    section.entries.push((key, value));
                }
                _ => return Err(self.error(format!("expected '=' or '{{' after \"{key}\""))),
            }
        }
    }

    fn ident(&mut self) -> Result<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_ident) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a name"));
        }
        Ok(String::from_utf8_lossy(self.s.get(start..self.pos).unwrap_or_default()).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        self.depth_check(depth)?;
        self.skip_blank();
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'[') => self.list(depth),
            Some(b) if b == b'-' || b.is_ascii_digit() => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("metadata ends where a value was expected")),
        }
    }

    fn list(&mut self, depth: usize) -> Result<Value> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Value::List(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_blank();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {}
                None => return Err(self.error("metadata ends inside a list")),
                Some(_) => return Err(self.error("expected ',' or ']' in a list")),
            }
        }
    }

    fn string(&mut self) -> Result<String> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("metadata ends inside a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => out.push(c),
                        None => return Err(self.error("metadata ends inside a string")),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit() || b == b'.') {
            self.pos += 1;
        }
        let text =
            std::str::from_utf8(self.s.get(start..self.pos).unwrap_or_default()).unwrap_or("");
        let parsed = if text.contains('.') {
            text.parse().ok().map(Value::Float)
        } else {
            text.parse().ok().map(Value::Int)
        };
        parsed.ok_or_else(|| self.error(format!("invalid number \"{text}\"")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_sections_lists_and_comments() {
        let text = b"# comment\nvg {\n id = \"a\\\"b\"\n seqno = 7\n f = 1.5\n n = -3\n l = [\"x\", 1, [2]]\n e = []\n sub { k = 1 }\n}\nversion = 1\0garbage";
        let root = parse(text).unwrap();
        let vg = root.section("vg").unwrap();
        assert_eq!(vg.str("id"), Some("a\"b"));
        assert_eq!(vg.int("seqno"), Some(7));
        assert_eq!(vg.get("f"), Some(&Value::Float(1.5)));
        assert_eq!(vg.int("n"), Some(-3));
        assert_eq!(vg.list("l").map(<[Value]>::len), Some(3));
        assert_eq!(vg.list("e"), Some(&[][..]));
        assert_eq!(vg.section("sub").and_then(|s| s.int("k")), Some(1));
        assert_eq!(root.int("version"), Some(1));
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse(b"a {\n b = \n}").unwrap_err();
        assert!(matches!(err, Error::Metadata { line: 3, .. }), "{err}");
        assert!(parse(b"a { b = 1").is_err());
        assert!(parse(b"a = \"open").is_err());
        assert!(parse(b"}").is_err());
        assert!(parse(b"a = 99999999999999999999").is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "a {".repeat(10_000) + &"}".repeat(10_000);
        let err = parse(deep.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nesting deeper"), "{err}");
        let deep_list = "a = ".to_string() + &"[".repeat(10_000);
        assert!(parse(deep_list.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("nesting deeper"));
    }
}
