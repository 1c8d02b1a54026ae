//! The fleet's wire format: every argument and answer of an agent message is one typed value
//! in a versioned JSON envelope.
//!
//! ractor_cluster sends each field of a message as bytes from [`BytesConvertable`], whose
//! `from_bytes` cannot fail (ractor catches a panic there and drops the message, which leaves
//! the caller waiting for its timeout with nothing said). So a field here is a [`Wire<T>`]: it
//! decodes to either the value or a [`WireError`] naming what did not decode, and the agent or
//! coordinator logs that error and answers with it, instead of panicking or going silent.
//!
//! The envelope is `{"version": 1, "body": ...}`. The version is read first and on its own, so
//! two nodes that speak different versions fail with "version 2 from the peer, this node
//! speaks 1", not with a field-by-field decoding error. A node that cannot decode a request
//! answers `{"version": 1, "refused": "..."}`, which the coordinator decodes as
//! [`WireError::Refused`] whatever its own version (`version` and `refused` are the two fields
//! every version keeps). JSON, because configs travel as documents (`serde_json::Value`).
//! Bump [`VERSION`] whenever a message's shape changes in a way an older node cannot read.

use ractor::BytesConvertable;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version of the fleet's messages this node speaks.
pub(super) const VERSION: u32 = 1;

/// Why a fleet message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum WireError {
    /// The bytes are not a fleet envelope at all (a node too old to have one, or not a
    /// swapvisor node).
    #[error("not a fleet message envelope: {0}")]
    NoEnvelope(String),
    /// The peer speaks another version of the fleet's messages.
    #[error("fleet message version {theirs} from the peer, this node speaks version {ours}")]
    Version {
        /// The version the peer sent.
        theirs: u32,
        /// The version this node speaks.
        ours: u32,
    },
    /// The envelope is right, its body is not the value expected.
    #[error("cannot decode the fleet message's {what}: {error}")]
    Body {
        /// The type expected.
        what: &'static str,
        /// What the decoder said.
        error: String,
    },
    /// The peer could not read what this node sent it, and said why.
    #[error("the peer refused the message: {0}")]
    Refused(String),
}

/// One typed value on the fleet's wire, or why it did not decode.
#[derive(Debug)]
pub(super) struct Wire<T>(Result<T, WireError>);

impl<T> Wire<T> {
    /// A value to send.
    pub(super) fn new(value: T) -> Self {
        Self(Ok(value))
    }

    /// An answer saying that the request could not be read.
    pub(super) fn refused(error: &WireError) -> Self {
        Self(Err(WireError::Refused(error.to_string())))
    }

    /// The value received, or why it could not be read.
    pub(super) fn open(self) -> Result<T, WireError> {
        self.0
    }
}

/// The envelope's header, read before the body.
#[derive(Deserialize)]
struct Header {
    version: u32,
    #[serde(default)]
    refused: Option<String>,
}

#[derive(Serialize)]
struct Sent<'a, T> {
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
}

#[derive(Deserialize)]
struct Received<T> {
    body: T,
}

impl<T: Serialize + DeserializeOwned> BytesConvertable for Wire<T> {
    fn into_bytes(self) -> Vec<u8> {
        let sent = match &self.0 {
            Ok(value) => Sent {
                version: VERSION,
                body: Some(value),
                refused: None,
            },
            Err(error) => Sent {
                version: VERSION,
                body: None,
                refused: Some(match error {
                    WireError::Refused(reason) => reason.clone(),
                    other => other.to_string(),
                }),
            },
        };
        // Plain data with string keys serializes; were it not to, the empty bytes decode
        // on the other side as `NoEnvelope`, an error named in that node's log.
        serde_json::to_vec(&sent).unwrap_or_default()
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(decode(&bytes))
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let header: Header =
        serde_json::from_slice(bytes).map_err(|e| WireError::NoEnvelope(e.to_string()))?;
    // A refusal is read whatever its version: it is most often the answer to a version
    // mismatch, and says so.
    if let Some(refused) = header.refused {
        return Err(WireError::Refused(refused));
    }
    if header.version != VERSION {
        return Err(WireError::Version {
            theirs: header.version,
            ours: VERSION,
        });
    }
    let received: Received<T> = serde_json::from_slice(bytes).map_err(|e| WireError::Body {
        what: std::any::type_name::<T>(),
        error: e.to_string(),
    })?;
    Ok(received.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        ticket: u64,
        config: serde_json::Value,
    }

    fn sample() -> Sample {
        Sample {
            ticket: 7,
            config: serde_json::json!({"modules": [{"name": "web"}]}),
        }
    }

    #[test]
    fn a_value_round_trips_in_its_envelope() {
        let bytes = Wire::new(sample()).into_bytes();
        assert!(bytes.starts_with(br#"{"version":1,"body":"#));
        assert_eq!(Wire::<Sample>::from_bytes(bytes).open(), Ok(sample()));
    }

    #[test]
    fn another_version_fails_by_its_number_before_the_body_is_read() {
        let bytes = br#"{"version":2,"body":{"renamed":true}}"#.to_vec();
        assert_eq!(
            Wire::<Sample>::from_bytes(bytes).open(),
            Err(WireError::Version { theirs: 2, ours: 1 })
        );
    }

    #[test]
    fn garbage_a_bare_string_and_a_wrong_body_fail_without_a_panic() {
        let garbage = Wire::<Sample>::from_bytes(vec![0xff, 0x00, 0x13]).open();
        assert!(
            matches!(garbage, Err(WireError::NoEnvelope(_))),
            "{garbage:?}"
        );
        // What a node from before the envelope sent: a positional string.
        let bare = Wire::<Sample>::from_bytes(b"modules: []".to_vec()).open();
        assert!(matches!(bare, Err(WireError::NoEnvelope(_))), "{bare:?}");
        let wrong = Wire::<Sample>::from_bytes(br#"{"version":1,"body":{"ticket":"x"}}"#.to_vec());
        let error = wrong.open().unwrap_err();
        assert!(error.to_string().contains("Sample"), "{error}");
    }

    #[test]
    fn a_refusal_travels_back_as_the_peers_reason() {
        let why = WireError::Version { theirs: 2, ours: 1 };
        let bytes = Wire::<Sample>::refused(&why).into_bytes();
        assert_eq!(
            Wire::<Sample>::from_bytes(bytes).open(),
            Err(WireError::Refused(why.to_string()))
        );
        // From a node of another version too: its refusal is what it says.
        let newer = br#"{"version":2,"refused":"no"}"#.to_vec();
        assert_eq!(
            Wire::<Sample>::from_bytes(newer).open(),
            Err(WireError::Refused("no".into()))
        );
    }
}
