//! Phony guests: small VM disk sets laid out the way installers lay them out, holding just enough
//! of an operating system (release files, fstab, a real ELF binary, symlinks) for the guest view
//! and the inspector, built by the real tools (sfdisk, lvm2, mkfs.*, qemu-img) and cached.

use std::path::{Path, PathBuf};

use crate::kernel::{create_lvs, need_root, Loop, Mount};
use crate::tools::{cached, run, truncate};

pub mod rpm;
pub mod windows;

/// The btrfs filesystem UUID of the second disk of [`lvm_xfs_btrfs_guest`].
pub const HOME_UUID: &str = "6d2f1c3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f";
/// The volume group of [`lvm_xfs_btrfs_guest`].
pub const GUEST_VG: &str = "guestvg";
/// What `/home/alice/notes.txt` holds in [`lvm_xfs_btrfs_guest`].
pub const ALICE_NOTES: &str = "alice's notes, on the @home subvolume\n";

/// The GPT partition UUID of the root partition of [`gpt_ext4_esp_guest`].
pub const ROOT_PARTUUID: &str = "0f5e3c8a-1b2d-4e6f-8a9b-0c1d2e3f4a5b";

const MIB: u64 = 1 << 20;
const BOOT_START: u64 = MIB;
const BOOT_SIZE: u64 = 160 * MIB;
const PV_START: u64 = BOOT_START + BOOT_SIZE;
const DISK0_SIZE: u64 = 640 * MIB;
const ROOT_LV_MIB: u64 = 340;

/// Two disks of a Debian-like guest, the first raw, the second qcow2:
///
/// - disk 0, GPT: partition 1 btrfs labelled `BOOT` (`/boot`); partition 2 an LVM PV of volume
///   group `guestvg` whose LV `root` holds the XFS root filesystem.
/// - disk 1: a whole-disk btrfs (UUID [`HOME_UUID`]) with subvolumes `@home` and `@srv`.
///
/// The root's fstab mounts the root by `/dev/mapper/guestvg-root`, `/boot` by `LABEL=`,
/// `/home` by `UUID=` with `subvol=@home`, `/srv` by the guest's own name `/dev/vdb` with
/// `subvol=@srv`, names a tmpfs, and one device that is not there (`UUID=0000-DEAD`).
pub fn lvm_xfs_btrfs_guest() -> Vec<PathBuf> {
    cached(
        "phony guest: gpt, btrfs boot, lvm xfs root, btrfs home subvolumes v1",
        &["disk0.raw", "disk1.qcow2"],
        |paths| {
            need_root("building the LVM/XFS/btrfs phony guest");
            let work = paths[0].with_extension("work");
            std::fs::create_dir_all(&work).expect("work dir");
            build_disk0(&paths[0], &work);
            build_disk1(&paths[1], &work);
            let _ = std::fs::remove_dir_all(&work);
        },
    )
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

fn symlink(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, path).expect("symlink");
}

/// The root filesystem's tree: a usr-merged Debian 12 skeleton.
fn root_tree(dir: &Path) {
    write(dir, "etc/hostname", b"phony-debian\n");
    write(
        dir,
        "etc/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
          VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n",
    );
    write(dir, "etc/debian_version", b"12.4\n");
    write(dir, "etc/hosts", b"127.0.0.1 localhost\n");
    let fstab = format!(
        "# /etc/fstab: static file system information.\n\
         /dev/mapper/{GUEST_VG}-root /     xfs   defaults        0 1\n\
         LABEL=BOOT                 /boot btrfs defaults        0 2\n\
         UUID={HOME_UUID} /home btrfs subvol=@home,compress=zstd 0 0\n\
         /dev/vdb                   /srv  btrfs subvol=/@srv    0 0\n\
         tmpfs                      /tmp  tmpfs defaults        0 0\n\
         UUID=0000-DEAD             /data ext4  defaults,nofail 0 2\n"
    );
    write(dir, "etc/fstab", fstab.as_bytes());
    let ls = std::fs::read("/bin/ls").expect("this machine's /bin/ls, a real ELF binary");
    write(dir, "usr/bin/ls", &ls);
    symlink(dir, "bin", "usr/bin");
    write(dir, "usr/share/zoneinfo/Etc/UTC", b"TZif2 phony\n");
    symlink(dir, "etc/localtime", "/usr/share/zoneinfo/Etc/UTC");
    for empty in ["boot", "home", "srv", "tmp", "data"] {
        std::fs::create_dir_all(dir.join(empty)).expect("mountpoint");
    }
}

fn build_disk0(disk: &Path, work: &Path) {
    truncate(disk, DISK0_SIZE);
    let layout = format!(
        "label: gpt\nstart={}, size={}, type=L, name=boot\nstart={}, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=lvm\n",
        BOOT_START / 512,
        BOOT_SIZE / 512,
        PV_START / 512
    );
    run(
        "sfdisk",
        "fdisk",
        &["-q", &disk.to_string_lossy()],
        Some(&layout),
    );

    let boot = work.join("boot-tree");
    write(
        &boot,
        "grub/grub.cfg",
        b"menuentry 'Debian' { linux /vmlinuz root=/dev/mapper/guestvg-root }\n",
    );
    let boot_part = Loop::attach_window(disk, BOOT_START, Some(BOOT_SIZE));
    run(
        "mkfs.btrfs",
        "btrfs-progs",
        &[
            "-q",
            "-f",
            "-L",
            "BOOT",
            "--rootdir",
            &boot.to_string_lossy(),
            &boot_part.0,
        ],
        None,
    );
    drop(boot_part);

    let pv = Loop::attach_window(disk, PV_START, Some(DISK0_SIZE - PV_START - MIB));
    let lv_start = create_lvs(&pv.0, GUEST_VG, &[("root", ROOT_LV_MIB)])[0];
    drop(pv);

    let root = work.join("root-tree");
    root_tree(&root);
    let lv_offset = PV_START + lv_start;
    let lv = Loop::attach_window(disk, lv_offset, Some(ROOT_LV_MIB * MIB));
    run(
        "mkfs.xfs",
        "xfsprogs",
        &["-q", "-f", "-L", "root", &lv.0],
        None,
    );
    let mounted = Mount::new(Path::new(&lv.0), &work.join("root-mnt"), "");
    mounted.fill_from(&root);
    drop(mounted);
}

fn build_disk1(disk: &Path, work: &Path) {
    let raw = work.join("disk1.raw");
    truncate(&raw, 256 * MIB);
    run(
        "mkfs.btrfs",
        "btrfs-progs",
        &[
            "-q",
            "-f",
            "-L",
            "data",
            "-U",
            HOME_UUID,
            &raw.to_string_lossy(),
        ],
        None,
    );
    {
        let mounted = Mount::new(&raw, &work.join("disk1-mnt"), "loop");
        let top = mounted.0.clone();
        for subvolume in ["@home", "@srv"] {
            run(
                "btrfs",
                "btrfs-progs",
                &[
                    "subvolume",
                    "create",
                    &top.join(subvolume).to_string_lossy(),
                ],
                None,
            );
        }
        write(&top, "@home/alice/notes.txt", ALICE_NOTES.as_bytes());
        symlink(&top, "@home/alice/host", "/etc/hostname");
        write(&top, "@srv/www/index.html", b"<h1>phony</h1>\n");
        write(&top, "top-level-only", b"not in any subvolume\n");
    }
    run(
        "qemu-img",
        "qemu-utils",
        &[
            "convert",
            "-O",
            "qcow2",
            &raw.to_string_lossy(),
            &disk.to_string_lossy(),
        ],
        None,
    );
}

const ESP_START: u64 = MIB;
const ESP_SIZE: u64 = 40 * MIB;
const EXT4_START: u64 = ESP_START + ESP_SIZE;
const EXT4_SIZE: u64 = 64 * MIB;

/// A UEFI Debian-like guest on one GPT disk, built without root: partition 1 an EFI system
/// partition (FAT, GPT name `EFI System`), partition 2 the ext4 root (PARTUUID
/// [`ROOT_PARTUUID`]). The root's fstab names the root by `PARTUUID=`, the ESP by
/// `PARTLABEL=` with mount(8)'s octal escape for the space, and a swap file; the root holds
/// this machine's real dpkg database (status and update journal) and a real ELF `/bin/ls`.
/// Returns the disk and a file listing the packages that dpkg itself said were installed when
/// the database was copied (`dpkg-query`, one name a line, sorted).
pub fn gpt_ext4_esp_guest() -> (PathBuf, PathBuf) {
    let mut paths = cached(
        "phony guest: gpt, fat esp, ext4 root by partuuid v2",
        &["disk.raw", "dpkg-installed.txt"],
        |paths| {
            let disk = &paths[0];
            let work = disk.with_extension("work");
            std::fs::create_dir_all(&work).expect("work dir");
            truncate(disk, EXT4_START + EXT4_SIZE + MIB);
            let layout = format!(
            "label: gpt\nstart={}, size={}, type=U, name=\"EFI System\"\nstart={}, size={}, type=L, uuid={ROOT_PARTUUID}, name=rootfs\n",
            ESP_START / 512,
            ESP_SIZE / 512,
            EXT4_START / 512,
            EXT4_SIZE / 512
        );
            let disk_s = disk.to_string_lossy().into_owned();
            run("sfdisk", "fdisk", &["-q", &disk_s], Some(&layout));

            let esp = work.join("esp");
            write(&esp, "EFI/debian/grubx64.efi", b"MZ phony grub");
            write(&esp, "EFI/BOOT/BOOTX64.EFI", b"MZ phony shim");
            let esp_offset = (ESP_START / 512).to_string();
            run(
                "mkfs.vfat",
                "dosfstools",
                &[
                    "-F",
                    "32",
                    "-s",
                    "1",
                    "-n",
                    "ESP",
                    "--offset",
                    &esp_offset,
                    &disk_s,
                    &(ESP_SIZE / 1024).to_string(),
                ],
                None,
            );
            let image_at = format!("{disk_s}@@{ESP_START}");
            run(
                "env",
                "mtools",
                &[
                    "MTOOLS_SKIP_CHECK=1",
                    "mcopy",
                    "-s",
                    "-i",
                    &image_at,
                    &esp.join("EFI").to_string_lossy(),
                    "::",
                ],
                None,
            );

            let root = work.join("root");
            root_tree(&root);
            let fstab = format!(
                "PARTUUID={ROOT_PARTUUID} / ext4 errors=remount-ro 0 1\n\
             PARTLABEL=EFI\\040System /boot/efi vfat umask=0077 0 1\n\
             /swapfile none swap sw 0 0\n"
            );
            write(&root, "etc/fstab", fstab.as_bytes());
            std::fs::create_dir_all(root.join("boot/efi")).expect("mountpoint");
            copy_dpkg_database(&root, &paths[1]);
            run(
                "mkfs.ext4",
                "e2fsprogs",
                &[
                    "-q",
                    "-F",
                    "-L",
                    "rootfs",
                    "-E",
                    &format!("offset={EXT4_START}"),
                    "-d",
                    &root.to_string_lossy(),
                    &disk_s,
                    &format!("{}k", EXT4_SIZE / 1024),
                ],
                None,
            );
            let _ = std::fs::remove_dir_all(&work);
        },
    );
    let listing = paths.remove(1);
    (paths.remove(0), listing)
}

/// This machine's dpkg database, as a guest's: the status file and the update journal; and
/// what `dpkg-query` says is installed, read in the same moment, into `listing`.
fn copy_dpkg_database(root: &Path, listing: &Path) {
    let queried = run(
        "dpkg-query",
        "dpkg",
        &["-W", "-f", "${db:Status-Status} ${Package}\\n"],
        None,
    );
    let mut installed: Vec<&str> = queried
        .lines()
        .filter_map(|l| l.strip_prefix("installed "))
        .collect();
    installed.sort();
    installed.dedup();
    std::fs::write(listing, installed.join("\n") + "\n").expect("write the dpkg listing");
    let status = std::fs::read("/var/lib/dpkg/status").expect("this machine's dpkg status");
    write(root, "var/lib/dpkg/status", &status);
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).expect("updates dir");
    for entry in std::fs::read_dir("/var/lib/dpkg/updates").expect("dpkg updates") {
        let entry = entry.expect("journal entry");
        let bytes = std::fs::read(entry.path()).expect("journal file");
        std::fs::write(
            root.join("var/lib/dpkg/updates").join(entry.file_name()),
            bytes,
        )
        .expect("write journal file");
    }
}
