//! Items that arrive as a tar stream (a Docker volume read through the engine's archive
//! endpoint) become ordinary directory trees in the snapshot.
//!
//! A tar stream comes in whatever order its writer chose, while the snapshot's archive must be
//! in canonical order. So the stream is read in one pass, storing file contents as they come
//! and keeping only the entries' metadata in memory; then the tree is emitted to the hasher in
//! archive order, with the contents hashed from what was stored (as for streams).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;

use super::{Listing, Walker};
use crate::archive;
use crate::error::{Error, Result};
use crate::tree::{Node, NodeKind, Tree, valid_name};

use super::super::hasher::HashMsg;

/// The device number given to hard-linked files of a tar item: link groups are told apart by
/// their inode numbers, which count from 1 within the item.
const TAR_DEV: u64 = u64::MAX;

enum Entry {
    Dir(Dir),
    Leaf(Node),
}

/// A path inside the item, as components.
type TarPath = Vec<Vec<u8>>;

#[derive(Default)]
struct Dir {
    node: Option<Node>,
    children: BTreeMap<Vec<u8>, Entry>,
}

impl Dir {
    /// The directory at `path`, created (and replacing a non-directory) as needed.
    fn dir_mut(&mut self, path: &[Vec<u8>]) -> &mut Dir {
        let mut dir = self;
        for c in path {
            let slot = dir
                .children
                .entry(c.clone())
                .or_insert_with(|| Entry::Dir(Dir::default()));
            if let Entry::Leaf(_) = slot {
                *slot = Entry::Dir(Dir::default());
            }
            let Entry::Dir(d) = slot else { unreachable!() };
            dir = d;
        }
        dir
    }

    fn leaf_mut(&mut self, path: &[Vec<u8>]) -> Option<&mut Node> {
        let (last, parents) = path.split_last()?;
        let mut dir = self;
        for c in parents {
            match dir.children.get_mut(c)? {
                Entry::Dir(d) => dir = d,
                Entry::Leaf(_) => return None,
            }
        }
        match dir.children.get_mut(last)? {
            Entry::Leaf(n) => Some(n),
            Entry::Dir(_) => None,
        }
    }
}

/// The components of an entry path relative to the item: `./` prefixes and empty components
/// dropped, `..` and other invalid names refused.
fn components(raw: &[u8]) -> Result<TarPath> {
    raw.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| {
            if valid_name(c) {
                Ok(c.to_vec())
            } else {
                Err(Error::Invalid(format!(
                    "the tar stream has an entry that leaves its directory: {}",
                    String::from_utf8_lossy(raw)
                )))
            }
        })
        .collect()
}

/// What an entry's PAX header adds: the modification time with its sub-second part and the
/// `SCHILY.xattr.*` extended attributes, sorted.
struct PaxExtras {
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// `None` when the PAX header cannot be read: the tar reader splits records at newlines, so a
/// long name containing a newline comes out wrong, and such an entry must not be stored.
fn pax_extras<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<PaxExtras> {
    let mut mtime = None;
    let mut xattrs = vec![];
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts {
            let ext = ext.ok()?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                mtime = crate::tarball::pax_time(ext.value_bytes());
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    xattrs.sort();
    Some(PaxExtras { mtime, xattrs })
}

impl Walker<'_> {
    /// Read the tar stream `r` into the tree of the directory `name` (archive path `apath`).
    pub(super) fn tar(
        &mut self,
        name: &[u8],
        apath: &[u8],
        r: Box<dyn Read + Send>,
        prev: Option<&Node>,
    ) -> Result<Node> {
        let what = format!("tar stream {}", String::from_utf8_lossy(name));
        let io = |e: std::io::Error| Error::io(&what, e);
        let mut root = Dir::default();
        let mut links: Vec<(TarPath, TarPath)> = vec![];
        let mut tar = tar::Archive::new(r);
        for entry in tar.entries().map_err(io)? {
            self.check_cancel()?;
            let mut entry = entry.map_err(io)?;
            let Some(pax) = pax_extras(&mut entry) else {
                self.warn(format!(
                    "{what}: {}: skipped: its PAX header cannot be read (a long name with a newline?)",
                    String::from_utf8_lossy(&entry.path_bytes())
                ));
                continue;
            };
            let path = components(&entry.path_bytes())?;
            let kind = entry.header().entry_type();
            let node_kind = match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => NodeKind::File,
                tar::EntryType::Directory => NodeKind::Dir,
                tar::EntryType::Symlink => NodeKind::Symlink,
                tar::EntryType::Char => NodeKind::CharDevice,
                tar::EntryType::Block => NodeKind::BlockDevice,
                tar::EntryType::Fifo => NodeKind::Fifo,
                tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|l| components(&l))
                        .transpose()?
                        .unwrap_or_default();
                    if !path.is_empty() {
                        links.push((path, target));
                    }
                    continue;
                }
                other => {
                    self.warn(format!(
                        "{what}: {}: skipped: tar entries of type {other:?} are not supported",
                        String::from_utf8_lossy(&entry.path_bytes())
                    ));
                    continue;
                }
            };
            let h = entry.header();
            let mut node = Node::new(
                path.last().cloned().unwrap_or_else(|| name.to_vec()),
                node_kind,
            );
            node.mode = h.mode().map_err(io)? & 0o7777;
            node.uid = h.uid().map_err(io)?.try_into().unwrap_or(0);
            node.gid = h.gid().map_err(io)?.try_into().unwrap_or(0);
            let secs = h.mtime().map_err(io)? as i64;
            if matches!(node_kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
                let major = h.device_major().map_err(io)?.unwrap_or(0);
                let minor = h.device_minor().map_err(io)?.unwrap_or(0);
                node.rdev = rustix::fs::makedev(major, minor);
            }
            if node_kind == NodeKind::Symlink {
                node.target = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
            }
            node.mtime = pax.mtime.unwrap_or((secs, 0));
            node.ctime = node.mtime;
            node.xattrs = pax.xattrs;
            node.nlink = if node_kind == NodeKind::File { 1 } else { 0 };
            if node_kind == NodeKind::File {
                let size = entry.size();
                let mut content = vec![];
                self.chunk(&mut entry, Some(size), &mut content, false)
                    .map_err(io)?;
                node.size = size;
                node.content = content;
                self.stats.files_new += 1;
                self.count_file(0);
            }
            match path.split_last() {
                None if node_kind == NodeKind::Dir => root.node = Some(node),
                None => {
                    return Err(Error::Invalid(format!(
                        "{what}: its top entry is not a directory"
                    )));
                }
                Some((last, parents)) => {
                    let dir = root.dir_mut(parents);
                    if node_kind == NodeKind::Dir {
                        dir.dir_mut(std::slice::from_ref(last)).node = Some(node);
                    } else {
                        dir.children.insert(last.clone(), Entry::Leaf(node));
                    }
                }
            }
        }
        // Read on to the stream's end: a source may report its failure only there (a dump
        // tool's exit status), after an archive that looks complete.
        std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(io)?;
        self.link(&mut root, links, &what);
        // The hasher reads the contents back from the repository.
        self.pipeline.flush()?;
        let own = root.node.take();
        let sub = self.parent_subtree(prev);
        let listing = self.emit_dir(root, apath, sub)?;
        let mut node = own.unwrap_or_else(|| self.made_up_dir(name, &listing));
        node.name = name.to_vec();
        self.stats.dirs += 1;
        node.subtree = Some(listing.tree);
        self.emit(apath, &node, None, true)?;
        Ok(node)
    }

    /// Turn hard link entries into names of their target file: every name of a link group
    /// gets the same (device, inode) and link count, as on a filesystem.
    fn link(&mut self, root: &mut Dir, links: Vec<(TarPath, TarPath)>, what: &str) {
        let mut groups: HashMap<TarPath, (u64, u64)> = HashMap::new();
        let mut resolved = vec![];
        for (path, target) in links {
            match root.leaf_mut(&target) {
                Some(n) if n.kind == NodeKind::File => {
                    let next = groups.len() as u64 + 1;
                    groups.entry(target.clone()).or_insert((next, 1)).1 += 1;
                    resolved.push((path, target));
                }
                _ => self.warn(format!(
                    "{what}: {}: skipped: its hard link target is not a file of the stream",
                    String::from_utf8_lossy(&path.join(&b'/'))
                )),
            }
        }
        for (target, (inode, names)) in &groups {
            let n = root.leaf_mut(target).expect("resolved above");
            n.dev = TAR_DEV;
            n.inode = *inode;
            n.nlink = *names;
        }
        for (path, target) in resolved {
            let mut node = root.leaf_mut(&target).expect("resolved above").clone();
            let Some((last, parents)) = path.split_last() else {
                continue;
            };
            node.name = last.clone();
            root.dir_mut(parents)
                .children
                .insert(last.clone(), Entry::Leaf(node));
        }
    }

    /// Emit `dir`'s entries in archive order and store its trees; returns its tree id.
    fn emit_dir(&mut self, dir: Dir, apath: &[u8], parent: Option<Arc<Tree>>) -> Result<Listing> {
        let mut nodes = Vec::with_capacity(dir.children.len());
        for (name, entry) in dir.children {
            let path = archive::join(apath, &name);
            let prev = parent.as_ref().and_then(|t| t.find(&name)).cloned();
            let node = match entry {
                Entry::Dir(mut d) => {
                    let own = d.node.take();
                    let sub = self.parent_subtree(prev.as_ref());
                    let listing = self.emit_dir(d, &path, sub)?;
                    let mut node = own.unwrap_or_else(|| self.made_up_dir(&name, &listing));
                    node.name = name;
                    self.stats.dirs += 1;
                    node.subtree = Some(listing.tree);
                    self.emit(&path, &node, None, true)?;
                    node
                }
                Entry::Leaf(node) if node.kind == NodeKind::File => {
                    let key = (node.dev, node.inode);
                    let first = node
                        .is_hardlink_candidate()
                        .then(|| self.linked.get(&key).map(|(p, _)| p.clone()))
                        .flatten();
                    self.emit(&path, &node, first.as_deref(), true)?;
                    if first.is_none() {
                        if node.size > 0 {
                            self.send(HashMsg::Stored {
                                content: Arc::new(node.content.clone()),
                                size: node.size,
                            })?;
                        }
                        self.send(HashMsg::Zeros(archive::padding(node.size)))?;
                        if node.is_hardlink_candidate() {
                            self.linked.insert(key, (path, vec![]));
                        }
                    }
                    node
                }
                Entry::Leaf(node) => {
                    self.emit(&path, &node, None, true)?;
                    node
                }
            };
            nodes.push(node);
        }
        self.store_listing(nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_stay_inside_the_item() {
        assert_eq!(components(b"./").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(
            components(b"./a//b/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert!(components(b"../etc/passwd").is_err());
        assert!(components(b"a/../../x").is_err());
    }
}
