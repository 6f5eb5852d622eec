//! virt-inspector's XML, as guestfs-tools 1.48's `inspector/inspector.c` writes it through
//! libxml2's `xmlTextWriter`, byte for byte where porthole has the same facts:
//!
//! - the declaration `<?xml version="1.0"?>`, two-space indentation, one element a line, an
//!   element without content closed as `<x/>`, a newline after the document;
//! - per OS, in this order: `root`, `name`, `arch`, `distro`, `product_name`,
//!   `product_variant`, `major_version`, `minor_version`, `package_format`,
//!   `package_management`, `windows_systemroot`, `windows_current_control_set`, `hostname`,
//!   `osinfo`, `mountpoints`, `filesystems`, `drive_mappings`, `applications`. Text facts that
//!   are unknown (none, empty or `unknown`) are left out; the versions are always written.
//!   `mountpoints` and `filesystems` are always written, even empty; `drive_mappings` only
//!   when there is one, each `<drive_mapping name="C">/dev/sda2</drive_mapping>` sorted by
//!   letter ignoring case; `applications` only when they were read (`--no-applications`
//!   leaves it out);
//! - mountpoints sorted by the length of the path, then the path (shortest first, as
//!   virt-inspector sorts them); filesystems sorted by device; applications in report order;
//! - in a filesystem, `type`, `label` and `uuid` only when not empty; in an application,
//!   `name` always, `epoch` only when not 0, every other field only when not empty.
//!
//! Not written, because the report does not hold it: `icon`. The Linux facts porthole adds
//! (services, accounts, network, system) have no place in virt-inspector's schema and are
//! left out; they are in the JSON report.
//!
//! Guest data is hostile and reaches this output verbatim, so every string is escaped as
//! libxml2 escapes it (text: `& < > "` and CR; attributes also LF and TAB), and characters XML
//! 1.0 cannot carry at all (C0 controls other than TAB, LF, CR; U+FFFE; U+FFFF) are replaced by
//! U+FFFD, so the document is always well-formed. (libxml2 writes them through, producing a
//! document no parser accepts.)

use std::cmp::Ordering;

use crate::packages::Application;
use crate::report::{DriveMapping, FilesystemFact, Mountpoint, OperatingSystem, Report};

/// What replaces a character XML 1.0 cannot carry.
pub const REPLACEMENT: char = '\u{FFFD}';

/// The report as virt-inspector's XML document.
pub fn to_string(report: &Report) -> String {
    let mut w = Writer::new();
    w.start("operatingsystems", None);
    for os in &report.operating_systems {
        operating_system(&mut w, os);
    }
    w.end();
    w.finish()
}

fn operating_system(w: &mut Writer, os: &OperatingSystem) {
    w.start("operatingsystem", None);
    w.leaf("root", None, &os.root);
    optional(w, "name", Some(&os.name));
    optional(w, "arch", os.arch.as_ref());
    optional(w, "distro", os.distro.as_ref());
    optional(w, "product_name", os.product_name.as_ref());
    optional(w, "product_variant", os.product_variant.as_ref());
    w.leaf("major_version", None, &os.major_version.to_string());
    w.leaf("minor_version", None, &os.minor_version.to_string());
    optional(w, "package_format", os.package_format.as_ref());
    optional(w, "package_management", os.package_management.as_ref());
    optional(w, "windows_systemroot", os.windows_systemroot.as_ref());
    optional(
        w,
        "windows_current_control_set",
        os.windows_current_control_set.as_ref(),
    );
    optional(w, "hostname", os.hostname.as_ref());
    optional(w, "osinfo", os.osinfo.as_ref());
    mountpoints(w, &os.mountpoints);
    filesystems(w, &os.filesystems);
    drive_mappings(w, &os.drive_mappings);
    if let Some(applications) = &os.applications {
        w.start("applications", None);
        for app in applications {
            application(w, app);
        }
        w.end();
    }
    w.end();
}

/// A fact libguestfs reports as `unknown` when it has none; virt-inspector then leaves the
/// element out.
fn optional(w: &mut Writer, name: &str, value: Option<&String>) {
    if let Some(v) = value.filter(|v| !v.is_empty() && v.as_str() != "unknown") {
        w.leaf(name, None, v);
    }
}

/// An element written only when its text is not empty (filesystem and application fields).
fn non_empty(w: &mut Writer, name: &str, value: Option<&String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        w.leaf(name, None, v);
    }
}

fn mountpoints(w: &mut Writer, mountpoints: &[Mountpoint]) {
    let mut sorted: Vec<&Mountpoint> = mountpoints.iter().collect();
    sorted.sort_by(|a, b| by_length_then_bytes(&a.mountpoint, &b.mountpoint));
    w.start("mountpoints", None);
    for m in sorted {
        w.leaf("mountpoint", Some(("dev", &m.device)), &m.mountpoint);
    }
    w.end();
}

/// virt-inspector's `compare_keys_len`: shorter first, then `strcmp`.
fn by_length_then_bytes(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn filesystems(w: &mut Writer, filesystems: &[FilesystemFact]) {
    let mut sorted: Vec<&FilesystemFact> = filesystems.iter().collect();
    sorted.sort_by(|a, b| a.device.cmp(&b.device));
    w.start("filesystems", None);
    for fs in sorted {
        w.start("filesystem", Some(("dev", &fs.device)));
        non_empty(w, "type", Some(&fs.fstype));
        non_empty(w, "label", fs.label.as_ref());
        non_empty(w, "uuid", fs.uuid.as_ref());
        w.end();
    }
    w.end();
}

/// virt-inspector's `compare_keys_nocase` order; nothing when there is no mapping.
fn drive_mappings(w: &mut Writer, mappings: &[DriveMapping]) {
    if mappings.is_empty() {
        return;
    }
    let mut sorted: Vec<&DriveMapping> = mappings.iter().collect();
    sorted.sort_by_cached_key(|m| m.name.to_ascii_lowercase());
    w.start("drive_mappings", None);
    for m in sorted {
        w.leaf("drive_mapping", Some(("name", &m.name)), &m.device);
    }
    w.end();
}

fn application(w: &mut Writer, app: &Application) {
    w.start("application", None);
    w.leaf("name", None, &app.name);
    non_empty(w, "display_name", app.display_name.as_ref());
    if app.epoch != 0 {
        w.leaf("epoch", None, &app.epoch.to_string());
    }
    non_empty(w, "version", app.version.as_ref());
    non_empty(w, "release", app.release.as_ref());
    non_empty(w, "arch", app.arch.as_ref());
    non_empty(w, "install_path", app.install_path.as_ref());
    non_empty(w, "publisher", app.publisher.as_ref());
    non_empty(w, "url", app.url.as_ref());
    non_empty(w, "source_package", app.source_package.as_ref());
    non_empty(w, "summary", app.summary.as_ref());
    non_empty(w, "description", app.description.as_ref());
    w.end();
}

/// A streaming writer with libxml2's indented layout. Element names are this module's
/// constants; only attribute values and text come from the guest, and both are escaped.
struct Writer {
    out: String,
    /// The open elements, each with whether it has children yet (its start tag is still open
    /// until then, so that an empty element can be closed as `<x/>`).
    open: Vec<(&'static str, bool)>,
}

impl Writer {
    fn new() -> Self {
        Writer {
            out: String::from("<?xml version=\"1.0\"?>\n"),
            open: Vec::new(),
        }
    }

    /// Starts an element that will hold elements.
    fn start(&mut self, name: &'static str, attribute: Option<(&str, &str)>) {
        self.begin_tag(name, attribute);
        self.open.push((name, false));
    }

    /// Ends the innermost open element.
    fn end(&mut self) {
        let Some((name, has_children)) = self.open.pop() else {
            return;
        };
        if has_children {
            self.indent();
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push_str(">\n");
        } else {
            self.out.push_str("/>\n");
        }
    }

    /// An element holding only text, on one line (`<x>text</x>`, or `<x></x>` for empty text
    /// as libxml2 writes it).
    fn leaf(&mut self, name: &str, attribute: Option<(&str, &str)>, text: &str) {
        self.begin_tag(name, attribute);
        self.out.push('>');
        escape_text(&mut self.out, text);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn begin_tag(&mut self, name: &str, attribute: Option<(&str, &str)>) {
        if let Some((_, has_children)) = self.open.last_mut() {
            if !*has_children {
                *has_children = true;
                self.out.push_str(">\n");
            }
        }
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        if let Some((key, value)) = attribute {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            escape_attribute(&mut self.out, value);
            self.out.push('"');
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.end();
        }
        self.out
    }
}

/// Whether XML 1.0 can carry `c` at all (its `Char` production; Rust strings hold no
/// surrogates).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Character data as libxml2's `xmlEncodeSpecialChars` escapes it.
pub fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push(REPLACEMENT),
        }
    }
}

/// An attribute value as libxml2 escapes it: also the whitespace that attribute-value
/// normalisation would otherwise turn into spaces.
pub fn escape_attribute(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => escape_text(out, c.encode_utf8(&mut [0; 4])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        let mut out = String::new();
        escape_text(&mut out, s);
        out
    }

    fn attribute(s: &str) -> String {
        let mut out = String::new();
        escape_attribute(&mut out, s);
        out
    }

    #[test]
    fn text_escapes_markup_and_carriage_return() {
        assert_eq!(
            text("a<b>&\"c'\r\n\td"),
            "a&lt;b&gt;&amp;&quot;c'&#13;\n\td"
        );
    }

    #[test]
    fn attribute_escapes_whitespace_too() {
        assert_eq!(
            attribute("x\ny\tz\r\"<&>"),
            "x&#10;y&#9;z&#13;&quot;&lt;&amp;&gt;"
        );
    }

    #[test]
    fn characters_xml_cannot_carry_are_replaced() {
        assert_eq!(
            text("a\0b\u{1}\u{8}\u{b}\u{c}\u{1f}c"),
            "a\u{FFFD}b\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}c"
        );
        assert_eq!(text("\u{FFFE}\u{FFFF}"), "\u{FFFD}\u{FFFD}");
        assert_eq!(attribute("\u{0}"), "\u{FFFD}");
        // Allowed, if discouraged: DEL, C1 controls, astral planes.
        assert_eq!(text("\u{7f}\u{85}\u{1F600}"), "\u{7f}\u{85}\u{1F600}");
    }

    #[test]
    fn empty_elements_close_in_the_start_tag() {
        let mut w = Writer::new();
        w.start("a", None);
        w.start("b", Some(("k", "v")));
        w.end();
        w.leaf("c", None, "");
        w.end();
        assert_eq!(
            w.finish(),
            "<?xml version=\"1.0\"?>\n<a>\n  <b k=\"v\"/>\n  <c></c>\n</a>\n"
        );
    }

    /// What libxml2 2.9.14's `xmlTextWriter` (indent 1, indent string two spaces, as
    /// inspector.c sets it) wrote for the same calls, checked once with a C program; the one
    /// difference is the U+0001 that libxml2 writes through and this writer replaces.
    #[test]
    fn same_bytes_as_libxml2_text_writer() {
        let mut w = Writer::new();
        w.start("operatingsystems", None);
        w.start("operatingsystem", None);
        w.leaf("root", None, "");
        w.leaf("hostname", None, "a<b>&\"c'\r\n\td\u{1}");
        w.start("mountpoints", None);
        w.end();
        w.start("filesystems", None);
        w.start("filesystem", Some(("dev", "x\ny\tz\r\"<&>'")));
        w.leaf("type", None, "ext4");
        w.end();
        w.start("filesystem", Some(("dev", "/dev/sdb")));
        w.end();
        w.end();
        w.leaf("mountpoint", Some(("dev", "/dev/sda")), "/");
        let libxml2 = "<?xml version=\"1.0\"?>\n<operatingsystems>\n  <operatingsystem>\n    \
            <root></root>\n    <hostname>a&lt;b&gt;&amp;&quot;c'&#13;\n\td\u{FFFD}</hostname>\n    \
            <mountpoints/>\n    <filesystems>\n      \
            <filesystem dev=\"x&#10;y&#9;z&#13;&quot;&lt;&amp;&gt;'\">\n        \
            <type>ext4</type>\n      </filesystem>\n      <filesystem dev=\"/dev/sdb\"/>\n    \
            </filesystems>\n    <mountpoint dev=\"/dev/sda\">/</mountpoint>\n  \
            </operatingsystem>\n</operatingsystems>\n";
        assert_eq!(w.finish(), libxml2);
    }

    #[test]
    fn mountpoints_sort_shortest_first() {
        let mut v = vec!["/boot/efi", "/var", "/", "/boot", "/srv"];
        v.sort_by(|a, b| by_length_then_bytes(a, b));
        assert_eq!(v, ["/", "/srv", "/var", "/boot", "/boot/efi"]);
    }
}
