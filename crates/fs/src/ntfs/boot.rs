//! Checks on the NTFS boot sector made before the `ntfs` crate sees it: the crate accepts an
//! MFT record size of up to 127 clusters (254 MiB) and allocates it for every record read.

use crate::{Error, Result};

fn corrupt(offset: u64, what: String) -> Error {
    Error::Corrupt {
        fs: "ntfs",
        offset,
        what: format!("boot sector: {what}"),
    }
}

/// A record size field: clusters when positive, else 2^-n bytes.
fn record_size(info: i8, cluster: u64) -> Option<u64> {
    if info > 0 {
        cluster.checked_mul(info as u64)
    } else {
        1u64.checked_shl(u32::from(info.unsigned_abs()))
    }
}

pub(crate) fn check(b: &[u8], device_size: u64) -> Result<()> {
    let bps = u64::from(u16::from_le_bytes([b[11], b[12]]));
    if !bps.is_power_of_two() || !(512..=4096).contains(&bps) {
        return Err(corrupt(11, format!("bytes per sector {bps}")));
    }
    let spc = b[13];
    let cluster = if spc > 128 {
        1u64.checked_shl(u32::from(spc.wrapping_neg())).unwrap_or(0)
    } else {
        u64::from(spc) * bps
    };
    if !cluster.is_power_of_two() || !(512..=2 << 20).contains(&cluster) {
        return Err(corrupt(13, format!("sectors per cluster {spc}")));
    }
    let file_record = record_size(b[0x40] as i8, cluster);
    if !matches!(file_record, Some(1024 | 2048 | 4096)) {
        return Err(corrupt(0x40, format!("file record size {file_record:?}")));
    }
    let index_record = record_size(b[0x44] as i8, cluster);
    if !matches!(index_record, Some(s) if s.is_power_of_two() && (512..=65536).contains(&s)) {
        return Err(corrupt(0x44, format!("index record size {index_record:?}")));
    }
    let mft = u64::from_le_bytes(b[0x30..0x38].try_into().unwrap_or([0; 8]));
    if mft == 0 || mft.checked_mul(cluster).is_none_or(|at| at >= device_size) {
        return Err(corrupt(
            0x30,
            format!("MFT cluster {mft} outside the device"),
        ));
    }
    Ok(())
}
