//! `continue` tokens for paginated lists, shaped like kube-apiserver's: base64 of
//! `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<next key>"}`, so a client can page through a
//! list at the revision of its first page.

use base64::{Engine as _, engine::general_purpose::URL_SAFE};
use serde::{Deserialize, Serialize};

use super::StorageError;

const TOKEN_VERSION: &str = "meta.k8s.io/v1";

/// Where the next page starts and at which revision the list is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    /// The revision of the first page.
    pub revision: i64,
    /// The first key of the next page.
    pub start: String,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: String,
    rv: i64,
    start: String,
}

impl ContinueToken {
    /// Encodes the token for the `continue` field of a list.
    pub fn encode(&self) -> String {
        let wire = Wire {
            v: TOKEN_VERSION.to_owned(),
            rv: self.revision,
            start: self.start.clone(),
        };
        URL_SAFE.encode(serde_json::to_vec(&wire).unwrap_or_default())
    }

    /// Decodes a token a client sent back.
    pub fn decode(token: &str) -> Result<Self, StorageError> {
        let bytes = URL_SAFE
            .decode(token)
            .map_err(|err| StorageError::InvalidContinue(format!("not base64: {err}")))?;
        let wire: Wire = serde_json::from_slice(&bytes)
            .map_err(|err| StorageError::InvalidContinue(format!("not a continue token: {err}")))?;
        if wire.v != TOKEN_VERSION {
            return Err(StorageError::InvalidContinue(format!(
                "unknown token version {:?}",
                wire.v
            )));
        }
        if wire.rv <= 0 {
            return Err(StorageError::InvalidContinue(format!(
                "resourceVersion {} is not positive",
                wire.rv
            )));
        }
        Ok(Self {
            revision: wire.rv,
            start: wire.start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let token = ContinueToken {
            revision: 17,
            start: "/registry/pods/default/b\u{0}".into(),
        };
        assert_eq!(ContinueToken::decode(&token.encode()).unwrap(), token);
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        for bad in [
            "!!!",
            "e30=",
            &URL_SAFE.encode(br#"{"v":"x","rv":1,"start":""}"#),
        ] {
            let err = ContinueToken::decode(bad).unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidContinue(_)),
                "{bad}: {err}"
            );
        }
    }
}
