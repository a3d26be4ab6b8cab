//! An in-memory file system that runs [`FileOp`]s, for tests, the
//! simulator and examples. A crash ([`MemFs::crash`]) loses every byte
//! written since the file's last sync; creating, renaming and removing files
//! are durable at once.

use super::io::{FileError, FileErrorKind, FileOp, FileReply};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default)]
struct MemFile {
    data: Vec<u8>,
    synced: Vec<u8>,
}

/// Files by path, each with its current and its synced content.
///
/// ```
/// use estafeta_core::transfer::{FileOp, MemFs};
/// use estafeta_core::Bytes;
/// let mut fs = MemFs::default();
/// let p = std::path::PathBuf::from("/d/f");
/// fs.run(FileOp::Write { path: p.clone(), offset: 0, data: vec![Bytes::from_static(b"abc")] }).unwrap();
/// fs.crash();
/// assert_eq!(fs.read(&p).unwrap(), b"", "never synced");
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemFs {
    files: BTreeMap<PathBuf, MemFile>,
    /// Total bytes the files may hold; a write past it fails with
    /// [`FileErrorKind::NoSpace`]. `None`: unlimited.
    pub capacity: Option<u64>,
    /// Operations run (for tests).
    pub ops: u64,
}

impl MemFs {
    /// The current content of `path`.
    pub fn read(&self, path: &Path) -> Option<&[u8]> {
        self.files.get(path).map(|f| f.data.as_slice())
    }

    /// Creates or replaces `path` with `data`, synced.
    pub fn put(&mut self, path: impl Into<PathBuf>, data: &[u8]) {
        self.files.insert(path.into(), MemFile { data: data.to_vec(), synced: data.to_vec() });
    }

    /// True if `path` exists.
    pub fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    /// Every path, in order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> + '_ {
        self.files.keys().map(|p| p.as_path())
    }

    /// Flips one byte of `path` (current and synced content), as bit rot would.
    pub fn flip_byte(&mut self, path: &Path, offset: usize) -> bool {
        let Some(f) = self.files.get_mut(path) else { return false };
        let mut done = false;
        for d in [&mut f.data, &mut f.synced] {
            if let Some(b) = d.get_mut(offset) {
                *b ^= 0x5a;
                done = true;
            }
        }
        done
    }

    /// A crash: every file goes back to its last synced content.
    pub fn crash(&mut self) {
        for f in self.files.values_mut() {
            f.data = f.synced.clone();
        }
    }

    fn used(&self) -> u64 {
        self.files.values().map(|f| f.data.len() as u64).sum()
    }

    fn room(&self, path: &Path, new_len: u64) -> Result<(), FileError> {
        let Some(cap) = self.capacity else { return Ok(()) };
        let old = self.files.get(path).map_or(0, |f| f.data.len() as u64);
        if self.used() - old + new_len > cap {
            return Err(FileError::new(FileErrorKind::NoSpace, "no space left on device"));
        }
        Ok(())
    }

    fn get(&self, path: &Path) -> Result<&MemFile, FileError> {
        self.files.get(path).ok_or_else(|| FileError::new(FileErrorKind::NotFound, format!("{}", path.display())))
    }

    /// Runs one operation.
    pub fn run(&mut self, op: FileOp) -> Result<FileReply, FileError> {
        self.ops += 1;
        match op {
            FileOp::Read { path, offset, len } => {
                let f = self.get(&path)?;
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(len);
                match f.data.get(start..end) {
                    Some(b) => Ok(FileReply::Data(Bytes::copy_from_slice(b))),
                    None => Err(FileError::new(FileErrorKind::UnexpectedEof, "file shorter than expected")),
                }
            }
            FileOp::Write { path, offset, data } => {
                let total: usize = data.iter().map(|d| d.len()).sum();
                let end = offset as usize + total;
                let cur = self.files.get(&path).map_or(0, |f| f.data.len());
                self.room(&path, end.max(cur) as u64)?;
                let f = self.files.entry(path).or_default();
                if f.data.len() < end {
                    f.data.resize(end, 0);
                }
                let mut at = offset as usize;
                for d in data {
                    f.data[at..at + d.len()].copy_from_slice(&d);
                    at += d.len();
                }
                Ok(FileReply::Done)
            }
            FileOp::Truncate { path, len } => {
                self.room(&path, len)?;
                self.files.entry(path).or_default().data.resize(len as usize, 0);
                Ok(FileReply::Done)
            }
            FileOp::Sync { path } => {
                let f = self.files.get_mut(&path).ok_or_else(|| FileError::new(FileErrorKind::NotFound, "sync"))?;
                f.synced = f.data.clone();
                Ok(FileReply::Done)
            }
            FileOp::Hash { path, len } => {
                let f = self.get(&path)?;
                let b = f
                    .data
                    .get(..len as usize)
                    .ok_or_else(|| FileError::new(FileErrorKind::UnexpectedEof, "file shorter than expected"))?;
                let mut h = blake3::Hasher::new();
                h.update(b);
                Ok(FileReply::Hashed(Box::new(h)))
            }
            FileOp::Load { path, max } => {
                let f = self.get(&path)?;
                if f.data.len() > max {
                    return Err(FileError::new(FileErrorKind::Other, "file too large"));
                }
                Ok(FileReply::Data(Bytes::copy_from_slice(&f.data)))
            }
            FileOp::Store { path, data } => {
                self.room(&path, data.len() as u64)?;
                self.files.insert(path, MemFile { data: data.to_vec(), synced: data.to_vec() });
                Ok(FileReply::Done)
            }
            FileOp::Commit { from, to } => {
                if self.files.contains_key(&to) {
                    return Err(FileError::new(FileErrorKind::AlreadyExists, format!("{}", to.display())));
                }
                let f = self.files.remove(&from).ok_or_else(|| FileError::new(FileErrorKind::NotFound, "commit"))?;
                self.files.insert(to, f);
                Ok(FileReply::Done)
            }
            FileOp::Remove { path } => {
                self.files.remove(&path);
                Ok(FileReply::Done)
            }
        }
    }
}
