//! The architecture of a Windows guest, from the PE header of `%SystemRoot%\System32\cmd.exe`
//! (virt-inspector runs `file` on the same binary).
//!
//! A PE file starts with the DOS header (`MZ`); its `e_lfanew` field at byte 0x3c gives the
//! offset of the `PE\0\0` signature, followed by the COFF header whose first field is the
//! machine type. Only the first [`HEADER_BYTES`] of the file are read: linkers put the PE
//! header within the first few hundred bytes, and an `e_lfanew` pointing further is refused
//! rather than followed.

use thiserror::Error;

/// How much of the file is read and searched for the PE header.
pub const HEADER_BYTES: usize = 4096;

/// Where the DOS header keeps the PE header's offset.
const E_LFANEW: usize = 0x3c;

/// Why a file's architecture could not be read. Offsets are byte offsets in the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeError {
    #[error("PE: no MZ signature at byte 0")]
    NotMz,
    #[error("PE: DOS header of {len} bytes ends before e_lfanew at byte {E_LFANEW:#x}")]
    ShortDosHeader { len: usize },
    #[error("PE: e_lfanew {offset:#x} (at byte {E_LFANEW:#x}) is past the first {HEADER_BYTES} bytes or the file's end")]
    HeaderOutOfRange { offset: u32 },
    #[error("PE: no PE\\0\\0 signature at byte {offset:#x}")]
    NotPe { offset: u32 },
    #[error("PE: machine type {machine:#06x} at byte {at:#x} is not one Windows runs on")]
    UnknownMachine { machine: u16, at: usize },
}

/// The architecture (virt-inspector's and `uname -m`'s names) of the PE file whose first bytes
/// are `header` (at most [`HEADER_BYTES`] are looked at).
pub fn arch_of(header: &[u8]) -> Result<&'static str, PeError> {
    let header = header.get(..HEADER_BYTES).unwrap_or(header);
    if header.get(..2) != Some(b"MZ".as_slice()) {
        return Err(PeError::NotMz);
    }
    let lfanew = header
        .get(E_LFANEW..E_LFANEW + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(PeError::ShortDosHeader { len: header.len() })?;
    let at = usize::try_from(lfanew).unwrap_or(usize::MAX);
    // Signature (4 bytes) and machine (2 bytes) must both be in what was read.
    let Some(&[p, e, z0, z1, low, high]) = header.get(at..at.saturating_add(6)) else {
        return Err(PeError::HeaderOutOfRange { offset: lfanew });
    };
    if [p, e, z0, z1] != *b"PE\0\0" {
        return Err(PeError::NotPe { offset: lfanew });
    }
    let machine = u16::from_le_bytes([low, high]);
    machine_name(machine).ok_or(PeError::UnknownMachine {
        machine,
        at: at + 4,
    })
}

/// `IMAGE_FILE_MACHINE_*` as an architecture name.
fn machine_name(machine: u16) -> Option<&'static str> {
    Some(match machine {
        0x014c => "i386",
        0x8664 => "x86_64",
        0xaa64 => "aarch64",
        0x01c4 => "arm",
        0x0200 => "ia64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DOS header whose e_lfanew is `lfanew`, then `PE\0\0` and `machine` there.
    fn pe(lfanew: u32, machine: u16) -> Vec<u8> {
        let mut b = vec![0u8; lfanew as usize + 24];
        b[..2].copy_from_slice(b"MZ");
        b[E_LFANEW..E_LFANEW + 4].copy_from_slice(&lfanew.to_le_bytes());
        let at = lfanew as usize;
        b[at..at + 4].copy_from_slice(b"PE\0\0");
        b[at + 4..at + 6].copy_from_slice(&machine.to_le_bytes());
        b
    }

    #[test]
    fn machines() {
        assert_eq!(arch_of(&pe(0x80, 0x8664)), Ok("x86_64"));
        assert_eq!(arch_of(&pe(0xe8, 0x014c)), Ok("i386"));
        assert_eq!(arch_of(&pe(0x40, 0xaa64)), Ok("aarch64"));
        assert_eq!(
            arch_of(&pe(0x80, 0x1234)),
            Err(PeError::UnknownMachine {
                machine: 0x1234,
                at: 0x84
            })
        );
    }

    #[test]
    fn damaged_headers() {
        assert_eq!(arch_of(b""), Err(PeError::NotMz));
        assert_eq!(arch_of(b"\x7fELF"), Err(PeError::NotMz));
        assert_eq!(arch_of(b"MZ\0\0"), Err(PeError::ShortDosHeader { len: 4 }));
        let mut far = pe(0x80, 0x8664);
        far[E_LFANEW..E_LFANEW + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            arch_of(&far),
            Err(PeError::HeaderOutOfRange { offset: u32::MAX })
        );
        // Past the bytes read, even though the file would hold it.
        let beyond = pe(HEADER_BYTES as u32 - 2, 0x8664);
        assert!(matches!(
            arch_of(&beyond),
            Err(PeError::HeaderOutOfRange { .. })
        ));
        let mut not_pe = pe(0x80, 0x8664);
        not_pe[0x80] = b'N';
        assert_eq!(arch_of(&not_pe), Err(PeError::NotPe { offset: 0x80 }));
        // The text names the structure and the byte offset.
        assert!(PeError::NotPe { offset: 0x80 }.to_string().contains("0x80"));
    }
}
