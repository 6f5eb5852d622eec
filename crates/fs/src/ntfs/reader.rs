//! `Read + Seek` over a [`BlockDevice`](porthole_image::BlockDevice), which is what the `ntfs`
//! crate reads through. Reads past the end return 0 bytes, so the crate's `read_exact` fails.

use std::io::{self, Read, Seek, SeekFrom};

use crate::Dev;

pub(crate) struct DevReader {
    dev: Dev,
    pos: u64,
}

impl DevReader {
    pub(crate) fn new(dev: &Dev) -> Self {
        DevReader {
            dev: dev.clone(),
            pos: 0,
        }
    }
}

impl Read for DevReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.dev.size().saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let Some(dst) = buf.get_mut(..n) else {
            return Ok(0);
        };
        self.dev
            .read_exact_at(dst, self.pos)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DevReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let next = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.dev.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            next.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}
