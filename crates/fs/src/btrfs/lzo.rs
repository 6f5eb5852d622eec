//! An LZO1X decompressor (bitstream version 0, as written by `lzo1x_1_compress`), safe on
//! hostile input: every input read and back-reference is checked and output stops at a cap.
//!
//! Written here from the format description (the Linux kernel's Documentation/staging/lzo.rst)
//! because the permissive crates found were not safe on untrusted input (lzokay-native indexes
//! and subtracts without checks, so crafted data panics, and has no output bound) and the other
//! ports (lzo1x, rust-lzo, minilzo bindings) are GPL.

/// Why a stream could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LzoError {
    InputOverrun,
    OutputOverrun,
    LookBehind,
}

struct In<'a> {
    data: &'a [u8],
    pos: usize,
}

impl In<'_> {
    fn byte(&mut self) -> Result<u8, LzoError> {
        let b = *self.data.get(self.pos).ok_or(LzoError::InputOverrun)?;
        self.pos += 1;
        Ok(b)
    }

    fn le16(&mut self) -> Result<usize, LzoError> {
        Ok(usize::from(self.byte()?) | usize::from(self.byte()?) << 8)
    }

    /// A length continued in zero bytes: each 0 adds 255, the first non-zero byte ends it.
    fn long_len(&mut self, base: usize) -> Result<usize, LzoError> {
        let mut len = base;
        loop {
            match self.byte()? {
                0 => len = len.saturating_add(255),
                b => return Ok(len.saturating_add(usize::from(b))),
            }
        }
    }
}

fn literals(input: &mut In<'_>, out: &mut Vec<u8>, n: usize, cap: usize) -> Result<(), LzoError> {
    let src = input
        .pos
        .checked_add(n)
        .and_then(|end| input.data.get(input.pos..end))
        .ok_or(LzoError::InputOverrun)?;
    if out.len() + n > cap {
        return Err(LzoError::OutputOverrun);
    }
    out.extend_from_slice(src);
    input.pos += n;
    Ok(())
}

fn copy_match(out: &mut Vec<u8>, dist: usize, len: usize, cap: usize) -> Result<(), LzoError> {
    if dist == 0 || dist > out.len() {
        return Err(LzoError::LookBehind);
    }
    if out.len().saturating_add(len) > cap {
        return Err(LzoError::OutputOverrun);
    }
    let start = out.len() - dist;
    // Byte by byte: the source may overlap the bytes being written (runs).
    for i in start..start + len {
        let b = out[i];
        out.push(b);
    }
    Ok(())
}

/// Decompresses one LZO1X stream, producing at most `cap` bytes.
pub(super) fn decompress(data: &[u8], cap: usize) -> Result<Vec<u8>, LzoError> {
    let mut out = Vec::with_capacity(cap.min(1 << 17));
    let mut input = In { data, pos: 0 };
    // `state`: literals copied by the previous instruction (4 = a long run), which decides what
    // instructions 0..15 mean.
    let mut state = 0usize;
    match data.first() {
        Some(&b) if b >= 22 => {
            input.pos = 1;
            literals(&mut input, &mut out, usize::from(b) - 17, cap)?;
            state = 4;
        }
        Some(&b) if b >= 18 => {
            input.pos = 1;
            state = usize::from(b) - 17;
            literals(&mut input, &mut out, state, cap)?;
        }
        _ => {}
    }
    loop {
        let t = usize::from(input.byte()?);
        let (dist, len, next_state);
        if t >= 64 {
            // M2: 3..8 bytes within 2 KiB.
            len = (t >> 5) + 1;
            dist = (usize::from(input.byte()?) << 3) + ((t >> 2) & 7) + 1;
            next_state = t & 3;
        } else if t >= 32 {
            // M3: within 16 KiB.
            len = if t & 31 == 0 {
                input.long_len(31)? + 2
            } else {
                (t & 31) + 2
            };
            let d = input.le16()?;
            dist = (d >> 2) + 1;
            next_state = d & 3;
        } else if t >= 16 {
            // M4: within 16..48 KiB; distance 16384 ends the stream.
            len = if t & 7 == 0 {
                input.long_len(7)? + 2
            } else {
                (t & 7) + 2
            };
            let d = input.le16()?;
            let far = ((t & 8) << 11) + (d >> 2);
            if far == 0 {
                return Ok(out);
            }
            dist = far + 16384;
            next_state = d & 3;
        } else if state == 0 {
            // A literal run of 4 or more bytes.
            let n = if t == 0 {
                input.long_len(15)? + 3
            } else {
                t + 3
            };
            literals(&mut input, &mut out, n, cap)?;
            state = 4;
            continue;
        } else if state < 4 {
            // M1 after 1..3 literals: 2 bytes within 1 KiB.
            len = 2;
            dist = (t >> 2) + (usize::from(input.byte()?) << 2) + 1;
            next_state = t & 3;
        } else {
            // M1 after a long literal run: 3 bytes at 2..3 KiB.
            len = 3;
            dist = (t >> 2) + (usize::from(input.byte()?) << 2) + 2049;
            next_state = t & 3;
        }
        copy_match(&mut out, dist, len, cap)?;
        state = next_state;
        literals(&mut input, &mut out, state, cap)?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn literal_only_stream() {
        // 22+ : a literal run of (b - 17) bytes, then the end marker 0x11 0x00 0x00.
        let mut s = vec![17 + 5];
        s.extend_from_slice(b"hello");
        s.extend_from_slice(&[0x11, 0, 0]);
        assert_eq!(decompress(&s, 100).unwrap(), b"hello");
    }

    #[test]
    fn match_overlapping_run() {
        // "abcd" then an M2 copy of 8 bytes at distance 4 (t = 1 11 011 00: len 8, D = 3),
        // H = 0, then the end marker.
        let mut s = vec![17 + 4];
        s.extend_from_slice(b"abcd");
        s.extend_from_slice(&[0b1110_1100, 0, 0x11, 0, 0]);
        assert_eq!(decompress(&s, 100).unwrap(), b"abcdabcdabcd");
    }

    #[test]
    fn hostile_streams_fail_cleanly() {
        assert_eq!(decompress(&[], 10), Err(LzoError::InputOverrun));
        // A match (M4, distance 16385) before any output.
        assert_eq!(
            decompress(&[0x11, 0x04, 0x00], 10),
            Err(LzoError::LookBehind)
        );
        // A literal run longer than the cap.
        let mut s = vec![17 + 200];
        s.extend_from_slice(&[b'x'; 200]);
        assert_eq!(decompress(&s, 100), Err(LzoError::OutputOverrun));
        // A long length made of zero bytes that runs off the input.
        assert_eq!(
            decompress(&[0x00, 0, 0, 0], 10),
            Err(LzoError::InputOverrun)
        );
        // No end marker.
        assert_eq!(
            decompress(&[17 + 4, b'a', b'b', b'c', b'd'], 10),
            Err(LzoError::InputOverrun)
        );
    }
}
