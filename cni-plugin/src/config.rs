//! The plugin configuration on stdin: decoding, the keys flotilla-cni reads, and their checks.
//!
//! Keys: `cniVersion`, `name`, `type`, `agentSocket` (required for every command but VERSION),
//! optional `mtu`, and the runtime's `prevResult`, `runtimeConfig`, `args` and
//! `cni.dev/valid-attachments`. Other keys are ignored, so the agent can add fields for other
//! plugins of a chain without breaking this one.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::{
    env::Command,
    error::{CniError, code},
    result::CniResult,
    version::CniVersion,
};

/// The smallest MTU Linux accepts for IPv4.
const MIN_MTU: u64 = 68;
/// The largest MTU a veth accepts.
const MAX_MTU: u64 = 65_535;

/// One attachment as the runtime names it in GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentId {
    /// `containerID`.
    pub container_id: String,
    /// `ifname`.
    pub ifname: String,
}

/// A decoded plugin configuration. Keys only some commands need are checked when asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`: results and errors are written in this version.
    pub cni_version: CniVersion,
    /// `name`: the network's name.
    pub name: String,
    agent_socket: Option<Value>,
    mtu: Option<u32>,
    prev_result: Option<Value>,
    valid_attachments: Option<Value>,
}

/// The configuration is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// stdin is not JSON.
    #[error("the network configuration on stdin is not valid JSON: {0}")]
    Decode(#[source] serde_json::Error),
    /// stdin is JSON but not an object.
    #[error("the network configuration on stdin is a JSON {0}, not an object")]
    NotAnObject(&'static str),
    /// A key has the wrong JSON type.
    #[error("{key} in the network configuration is a {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// `name` is missing or empty.
    #[error("the network configuration has no name")]
    MissingName,
    /// `name` has characters the spec forbids.
    #[error("invalid characters in network name {0:?}")]
    InvalidName(String),
    /// `cniVersion` is missing.
    #[error("the network configuration has no cniVersion")]
    MissingVersion,
    /// `cniVersion` is not one this plugin speaks.
    #[error("incompatible CNI version: the network configuration is {0:?}")]
    UnsupportedVersion(String),
    /// The command needs a newer `cniVersion`.
    #[error(
        "CNI_COMMAND={command} needs cniVersion {since} or newer, the network configuration is {version}"
    )]
    CommandNeedsNewerVersion {
        /// The command.
        command: &'static str,
        /// The oldest version with the command.
        since: &'static str,
        /// The configuration's version.
        version: &'static str,
    },
    /// A key flotilla-cni cannot honour.
    #[error("unsupported field {key}: {value}")]
    Unsupported {
        /// The key.
        key: &'static str,
        /// Its value, as JSON.
        value: String,
    },
    /// `agentSocket` is missing.
    #[error("the network configuration has no agentSocket")]
    MissingAgentSocket,
    /// `agentSocket` is not an absolute path.
    #[error("agentSocket {0:?} is not an absolute path")]
    RelativeAgentSocket(String),
    /// `mtu` is out of range.
    #[error("mtu {0} is out of range")]
    InvalidMtu(String),
    /// CHECK without `prevResult`.
    #[error("CHECK needs prevResult in the network configuration")]
    MissingPrevResult,
    /// `prevResult` does not decode as a CNI result.
    #[error("prevResult cannot be decoded: {0}")]
    InvalidPrevResult(#[source] serde_json::Error),
    /// GC without `cni.dev/valid-attachments`.
    #[error("GC needs cni.dev/valid-attachments in the network configuration")]
    MissingValidAttachments,
    /// `cni.dev/valid-attachments` is malformed.
    #[error("cni.dev/valid-attachments is invalid: {0}")]
    InvalidValidAttachments(String),
}

impl From<ConfigError> for CniError {
    fn from(err: ConfigError) -> Self {
        let (code, details) = match &err {
            ConfigError::Decode(source) => (
                code::DECODING_FAILURE,
                format!(
                    "the error is at line {} column {}; pass the plugin's network configuration (one JSON object) on stdin",
                    source.line(),
                    source.column()
                ),
            ),
            ConfigError::NotAnObject(_) => (
                code::DECODING_FAILURE,
                "pass the plugin's network configuration (one JSON object) on stdin".to_owned(),
            ),
            ConfigError::InvalidPrevResult(_) => (
                code::DECODING_FAILURE,
                "prevResult must be the CNI result of the previous plugin in the configuration's cniVersion".to_owned(),
            ),
            ConfigError::MissingVersion | ConfigError::UnsupportedVersion(_) => (
                code::INCOMPATIBLE_VERSION,
                format!(
                    "flotilla-cni supports cniVersion {}; set one of them in the network configuration",
                    CniVersion::supported_list()
                ),
            ),
            ConfigError::CommandNeedsNewerVersion { command, since, .. } => (
                code::INCOMPATIBLE_VERSION,
                format!("set cniVersion {since} or newer in the network configuration to use {command}"),
            ),
            ConfigError::Unsupported { key, .. } => (
                code::UNSUPPORTED_FIELD,
                format!("remove {key}: flotilla-cni gets pod addresses from the flotilla agent"),
            ),
            ConfigError::WrongType { .. }
            | ConfigError::MissingName
            | ConfigError::InvalidName(_) => (
                code::INVALID_CONFIG,
                "name must start with a letter or digit followed by letters, digits, '_', '.' or '-'; cniVersion, type and agentSocket are strings, mtu a number".to_owned(),
            ),
            ConfigError::MissingAgentSocket | ConfigError::RelativeAgentSocket(_) => (
                code::INVALID_CONFIG,
                "set agentSocket to the absolute path of the flotilla agent's CNI socket, e.g. \"agentSocket\": \"/run/flotilla/cni.sock\"".to_owned(),
            ),
            ConfigError::InvalidMtu(_) => (
                code::INVALID_CONFIG,
                format!("set mtu between {MIN_MTU} and {MAX_MTU}, or leave it out to use the agent's"),
            ),
            ConfigError::MissingPrevResult => (
                code::INVALID_CONFIG,
                "the runtime must pass the result of the ADD as prevResult".to_owned(),
            ),
            ConfigError::MissingValidAttachments | ConfigError::InvalidValidAttachments(_) => (
                code::INVALID_CONFIG,
                "cni.dev/valid-attachments must be a list of {\"containerID\": ..., \"ifname\": ...}".to_owned(),
            ),
        };
        CniError::new(code, err.to_string(), details)
    }
}

/// The JSON type name of `value`, for error messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The string at `key`, if present.
fn string<'a>(
    object: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, ConfigError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(ConfigError::WrongType {
            key,
            expected: "string",
            found: type_name(other),
        }),
    }
}

/// Whether `name` follows the spec's network name rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl NetConf {
    /// Decodes and checks the configuration the way skel does: JSON (6), then `name` (7), then
    /// `cniVersion` (1); then the keys every command shares.
    pub fn parse(stdin: &[u8]) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_slice(stdin).map_err(ConfigError::Decode)?;
        let Value::Object(mut object) = value else {
            return Err(ConfigError::NotAnObject(type_name(&value)));
        };
        let name = string(&object, "name")?.unwrap_or_default().to_owned();
        if name.is_empty() {
            return Err(ConfigError::MissingName);
        }
        if !valid_name(&name) {
            return Err(ConfigError::InvalidName(name));
        }
        let cni_version = match string(&object, "cniVersion")? {
            None | Some("") => return Err(ConfigError::MissingVersion),
            Some(text) => CniVersion::parse(text)
                .ok_or_else(|| ConfigError::UnsupportedVersion(text.to_owned()))?,
        };
        string(&object, "type")?;
        if let Some(ipam) = object.get("ipam") {
            return Err(ConfigError::Unsupported {
                key: "ipam",
                value: ipam.to_string(),
            });
        }
        let mtu = match object.get("mtu") {
            None | Some(Value::Null) => None,
            Some(Value::Number(number)) => {
                let mtu = number
                    .as_u64()
                    .filter(|mtu| (MIN_MTU..=MAX_MTU).contains(mtu))
                    .and_then(|mtu| u32::try_from(mtu).ok())
                    .ok_or_else(|| ConfigError::InvalidMtu(number.to_string()))?;
                Some(mtu)
            }
            Some(other) => {
                return Err(ConfigError::WrongType {
                    key: "mtu",
                    expected: "number",
                    found: type_name(other),
                });
            }
        };
        // libcni writes the GC list under both names (containernetworking/cni#1101).
        let valid_attachments = object
            .remove("cni.dev/valid-attachments")
            .or_else(|| object.remove("cni.dev/attachments"));
        Ok(Self {
            cni_version,
            name,
            agent_socket: object.remove("agentSocket"),
            mtu,
            prev_result: object.remove("prevResult").filter(|value| !value.is_null()),
            valid_attachments,
        })
    }

    /// Fails unless the configuration's version has `command` (CHECK came in 0.4.0, STATUS
    /// and GC in 1.1.0), as skel refuses them.
    pub fn require_version_for(&self, command: Command) -> Result<(), ConfigError> {
        if self.cni_version < command.since() {
            return Err(ConfigError::CommandNeedsNewerVersion {
                command: command.as_str(),
                since: command.since().as_str(),
                version: self.cni_version.as_str(),
            });
        }
        Ok(())
    }

    /// `agentSocket`: the agent's unix socket.
    pub fn agent_socket(&self) -> Result<PathBuf, ConfigError> {
        let path = match &self.agent_socket {
            None | Some(Value::Null) => return Err(ConfigError::MissingAgentSocket),
            Some(Value::String(path)) if path.is_empty() => {
                return Err(ConfigError::MissingAgentSocket);
            }
            Some(Value::String(path)) => PathBuf::from(path),
            Some(other) => {
                return Err(ConfigError::WrongType {
                    key: "agentSocket",
                    expected: "string",
                    found: type_name(other),
                });
            }
        };
        if !path.is_absolute() {
            return Err(ConfigError::RelativeAgentSocket(path.display().to_string()));
        }
        Ok(path)
    }

    /// `mtu`, which overrides the agent's.
    pub fn mtu(&self) -> Option<u32> {
        self.mtu
    }

    /// `prevResult`, decoded, if the runtime passed one.
    pub fn prev_result(&self) -> Result<Option<CniResult>, ConfigError> {
        self.prev_result
            .as_ref()
            .map(|value| {
                CniResult::from_json(value.clone()).map_err(ConfigError::InvalidPrevResult)
            })
            .transpose()
    }

    /// `cni.dev/valid-attachments` (GC).
    pub fn valid_attachments(&self) -> Result<Vec<AttachmentId>, ConfigError> {
        let Some(value) = &self.valid_attachments else {
            return Err(ConfigError::MissingValidAttachments);
        };
        let Value::Array(entries) = value else {
            return Err(ConfigError::InvalidValidAttachments(format!(
                "it is a {}, not a list",
                type_name(value)
            )));
        };
        entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let field = |key: &str| {
                    entry
                        .get(key)
                        .and_then(Value::as_str)
                        .filter(|text| !text.is_empty())
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            ConfigError::InvalidValidAttachments(format!(
                                "entry {index} has no string {key}"
                            ))
                        })
                };
                Ok(AttachmentId {
                    container_id: field("containerID")?,
                    ifname: field("ifname")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: &Value) -> Result<NetConf, ConfigError> {
        NetConf::parse(value.to_string().as_bytes())
    }

    fn base() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "flotilla",
            "type": "flotilla-cni",
            "agentSocket": "/run/flotilla/cni.sock",
        })
    }

    fn code_of(err: ConfigError) -> u32 {
        CniError::from(err).code
    }

    #[test]
    fn parses_the_agents_conflist_entry() {
        let mut value = base();
        value["mtu"] = json!(1400);
        value["runtimeConfig"] = json!({"portMappings": []});
        value["args"] = json!({"cni": {"x": 1}});
        value["somethingNew"] = json!(true);
        let conf = parse(&value).unwrap();
        assert_eq!(conf.cni_version, CniVersion::V1_0_0);
        assert_eq!(conf.name, "flotilla");
        assert_eq!(conf.mtu(), Some(1400));
        assert_eq!(
            conf.agent_socket().unwrap(),
            PathBuf::from("/run/flotilla/cni.sock")
        );
        assert_eq!(conf.prev_result().unwrap(), None);
    }

    #[test]
    fn invalid_json_is_6_and_says_where() {
        let err = NetConf::parse(b"{\"name\": \"x\",\n oops}").unwrap_err();
        let cni = CniError::from(err);
        assert_eq!(cni.code, code::DECODING_FAILURE);
        assert!(cni.details.contains("line 2 column"), "{cni}");
        assert_eq!(code_of(NetConf::parse(b"").unwrap_err()), 6);
        assert_eq!(code_of(NetConf::parse(b"[1]").unwrap_err()), 6);
    }

    #[test]
    fn name_is_checked_before_the_version() {
        let mut value = base();
        value["name"] = json!("");
        value["cniVersion"] = json!("9.9.9");
        assert_eq!(code_of(parse(&value).unwrap_err()), code::INVALID_CONFIG);
        value["name"] = json!("bad name");
        assert_eq!(code_of(parse(&value).unwrap_err()), code::INVALID_CONFIG);
        value["name"] = json!(5);
        assert_eq!(code_of(parse(&value).unwrap_err()), code::INVALID_CONFIG);
    }

    #[test]
    fn unknown_or_missing_versions_are_1_and_list_the_supported_ones() {
        for version in [json!("0.5.0"), json!("2.0.0"), json!(""), Value::Null] {
            let mut value = base();
            value["cniVersion"] = version.clone();
            let cni = CniError::from(parse(&value).unwrap_err());
            assert_eq!(cni.code, code::INCOMPATIBLE_VERSION, "{version}");
            assert!(cni.details.contains("0.3.1, 0.4.0, 1.0.0, 1.1.0"), "{cni}");
        }
    }

    #[test]
    fn status_and_gc_need_1_1_0() {
        let conf = parse(&base()).unwrap();
        let err = conf.require_version_for(Command::Status).unwrap_err();
        assert_eq!(code_of(err), code::INCOMPATIBLE_VERSION);
        let mut value = base();
        value["cniVersion"] = json!("1.1.0");
        assert!(
            parse(&value)
                .unwrap()
                .require_version_for(Command::Gc)
                .is_ok()
        );
    }

    #[test]
    fn check_needs_0_4_0() {
        let mut value = base();
        value["cniVersion"] = json!("0.3.1");
        let conf = parse(&value).unwrap();
        let err = CniError::from(conf.require_version_for(Command::Check).unwrap_err());
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
        assert_eq!(
            err.msg,
            "CNI_COMMAND=CHECK needs cniVersion 0.4.0 or newer, the network configuration is 0.3.1"
        );
        assert!(conf.require_version_for(Command::Del).is_ok());
        value["cniVersion"] = json!("0.4.0");
        assert!(
            parse(&value)
                .unwrap()
                .require_version_for(Command::Check)
                .is_ok()
        );
    }

    #[test]
    fn agent_socket_is_required_and_absolute() {
        let mut value = base();
        value.as_object_mut().unwrap().remove("agentSocket");
        let cni = CniError::from(parse(&value).unwrap().agent_socket().unwrap_err());
        assert_eq!(cni.code, code::INVALID_CONFIG);
        assert!(cni.msg.contains("agentSocket"), "{cni}");
        value["agentSocket"] = json!("cni.sock");
        assert_eq!(
            code_of(parse(&value).unwrap().agent_socket().unwrap_err()),
            code::INVALID_CONFIG
        );
        value["agentSocket"] = json!(["x"]);
        assert_eq!(
            code_of(parse(&value).unwrap().agent_socket().unwrap_err()),
            code::INVALID_CONFIG
        );
    }

    #[test]
    fn mtu_must_be_in_range() {
        for bad in [
            json!(0),
            json!(67),
            json!(65_536),
            json!(-1),
            json!(1500.5),
            json!("1500"),
        ] {
            let mut value = base();
            value["mtu"] = bad.clone();
            assert_eq!(
                code_of(parse(&value).unwrap_err()),
                code::INVALID_CONFIG,
                "{bad}"
            );
        }
    }

    #[test]
    fn an_ipam_section_is_an_unsupported_field() {
        let mut value = base();
        value["ipam"] = json!({"type": "host-local"});
        let cni = CniError::from(parse(&value).unwrap_err());
        assert_eq!(cni.code, code::UNSUPPORTED_FIELD);
        assert!(
            cni.msg.contains("ipam") && cni.msg.contains("host-local"),
            "{cni}"
        );
    }

    #[test]
    fn valid_attachments_are_read_under_either_name() {
        let mut value = base();
        value["cni.dev/attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
        assert_eq!(
            parse(&value).unwrap().valid_attachments().unwrap(),
            vec![AttachmentId {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }]
        );
        value["cni.dev/valid-attachments"] = json!([]);
        assert_eq!(parse(&value).unwrap().valid_attachments().unwrap(), vec![]);
    }

    #[test]
    fn missing_or_malformed_valid_attachments_are_7() {
        assert_eq!(
            code_of(parse(&base()).unwrap().valid_attachments().unwrap_err()),
            code::INVALID_CONFIG
        );
        for bad in [json!({}), json!([{"containerID": "c"}]), json!([1])] {
            let mut value = base();
            value["cni.dev/valid-attachments"] = bad.clone();
            assert_eq!(
                code_of(parse(&value).unwrap().valid_attachments().unwrap_err()),
                code::INVALID_CONFIG,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_malformed_prev_result_is_6() {
        let mut value = base();
        value["prevResult"] = json!({"interfaces": "no"});
        assert_eq!(
            code_of(parse(&value).unwrap().prev_result().unwrap_err()),
            code::DECODING_FAILURE
        );
    }
}
