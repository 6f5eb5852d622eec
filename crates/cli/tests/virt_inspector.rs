//! Differential test against Debian's real virt-inspector (guestfs-tools 1.48, libguestfs
//! 1.48): both inspect the same phony guests, both XML documents are parsed, and every fact is
//! compared: root, name, arch, distro, product name and variant, versions, package format and
//! manager, hostname, osinfo, mountpoints, filesystems (type, label, uuid) and applications
//! (name, epoch, version, release, arch, summary, description).
//!
//! Where porthole deliberately reports a fact differently, the difference is listed in
//! [`KNOWN`] with its reason (and in docs/inspect.md, "Differences from virt-inspector"); the
//! test fails on any difference not listed *and* on any listed difference that no longer
//! occurs, so the list stays true.
//!
//! virt-inspector boots libguestfs's appliance under TCG here (see
//! `porthole_testkit::libguestfs`): about a minute per guest on an idle two-core machine
//! (under three minutes for both on a loaded one), so two guests run at a time, one appliance
//! each.

mod inspect_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use porthole_inspect::fuzzing::empty_hive;
use porthole_testkit::guests;
use porthole_testkit::libguestfs::virt_inspector_xml;

/// One phony guest: its name in messages, its disks, and whether applications are compared.
struct Guest {
    name: &'static str,
    disks: fn() -> Vec<PathBuf>,
    /// `false` runs both tools with `--no-applications`: virt-inspector 1.48 fails the whole
    /// run ("filesize: /var/lib/dpkg/status: No such file or directory") on a Debian guest
    /// without a dpkg database, where porthole reports no applications.
    applications: bool,
}

/// How many virt-inspector appliances run at once.
const PARALLEL_APPLIANCES: usize = 2;

/// The guests compared. A new phony guest is one line here.
const GUESTS: &[Guest] = &[
    Guest {
        name: "lvm_xfs_btrfs",
        disks: guests::lvm_xfs_btrfs_guest,
        applications: false,
    },
    Guest {
        name: "gpt_ext4_esp",
        disks: || vec![guests::gpt_ext4_esp_guest().0],
        applications: true,
    },
    Guest {
        name: "fedora_lvm",
        disks: || guests::rpm::fedora_lvm_guest().disks,
        applications: true,
    },
    Guest {
        name: "centos7_bdb",
        disks: || guests::rpm::centos7_guest(guests::rpm::Damage::None).disks,
        applications: true,
    },
    Guest {
        name: "windows",
        disks: || vec![guests::windows::server_2022_guest(&empty_hive("ROOT"))],
        applications: true,
    },
];

/// A difference porthole makes on purpose: in guest `guest`, the facts whose key `fact`
/// matches differ, for `reason`.
struct Known {
    guest: &'static str,
    /// The keys (as [`facts`] makes them) this difference covers, described in `what`.
    fact: fn(&str) -> bool,
    what: &'static str,
    reason: &'static str,
}

/// The deliberate differences (docs/inspect.md, "Differences from virt-inspector").
const KNOWN: &[Known] = &[
    Known {
        guest: "gpt_ext4_esp",
        fact: |k| {
            k == "/dev/sda2 mountpoint /boot/efi" || k.starts_with("/dev/sda2 filesystem /dev/sda1")
        },
        what: "the ESP's mountpoint /boot/efi and its filesystem /dev/sda1",
        reason: "fstab names the ESP as PARTLABEL=EFI\\040System; virt-inspector does not \
                 decode fstab's octal escapes, finds no partition labelled `EFI\\040System` and \
                 drops the entry (and lists only the filesystems of the mountpoints it kept); \
                 porthole decodes them as mount(8) does",
    },
    Known {
        guest: "gpt_ext4_esp",
        fact: |k| {
            k.contains(" application ") && (k.ends_with(" version") || k.ends_with(" release"))
        },
        what: "applications' version and release",
        reason: "virt-inspector splits a dpkg version into version and release at the first \
                 hyphen (1.0.0+git / 20190125.36a4c85-5.1), porthole at the last, as \
                 deb-version(7) defines the Debian revision (1.0.0+git-20190125.36a4c85 / 5.1); \
                 the whole epoch:version-release is compared separately and is the same",
    },
    Known {
        guest: "gpt_ext4_esp",
        fact: |k| {
            k.contains(" application ") && (k.ends_with(" summary") || k.ends_with(" description"))
        },
        what: "applications' summary and description text",
        reason: "virt-inspector keeps the status file's ` .` paragraph-separator lines as `.` \
                 and a summary's trailing blanks; porthole renders `.` as an empty line, as \
                 dpkg shows it, and trims; the rendered texts are compared separately and are \
                 the same",
    },
    Known {
        guest: "lvm_xfs_btrfs",
        fact: |k| {
            k == "/dev/guestvg/root mountpoint /srv"
                || k.starts_with("/dev/guestvg/root filesystem btrfsvol:/dev/vdb//@srv")
                || k.starts_with("/dev/guestvg/root filesystem btrfsvol:/dev/sdb/@srv")
        },
        what: "the /srv subvolume's device",
        reason: "fstab mounts /srv as `/dev/vdb` with `subvol=/@srv`; virt-inspector 1.48 keeps \
                 the guest's device name /dev/vdb (not on its appliance, which calls the disk \
                 /dev/sdb) and the option's leading slash: `btrfsvol:/dev/vdb//@srv`; porthole \
                 translates the guest name to the disk, as it does for every other device: \
                 `btrfsvol:/dev/sdb/@srv`",
    },
    Known {
        guest: "lvm_xfs_btrfs",
        fact: |k| k.starts_with("/dev/guestvg/root filesystem /dev/sdb"),
        what: "the btrfs top level /dev/sdb among the filesystems",
        reason: "virt-inspector lists an OS's root and the filesystems its fstab mounts; \
                 porthole lists every filesystem on the VM's disks, here also the btrfs top \
                 level that only its subvolumes are mounted from",
    },
    Known {
        guest: "fedora_lvm",
        fact: |k| k.ends_with(" product_variant"),
        what: "product_variant of a Linux guest",
        reason: "porthole reports os-release's VARIANT (Fedora's \"Server Edition\") as the \
                 product variant; virt-inspector 1.48 fills product_variant for Windows only",
    },
    Known {
        guest: "windows",
        fact: |k| k.starts_with("/dev/sda1 filesystem /dev/sda2"),
        what: "the FAT data partition /dev/sda2 among the filesystems",
        reason: "virt-inspector lists a Windows root's own filesystem only; porthole lists \
                 every filesystem on the VM's disks",
    },
];

#[test]
fn same_facts_as_virt_inspector() {
    // Two appliances at a time: each is one busy TCG vCPU, and CI machines have two cores.
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(&Guest, Vec<String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_APPLIANCES {
            scope.spawn(|| {
                while let Some(guest) = GUESTS.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let diffs = differences(guest);
                    results.lock().expect("results").push((guest, diffs));
                }
            });
        }
    });
    let results = results.into_inner().expect("results");

    let mut unexplained = Vec::new();
    let mut explained = BTreeSet::new();
    for (guest, diffs) in &results {
        for diff in diffs {
            let key = diff.split(": virt-inspector ").next().unwrap_or_default();
            match KNOWN
                .iter()
                .position(|k| k.guest == guest.name && (k.fact)(key))
            {
                Some(known) => {
                    explained.insert(known);
                }
                None => unexplained.push(format!("{}: {diff}", guest.name)),
            }
        }
    }
    let stale: Vec<String> = KNOWN
        .iter()
        .enumerate()
        .filter(|(i, k)| !explained.contains(i) && GUESTS.iter().any(|g| g.name == k.guest))
        .map(|(_, k)| format!("{}: {} ({})", k.guest, k.what, k.reason))
        .collect();
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "porthole and virt-inspector differ where no reason is documented:\n  {}\n\
         documented differences that no longer occur (remove them from KNOWN and docs/inspect.md):\n  {}",
        unexplained.join("\n  "),
        stale.join("\n  ")
    );
}

/// Both tools on `guest`; every fact that differs, as `"<root> <fact path>: virt-inspector
/// <value>, porthole <value>"`.
fn differences(guest: &Guest) -> Vec<String> {
    let disks = (guest.disks)();
    let flags: &[&str] = if guest.applications {
        &[]
    } else {
        &["--no-applications"]
    };
    let porthole = porthole_xml(&disks, flags);
    let reference = virt_inspector_xml(&disks, flags).stdout;
    let theirs = facts(&reference);
    let ours = facts(&porthole);
    assert!(
        !theirs.is_empty(),
        "{}: virt-inspector found no operating system:\n{reference}",
        guest.name
    );
    if guest.applications {
        let apps = theirs
            .keys()
            .filter(|k| k.contains(" application "))
            .count();
        assert!(
            apps > 0,
            "{}: virt-inspector listed no applications",
            guest.name
        );
    }
    compare(&theirs, &ours)
}

/// The keys whose values differ between virt-inspector's facts and porthole's.
fn compare(theirs: &BTreeMap<String, String>, ours: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = theirs.keys().chain(ours.keys()).collect();
    keys.into_iter()
        .filter(|k| theirs.get(*k) != ours.get(*k))
        .map(|k| {
            format!(
                "{k}: virt-inspector {:?}, porthole {:?}",
                theirs.get(k),
                ours.get(k)
            )
        })
        .collect()
}

/// `porthole inspect --format xml <flags> <disks>`'s document.
fn porthole_xml(disks: &[PathBuf], flags: &[&str]) -> String {
    inspect_common::porthole_inspect(&[&["--format", "xml"], flags].concat(), disks)
}

/// Every fact of a virt-inspector document, flattened to `"<root> <path>" → value`, so two
/// documents compare key by key whatever their order:
///
/// - `<root> name`, `<root> distro`, ... for the operating system's text facts;
/// - `<root> mountpoint <path>` → the device; `<root> drive_mapping <letter>` → the device;
/// - `<root> filesystem <dev> type|label|uuid`;
/// - `<root> application <name> <arch> epoch|version|release|summary|description` (the arch
///   is in the key: a multiarch dpkg database holds one name for several; a package installed
///   in several versions, like kernels, adds `[version-release]`).
fn facts(document: &str) -> BTreeMap<String, String> {
    let doc = roxmltree::Document::parse(document)
        .unwrap_or_else(|e| panic!("not XML ({e}):\n{document}"));
    let mut out = BTreeMap::new();
    for os in children(doc.root_element(), "operatingsystem") {
        let root = text(child(os, "root"));
        for fact in os.children().filter(|n| n.is_element()) {
            let name = fact.tag_name().name();
            match name {
                "mountpoints" => {
                    for m in children(fact, "mountpoint") {
                        let dev = m.attribute("dev").unwrap_or_default();
                        out.insert(format!("{root} mountpoint {}", text(Some(m))), dev.into());
                    }
                }
                "filesystems" => {
                    for fs in children(fact, "filesystem") {
                        let dev = fs.attribute("dev").unwrap_or_default();
                        for field in ["type", "label", "uuid"] {
                            if let Some(v) = child(fs, field) {
                                let key = format!("{root} filesystem {dev} {field}");
                                out.insert(key, text(Some(v)));
                            }
                        }
                        out.entry(format!("{root} filesystem {dev}")).or_default();
                    }
                }
                "drive_mappings" => {
                    for m in children(fact, "drive_mapping") {
                        let letter = m.attribute("name").unwrap_or_default();
                        out.insert(format!("{root} drive_mapping {letter}"), text(Some(m)));
                    }
                }
                "applications" => {
                    let name_arch =
                        |app| format!("{} {}", text(child(app, "name")), text(child(app, "arch")));
                    let mut installed: BTreeMap<String, usize> = BTreeMap::new();
                    for app in children(fact, "application") {
                        *installed.entry(name_arch(app)).or_default() += 1;
                    }
                    for app in children(fact, "application") {
                        let mut id = format!("{root} application {}", name_arch(app));
                        // Several versions of one package (kernels): each is its own entry,
                        // named by its version, whatever order each tool lists them in.
                        if installed.get(&name_arch(app)).is_some_and(|&n| n > 1) {
                            let part = |f| text(child(app, f));
                            id = format!("{id} [{}-{}]", part("version"), part("release"));
                        }
                        out.entry(id.clone()).or_default();
                        for field in ["epoch", "version", "release", "summary", "description"] {
                            if let Some(v) = child(app, field) {
                                out.insert(format!("{id} {field}"), text(Some(v)));
                            }
                        }
                        // What the documented differences leave to compare: the whole
                        // version, and the texts as dpkg renders them.
                        let field = |f| text(child(app, f));
                        let evr = format!(
                            "{}:{}-{}",
                            child(app, "epoch").map_or("0".into(), |e| text(Some(e))),
                            field("version"),
                            field("release")
                        );
                        out.insert(format!("{id} full version"), evr);
                        let summary = field("summary").trim_end().to_string();
                        out.insert(format!("{id} summary, trimmed"), summary);
                        let description = field("description");
                        let description: Vec<&str> = description
                            .lines()
                            .map(|l| if l == "." { "" } else { l })
                            .collect();
                        out.insert(
                            format!("{id} description, rendered"),
                            description.join("\n"),
                        );
                    }
                }
                _ => {
                    out.insert(format!("{root} {name}"), text(Some(fact)));
                }
            }
        }
    }
    out
}

fn children<'a>(
    node: roxmltree::Node<'a, 'a>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'a>> {
    node.children().filter(move |n| n.has_tag_name(name))
}

fn child<'a>(node: roxmltree::Node<'a, 'a>, name: &'static str) -> Option<roxmltree::Node<'a, 'a>> {
    children(node, name).next()
}

fn text(node: Option<roxmltree::Node>) -> String {
    node.and_then(|n| n.text()).unwrap_or_default().to_string()
}

/// The comparer itself, without virt-inspector: porthole's document against itself has no
/// differences, and each kind of change to it (a text fact, a mountpoint's device, a
/// filesystem field, an application's version, a missing application) is found, named by its
/// key, so a passing differential test means the facts really were compared.
#[test]
fn comparer_finds_each_kind_of_difference() {
    let (disk, _) = guests::gpt_ext4_esp_guest();
    let document = porthole_xml(&[disk], &[]);
    let ours = facts(&document);
    assert!(ours.len() > 500, "only {} facts", ours.len());
    assert_eq!(compare(&ours, &ours), Vec::<String>::new());
    let changed = |from: &str, to: &str| {
        assert!(document.contains(from), "{from:?} not in the document");
        let theirs = facts(&document.replacen(from, to, 1));
        compare(&theirs, &ours)
            .into_iter()
            .map(|d| {
                d.split(": virt-inspector ")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        changed("<hostname>phony-debian<", "<hostname>other<"),
        ["/dev/sda2 hostname"]
    );
    assert_eq!(
        changed(
            "dev=\"/dev/sda1\">/boot/efi<",
            "dev=\"/dev/sdz1\">/boot/efi<"
        ),
        ["/dev/sda2 mountpoint /boot/efi"]
    );
    assert_eq!(
        changed("<label>ESP<", "<label>esp<"),
        ["/dev/sda2 filesystem /dev/sda1 label"]
    );
    // The first application in the document (whichever this machine's dpkg lists first).
    let start = document.find("<application>").expect("an application");
    let end = document[start..].find("</application>").expect("its end") + start;
    let app = &document[start..end];
    let name = app
        .split("<name>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("its name");
    let arch = app
        .split("<arch>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or_default();
    let id = format!("/dev/sda2 application {name} {arch}");
    let version = app
        .split("<version>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("its version");
    assert_eq!(
        changed(
            &format!("<version>{version}<"),
            &format!("<version>{version}.1<")
        ),
        [format!("{id} full version"), format!("{id} version")]
    );
    let mut without = document.clone();
    without.replace_range(start..end + "</application>".len(), "");
    let missing = compare(&facts(&without), &ours);
    assert!(
        !missing.is_empty() && missing.iter().all(|d| d.starts_with(&id)),
        "{missing:?}"
    );
}
