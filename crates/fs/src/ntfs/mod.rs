//! NTFS: not read yet.

use crate::{Dev, Filesystem, Result};

pub(crate) fn probe(_device: &Dev) -> Option<Result<Box<dyn Filesystem>>> {
    None
}
