//! Shared by the `porthole inspect` tests: running the built CLI on a guest's disks.

use std::path::Path;
use std::process::Command;

/// `porthole inspect <flags> <disks>`'s standard output; panics with its stderr on failure.
pub fn porthole_inspect(flags: &[&str], disks: &[impl AsRef<Path>]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_porthole"))
        .arg("inspect")
        .args(flags)
        .args(disks.iter().map(AsRef::as_ref))
        .output()
        .expect("run porthole");
    assert!(
        out.status.success(),
        "porthole inspect {flags:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
