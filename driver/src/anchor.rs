//! Receive directories held open: every file operation under a directory
//! the application passed to `receive_files` runs relative to a handle on
//! that directory taken when it was registered, never by path from `/`.
//!
//! Why: the core joins the directory with a sanitised name, but a path is
//! resolved anew by each call. If the directory (or a folder on its path) is
//! renamed or replaced by a symlink during a transfer, path-based calls would
//! write the rest of the file, or rename it into place, wherever the path now
//! leads. Anchored calls keep writing into the directory the application
//! chose (under whatever name it now has), and refuse symlinks below it:
//! every component is opened with `O_NOFOLLOW`, folders with `O_DIRECTORY`,
//! so a `.part`, a sidecar, a final name or a subfolder replaced by a
//! symlink fails the operation (a disk error that ends the transfer) and
//! nothing is written outside.
//!
//! Unix only (`openat` and friends, through `rustix`, already a dependency
//! of the runtimes' reactors: safe owned descriptors and typed flags, no
//! hand-written `libc` calls). Elsewhere operations stay path-based.

use estafeta_core::Topic;
use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A directory held open.
#[derive(Debug)]
pub(crate) struct Dir {
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
}

impl Dir {
    /// Opens `path` (which must be a directory) and holds it.
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        #[cfg(unix)]
        {
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
            Ok(Dir { fd })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            Err(io::Error::new(io::ErrorKind::Unsupported, "directory handles are unix only"))
        }
    }
}

/// The receive directories of one node, by topic (at most one per
/// receiving topic: stale ones are pruned when one is added).
#[derive(Debug, Default)]
pub(crate) struct Anchors {
    dirs: Mutex<BTreeMap<Topic, (PathBuf, Arc<Dir>)>>,
}

impl Anchors {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Topic, (PathBuf, Arc<Dir>)>> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `dir` for `topic` (replacing an older handle) and forgets the
    /// topics `keep` says are no longer received.
    pub(crate) fn set(&self, topic: Topic, path: PathBuf, dir: Dir, keep: impl Fn(&Topic) -> bool) {
        let mut m = self.lock();
        m.retain(|t, _| keep(t));
        m.insert(topic, (path, Arc::new(dir)));
    }

    /// The held directory `path` lies under, and the rest of `path` below it
    /// (plain names only; anything else is not anchored).
    pub(crate) fn find(&self, path: &Path) -> Option<(Arc<Dir>, PathBuf)> {
        let m = self.lock();
        let (rel, dir) = m
            .values()
            .filter_map(|(p, d)| path.strip_prefix(p).ok().map(|r| (r, d)))
            .min_by_key(|(r, _)| r.components().count())?;
        rel.components().all(|c| matches!(c, Component::Normal(_))).then(|| (dir.clone(), rel.to_path_buf()))
    }
}

#[cfg(unix)]
pub(crate) use imp::run;

#[cfg(unix)]
mod imp {
    use super::Dir;
    use estafeta_core::blake3;
    use estafeta_core::transfer::{FileOp, FileReply};
    use estafeta_core::Bytes;
    use rustix::fs::{AtFlags, Mode, OFlags};
    use std::fs::File;
    use std::io::{self, Read, Seek, SeekFrom, Write};
    use std::os::fd::{AsFd, OwnedFd};
    use std::path::{Component, Path};

    const FILE_MODE: u32 = 0o644;
    const DIR_MODE: u32 = 0o755;
    const HASH_BUF: usize = 1 << 20;

    /// Opens the folder holding `rel` below `root`, one component at a
    /// time, never following a symlink; `create`: make missing folders.
    /// Returns it (None: `root` itself) and the file's own name.
    fn parent<'a>(root: &Dir, rel: &'a Path, create: bool) -> io::Result<(Option<OwnedFd>, &'a Path)> {
        let mut comps: Vec<&Path> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(Path::new(n)),
                _ => Err(io::Error::other("path leaves the receive directory")),
            })
            .collect::<io::Result<_>>()?;
        let name = comps.pop().ok_or_else(|| io::Error::other("empty file name"))?;
        let mut cur: Option<OwnedFd> = None;
        for c in comps {
            let at = cur.as_ref().map_or(root.fd.as_fd(), |f| f.as_fd());
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match rustix::fs::openat(at, c, flags, Mode::empty()) {
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(at, c, Mode::from_raw_mode(DIR_MODE)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::openat(at, c, flags, Mode::empty())?
                }
                r => r?,
            };
            cur = Some(fd);
        }
        Ok((cur, name))
    }

    fn at<'a>(root: &'a Dir, dir: &'a Option<OwnedFd>) -> std::os::fd::BorrowedFd<'a> {
        dir.as_ref().map_or(root.fd.as_fd(), |f| f.as_fd())
    }

    /// Opens `rel` below `root` with `flags` (plus no-follow, close-on-exec).
    fn open(root: &Dir, rel: &Path, flags: OFlags) -> io::Result<File> {
        let (dir, name) = parent(root, rel, flags.contains(OFlags::CREATE))?;
        let fd = rustix::fs::openat(
            at(root, &dir),
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )?;
        Ok(File::from(fd))
    }

    /// Runs `op`, whose paths are `root` joined with `rel` (and `rel2`, the
    /// target of a commit, under the same root).
    pub(crate) fn run(root: &Dir, rel: &Path, rel2: Option<&Path>, op: FileOp) -> io::Result<FileReply> {
        let write = OFlags::WRONLY | OFlags::CREATE;
        match op {
            FileOp::Read { offset, len, .. } => {
                let mut f = open(root, rel, OFlags::RDONLY)?;
                f.seek(SeekFrom::Start(offset))?;
                let mut buf = vec![0u8; len];
                f.read_exact(&mut buf)?;
                Ok(FileReply::Data(Bytes::from(buf)))
            }
            FileOp::Write { offset, data, .. } => {
                let mut f = open(root, rel, write)?;
                f.seek(SeekFrom::Start(offset))?;
                for d in data {
                    f.write_all(&d)?;
                }
                Ok(FileReply::Done)
            }
            FileOp::Truncate { len, .. } => {
                open(root, rel, write)?.set_len(len)?;
                Ok(FileReply::Done)
            }
            FileOp::Sync { .. } => {
                open(root, rel, OFlags::WRONLY)?.sync_data()?;
                Ok(FileReply::Done)
            }
            FileOp::Hash { len, .. } => {
                let mut f = open(root, rel, OFlags::RDONLY)?;
                let mut h = blake3::Hasher::new();
                let mut buf = vec![0u8; HASH_BUF.min(len as usize)];
                let mut left = len;
                while left > 0 {
                    let want = (left as usize).min(buf.len());
                    f.read_exact(&mut buf[..want])?;
                    h.update(&buf[..want]);
                    left -= want as u64;
                }
                Ok(FileReply::Hashed(Box::new(h)))
            }
            FileOp::Load { max, .. } => {
                let f = open(root, rel, OFlags::RDONLY)?;
                let mut buf = Vec::new();
                f.take(max as u64 + 1).read_to_end(&mut buf)?;
                if buf.len() > max {
                    return Err(io::Error::other("file too large"));
                }
                Ok(FileReply::Data(Bytes::from(buf)))
            }
            FileOp::Store { data, .. } => {
                let (dir, name) = parent(root, rel, true)?;
                let mut tmp = name.as_os_str().to_os_string();
                tmp.push(".tmp");
                let d = at(root, &dir);
                {
                    let fd = rustix::fs::openat(
                        d,
                        tmp.as_os_str(),
                        write | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(FILE_MODE),
                    )?;
                    let mut f = File::from(fd);
                    f.write_all(&data)?;
                    f.sync_all()?;
                }
                rustix::fs::renameat(d, tmp.as_os_str(), d, name)?;
                let _ = rustix::fs::fsync(d);
                Ok(FileReply::Done)
            }
            FileOp::Commit { .. } => {
                let to = rel2.ok_or_else(|| io::Error::other("commit target outside the directory"))?;
                let (fdir, fname) = parent(root, rel, false)?;
                let (tdir, tname) = parent(root, to, true)?;
                let (f, t) = (at(root, &fdir), at(root, &tdir));
                // No-replace rename: a hard link fails if the target exists.
                match rustix::fs::linkat(f, fname, t, tname, AtFlags::empty()) {
                    Ok(()) => rustix::fs::unlinkat(f, fname, AtFlags::empty())?,
                    Err(rustix::io::Errno::EXIST) => {
                        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "target exists"))
                    }
                    Err(_) => {
                        if rustix::fs::statat(t, tname, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "target exists"));
                        }
                        rustix::fs::renameat(f, fname, t, tname)?;
                    }
                }
                let _ = rustix::fs::fsync(t);
                Ok(FileReply::Done)
            }
            FileOp::Remove { .. } => {
                let (dir, name) = match parent(root, rel, false) {
                    Ok(x) => x,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileReply::Done),
                    Err(e) => return Err(e),
                };
                match rustix::fs::unlinkat(at(root, &dir), name, AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(FileReply::Done),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}
