//! Reports in other tools' formats. The native form is [`crate::Report`] serialized with serde
//! (its JSON Schema is `docs/inspect-report.schema.json`); the modules here write the same
//! facts the way other tools do, so that what consumes their output can consume porthole's.
//!
//! - [`xml`]: virt-inspector's XML (guestfs-tools 1.48), valid against its RELAX NG schema.

pub mod xml;
