//! The guest image: `vm/build-image.sh` run over the release porthole-agent.
//!
//! The script does the building and the caching (a directory per hash of every input under
//! `<target>/vm-image`); this module finds the agent, runs the script and checks its result.

use crate::error::VmError;
use crate::tool;
use porthole_conformance::locate::{porthole_agent, Profile};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A built kernel and initramfs.
#[derive(Debug, Clone)]
pub struct Image {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// `manifest.txt`: kernel package, module list, the agent's hash and linkage.
    pub manifest: String,
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `<target>/vm-image`, from `CARGO_TARGET_DIR` or the repository's `target/`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("vm-image")
}

/// Builds the release agent (a no-op when it is up to date) and the image around it.
pub fn build() -> Result<Image, VmError> {
    let agent = porthole_agent(Profile::Release).map_err(|e| VmError::Agent(e.to_string()))?;
    build_with_agent(&agent, &cache_dir())
}

/// Builds (or finds cached) the image holding `agent`.
pub fn build_with_agent(agent: &Path, cache: &Path) -> Result<Image, VmError> {
    let script = repo_root().join("vm/build-image.sh");
    let out = tool::run(
        Command::new("bash").arg(&script).arg(agent).arg(cache),
        "install the Debian packages in scripts/deps.sh (bash scripts/deps.sh)",
    )?;
    let dir = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    let manifest_path = dir.join("manifest.txt");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| VmError::io("reading the image manifest", &manifest_path, e))?;
    Ok(Image {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        manifest,
        dir,
    })
}
