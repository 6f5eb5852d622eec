//! Decoders for compressed clusters and grains; output is capped at the cluster size so a
//! hostile stream cannot expand beyond it.

use std::io::Read;

use flate2::{Decompress, FlushDecompress, Status};

use crate::bytes::corrupt;
use crate::Result;

/// How the bytes of a compressed cluster are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Raw deflate (qcow2's zlib compression type: no zlib header).
    Deflate,
    /// zlib-framed deflate (VMDK stream-optimized grains).
    Zlib,
    /// One or more zstd frames (qcow2 compression_type 1).
    Zstd,
}

/// Decodes `input` into exactly `out_len` bytes. Short output is corruption; trailing input
/// after `out_len` bytes is ignored, as qemu does (compressed clusters are sector-padded).
pub(crate) fn decode(
    codec: Codec,
    input: &[u8],
    out_len: usize,
    format: &'static str,
    offset: u64,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; out_len];
    let got = match codec {
        Codec::Deflate | Codec::Zlib => inflate(codec == Codec::Zlib, input, &mut out),
        Codec::Zstd => unzstd(input, &mut out),
    }
    .map_err(|e| corrupt(format, offset, format!("compressed {codec:?} data: {e}")))?;
    if got != out_len {
        return Err(corrupt(
            format,
            offset,
            format!("compressed {codec:?} data decodes to {got} bytes, expected {out_len}"),
        ));
    }
    Ok(out)
}

fn inflate(zlib_header: bool, input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut d = Decompress::new(zlib_header);
    // One call suffices: input and output are both complete buffers. The bound guards against
    // a decoder that makes no progress.
    for _ in 0..16 {
        let before = d.total_out();
        let in_at = usize::try_from(d.total_in()).unwrap_or(usize::MAX);
        let out_at = usize::try_from(d.total_out()).unwrap_or(usize::MAX);
        let (Some(src), Some(dst)) = (input.get(in_at..), out.get_mut(out_at..)) else {
            break;
        };
        let status = d
            .decompress(src, dst, FlushDecompress::Finish)
            .map_err(|e| e.to_string())?;
        let done = usize::try_from(d.total_out()).unwrap_or(usize::MAX);
        if status == Status::StreamEnd || done >= out.len() || d.total_out() == before {
            break;
        }
    }
    Ok(usize::try_from(d.total_out()).unwrap_or(usize::MAX))
}

/// Window cap for zstd: qemu compresses one cluster (at most 2 MiB) per frame.
const ZSTD_MAX_WINDOW: u64 = 8 << 20;

fn unzstd(mut input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut filled = 0;
    // qemu writes one frame per cluster, but the format allows several.
    for _ in 0..64 {
        if filled >= out.len() || input.is_empty() {
            break;
        }
        let mut dec = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
            &mut input,
            ZSTD_MAX_WINDOW,
        )
        .map_err(|e| e.to_string())?;
        let mut progressed = false;
        while let Some(dst) = out.get_mut(filled..).filter(|d| !d.is_empty()) {
            let n = dec.read(dst).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            progressed = true;
            filled += n;
        }
        if !progressed {
            break;
        }
    }
    Ok(filled)
}
