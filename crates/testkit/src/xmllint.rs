//! libxml2's `xmllint` over the XML porthole writes: validation against virt-inspector's
//! RELAX NG schema and XPath string values, so the tests read documents with the tool that
//! defines the format rather than with porthole's own idea of it.

use std::path::PathBuf;

use crate::tools::run;

/// The path of `docs/NAME` in this repository (the schemas the tests check output against).
pub fn docs_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path.display().to_string()
}

/// The path of `docs/virt-inspector.rng` in this repository.
pub fn virt_inspector_rng() -> String {
    docs_file("virt-inspector.rng")
}

/// Fails the test with xmllint's complaint unless `document` is valid against
/// virt-inspector.rng.
pub fn assert_virt_inspector_rng(document: &str) {
    run(
        "xmllint",
        "libxml2-utils",
        &["--noout", "--relaxng", &virt_inspector_rng(), "-"],
        Some(document),
    );
}

/// The string value of XPath `expression` over `document`, as libxml2 parses it.
pub fn xpath(document: &str, expression: &str) -> String {
    let mut out = run(
        "xmllint",
        "libxml2-utils",
        &["--xpath", &format!("string({expression})"), "-"],
        Some(document),
    );
    // xmllint ends every result with a newline of its own.
    assert_eq!(out.pop(), Some('\n'), "xmllint's output: {out:?}");
    out
}
