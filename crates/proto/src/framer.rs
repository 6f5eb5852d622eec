//! Splits a byte stream into JSON texts.
//!
//! The QGA transport is a byte stream with no message boundaries: a request can arrive split over
//! many reads, and several can arrive back to back with no separator (Proxmox writes its sync and
//! its real command in one write). The framer finds where each top-level JSON value ends by
//! tracking string state and bracket depth, without parsing. What it does beyond that:
//!
//! * A `0xFF` byte (never valid UTF-8) resets it: a half-received request is dropped silently.
//!   Clients send it before `guest-sync-delimited` to flush a stale partial request.
//! * qemu's JSON dialect allows single-quoted strings; they are rewritten to double-quoted ones here
//!   so that a standard JSON parser can read the message.
//! * Bytes that cannot start a JSON value yield one [`FrameError::Stray`] for the whole run, and
//!   framing resumes at the next `{` or `[`.
//! * A message over the size limit or nested deeper than the depth limit yields one error as soon
//!   as the limit is crossed; the rest of that message is scanned and discarded without being
//!   buffered, so memory stays bounded whatever the peer sends.

/// qemu-ga's limit for one message.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// qemu-ga's limit for bracket nesting.
pub const MAX_DEPTH: usize = 1024;
/// The byte that resets the framer.
pub const RESET_BYTE: u8 = 0xFF;

/// Bounds the framer enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_depth: MAX_DEPTH,
        }
    }
}

/// One framing result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete JSON text, single-quoted strings already rewritten to double-quoted ones.
    Message(Vec<u8>),
    /// Input that is not a message; framing has already recovered.
    Error(FrameError),
}

/// Why input was rejected before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Bytes that cannot start a JSON value.
    #[error("JSON parse error, stray '{}'", stray_display(*.0))]
    Stray(u8),
    #[error("JSON message exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("JSON nesting depth limit exceeded ({limit} levels)")]
    TooDeep { limit: usize },
}

fn stray_display(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        char::from(byte).to_string()
    } else {
        format!("\\x{byte:02X}")
    }
}

/// Where the framer is inside the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages.
    Idle,
    /// Inside a top-level bare token (a number or keyword such as `true`).
    Bare,
    /// Inside a message that is being buffered.
    Value(Scan),
    /// Inside a message that broke a limit: scanned to its end, not buffered.
    Discard(Scan),
    /// After stray bytes: waiting for the next `{` or `[`.
    Garbage,
}

/// Lexical position inside a JSON value: bracket depth and string state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Scan {
    depth: usize,
    /// The quote byte of the string being read, if any.
    quote: Option<u8>,
    /// The previous byte inside the string was a backslash.
    escape: bool,
}

/// What one byte did to a [`Scan`].
enum Step {
    /// Keep going.
    Continue,
    /// The byte closed the top-level value.
    Complete,
    /// The byte opened a level past the depth limit.
    TooDeep,
}

impl Scan {
    /// Advances over `byte`, writing its (possibly rewritten) form to `out`.
    fn step(&mut self, byte: u8, max_depth: usize, out: &mut Vec<u8>) -> Step {
        if let Some(quote) = self.quote {
            self.step_in_string(byte, quote, out);
            if self.quote.is_none() && self.depth == 0 {
                return Step::Complete;
            }
            return Step::Continue;
        }
        match byte {
            b'"' | b'\'' => {
                self.quote = Some(byte);
                out.push(b'"');
            }
            b'{' | b'[' => {
                self.depth += 1;
                out.push(byte);
                if self.depth > max_depth {
                    return Step::TooDeep;
                }
            }
            b'}' | b']' => {
                out.push(byte);
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    return Step::Complete;
                }
            }
            _ => out.push(byte),
        }
        Step::Continue
    }

    fn step_in_string(&mut self, byte: u8, quote: u8, out: &mut Vec<u8>) {
        if self.escape {
            self.escape = false;
            // `\'` is qemu's escape for a single quote; standard JSON has no such escape.
            if byte != b'\'' {
                out.push(b'\\');
            }
            out.push(byte);
            return;
        }
        match byte {
            b'\\' => self.escape = true,
            b if b == quote => {
                self.quote = None;
                out.push(b'"');
            }
            b'"' => out.extend_from_slice(b"\\\""),
            _ => out.push(byte),
        }
    }
}

/// Splits a byte stream into JSON texts; see the module docs.
#[derive(Debug, Clone)]
pub struct Framer {
    limits: Limits,
    state: State,
    buf: Vec<u8>,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Idle,
            buf: Vec::new(),
        }
    }

    /// Drops any partial message (a client went away, or a 0xFF arrived).
    pub fn reset(&mut self) {
        self.state = State::Idle;
        self.buf = Vec::new();
    }

    /// True when no partial message is pending.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Feeds bytes and returns every frame they completed, in order.
    pub fn push(&mut self, input: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut i = 0;
        while let Some(&byte) = input.get(i) {
            if byte == RESET_BYTE {
                self.reset();
                i += 1;
                continue;
            }
            let run = self.copy_string_run(input.get(i..).unwrap_or_default());
            if run > 0 {
                i += run;
                continue;
            }
            if self.step(byte, &mut frames) {
                i += 1;
            }
        }
        frames
    }

    /// Inside a string, copies the leading bytes of `rest` that the byte-by-byte scan would copy
    /// unchanged (no quote, backslash or reset byte) in one go; returns how many. A file
    /// write's base64 payload is almost all such bytes, and the scan per byte cost more than
    /// everything else the agent does with them (under TCG it capped uploads near 2 MB/s).
    /// Stops short of the size limit, so the byte that crosses it still takes the checked path.
    fn copy_string_run(&mut self, rest: &[u8]) -> usize {
        let State::Value(Scan {
            quote: Some(quote),
            escape: false,
            ..
        }) = self.state
        else {
            return 0;
        };
        let plain = match quote {
            b'"' => memchr::memchr3(b'"', b'\\', RESET_BYTE, rest),
            _ => rest
                .iter()
                .position(|&b| b == quote || matches!(b, b'"' | b'\\' | RESET_BYTE)),
        }
        .unwrap_or(rest.len());
        let room = self.limits.max_message_bytes.saturating_sub(self.buf.len());
        let run = rest.get(..plain.min(room)).unwrap_or_default();
        self.buf.extend_from_slice(run);
        run.len()
    }

    /// Processes one byte; returns false when the byte must be processed again in the new state.
    fn step(&mut self, byte: u8, frames: &mut Vec<Frame>) -> bool {
        match self.state {
            State::Idle => self.step_idle(byte, frames),
            State::Bare => {
                if is_bare_byte(byte) {
                    self.buffer_byte(byte, frames);
                    true
                } else {
                    self.complete(frames);
                    false
                }
            }
            State::Value(ref mut scan) => {
                let step = scan.step(byte, self.limits.max_depth, &mut self.buf);
                let scan = *scan;
                match step {
                    Step::Continue => self.check_size(frames),
                    Step::Complete => self.complete(frames),
                    Step::TooDeep => {
                        let limit = self.limits.max_depth;
                        self.fail(scan, FrameError::TooDeep { limit }, frames)
                    }
                }
                true
            }
            State::Discard(ref mut scan) => {
                // `buf` is empty while discarding; it only holds the byte just scanned.
                let step = scan.step(byte, usize::MAX, &mut self.buf);
                self.buf.clear();
                if let Step::Complete = step {
                    self.state = State::Idle;
                }
                true
            }
            State::Garbage => {
                if byte == b'{' || byte == b'[' {
                    self.state = State::Idle;
                    return false;
                }
                true
            }
        }
    }

    fn step_idle(&mut self, byte: u8, frames: &mut Vec<Frame>) -> bool {
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'{' | b'[' | b'"' | b'\'' => {
                self.state = State::Value(Scan::default());
                return false;
            }
            b if is_bare_byte(b) => {
                self.state = State::Bare;
                return false;
            }
            _ => {
                frames.push(Frame::Error(FrameError::Stray(byte)));
                self.state = State::Garbage;
            }
        }
        true
    }

    fn buffer_byte(&mut self, byte: u8, frames: &mut Vec<Frame>) {
        self.buf.push(byte);
        self.check_size(frames);
    }

    fn check_size(&mut self, frames: &mut Vec<Frame>) {
        if self.buf.len() <= self.limits.max_message_bytes {
            return;
        }
        let limit = self.limits.max_message_bytes;
        match self.state {
            State::Value(scan) => self.fail(scan, FrameError::TooLarge { limit }, frames),
            // A bare token has no structure to skip: treat the rest of it as garbage.
            _ => {
                self.buf = Vec::new();
                frames.push(Frame::Error(FrameError::TooLarge { limit }));
                self.state = State::Garbage;
            }
        }
    }

    fn fail(&mut self, scan: Scan, error: FrameError, frames: &mut Vec<Frame>) {
        self.buf = Vec::new();
        frames.push(Frame::Error(error));
        self.state = State::Discard(scan);
    }

    fn complete(&mut self, frames: &mut Vec<Frame>) {
        frames.push(Frame::Message(std::mem::take(&mut self.buf)));
        self.state = State::Idle;
    }
}

/// Bytes that may appear in a bare top-level token (numbers, `true`, `false`, `null`, or a
/// misspelling of them, which the parser then reports).
fn is_bare_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'+' | b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Message(m) => String::from_utf8_lossy(m).into_owned(),
                Frame::Error(e) => format!("ERR {e}"),
            })
            .collect()
    }

    #[test]
    fn split_across_reads_byte_by_byte() {
        let input = br#"{"execute":"guest-sync","arguments":{"id":"}{"}}"#;
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for b in input {
            out.extend(framer.push(&[*b]));
        }
        assert_eq!(messages(&out), vec![String::from_utf8_lossy(input)]);
        assert!(framer.is_idle());
    }

    /// Every split of the input gives the frames of the byte-at-a-time scan (which never takes
    /// the bulk string path's long runs), escapes, both quote styles and a reset byte included.
    #[test]
    fn string_runs_match_the_byte_by_byte_scan() {
        let long = "QUJD".repeat(5000);
        let input = format!(
            "{{\"execute\":\"w\",\"arguments\":{{\"buf-b64\":\"{long}\\\"x\\\\{long}\"}}}}\
             {{'execute':'a\"b\\'c{long}'}}{{\"x\":\"{long}\u{ff}{{\"execute\":\"guest-ping\"}}"
        );
        let mut input = input.into_bytes();
        // `\u{ff}` above is two UTF-8 bytes; the framer's reset byte is the raw 0xFF.
        let at = input.windows(2).position(|w| w == [0xC3, 0xBF]).unwrap();
        input.splice(at..at + 2, [RESET_BYTE]);
        let mut reference = Framer::default();
        let mut expected = Vec::new();
        for b in &input {
            expected.extend(reference.push(&[*b]));
        }
        assert_eq!(expected.len(), 3);
        for split in [2, 7, 4096, 65536, input.len()] {
            let mut framer = Framer::default();
            let mut out = Vec::new();
            for piece in input.chunks(split) {
                out.extend(framer.push(piece));
            }
            assert_eq!(messages(&out), messages(&expected), "split {split}");
        }
    }

    /// The bulk path stops where the byte-by-byte scan would report the limit: every message
    /// length around it frames (or fails) the same fed whole as fed a byte at a time.
    #[test]
    fn size_limit_inside_long_strings_matches_the_byte_by_byte_scan() {
        for max in [40, 41, 100] {
            let limits = Limits {
                max_message_bytes: max,
                max_depth: 8,
            };
            for len in max - 12..max + 4 {
                let message = format!("{{\"a\":\"{}\"}}", "x".repeat(len - 8));
                let mut whole = Framer::new(limits);
                let mut bytewise = Framer::new(limits);
                let got = whole.push(message.as_bytes());
                let want: Vec<Frame> = message.bytes().flat_map(|b| bytewise.push(&[b])).collect();
                assert_eq!(messages(&got), messages(&want), "max {max}, length {len}");
                if len > max + 1 {
                    assert!(matches!(got.as_slice(), [Frame::Error(_)]), "{len}");
                }
            }
        }
    }

    #[test]
    fn back_to_back_without_separator() {
        let mut framer = Framer::default();
        let out = framer.push(br#"{"a":1}{"b":[2]} [3]"#);
        assert_eq!(messages(&out), vec![r#"{"a":1}"#, r#"{"b":[2]}"#, "[3]"]);
    }

    #[test]
    fn reset_byte_drops_partial_message() {
        let mut framer = Framer::default();
        let out = framer.push(b"{\"execute\":\"gue\xff{\"execute\":\"guest-ping\"}");
        assert_eq!(messages(&out), vec![r#"{"execute":"guest-ping"}"#]);
    }

    #[test]
    fn single_quotes_are_rewritten() {
        let mut framer = Framer::default();
        let out = framer.push(br#"{'execute':'a"b\'c\n'}"#);
        assert_eq!(messages(&out), vec![r#"{"execute":"a\"b'c\n"}"#]);
    }

    #[test]
    fn garbage_yields_one_error_and_recovers() {
        let mut framer = Framer::default();
        let out = framer.push(b"}}\x01\x80 ]]{\"execute\":\"guest-ping\"}");
        assert_eq!(
            messages(&out),
            vec![
                "ERR JSON parse error, stray '}'".to_string(),
                r#"{"execute":"guest-ping"}"#.to_string()
            ]
        );
    }

    #[test]
    fn bare_tokens_are_messages_when_delimited() {
        let mut framer = Framer::default();
        assert!(framer.push(b"hello").is_empty());
        let out = framer.push(b" 12{}");
        assert_eq!(messages(&out), vec!["hello", "12", "{}"]);
    }

    #[test]
    fn oversized_message_errors_without_buffering() {
        let limits = Limits {
            max_message_bytes: 64,
            max_depth: 8,
        };
        let mut framer = Framer::new(limits);
        let mut out = framer.push(br#"{"execute":"x","arguments":{"data":""#);
        for _ in 0..1000 {
            out.extend(framer.push(&[b'a'; 100]));
            assert!(framer.buf.capacity() <= 1024);
        }
        out.extend(framer.push(br#""}}{"execute":"guest-ping"}"#));
        assert_eq!(
            messages(&out),
            vec![
                "ERR JSON message exceeds the limit of 64 bytes".to_string(),
                r#"{"execute":"guest-ping"}"#.to_string()
            ]
        );
    }

    #[test]
    fn too_deep_errors_then_recovers() {
        let limits = Limits {
            max_message_bytes: 1 << 20,
            max_depth: 4,
        };
        let mut framer = Framer::new(limits);
        let out = framer.push(b"[[[[[[\"]]]]\"]]]]]][1]");
        assert_eq!(
            messages(&out),
            vec!["ERR JSON nesting depth limit exceeded (4 levels)", "[1]"]
        );
    }

    /// The string fast path gives what byte-by-byte stepping gives, at every split point and
    /// at a size limit falling inside a string.
    #[test]
    fn string_runs_match_byte_stepping() {
        let input: &[u8] = b"{'a': 'it''s \\'q\\' \"x\" ok', \"b\": \"plain run \\\" \\\\ end\"}\n\
            {\"c\": \"0123456789abcdef\"} {\"d\": \"\xff\"}[\"e\"]";
        for limit in [usize::MAX, 40, 20, 12] {
            let limits = Limits {
                max_message_bytes: limit,
                ..Limits::default()
            };
            let mut stepped = Framer::new(limits);
            let one_by_one: Vec<Frame> = input.iter().flat_map(|b| stepped.push(&[*b])).collect();
            for split in 0..input.len() {
                let mut framer = Framer::new(limits);
                let (head, tail) = input.split_at(split);
                let mut frames = framer.push(head);
                frames.extend(framer.push(tail));
                assert_eq!(frames, one_by_one, "limit {limit}, split at {split}");
            }
        }
    }

    /// The same on thousands of generated streams over the bytes that matter to strings.
    #[test]
    fn string_runs_match_byte_stepping_on_generated_input() {
        const ALPHABET: &[u8] = b"{}[]\"'\\ a1:,\xff";
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let len = (next() % 64) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let limit = [usize::MAX, 16, 6][(next() % 3) as usize];
            let limits = Limits {
                max_message_bytes: limit,
                ..Limits::default()
            };
            let mut stepped = Framer::new(limits);
            let one_by_one: Vec<Frame> = input.iter().flat_map(|b| stepped.push(&[*b])).collect();
            let mut whole = Framer::new(limits);
            assert_eq!(whole.push(&input), one_by_one, "{input:?} limit {limit}");
            assert_eq!(whole.is_idle(), stepped.is_idle(), "{input:?}");
        }
    }

    #[test]
    fn top_level_string_is_a_message() {
        let mut framer = Framer::default();
        let out = framer.push(br#""str"{}"#);
        assert_eq!(messages(&out), vec![r#""str""#, "{}"]);
    }
}
