//! `porthole filesystems | ls | cat` on a phony guest's disks (raw + qcow2, GPT, LVM, XFS,
//! btrfs subvolumes), as an operator would run them.

use std::process::{Command, Output};

use porthole_testkit::guests::{lvm_xfs_btrfs_guest, ALICE_NOTES, HOME_UUID};
use serde_json::Value;

fn porthole(args: &[&str]) -> Output {
    let disks = lvm_xfs_btrfs_guest();
    let (command, rest) = args.split_first().expect("a command");
    let mut all: Vec<String> = vec![command.to_string()];
    let (flags, paths): (Vec<&&str>, Vec<&&str>) = rest.iter().partition(|a| a.starts_with('-'));
    all.extend(flags.iter().map(|f| f.to_string()));
    all.extend(disks.iter().map(|d| d.display().to_string()));
    all.extend(paths.iter().map(|p| p.to_string()));
    Command::new(env!("CARGO_BIN_EXE_porthole"))
        .args(&all)
        .output()
        .expect("run porthole")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "porthole failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

#[test]
fn filesystems_lists_every_volume_and_filesystem() {
    let out = porthole(&["filesystems", "--json"]);
    let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("JSON rows");
    let row = |device: &str| {
        rows.iter()
            .find(|r| r["device"] == device)
            .unwrap_or_else(|| panic!("no row for {device}: {rows:?}"))
    };
    assert_eq!(row("/dev/sda1")["label"], "BOOT");
    assert_eq!(row("/dev/sda2")["volume"], "Linux LVM");
    assert_eq!(row("/dev/guestvg/root")["filesystem"], "xfs");
    assert_eq!(
        row("/dev/guestvg/root")["mapper"],
        "/dev/mapper/guestvg-root"
    );
    assert_eq!(row("/dev/sdb")["uuid"], HOME_UUID);
    assert_eq!(row("btrfsvol:/dev/sdb/@home")["subvolume"], "@home");
    let table = stdout(&porthole(&["filesystems"]));
    assert!(table.starts_with("DEVICE"), "{table}");
    assert!(table.contains("/dev/guestvg/root"), "{table}");
}

#[test]
fn cat_reads_through_mounts_and_symlinks() {
    assert_eq!(
        stdout(&porthole(&["cat", "/home/alice/notes.txt"])),
        ALICE_NOTES
    );
    assert_eq!(
        stdout(&porthole(&["cat", "/home/alice/host"])),
        "phony-debian\n"
    );
    let ls = porthole(&["cat", "/bin/ls"]);
    assert!(ls.status.success());
    assert_eq!(ls.stdout, std::fs::read("/bin/ls").expect("host /bin/ls"));
    let missing = porthole(&["cat", "/etc/nope"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("/etc/nope: no such file or directory"),
        "{err}"
    );
    assert!(
        err.contains("UUID=0000-DEAD"),
        "fstab warning expected: {err}"
    );
}

#[test]
fn ls_lists_names_long_and_json() {
    let names = stdout(&porthole(&["ls", "/"]));
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["bin", "boot", "data", "etc", "home", "srv", "tmp", "usr"]
    );
    let long = stdout(&porthole(&["ls", "-l", "/"]));
    assert!(
        long.lines()
            .any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("bin -> usr/bin")),
        "{long}"
    );
    let json: Vec<Value> =
        serde_json::from_str(&stdout(&porthole(&["ls", "--json", "/home/alice"]))).expect("JSON");
    let notes = json
        .iter()
        .find(|e| e["name"] == "notes.txt")
        .expect("notes.txt");
    assert_eq!(notes["size"], ALICE_NOTES.len());
    assert_eq!(notes["type"], "file");
    let host = json
        .iter()
        .find(|e| e["name"] == "host")
        .expect("host link");
    assert_eq!(host["target"], "/etc/hostname");
    // ls of a file shows the file, like ls(1).
    assert_eq!(
        stdout(&porthole(&["ls", "/etc/hostname"])).trim(),
        "/etc/hostname"
    );
}
