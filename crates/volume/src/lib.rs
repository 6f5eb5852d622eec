//! Partition tables and volume managers, read-only, over a [`porthole_image::BlockDevice`].
//!
//! Everything this crate finds — MBR and GPT partitions, LVM2 logical volumes, md RAID1
//! arrays — is itself a `BlockDevice`, so the filesystem readers above work the same on a
//! whole disk, a partition or a striped logical volume spread over several image files.
//! [`scan`] finds them all, named as a Linux guest would name them.
//!
//! Module map: [`partition`] (the shared model and scheme detection), [`mbr`], [`gpt`],
//! [`lvm`] (label, text metadata, LV mapping), [`md`] (RAID1 members), [`fuzzing`] (entry
//! points that must never panic, and crafted seed images).
//!
//! MBR disks use 512-byte sectors; GPT disks are read with 512- or 4096-byte (4Kn) sectors,
//! whichever places an "EFI PART" header at LBA 1 or at the last LBA.
//!
//! Disk images are hostile: entry counts, chain lengths, metadata sizes and nesting depths are
//! capped, and a header claiming more is an [`Error::Limit`], never an allocation.

mod bytes;
pub mod error;
pub mod fuzzing;
pub mod gpt;
pub mod lvm;
pub mod mbr;
pub mod md;
pub mod partition;
mod scan;

pub use bytes::Dev;
pub use error::{Error, Result};
pub use partition::{
    read_partition_table, Guid, Partition, PartitionKind, PartitionTable, Scheme, TypeId,
};
pub use scan::{disk_name, scan, Scan, Volume, VolumeKind};
