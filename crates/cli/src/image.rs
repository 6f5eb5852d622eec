//! `porthole filesystems | ls | cat IMAGE...`: read VM disk images offline through
//! porthole-guest. Problems found on the disks (damaged tables, unreadable volumes, fstab lines
//! naming absent devices) are warnings on standard error; reading goes on.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use porthole_fs::{FileType, Metadata};
use porthole_guest::{Disks, GuestView, RootKind};
use serde_json::{json, Value};

use crate::cli::{CatArgs, FilesystemsArgs, GuestArgs, LsArgs};
use crate::output::{emit, human_bytes, table, utc_timestamp};

/// Bytes per read in `cat`.
const CAT_CHUNK: usize = 1 << 20;

fn warn(message: &str) {
    eprintln!("porthole: warning: {message}");
}

fn open_disks(images: &[std::path::PathBuf]) -> Result<Disks> {
    let disks = Disks::open(images)?;
    for problem in &disks.problems {
        warn(problem);
    }
    Ok(disks)
}

pub fn filesystems(args: FilesystemsArgs) -> Result<ExitCode> {
    let disks = open_disks(&args.images)?;
    // One row per volume, or per filesystem on it (a btrfs filesystem's subvolumes are rows too).
    let mut rows: Vec<Value> = Vec::new();
    for (index, volume) in disks.volumes.iter().enumerate() {
        let row = |device: String, fs: Option<&porthole_guest::FoundFs>| {
            json!({
                "device": device,
                "mapper": volume.mapper_path,
                "volume": volume.type_name,
                "size": volume.size,
                "partuuid": volume.partuuid,
                "name": volume.name,
                "filesystem": fs.map(|f| f.info.kind.name()),
                "label": fs.and_then(|f| f.info.label.clone()),
                "uuid": fs.and_then(|f| f.info.uuid.clone()),
                "subvolume": fs.and_then(|f| f.subvolume.clone()),
            })
        };
        let on_volume: Vec<_> = disks
            .filesystems
            .iter()
            .filter(|f| f.volume == index)
            .collect();
        if on_volume.is_empty() {
            rows.push(row(volume.path.clone(), None));
        }
        for fs in on_volume {
            rows.push(row(disks.device_of(fs), Some(fs)));
        }
    }
    if args.json {
        emit(&(serde_json::to_string_pretty(&rows)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            ["device", "volume", "filesystem", "label", "uuid"]
                .iter()
                .map(|k| cell(&r[*k]))
                .chain([human_bytes(r["size"].as_u64().unwrap_or(0))])
                .collect()
        })
        .collect();
    emit(&table(
        &["DEVICE", "VOLUME", "FILESYSTEM", "LABEL", "UUID", "SIZE"],
        &table_rows,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The tree `ls` and `cat` read: the OS root with its fstab mounts, or one filesystem alone.
fn open_view(args: &GuestArgs) -> Result<(GuestView, String)> {
    let (images, path) = args.split();
    let disks = open_disks(&images)?;
    let roots = disks.roots();
    let device = |index: usize| disks.device_of(&disks.filesystems[index]);
    let chosen = match &args.root {
        Some(wanted) => {
            let index = (0..disks.filesystems.len())
                .find(|&i| device(i) == *wanted)
                .with_context(|| {
                    format!("no filesystem on {wanted} (see `porthole filesystems`)")
                })?;
            match roots.iter().find(|(i, _)| *i == index) {
                Some((_, RootKind::Linux)) => Some(index),
                _ => return Ok((disks.single(index)?, path)),
            }
        }
        None => match roots.as_slice() {
            [] => None,
            [(only, _)] => Some(*only),
            [(first, _), ..] => {
                let names: Vec<String> = roots.iter().map(|(i, _)| device(*i)).collect();
                warn(&format!(
                    "several operating systems ({}); showing {} (choose with --root)",
                    names.join(", "),
                    device(*first)
                ));
                Some(*first)
            }
        },
    };
    match chosen {
        Some(root) => {
            let (view, warnings) = disks.guest(root)?;
            for warning in &warnings {
                warn(warning);
            }
            Ok((view, path))
        }
        None if disks.filesystems.len() == 1 => Ok((disks.single(0)?, path)),
        None if disks.filesystems.is_empty() => bail!("no filesystem found on these disks"),
        None => bail!(
            "no operating system found and several filesystems; choose one with --root DEVICE \
             (see `porthole filesystems`)"
        ),
    }
}

pub fn ls(args: LsArgs) -> Result<ExitCode> {
    let (view, path) = open_view(&args.guest)?;
    let target = view.stat(path.as_bytes())?;
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = if target.file_type == FileType::Directory {
        view.read_dir(path.as_bytes())?
            .into_iter()
            .map(|e| {
                let full = join(path.as_bytes(), &e.name);
                (e.name, full)
            })
            .collect()
    } else {
        vec![(path.as_bytes().to_vec(), path.as_bytes().to_vec())]
    };
    entries.sort();
    let mut out = std::io::stdout().lock();
    let mut listed = Vec::new();
    for (name, full) in &entries {
        let shown = String::from_utf8_lossy(name);
        let meta = match view.lstat(full) {
            Ok(meta) => meta,
            Err(e) => {
                warn(&e.to_string());
                continue;
            }
        };
        let link = (meta.file_type == FileType::Symlink)
            .then(|| view.read_link(full).ok())
            .flatten()
            .map(|t| String::from_utf8_lossy(&t).into_owned());
        if args.json {
            listed.push(entry_json(&shown, &meta, link.as_deref()));
        } else if args.long {
            writeln!(out, "{}", long_line(&shown, &meta, link.as_deref()))?;
        } else {
            writeln!(out, "{shown}")?;
        }
    }
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&listed)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cat(args: CatArgs) -> Result<ExitCode> {
    let (view, path) = open_view(&args.guest)?;
    let meta = view.stat(path.as_bytes())?;
    if meta.file_type != FileType::Regular {
        bail!("{path}: not a regular file ({:?})", meta.file_type);
    }
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; CAT_CHUNK];
    let mut offset = 0u64;
    loop {
        let n = view.read_at(path.as_bytes(), offset, &mut buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        out.write_all(chunk)?;
        offset += n as u64;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

fn type_char(t: FileType) -> char {
    match t {
        FileType::Regular => '-',
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::CharDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        FileType::Unknown => '?',
    }
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Regular => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::CharDevice => "char-device",
        FileType::BlockDevice => "block-device",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::Unknown => "unknown",
    }
}

/// `drwxr-xr-x`, with setuid/setgid/sticky as ls(1) shows them.
fn mode_string(meta: &Metadata) -> String {
    let m = meta.mode;
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let special = |exec: bool, set: bool, lower: char, upper: char| match (set, exec) {
        (true, true) => lower,
        (true, false) => upper,
        (false, true) => 'x',
        (false, false) => '-',
    };
    [
        type_char(meta.file_type),
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(m & 0o100 != 0, m & 0o4000 != 0, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(m & 0o010 != 0, m & 0o2000 != 0, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(m & 0o001 != 0, m & 0o1000 != 0, 't', 'T'),
    ]
    .iter()
    .collect()
}

fn long_line(name: &str, meta: &Metadata, link: Option<&str>) -> String {
    let mtime = meta
        .mtime
        .map(|t| utc_timestamp(t, 0))
        .unwrap_or_else(|| "-".to_string());
    let mut line = format!(
        "{} {:>3} {:>5} {:>5} {:>12} {mtime} {name}",
        mode_string(meta),
        meta.nlink,
        meta.uid,
        meta.gid,
        meta.size
    );
    if let Some(target) = link {
        line.push_str(" -> ");
        line.push_str(target);
    }
    line
}

fn entry_json(name: &str, meta: &Metadata, link: Option<&str>) -> Value {
    json!({
        "name": name,
        "type": type_name(meta.file_type),
        "mode": format!("{:04o}", meta.mode & 0o7777),
        "uid": meta.uid,
        "gid": meta.gid,
        "size": meta.size,
        "nlink": meta.nlink,
        "mtime": meta.mtime,
        "ino": meta.ino,
        "target": link,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(file_type: FileType, mode: u32) -> Metadata {
        Metadata {
            file_type,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            nlink: 1,
            mtime: None,
            ino: 1,
        }
    }

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(&meta(FileType::Directory, 0o755)), "drwxr-xr-x");
        assert_eq!(mode_string(&meta(FileType::Regular, 0o4755)), "-rwsr-xr-x");
        assert_eq!(mode_string(&meta(FileType::Regular, 0o2644)), "-rw-r-Sr--");
        assert_eq!(
            mode_string(&meta(FileType::Directory, 0o1777)),
            "drwxrwxrwt"
        );
        assert_eq!(mode_string(&meta(FileType::Symlink, 0o777)), "lrwxrwxrwx");
    }
}
