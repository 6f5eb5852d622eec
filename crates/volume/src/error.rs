//! The one error type of this crate: every variant names the layer (MBR, GPT, LVM label, ...) and,
//! where there is one, the byte offset on the device being parsed.

/// Errors from reading partition tables and volume managers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the underlying device failed (I/O, or a structure points outside the device).
    #[error(transparent)]
    Device(#[from] porthole_image::Error),
    /// A structure is malformed.
    #[error("{layer} at offset {offset:#x}: {what}")]
    Corrupt {
        layer: &'static str,
        offset: u64,
        what: String,
    },
    /// A structure claims more than porthole is willing to read (entry counts, chain lengths,
    /// metadata sizes, nesting depth): an error rather than an allocation sized by the image.
    #[error("{layer} at offset {offset:#x}: {what} exceeds the limit of {limit}")]
    Limit {
        layer: &'static str,
        offset: u64,
        what: String,
        limit: u64,
    },
    /// Both GPT headers are unusable; carries why each one was rejected.
    #[error("GPT: primary header unusable ({primary}); backup header unusable ({backup})")]
    GptUnreadable {
        primary: Box<Error>,
        backup: Box<Error>,
    },
    /// The LVM text metadata could not be parsed; `offset` is into the metadata text.
    #[error("LVM metadata text, line {line}, byte {offset}: {what}")]
    Metadata {
        line: usize,
        offset: usize,
        what: String,
    },
    /// The LVM metadata is well-formed text but lacks something or contradicts itself.
    #[error("LVM volume group {vg}: {what}")]
    VolumeGroup { vg: String, what: String },
    /// A logical volume needs a physical volume that was not among the devices given.
    #[error("LVM logical volume {vg}/{lv} needs missing physical volume {pv} (uuid {uuid})")]
    MissingPv {
        vg: String,
        lv: String,
        pv: String,
        uuid: String,
    },
    /// A feature porthole does not read (e.g. thin or RAID LVM segments).
    #[error("{layer}: unsupported: {what}")]
    Unsupported { layer: &'static str, what: String },
    /// The device does not hold the structure asked for (no LVM label, no md superblock...).
    #[error("{layer}: not found")]
    NotFound { layer: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupt(layer: &'static str, offset: u64, what: impl Into<String>) -> Self {
        Error::Corrupt {
            layer,
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn limit(
        layer: &'static str,
        offset: u64,
        what: impl Into<String>,
        limit: u64,
    ) -> Self {
        Error::Limit {
            layer,
            offset,
            what: what.into(),
            limit,
        }
    }
}
