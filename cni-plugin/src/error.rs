//! The CNI error result and every error code flotilla-cni returns, in one place.
//!
//! A failed command prints `{"cniVersion", "code", "msg", "details"}` on stdout and exits non-zero
//! (CNI spec 1.1.0, section 5 "Error"). `msg` says what was wrong, `details` what to do about it
//! (and the underlying cause). Codes below 100 are the spec's well-known ones; 100 and up are
//! Flotilla's own.
//!
//! | code | constant | meaning / when flotilla-cni returns it |
//! |-----:|----------|-----------------------------------------|
//! |   1 | [`code::INCOMPATIBLE_VERSION`] | the config's `cniVersion` is not one of 0.1.0 to 1.1.0 (those the reference plugins accept), or the command needs a newer one (CHECK needs 0.4.0, STATUS and GC 1.1.0) |
//! |   2 | [`code::UNSUPPORTED_FIELD`] | the config asks for something flotilla-cni cannot honour (an `ipam` section: addresses come from the agent) |
//! |   3 | [`code::UNKNOWN_CONTAINER`] | `CNI_NETNS` does not exist or is not a network namespace (ADD, CHECK) |
//! |   4 | [`code::INVALID_ENV`] | a `CNI_*` environment variable is missing or malformed (the message names it), or `CNI_NETNS` is the plugin's own (the node's) namespace |
//! |   5 | [`code::IO_FAILURE`] | stdin could not be read, a namespace file could not be opened, the runtime could not start |
//! |   6 | [`code::DECODING_FAILURE`] | stdin is not JSON (the message says where), or `prevResult` cannot be decoded |
//! |   7 | [`code::INVALID_CONFIG`] | the config is invalid: no `name`, no `agentSocket`, a bad `mtu`, CHECK without `prevResult`, ... |
//! |  11 | [`code::TRY_AGAIN_LATER`] | the agent's socket is unreachable or the agent answered UNAVAILABLE: retry |
//! |  50 | [`code::PLUGIN_NOT_AVAILABLE`] | STATUS: the agent is unreachable or not ready to serve ADD |
//! | 100 | [`code::AGENT_ERROR`] | the agent rejected a request (any other gRPC error, or a malformed answer) |
//! | 101 | [`code::INTERFACE_EXISTS`] | ADD: `CNI_IFNAME` already exists in the container; nothing was changed |
//! | 102 | [`code::POOL_EXHAUSTED`] | ADD: the node's podCIDR has no free address (agent RESOURCE_EXHAUSTED) |
//! | 103 | [`code::NETLINK_FAILED`] | a netlink operation (link, address, route, neighbour) failed; ADD undid what it had done |
//! | 104 | [`code::CHECK_MISMATCH`] | CHECK: the interface, address, routes or the agent's record differ from `prevResult` |

use serde_json::{Value, json};

/// The numeric codes of CNI error results (see the module documentation for when each is used).
pub mod code {
    /// Incompatible CNI version (spec).
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration (spec).
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist (spec).
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables (spec).
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure (spec).
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content (spec).
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network configuration (spec).
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later (spec).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// The plugin is not available, i.e. cannot serve ADD (spec, STATUS).
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// Flotilla: the agent rejected the request.
    pub const AGENT_ERROR: u32 = 100;
    /// Flotilla: the interface already exists in the container.
    pub const INTERFACE_EXISTS: u32 = 101;
    /// Flotilla: the node's address pool is exhausted.
    pub const POOL_EXHAUSTED: u32 = 102;
    /// Flotilla: a netlink operation failed.
    pub const NETLINK_FAILED: u32 = 103;
    /// Flotilla: CHECK found the attachment differs from `prevResult`.
    pub const CHECK_MISMATCH: u32 = 104;
}

/// A CNI error result: what the runtime sees when a command fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg} ({details})")]
pub struct CniError {
    /// One of the [`code`] constants.
    pub code: u32,
    /// What was wrong, in one line.
    pub msg: String,
    /// What to do about it, and the underlying cause.
    pub details: String,
}

impl CniError {
    /// An error with `code`, a short `msg` and longer `details`.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Appends `more` to the details (e.g. that the cleanup after a failed ADD failed too).
    #[must_use]
    pub fn with_more_details(mut self, more: &str) -> Self {
        if self.details.is_empty() {
            self.details = more.to_owned();
        } else {
            self.details = format!("{}; {more}", self.details);
        }
        self
    }

    /// The error result as printed on stdout, in CNI version `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let err = CniError::new(code::INVALID_CONFIG, "no name", "add one");
        assert_eq!(
            err.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 7, "msg": "no name", "details": "add one"})
        );
    }

    #[test]
    fn more_details_are_appended() {
        let err = CniError::new(1, "m", "").with_more_details("a");
        assert_eq!(err.details, "a");
        assert_eq!(err.with_more_details("b").details, "a; b");
    }
}
