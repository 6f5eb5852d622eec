//! qemu's words for a JSON text it cannot parse.
//!
//! porthole parses with serde_json, whose messages ("expected `:` at line 1 column 12") differ
//! from qemu's ("missing : in object pair"). Scripts written against qemu-ga match on its texts,
//! so when serde rejects a message, [`diagnose`] replays qemu's lexer and recursive-descent parser
//! (qobject/json-lexer.c, json-parser.c) over the tokens and returns the first error qemu would
//! report. It runs only on the error path, iteratively, with memory linear in the message (which
//! the framer has already bounded).

use crate::framer::FrameError;

/// A token of qemu's JSON lexer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Comma,
    Colon,
    String,
    Number,
    /// A run of lower-case letters; only `true`, `false` and `null` are values.
    Keyword(String),
}

/// Splits `message` into tokens, or returns the lexer's own error.
fn lex(message: &[u8]) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut at = 0;
    while let Some(&byte) = message.get(at) {
        let simple = match byte {
            b'{' => Some(Token::LCurly),
            b'}' => Some(Token::RCurly),
            b'[' => Some(Token::LSquare),
            b']' => Some(Token::RSquare),
            b',' => Some(Token::Comma),
            b':' => Some(Token::Colon),
            _ => None,
        };
        if let Some(token) = simple {
            tokens.push(token);
            at += 1;
            continue;
        }
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' => at += 1,
            b'"' => {
                at = string_end(message, at + 1);
                tokens.push(Token::String);
            }
            b'-' | b'0'..=b'9' => {
                at += run(&message[at..], |b| {
                    b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
                });
                tokens.push(Token::Number);
            }
            b'a'..=b'z' => {
                let len = run(&message[at..], |b| b.is_ascii_lowercase());
                let word = String::from_utf8_lossy(&message[at..at + len]).into_owned();
                tokens.push(Token::Keyword(word));
                at += len;
            }
            other => return Err(FrameError::Stray(other).to_string()),
        }
    }
    Ok(tokens)
}

/// Length of the leading run of bytes matching `accept`.
fn run(bytes: &[u8], accept: impl Fn(u8) -> bool) -> usize {
    bytes.iter().take_while(|&&b| accept(b)).count()
}

/// The index after the closing quote of a string whose body starts at `from`.
fn string_end(message: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(&byte) = message.get(at) {
        at += 1;
        match byte {
            b'\\' => at += 1,
            b'"' => return at,
            _ => {}
        }
    }
    at
}

/// A container the parser is inside.
enum Frame {
    Object,
    Array,
}

/// The first error qemu reports for `message` (without the "JSON parse error, " prefix), or
/// `None` when qemu's grammar accepts it.
pub fn diagnose(message: &[u8]) -> Option<String> {
    let tokens = match lex(message) {
        Ok(tokens) => tokens,
        Err(stray) => return Some(stray.trim_start_matches("JSON parse error, ").to_string()),
    };
    Parser {
        tokens: &tokens,
        at: 0,
    }
    .parse()
    .err()
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
}

type Step = Result<(), String>;

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn pop(&mut self) -> Result<&Token, String> {
        let token = self.tokens.get(self.at).ok_or("premature EOI")?;
        self.at += 1;
        Ok(token)
    }

    /// One value, iteratively: `stack` holds the open containers.
    fn parse(&mut self) -> Step {
        let mut stack: Vec<Frame> = Vec::new();
        // Each turn reads one value (a scalar, or the opening of a container) in the position
        // the innermost container expects, then closes every container that ends after it.
        loop {
            if let Some(Frame::Object) = stack.last() {
                self.key()?;
            }
            if let Some(container) = self.value()? {
                stack.push(container);
                continue;
            }
            loop {
                let Some(frame) = stack.last() else {
                    return Ok(());
                };
                let (close, separator) = match frame {
                    Frame::Object => (Token::RCurly, "expected separator in dict"),
                    Frame::Array => (Token::RSquare, "expected separator in list"),
                };
                let token = self.pop()?;
                if *token == close {
                    stack.pop();
                    continue;
                }
                if *token != Token::Comma {
                    return Err(separator.to_string());
                }
                break;
            }
        }
    }

    /// A value; an opened container that is not empty is returned to be filled, an empty one is
    /// consumed whole.
    fn value(&mut self) -> Result<Option<Frame>, String> {
        let token = self.pop()?.clone();
        let (frame, close) = match token {
            Token::String | Token::Number => return Ok(None),
            Token::Keyword(word) => {
                return match word.as_str() {
                    "true" | "false" | "null" => Ok(None),
                    _ => Err(format!("invalid keyword '{word}'")),
                }
            }
            Token::LCurly => (Frame::Object, Token::RCurly),
            Token::LSquare => (Frame::Array, Token::RSquare),
            _ => return Err("expecting value".to_string()),
        };
        if self.peek() == Some(&close) {
            self.at += 1;
            return Ok(None);
        }
        Ok(Some(frame))
    }

    /// An object key and its colon. qemu parses the key as any value, so errors inside a
    /// non-string key come before "key is not a string".
    fn key(&mut self) -> Step {
        const NOT_A_STRING: &str = "key is not a string in object";
        match self.peek() {
            Some(Token::String) => self.at += 1,
            Some(Token::LCurly | Token::LSquare) => {
                self.parse()?;
                return Err(NOT_A_STRING.to_string());
            }
            _ => {
                self.value()?;
                return Err(NOT_A_STRING.to_string());
            }
        }
        if *self.pop()? != Token::Colon {
            return Err("missing : in object pair".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::diagnose;

    fn says(text: &str) -> Option<String> {
        diagnose(text.as_bytes())
    }

    #[test]
    fn qemu_texts() {
        let cases = [
            (r#"{"execute" "x"}"#, "missing : in object pair"),
            ("{abc}", "invalid keyword 'abc'"),
            ("{1: 2}", "key is not a string in object"),
            ("{[1 2]: 2}", "expected separator in list"),
            ("{[]: 2}", "key is not a string in object"),
            (r#"{"a": }"#, "expecting value"),
            (r#"{"a": 1 "b": 2}"#, "expected separator in dict"),
            ("[1 2]", "expected separator in list"),
            ("[1,]", "expecting value"),
            (r#"{"a": [1, {"b": tru}]}"#, "invalid keyword 'tru'"),
            (r#"{"a": @}"#, "stray '@'"),
            (r#"{"a": {}, "b": [], "c": [[]]"#, "premature EOI"),
        ];
        for (text, want) in cases {
            assert_eq!(says(text).as_deref(), Some(want), "for {text}");
        }
    }

    #[test]
    fn valid_texts_have_no_diagnosis() {
        for text in [
            r#"{"a": {}, "b": [], "c": [[1, {"d": null}]]}"#,
            "[]",
            "{}",
            "\"s\"",
        ] {
            assert_eq!(says(text), None, "for {text}");
        }
    }
}
