//! `KEY=value` files as a POSIX shell reads them.
//!
//! os-release, lsb-release, `/etc/sysconfig/*`, `ifcfg-*` and `/etc/default/*` are shell
//! fragments: values may be bare, single-quoted (literal), double-quoted (with `\\` escapes of
//! `"` `\\` `$` and `` ` ``) or backslash-escaped. The guest agent reads the live guest's
//! os-release with this; the offline inspector reads all of them from disk images.

use std::collections::BTreeMap;

/// The assignments of `text`, later ones winning. Comments, blank lines, lines that are not
/// `NAME=value` with a valid shell variable name, and values with an unterminated quote are
/// skipped: a guest's file may be odd, and one bad line must not hide the rest.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            Some((key.to_string(), shell_unquote(value.trim())?))
        })
        .collect()
}

/// Undoes shell quoting like g_shell_unquote: single quotes literal, double quotes with
/// backslash escapes of `"` `\` `$` `` ` `` and newline, bare backslash escapes outside quotes.
/// Returns `None` for an unterminated quote.
pub fn shell_unquote(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    other => out.push(other),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        e @ ('"' | '\\' | '$' | '`') => out.push(e),
                        '\n' => {}
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    },
                    other => out.push(other),
                }
            },
            '\\' => out.push(chars.next()?),
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_as_a_shell_reads_it() {
        let fields = parse(
            "NAME=\"Debian GNU/Linux\"\nID=debian\nPRETTY_NAME='It''s \"odd\"'\nVERSION=\"12 \\\"bookworm\\\"\"\n# comment\nBAD LINE\nVARIANT=a\\ b\nVERSION_ID=\"unterminated\n",
        );
        assert_eq!(fields["NAME"], "Debian GNU/Linux");
        assert_eq!(fields["ID"], "debian");
        assert_eq!(fields["PRETTY_NAME"], "Its \"odd\"");
        assert_eq!(fields["VERSION"], "12 \"bookworm\"");
        assert_eq!(fields["VARIANT"], "a b");
        assert!(!fields.contains_key("VERSION_ID"));
    }
}
