//! `porthole inspect` on the phony Windows guest (testkit's `guests::windows`, an MBR disk
//! with NTFS built by sfdisk, mkntfs, ntfs-3g and hivexregedit), run as an operator runs it
//! without a terminal: the text output names the Windows facts, and the default output (JSON,
//! since stdout is not a terminal) carries them too.

mod inspect_common;

use porthole_inspect::fuzzing::empty_hive;
use porthole_testkit::guests::windows::{server_2022, server_2022_guest};

fn porthole_inspect(flags: &[&str]) -> String {
    inspect_common::porthole_inspect(flags, &[server_2022_guest(&empty_hive("ROOT"))])
}

/// The value of the `key:` line of the text output.
fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} line in:\n{text}"))
        .trim()
}

#[test]
fn text_shows_the_windows_facts() {
    let text = porthole_inspect(&["--format", "text"]);
    assert_eq!(line(&text, "os"), "windows");
    assert_eq!(line(&text, "product"), server_2022::PRODUCT_NAME);
    assert_eq!(line(&text, "variant"), "Server");
    assert_eq!(line(&text, "version"), "10.0");
    assert_eq!(line(&text, "arch"), "x86_64");
    assert_eq!(line(&text, "hostname"), server_2022::HOSTNAME);
    assert_eq!(line(&text, "osinfo"), "win2k22");
    assert_eq!(line(&text, "systemroot"), "/WINDOWS");
    assert_eq!(line(&text, "control set"), "ControlSet001");
    assert_eq!(line(&text, "drives"), "C: /dev/sda1, D: /dev/sda2");
    assert_eq!(line(&text, "applications"), "3");
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn without_a_terminal_the_default_is_json() {
    let json: serde_json::Value =
        serde_json::from_str(&porthole_inspect(&[])).expect("JSON by default");
    let os = &json["operating_systems"][0];
    assert_eq!(os["osinfo"], "win2k22");
    assert_eq!(os["drive_mappings"][0]["name"], "C");
    assert_eq!(os["windows_current_control_set"], "ControlSet001");
}
