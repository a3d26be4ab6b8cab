//! Typed payloads: serde types in and out, postcard by default, any format pluggable.

use crate::Error;
use bytes::Bytes;
use estafeta_core::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A serialization format for typed payloads.
///
/// Implement it to use JSON, CBOR or anything else:
///
/// ```
/// use estafeta_driver::{Error, Format};
/// struct Utf8;
/// impl Format for Utf8 {
///     fn encode<T: serde::Serialize + ?Sized>(_v: &T) -> Result<Vec<u8>, Error> {
///         Err(Error::Format("Utf8 only decodes in this example".into()))
///     }
///     fn decode<T: serde::de::DeserializeOwned>(_b: &[u8]) -> Result<T, Error> {
///         Err(Error::Format("not implemented in this example".into()))
///     }
/// }
/// ```
pub trait Format {
    /// Encodes a value.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error>;
    /// Decodes a value.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error>;
}

/// The default format: postcard (compact, no schema on the wire).
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Format for Postcard {
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(value).map_err(|e| Error::Format(e.to_string()))
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        postcard::from_bytes(bytes).map_err(|e| Error::Format(e.to_string()))
    }
}

/// Encodes `value` with format `F` into a payload.
pub fn encode<F: Format, T: Serialize + ?Sized>(value: &T) -> Result<Bytes, Error> {
    F::encode(value).map(Bytes::from)
}

/// Decoding helpers on received messages.
///
/// ```
/// use estafeta_driver::{MessageExt, Postcard, encode};
/// use estafeta_core::{Message, PeerInfo, NodeId, Topic};
/// let m = Message {
///     topic: Topic::from("t"),
///     from: PeerInfo { id: NodeId::from_u128(1), name: "a".into() },
///     payload: encode::<Postcard, _>(&(7u32, "seven")).unwrap(),
///     relayed: None,
/// };
/// let (n, s): (u32, String) = m.decode().unwrap();
/// assert_eq!((n, s.as_str()), (7, "seven"));
/// ```
pub trait MessageExt {
    /// Decodes the payload with postcard.
    fn decode<T: DeserializeOwned>(&self) -> Result<T, Error>;
    /// Decodes the payload with format `F`.
    fn decode_with<F: Format, T: DeserializeOwned>(&self) -> Result<T, Error>;
}

impl MessageExt for Message {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Postcard::decode(&self.payload)
    }
    fn decode_with<F: Format, T: DeserializeOwned>(&self) -> Result<T, Error> {
        F::decode(&self.payload)
    }
}
