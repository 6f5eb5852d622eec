//! The guest view over a phony guest built by real tools: a raw GPT disk with a btrfs /boot and
//! an LVM PV holding the XFS root, and a qcow2 disk with a btrfs filesystem whose subvolumes the
//! root's fstab mounts. Everything is read back through porthole-guest alone.

use porthole_guest::{Disks, RootKind};
use porthole_testkit::guests::{lvm_xfs_btrfs_guest, ALICE_NOTES, GUEST_VG, HOME_UUID};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8")
}

#[test]
fn finds_volumes_filesystems_and_the_root() {
    let disks = Disks::open(&lvm_xfs_btrfs_guest()).expect("open the phony guest");
    assert!(disks.problems.is_empty(), "{:?}", disks.problems);
    let found: Vec<(String, &str, Option<&str>, Option<&str>)> = disks
        .filesystems
        .iter()
        .map(|f| {
            (
                disks.device_of(f),
                f.info.kind.name(),
                f.info.label.as_deref(),
                f.info.uuid.as_deref(),
            )
        })
        .collect();
    let devices: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        devices,
        [
            "/dev/sda1",
            "/dev/sdb",
            "btrfsvol:/dev/sdb/@home",
            "btrfsvol:/dev/sdb/@srv",
            &format!("/dev/{GUEST_VG}/root"),
        ]
    );
    assert_eq!(found[0].1, "btrfs");
    assert_eq!(found[0].2, Some("BOOT"));
    assert_eq!(found[1].3, Some(HOME_UUID));
    assert_eq!((found[4].1, found[4].2), ("xfs", Some("root")));
    let roots = disks.roots();
    assert_eq!(roots, [(4, RootKind::Linux)]);
}

#[test]
fn fstab_assembles_one_tree() {
    let disks = Disks::open(&lvm_xfs_btrfs_guest()).expect("open the phony guest");
    let [(root, _)] = disks.roots()[..] else {
        panic!("one root expected: {:?}", disks.roots());
    };
    let (guest, warnings) = disks.guest(root).expect("assemble the guest");
    let mounts: Vec<(String, String)> = guest
        .mounts()
        .map(|m| (m.mountpoint.clone(), m.device.clone()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/".to_string(), format!("/dev/{GUEST_VG}/root")),
            ("/boot".to_string(), "/dev/sda1".to_string()),
            ("/home".to_string(), "btrfsvol:/dev/sdb/@home".to_string()),
            ("/srv".to_string(), "btrfsvol:/dev/sdb/@srv".to_string()),
        ]
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("UUID=0000-DEAD"), "{warnings:?}");

    let read = |path: &str| text(guest.read_file(path.as_bytes(), 1 << 20).expect(path));
    assert_eq!(read("/etc/hostname"), "phony-debian\n");
    assert!(read("/boot/grub/grub.cfg").contains("menuentry"));
    assert_eq!(read("/home/alice/notes.txt"), ALICE_NOTES);
    assert_eq!(read("/srv/www/index.html"), "<h1>phony</h1>\n");
    // The subvolume is what /home shows: the top level's own files are not there.
    assert!(guest.stat(b"/home/top-level-only").is_err());
    // An absolute link on the /home filesystem resolves in the guest's root, on another disk.
    assert_eq!(read("/home/alice/host"), "phony-debian\n");
    assert_eq!(
        guest.canonicalize(b"/bin/ls").expect("canonical"),
        "/usr/bin/ls"
    );
    assert_eq!(
        guest.canonicalize(b"/etc/localtime").expect("canonical"),
        "/usr/share/zoneinfo/Etc/UTC"
    );
    let ls = guest.read_file(b"/bin/ls", 64 << 20).expect("read /bin/ls");
    assert_eq!(ls, std::fs::read("/bin/ls").expect("host /bin/ls"));
}

#[test]
fn partuuid_partlabel_and_a_fat_esp() {
    use porthole_testkit::guests::{gpt_ext4_esp_guest, ROOT_PARTUUID};
    let disks = Disks::open(&[gpt_ext4_esp_guest().0]).expect("open the UEFI guest");
    assert!(disks.problems.is_empty(), "{:?}", disks.problems);
    assert_eq!(
        disks.resolve_spec(&format!("PARTUUID={ROOT_PARTUUID}")),
        Some(1)
    );
    let [(root, RootKind::Linux)] = disks.roots()[..] else {
        panic!("one Linux root expected: {:?}", disks.roots());
    };
    let (guest, warnings) = disks.guest(root).expect("assemble");
    assert!(warnings.is_empty(), "{warnings:?}");
    let mounts: Vec<(String, String, String)> = guest
        .mounts()
        .map(|m| (m.mountpoint.clone(), m.device.clone(), m.fstype.clone()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/".into(), "/dev/sda2".into(), "ext4".into()),
            ("/boot/efi".into(), "/dev/sda1".into(), "vfat".into()),
        ]
    );
    // FAT lookups ignore case, as the guest's vfat mount does.
    let shim = guest
        .read_file(b"/boot/efi/efi/boot/bootx64.efi", 1 << 20)
        .expect("the ESP's loader");
    assert_eq!(shim, b"MZ phony shim");
    assert_eq!(
        text(guest.read_file(b"/etc/hostname", 64).expect("hostname")),
        "phony-debian\n"
    );
}
