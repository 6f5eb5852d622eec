//! JSON output in qemu-ga's exact style.
//!
//! qemu writes `{"return": {}, "id": 1}`: a space after `:` and `,`, every character outside
//! printable ASCII as an upper-case `\uXXXX` escape (surrogate pairs above the BMP). Matching it
//! byte for byte costs nothing and keeps scripts that grep agent output working; ASCII-only output
//! also survives serial lines that are not 8-bit clean.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};
use std::io::{self, Write};

/// A serde_json formatter producing qemu-ga's layout.
#[derive(Debug, Default, Clone, Copy)]
pub struct QemuFormatter;

impl Formatter for QemuFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, s: &str) -> io::Result<()> {
        if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return w.write_all(s.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in s.chars() {
            if (' '..='~').contains(&c) {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04X}")?;
                }
            }
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let text: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(w, "\\u{byte:04X}"),
        };
        w.write_all(text)
    }
}

/// Serializes `value` in qemu's style, appending to `out`.
pub fn write_qemu_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> io::Result<()> {
    let mut ser = Serializer::with_formatter(out, QemuFormatter);
    value.serialize(&mut ser).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_qemu_layout_and_escapes() -> io::Result<()> {
        let mut out = Vec::new();
        let value = json!({"a": [1, {"b": null}], "c": "é\u{201c}\u{1}/\u{1F600}\u{7f}"});
        write_qemu_json(&mut out, &value)?;
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"a": [1, {"b": null}], "c": "\u00E9\u201C\u0001/\uD83D\uDE00\u007F"}"#
        );
        Ok(())
    }
}
