//! File I/O the transfer plane asks its driver for: a [`FileRequest`] is
//! handed to [`Sink::file`](crate::Sink::file) and its result comes back
//! through [`Node::handle_file`](crate::Node::handle_file).
//!
//! The plane keeps at most one request outstanding per receiver it reads
//! for, and per file it writes at most one data request (write, truncate,
//! hash, commit, remove) plus one `Sync` or sidecar `Store` beside a write.
//! A sync covers at least the writes completed before it was issued (an
//! fsync of the file does), and the plane counts only those as durable; so
//! a driver may run requests on any pool in any order.

use bytes::Bytes;
use std::path::PathBuf;

/// The id of a file request, echoed in its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileReqId(pub u64);

/// One file operation for the driver, with the id its result must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRequest {
    /// Echo it in [`Node::handle_file`](crate::Node::handle_file).
    pub id: FileReqId,
    /// What to do.
    pub op: FileOp,
}

/// A file operation. Paths are a directory the application chose joined
/// with a sanitised name, or a path the application gave for sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// Read `len` bytes at `offset` → [`FileReply::Data`] with exactly `len`
    /// bytes (fewer is an error: the file shrank).
    Read {
        /// The file.
        path: PathBuf,
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: usize,
    },
    /// Write `data` (contiguous pieces) at `offset`, creating the file if it
    /// does not exist, never truncating it → [`FileReply::Done`].
    Write {
        /// The file.
        path: PathBuf,
        /// Where the first piece goes.
        offset: u64,
        /// The bytes, in order.
        data: Vec<Bytes>,
    },
    /// Create the file if needed and set its length to `len` → `Done`.
    Truncate {
        /// The file.
        path: PathBuf,
        /// The new length.
        len: u64,
    },
    /// Flush the file's data to stable storage (fsync) → `Done`.
    Sync {
        /// The file.
        path: PathBuf,
    },
    /// Feed the file's first `len` bytes to a fresh BLAKE3 hasher →
    /// [`FileReply::Hashed`] (the hasher, so hashing can continue).
    Hash {
        /// The file.
        path: PathBuf,
        /// How many bytes.
        len: u64,
    },
    /// Read a whole small file (at most `max` bytes) → `Data`;
    /// [`FileErrorKind::NotFound`] if it does not exist.
    Load {
        /// The file.
        path: PathBuf,
        /// Its largest acceptable size.
        max: usize,
    },
    /// Replace the file's content atomically and durably (write a
    /// temporary file next to it, sync it, rename it over) → `Done`.
    Store {
        /// The file.
        path: PathBuf,
        /// The new content.
        data: Bytes,
    },
    /// Rename `from` to `to` without replacing an existing `to`
    /// ([`FileErrorKind::AlreadyExists`] then), then sync the directory → `Done`.
    Commit {
        /// The finished partial file.
        from: PathBuf,
        /// The final name.
        to: PathBuf,
    },
    /// Delete the file; a missing file is fine → `Done`.
    Remove {
        /// The file.
        path: PathBuf,
    },
}

/// The successful result of a [`FileOp`].
#[derive(Clone, Debug)]
pub enum FileReply {
    /// The operation completed.
    Done,
    /// The bytes read.
    Data(Bytes),
    /// The hasher after the bytes hashed.
    Hashed(Box<blake3::Hasher>),
}

/// What kind of failure a file operation met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileErrorKind {
    /// The file does not exist.
    NotFound,
    /// The target exists (a commit never replaces a file).
    AlreadyExists,
    /// The disk or quota is full.
    NoSpace,
    /// Not allowed.
    PermissionDenied,
    /// The file is shorter than the bytes asked for.
    UnexpectedEof,
    /// Anything else.
    Other,
}

/// A failed file operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct FileError {
    /// The kind.
    pub kind: FileErrorKind,
    /// The driver's message.
    pub message: String,
}

impl FileError {
    /// An error of `kind` with `message`.
    pub fn new(kind: FileErrorKind, message: impl Into<String>) -> Self {
        FileError { kind, message: message.into() }
    }
}
