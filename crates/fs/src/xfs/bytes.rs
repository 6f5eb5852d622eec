//! Bounds-checked big-endian field access. Every XFS structure is big-endian; a [`Buf`] knows the
//! device offset of its first byte, so a field that falls outside names where it was looked for.

use crate::{Error, Result};

/// The filesystem name used in every error.
pub(super) const FS: &str = "xfs";

/// A `Corrupt` error at device offset `offset`.
pub(super) fn corrupt(offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        fs: FS,
        offset,
        what: what.into(),
    }
}

/// Bytes read from the device at `base`.
#[derive(Clone, Copy)]
pub(super) struct Buf<'a> {
    pub data: &'a [u8],
    pub base: u64,
}

impl<'a> Buf<'a> {
    pub fn new(data: &'a [u8], base: u64) -> Self {
        Buf { data, base }
    }

    /// The device offset of byte `at`.
    pub fn at(&self, at: usize) -> u64 {
        self.base.saturating_add(at as u64)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// `len` bytes at `at`, or an error naming `what`.
    pub fn slice(&self, at: usize, len: usize, what: &str) -> Result<&'a [u8]> {
        at.checked_add(len)
            .and_then(|end| self.data.get(at..end))
            .ok_or_else(|| corrupt(self.at(at), format!("{what} runs past its structure")))
    }

    /// The sub-buffer `[at, at + len)`.
    pub fn sub(&self, at: usize, len: usize, what: &str) -> Result<Buf<'a>> {
        Ok(Buf::new(self.slice(at, len, what)?, self.at(at)))
    }

    fn array<const N: usize>(&self, at: usize, what: &str) -> Result<[u8; N]> {
        let s = self.slice(at, N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub fn u8(&self, at: usize, what: &str) -> Result<u8> {
        Ok(self.array::<1>(at, what)?[0])
    }

    pub fn u16(&self, at: usize, what: &str) -> Result<u16> {
        self.array(at, what).map(u16::from_be_bytes)
    }

    pub fn u32(&self, at: usize, what: &str) -> Result<u32> {
        self.array(at, what).map(u32::from_be_bytes)
    }

    pub fn u64(&self, at: usize, what: &str) -> Result<u64> {
        self.array(at, what).map(u64::from_be_bytes)
    }

    pub fn u128(&self, at: usize, what: &str) -> Result<u128> {
        self.array(at, what).map(u128::from_be_bytes)
    }
}
