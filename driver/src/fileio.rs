//! The transfer plane's file operations on a real file system (std::fs),
//! run on the runtime's blocking pool, never on the reactor.

use estafeta_core::blake3;
use estafeta_core::transfer::{FileError, FileErrorKind, FileOp, FileReply};
use estafeta_core::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes read per call while hashing.
const HASH_BUF: usize = 1 << 20;

fn err(e: io::Error) -> FileError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => FileErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => FileErrorKind::AlreadyExists,
        io::ErrorKind::PermissionDenied => FileErrorKind::PermissionDenied,
        io::ErrorKind::UnexpectedEof => FileErrorKind::UnexpectedEof,
        io::ErrorKind::StorageFull => FileErrorKind::NoSpace,
        _ if matches!(e.raw_os_error(), Some(28) | Some(122)) => FileErrorKind::NoSpace,
        _ => FileErrorKind::Other,
    };
    FileError::new(kind, e.to_string())
}

fn open_write(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().write(true).create(true).truncate(false).open(path)
}

fn sync_dir(path: &Path) {
    // Durability of a rename needs the directory synced (unix); where a
    // directory cannot be opened (Windows) this is a no-op.
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
            let _ = d.sync_all();
        }
    }
}

/// Hashes the first `len` bytes of `path` with BLAKE3 (blocking).
pub(crate) fn hash_prefix(path: &Path, len: u64) -> io::Result<blake3::Hasher> {
    let mut f = File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; HASH_BUF];
    let mut left = len;
    while left > 0 {
        let want = (left as usize).min(HASH_BUF);
        f.read_exact(&mut buf[..want])?;
        h.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(h)
}

/// Runs one file operation (blocking): relative to a held receive
/// directory when its path lies under one (see [`crate::anchor`]), else by
/// path (files the application sends).
pub(crate) fn run(op: FileOp, anchors: &crate::anchor::Anchors) -> Result<FileReply, FileError> {
    #[cfg(unix)]
    {
        let (path, to) = match &op {
            FileOp::Read { path, .. }
            | FileOp::Write { path, .. }
            | FileOp::Truncate { path, .. }
            | FileOp::Sync { path }
            | FileOp::Hash { path, .. }
            | FileOp::Load { path, .. }
            | FileOp::Store { path, .. }
            | FileOp::Remove { path } => (path, None),
            FileOp::Commit { from, to } => (from, Some(to)),
        };
        if let Some((dir, rel)) = anchors.find(path) {
            let rel2 = match to.and_then(|t| anchors.find(t)) {
                Some((d2, r2)) if std::sync::Arc::ptr_eq(&dir, &d2) => Some(r2),
                _ => None,
            };
            return crate::anchor::run(&dir, &rel, rel2.as_deref(), op).map_err(err);
        }
    }
    #[cfg(not(unix))]
    let _ = anchors;
    run_io(op).map_err(err)
}

fn run_io(op: FileOp) -> io::Result<FileReply> {
    match op {
        FileOp::Read { path, offset, len } => {
            let mut f = File::open(&path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0u8; len];
            f.read_exact(&mut buf)?;
            Ok(FileReply::Data(Bytes::from(buf)))
        }
        FileOp::Write { path, offset, data } => {
            let mut f = open_write(&path)?;
            f.seek(SeekFrom::Start(offset))?;
            for d in data {
                f.write_all(&d)?;
            }
            Ok(FileReply::Done)
        }
        FileOp::Truncate { path, len } => {
            open_write(&path)?.set_len(len)?;
            Ok(FileReply::Done)
        }
        FileOp::Sync { path } => {
            OpenOptions::new().write(true).open(&path)?.sync_data()?;
            Ok(FileReply::Done)
        }
        FileOp::Hash { path, len } => Ok(FileReply::Hashed(Box::new(hash_prefix(&path, len)?))),
        FileOp::Load { path, max } => {
            let f = File::open(&path)?;
            let mut buf = Vec::new();
            f.take(max as u64 + 1).read_to_end(&mut buf)?;
            if buf.len() > max {
                return Err(io::Error::other("file too large"));
            }
            Ok(FileReply::Data(Bytes::from(buf)))
        }
        FileOp::Store { path, data } => {
            let mut tmp = path.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = std::path::PathBuf::from(tmp);
            {
                let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
                f.write_all(&data)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            sync_dir(&path);
            Ok(FileReply::Done)
        }
        FileOp::Commit { from, to } => {
            // No-replace rename: a hard link fails if `to` exists; then the
            // partial name goes. (Where hard links are not supported, fall
            // back to checking first.)
            match std::fs::hard_link(&from, &to) {
                Ok(()) => std::fs::remove_file(&from)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
                Err(_) => {
                    if to.exists() {
                        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "target exists"));
                    }
                    std::fs::rename(&from, &to)?;
                }
            }
            sync_dir(&to);
            Ok(FileReply::Done)
        }
        FileOp::Remove { path } => match std::fs::remove_file(&path) {
            Ok(()) => Ok(FileReply::Done),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FileReply::Done),
            Err(e) => Err(e),
        },
    }
}
