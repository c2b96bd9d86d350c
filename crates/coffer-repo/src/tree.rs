//! Trees: one blob per directory, listing its entries (`Node`s) sorted by name.
//!
//! Trees are deduplicated like data: an unchanged directory encodes to the same bytes, hence
//! the same id, so a snapshot of a mostly unchanged tree stores only the changed directories.
//! Decoding validates everything a restore relies on for safety: names are single path
//! components (no '/', NUL, "." or ".."), sorted and unique; file contents add up to the size.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::wire;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NodeKind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    CharDevice = 4,
    BlockDevice = 5,
    Fifo = 6,
}

impl NodeKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => NodeKind::File,
            2 => NodeKind::Dir,
            3 => NodeKind::Symlink,
            4 => NodeKind::CharDevice,
            5 => NodeKind::BlockDevice,
            6 => NodeKind::Fifo,
            _ => return None,
        })
    }
}

/// A piece of a file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// A stored blob of `len` bytes.
    Chunk { id: Id, len: u32 },
    /// `len` zero bytes not stored (a hole in a sparse file).
    Hole { len: u64 },
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Chunk { len, .. } => *len as u64,
            Content::Hole { len } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    /// Change time, inode, device: used only to detect unchanged files in the next backup.
    pub ctime: (i64, u32),
    pub inode: u64,
    pub dev: u64,
    pub nlink: u64,
    pub size: u64,
    /// Device number of character and block devices.
    pub rdev: u64,
    /// Symlink target.
    pub target: Vec<u8>,
    /// The tree of a directory.
    pub subtree: Option<Id>,
    /// A file's content, in order.
    pub content: Vec<Content>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Node {
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
            ctime: (0, 0),
            inode: 0,
            dev: 0,
            nlink: 1,
            size: 0,
            rdev: 0,
            target: vec![],
            subtree: None,
            content: vec![],
            xattrs: vec![],
        }
    }

    /// True for a regular file that another name in the same snapshot may share.
    pub fn is_hardlink_candidate(&self) -> bool {
        self.kind == NodeKind::File && self.nlink > 1
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// A name that is safe to join to a directory path.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Tree {
    /// About how much memory the decoded tree takes, for caches with a byte budget.
    pub(crate) fn memory(&self) -> usize {
        let node = std::mem::size_of::<Node>();
        self.nodes
            .iter()
            .map(|n| {
                node + n.name.capacity()
                    + n.target.capacity()
                    + n.content.capacity() * std::mem::size_of::<Content>()
                    + n.xattrs
                        .iter()
                        .map(|(k, v)| 48 + k.len() + v.len())
                        .sum::<usize>()
            })
            .sum()
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = wire::Writer::with_capacity(64 + self.nodes.len() * 128);
        w.u8(1);
        w.u32(self.nodes.len() as u32);
        for n in &self.nodes {
            w.bytes(&n.name);
            w.u8(n.kind as u8);
            w.u32(n.mode);
            w.u32(n.uid);
            w.u32(n.gid);
            w.i64(n.mtime.0);
            w.u32(n.mtime.1);
            w.i64(n.ctime.0);
            w.u32(n.ctime.1);
            w.u64(n.inode);
            w.u64(n.dev);
            w.u64(n.nlink);
            w.u64(n.size);
            w.u64(n.rdev);
            w.bytes(&n.target);
            match &n.subtree {
                Some(id) => {
                    w.u8(1);
                    w.id(id);
                }
                None => w.u8(0),
            }
            w.u32(n.content.len() as u32);
            for c in &n.content {
                match c {
                    Content::Chunk { id, len } => {
                        w.u8(0);
                        w.id(id);
                        w.u32(*len);
                    }
                    Content::Hole { len } => {
                        w.u8(1);
                        w.u64(*len);
                    }
                }
            }
            w.u32(n.xattrs.len() as u32);
            for (k, v) in &n.xattrs {
                w.bytes(k);
                w.bytes(v);
            }
        }
        w.buf
    }

    pub fn decode(data: &[u8], what: impl Fn() -> String) -> Result<Tree> {
        Self::decode_inner(data)
            .ok_or_else(|| Error::damaged(what(), "it is not a valid directory listing"))
    }

    fn decode_inner(data: &[u8]) -> Option<Tree> {
        let mut r = wire::Reader::new(data);
        if r.u8()? != 1 {
            return None;
        }
        let count = r.count(90)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r.bytes()?.to_vec();
            if !valid_name(&name) || nodes.last().is_some_and(|p| p.name >= name) {
                return None;
            }
            let kind = NodeKind::from_u8(r.u8()?)?;
            let mut n = Node::new(name, kind);
            n.mode = r.u32()?;
            n.uid = r.u32()?;
            n.gid = r.u32()?;
            n.mtime = (r.i64()?, r.u32()?);
            n.ctime = (r.i64()?, r.u32()?);
            n.inode = r.u64()?;
            n.dev = r.u64()?;
            n.nlink = r.u64()?;
            n.size = r.u64()?;
            n.rdev = r.u64()?;
            n.target = r.bytes()?.to_vec();
            n.subtree = match r.u8()? {
                0 => None,
                1 => Some(r.id()?),
                _ => return None,
            };
            let c = r.count(9)?;
            n.content.reserve(c);
            for _ in 0..c {
                n.content.push(match r.u8()? {
                    0 => Content::Chunk {
                        id: r.id()?,
                        len: r.u32()?,
                    },
                    1 => Content::Hole { len: r.u64()? },
                    _ => return None,
                });
            }
            let x = r.count(8)?;
            for _ in 0..x {
                n.xattrs.push((r.bytes()?.to_vec(), r.bytes()?.to_vec()));
            }
            let consistent = match kind {
                NodeKind::Dir => n.subtree.is_some() && n.content.is_empty(),
                NodeKind::File => {
                    n.subtree.is_none() && n.content.iter().map(Content::len).sum::<u64>() == n.size
                }
                _ => n.subtree.is_none() && n.content.is_empty(),
            };
            if !consistent || n.mode > 0o7777 {
                return None;
            }
            nodes.push(n);
        }
        r.is_empty().then_some(Tree { nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_hostile_names() {
        let mut f = Node::new(b"a\nb".to_vec(), NodeKind::File);
        f.size = 5;
        f.content = vec![
            Content::Chunk {
                id: Id([3; 32]),
                len: 2,
            },
            Content::Hole { len: 3 },
        ];
        f.xattrs = vec![(b"user.x".to_vec(), b"1".to_vec())];
        let mut d = Node::new("é".as_bytes().to_vec(), NodeKind::Dir);
        d.subtree = Some(Id([9; 32]));
        let t = Tree { nodes: vec![f, d] };
        let back = Tree::decode(&t.encode(), || "t".into()).unwrap();
        assert_eq!(back, t);
        for bad in [&b".."[..], b"a/b", b"", b"."] {
            let mut n = Node::new(bad.to_vec(), NodeKind::Fifo);
            n.mode = 0o644;
            assert!(Tree::decode(&Tree { nodes: vec![n] }.encode(), || "t".into()).is_err());
        }
        let mut unsorted = t.clone();
        unsorted.nodes.reverse();
        assert!(Tree::decode(&unsorted.encode(), || "t".into()).is_err());
    }
}
