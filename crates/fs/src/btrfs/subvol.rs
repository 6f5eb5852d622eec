//! Subvolumes: finding a tree's root through its ROOT_ITEM, the default subvolume, the links
//! between subvolumes (ROOT_REF / ROOT_BACKREF) and the listing `btrfs subvolume list` prints.

use std::collections::BTreeMap;

use super::bytes::{corrupt, limit, name_hash};
use super::items::{
    self, RootItem, DIR_ITEM, FIRST_FREE_OBJECTID, FS_TREE, INODE_REF, LAST_FREE_OBJECTID,
    ROOT_BACKREF, ROOT_ITEM, ROOT_REF, ROOT_TREE_DIR,
};
use super::tree::{Cursor, Key, Tree, MAX_LEVEL};
use super::volume::Volume;
use crate::{Error, Result};

/// Root tree items walked by one listing.
const MAX_ROOT_ITEMS: usize = 1 << 20;
/// Directory levels between a subvolume and its parent subvolume's root, and subvolume nesting.
const MAX_DEPTH: usize = 4096;

/// Which subvolume to show, as fstab names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubvolumeSelector<'a> {
    /// `subvolid=`: a tree id (5 is the top level).
    Id(u64),
    /// `subvol=`: a path from the top level, with or without a leading `/`.
    Path(&'a [u8]),
}

/// One subvolume or snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subvolume {
    pub id: u64,
    /// The subvolume holding it (5 for the top level).
    pub parent_id: u64,
    /// Its path from the top level, without a leading `/` (as `btrfs subvolume list` prints).
    pub path: Vec<u8>,
}

fn root_tree(vol: &Volume) -> Tree {
    Tree {
        root: vol.sb.root,
        level: vol.sb.root_level,
    }
}

/// The root item of tree `id`.
pub(super) fn root_of(vol: &Volume, id: u64) -> Result<RootItem> {
    if let Some(r) = vol.root_cache(id) {
        return Ok(r);
    }
    let c = Cursor::seek_ge(vol, root_tree(vol), Key::new(id, ROOT_ITEM, 0))?;
    let (key, data) = c.current().ok_or_else(|| not_found(id))?;
    if key.objectid != id || key.kind != ROOT_ITEM {
        return Err(not_found(id));
    }
    let r = items::root_item(data).ok_or_else(|| {
        corrupt(
            c.node_logical(),
            format!("root item of tree {id} truncated"),
        )
    })?;
    if r.level > MAX_LEVEL {
        return Err(corrupt(
            c.node_logical(),
            format!(
                "root item of tree {id}: level {} exceeds {MAX_LEVEL}",
                r.level
            ),
        ));
    }
    vol.set_root_cache(id, r);
    Ok(r)
}

fn not_found(id: u64) -> Error {
    Error::NotFound {
        path: format!("subvolume id {id}"),
    }
}

/// The default subvolume: the root tree's "default" entry (`btrfs subvolume set-default`),
/// else the top level.
pub(super) fn default_subvolume(vol: &Volume) -> Result<u64> {
    let key = Key::new(ROOT_TREE_DIR, DIR_ITEM, name_hash(b"default"));
    let c = Cursor::seek(vol, root_tree(vol), key)?;
    let id = match c.current() {
        Some((k, data)) if k == key => items::dir_items(data)
            .ok_or_else(|| corrupt(c.node_logical(), "default subvolume entry truncated"))?
            .iter()
            .find(|e| e.name == b"default")
            .map_or(FS_TREE, |e| e.location.objectid),
        _ => FS_TREE,
    };
    root_of(vol, id)?;
    Ok(id)
}

/// Whether subvolume `child` is linked inside tree `parent` (a ROOT_REF exists). A snapshot
/// copies its source's entries for nested subvolumes but not the links.
pub(super) fn is_linked(vol: &Volume, parent: u64, child: u64) -> Result<bool> {
    let key = Key::new(parent, ROOT_REF, child);
    let c = Cursor::seek(vol, root_tree(vol), key)?;
    Ok(c.current().is_some_and(|(k, _)| k == key))
}

/// Every subvolume with a parent link, with its path from the top level.
pub(super) fn list(vol: &Volume) -> Result<Vec<Subvolume>> {
    // id -> (parent, dirid, name), for subvolumes that have a root item.
    let mut links: BTreeMap<u64, (u64, u64, Vec<u8>)> = BTreeMap::new();
    let mut c = Cursor::seek_ge(vol, root_tree(vol), Key::new(FIRST_FREE_OBJECTID, 0, 0))?;
    let mut with_root = std::collections::BTreeSet::new();
    let mut seen = 0;
    while let Some((key, data)) = c.current() {
        if key.objectid > LAST_FREE_OBJECTID {
            break;
        }
        seen += 1;
        if seen > MAX_ROOT_ITEMS {
            return Err(limit("root tree items", MAX_ROOT_ITEMS as u64));
        }
        match key.kind {
            ROOT_ITEM => {
                with_root.insert(key.objectid);
            }
            ROOT_BACKREF => {
                let r = items::root_ref(data)
                    .ok_or_else(|| corrupt(c.node_logical(), "root backref truncated"))?;
                links
                    .entry(key.objectid)
                    .or_insert((key.offset, r.dirid, r.name));
            }
            _ => {}
        }
        c.next()?;
    }
    let mut out = Vec::new();
    for (&id, (parent, _, _)) in links.iter().filter(|(id, _)| with_root.contains(id)) {
        out.push(Subvolume {
            id,
            parent_id: *parent,
            path: path_of(vol, &links, id)?,
        });
    }
    Ok(out)
}

/// The path of subvolume `id` from the top level.
fn path_of(vol: &Volume, links: &BTreeMap<u64, (u64, u64, Vec<u8>)>, id: u64) -> Result<Vec<u8>> {
    // Collect (parent tree, dirid, name) upwards, then join from the top.
    let mut chain = Vec::new();
    let mut cur = id;
    while cur != FS_TREE {
        if chain.len() >= MAX_DEPTH {
            return Err(limit("subvolume nesting", MAX_DEPTH as u64));
        }
        let Some((parent, dirid, name)) = links.get(&cur) else {
            return Err(Error::NotFound {
                path: format!("parent link of subvolume {cur}"),
            });
        };
        chain.push((*parent, *dirid, name.as_slice()));
        cur = *parent;
    }
    let mut path = Vec::new();
    for (parent, dirid, name) in chain.into_iter().rev() {
        for part in dir_path(vol, parent, dirid)? {
            push_component(&mut path, &part);
        }
        push_component(&mut path, name);
    }
    Ok(path)
}

fn push_component(path: &mut Vec<u8>, name: &[u8]) {
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}

/// The names from tree `tree`'s root directory down to directory `dir`, through INODE_REFs.
fn dir_path(vol: &Volume, tree: u64, mut dir: u64) -> Result<Vec<Vec<u8>>> {
    let r = root_of(vol, tree)?;
    let t = Tree {
        root: r.bytenr,
        level: r.level,
    };
    let mut names = Vec::new();
    while dir != r.root_dirid {
        if names.len() >= MAX_DEPTH {
            return Err(limit("directory depth", MAX_DEPTH as u64));
        }
        let c = Cursor::seek_ge(vol, t, Key::new(dir, INODE_REF, 0))?;
        let Some((key, data)) = c
            .current()
            .filter(|(k, _)| k.objectid == dir && k.kind == INODE_REF)
        else {
            return Err(corrupt(
                c.node_logical(),
                format!("directory {dir} of tree {tree} has no name"),
            ));
        };
        let name = items::inode_ref_name(data)
            .ok_or_else(|| corrupt(c.node_logical(), "inode ref truncated"))?;
        names.push(name.to_vec());
        dir = key.offset;
    }
    names.reverse();
    Ok(names)
}
