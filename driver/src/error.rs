//! The errors of the async API.

use estafeta_core::transfer::TransferError;
use estafeta_core::{CommandError, ConfigError, PeerAddr, PublishError};
use std::fmt;
use std::io;

/// An error from a node handle. Each variant says what failed; none of them
/// means a message was queued.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed (bind, for example).
    Io(io::Error),
    /// The configuration is invalid.
    Config(ConfigError),
    /// A publish was refused; nothing was queued.
    Publish(PublishError),
    /// A command was refused; nothing changed.
    Command(CommandError),
    /// A dial target used up its attempts without connecting.
    ConnectFailed(PeerAddr),
    /// A payload could not be encoded or decoded with the chosen format.
    Format(String),
    /// A file send or receive command was refused; nothing changed.
    Transfer(TransferError),
    /// The node is closed.
    Closed,
    /// A request's stream ended without a reply ([`Node::request`](crate::Node::request)).
    Stream(crate::StreamClosed),
    /// No connected peer shared the topic when the wait timed out
    /// ([`Node::wait_paired`](crate::Node::wait_paired)).
    NotPaired(estafeta_core::Topic),
}

impl Error {
    /// True if the error is a full queue (only `try_*` methods return it).
    pub fn is_full(&self) -> bool {
        matches!(self, Error::Publish(e) if e.is_full())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Config(e) => write!(f, "{e}"),
            Error::Publish(e) => write!(f, "publish refused: {e}"),
            Error::Command(e) => write!(f, "{e}"),
            Error::ConnectFailed(a) => write!(f, "could not connect to {a}: attempts used up"),
            Error::Format(e) => write!(f, "payload format error: {e}"),
            Error::Transfer(e) => write!(f, "transfer refused: {e}"),
            Error::Closed => write!(f, "node is closed"),
            Error::Stream(c) => write!(f, "no reply: {c}"),
            Error::NotPaired(t) => write!(f, "no connected peer shares topic {t} (timed out)"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Publish(e) => Some(e),
            Error::Command(e) => Some(e),
            Error::Transfer(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<PublishError> for Error {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Closed => Error::Closed,
            e => Error::Publish(e),
        }
    }
}

impl From<CommandError> for Error {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Closed => Error::Closed,
            e => Error::Command(e),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
