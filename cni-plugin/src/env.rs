//! The `CNI_*` environment variables of one invocation, parsed and validated like libcni's skel:
//! which are required depends on the command, and an empty variable counts as missing.

use std::{ffi::OsString, path::PathBuf};

use crate::error::{CniError, code};

/// A CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach the container to the network.
    Add,
    /// Detach it (idempotent).
    Del,
    /// Verify the attachment against `prevResult`.
    Check,
    /// Whether the plugin can serve ADD (spec 1.1.0).
    Status,
    /// Release everything but the listed attachments (spec 1.1.0).
    Gc,
    /// Which spec versions the plugin supports.
    Version,
}

impl Command {
    /// The command named `name` (case-sensitive, as in the spec).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    /// The oldest spec version with the command (CHECK came in 0.4.0, STATUS and GC in 1.1.0).
    pub fn since(self) -> crate::version::CniVersion {
        use crate::version::CniVersion;
        match self {
            Self::Add | Self::Del | Self::Version => CniVersion::V0_1_0,
            Self::Check => CniVersion::V0_4_0,
            Self::Status | Self::Gc => CniVersion::V1_1_0,
        }
    }

    /// The command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }

    /// Whether the command concerns one attachment (needs CNI_CONTAINERID and CNI_IFNAME).
    fn is_attachment(self) -> bool {
        matches!(self, Self::Add | Self::Del | Self::Check)
    }

    /// Whether the command needs CNI_NETNS (DEL does not: the namespace may be gone).
    fn needs_netns(self) -> bool {
        matches!(self, Self::Add | Self::Check)
    }
}

/// The Kubernetes pod the attachment belongs to, from `CNI_ARGS`; empty strings when not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodArgs {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_UID`.
    pub uid: String,
}

/// One invocation's parameters. Fields a command does not use may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (validated for ADD, DEL and CHECK).
    pub container_id: String,
    /// `CNI_NETNS`, the container's network namespace file.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`, the interface name inside the container (validated for ADD, DEL and CHECK).
    pub ifname: String,
    /// The pod named in `CNI_ARGS`.
    pub pod: PodArgs,
}

/// An environment variable is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `CNI_COMMAND` is not set.
    #[error("CNI_COMMAND is not set")]
    MissingCommand,
    /// `CNI_COMMAND` names no CNI command.
    #[error("unknown CNI_COMMAND {0:?}")]
    UnknownCommand(String),
    /// Variables the command requires are not set.
    #[error("required environment variables [{}] missing for CNI_COMMAND={}", .vars.join(","), .command.as_str())]
    Missing {
        /// The command.
        command: Command,
        /// The missing variables.
        vars: Vec<&'static str>,
    },
    /// A variable is not valid UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// `CNI_CONTAINERID` has characters the spec forbids.
    #[error("invalid characters in CNI_CONTAINERID {0:?}")]
    InvalidContainerId(String),
    /// `CNI_IFNAME` is not a valid Linux interface name.
    #[error("invalid CNI_IFNAME {ifname:?}: {reason}")]
    InvalidIfname {
        /// The name given.
        ifname: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `CNI_ARGS` has an entry that is not `KEY=VALUE`.
    #[error("invalid CNI_ARGS entry {0:?}: entries must be KEY=VALUE separated by ';'")]
    InvalidArgs(String),
}

impl From<EnvError> for CniError {
    fn from(err: EnvError) -> Self {
        let details = match &err {
            EnvError::MissingCommand | EnvError::UnknownCommand(_) => {
                "set CNI_COMMAND to one of ADD, DEL, CHECK, STATUS, GC, VERSION".to_owned()
            }
            EnvError::Missing { vars, .. } => format!(
                "set {}: flotilla-cni is meant to be executed by a container runtime (containerd) per the CNI spec",
                vars.iter()
                    .map(|var| format!("{var} ({})", describe(var)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            EnvError::NotUtf8(var) => format!("set {var} to a UTF-8 string"),
            EnvError::InvalidContainerId(_) => {
                "CNI_CONTAINERID must start with a letter or digit followed by letters, digits, '_', '.' or '-'".to_owned()
            }
            EnvError::InvalidIfname { .. } => {
                "CNI_IFNAME must be 1-15 characters, not '.' or '..', without '/', ':' or whitespace".to_owned()
            }
            EnvError::InvalidArgs(_) => {
                "set CNI_ARGS like K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0".to_owned()
            }
        };
        CniError::new(code::INVALID_ENV, err.to_string(), details)
    }
}

/// What an environment variable should hold, for error messages.
fn describe(var: &str) -> &'static str {
    match var {
        "CNI_COMMAND" => "ADD, DEL, CHECK, STATUS, GC or VERSION",
        "CNI_CONTAINERID" => "the container's id",
        "CNI_NETNS" => {
            "the path of the container's network namespace, e.g. /var/run/netns/cni-1234"
        }
        "CNI_IFNAME" => "the interface name inside the container, e.g. eth0",
        _ => "see the CNI spec",
    }
}

/// Reads the invocation from `get` (the process environment in production).
pub fn parse(get: impl Fn(&str) -> Option<OsString>) -> Result<Invocation, EnvError> {
    let text = |var: &'static str| -> Result<Option<String>, EnvError> {
        match get(var) {
            None => Ok(None),
            Some(value) if value.is_empty() => Ok(None),
            Some(value) => value
                .into_string()
                .map(Some)
                .map_err(|_| EnvError::NotUtf8(var)),
        }
    };
    let command = match text("CNI_COMMAND")? {
        None => return Err(EnvError::MissingCommand),
        Some(name) => Command::parse(&name).ok_or(EnvError::UnknownCommand(name))?,
    };
    let container_id = text("CNI_CONTAINERID")?;
    let netns = get("CNI_NETNS")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let ifname = text("CNI_IFNAME")?;

    let mut missing = Vec::new();
    if command.is_attachment() && container_id.is_none() {
        missing.push("CNI_CONTAINERID");
    }
    if command.needs_netns() && netns.is_none() {
        missing.push("CNI_NETNS");
    }
    if command.is_attachment() && ifname.is_none() {
        missing.push("CNI_IFNAME");
    }
    if !missing.is_empty() {
        return Err(EnvError::Missing {
            command,
            vars: missing,
        });
    }
    let container_id = container_id.unwrap_or_default();
    let ifname = ifname.unwrap_or_default();
    let mut pod = PodArgs::default();
    if command.is_attachment() {
        validate_container_id(&container_id)?;
        validate_ifname(&ifname)?;
        pod = parse_args(&text("CNI_ARGS")?.unwrap_or_default())?;
    }
    Ok(Invocation {
        command,
        container_id,
        netns,
        ifname,
        pod,
    })
}

/// The spec's container id rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn validate_container_id(id: &str) -> Result<(), EnvError> {
    let mut chars = id.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(EnvError::InvalidContainerId(id.to_owned()))
    }
}

/// The kernel's (and libcni's) interface name rules.
pub fn validate_ifname(name: &str) -> Result<(), EnvError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 15 {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("it is '.' or '..'")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("it contains '/', ':' or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(EnvError::InvalidIfname {
            ifname: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Parses `CNI_ARGS` (`K=V;K=V`), keeping the pod's identity and ignoring other keys
/// (`IgnoreUnknown`, `K8S_POD_INFRA_CONTAINER_ID`, ...).
fn parse_args(args: &str) -> Result<PodArgs, EnvError> {
    let mut pod = PodArgs::default();
    for entry in args.split(';').filter(|entry| !entry.is_empty()) {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| EnvError::InvalidArgs(entry.to_owned()))?;
        match key {
            "K8S_POD_NAMESPACE" => value.clone_into(&mut pod.namespace),
            "K8S_POD_NAME" => value.clone_into(&mut pod.name),
            "K8S_POD_UID" => value.clone_into(&mut pod.uid),
            _ => {}
        }
    }
    Ok(pod)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |key| map.get(key).cloned()
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/cni-1"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1",
        ),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    fn without(var: &str) -> Vec<(&'static str, &'static str)> {
        ADD.iter().copied().filter(|(k, _)| *k != var).collect()
    }

    fn with(var: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut pairs = without(var);
        pairs.push((var, value));
        pairs
    }

    #[test]
    fn parses_an_add() {
        let inv = parse(env(ADD)).unwrap();
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.container_id, "abc123");
        assert_eq!(inv.netns, Some(PathBuf::from("/var/run/netns/cni-1")));
        assert_eq!(inv.ifname, "eth0");
        assert_eq!(
            inv.pod,
            PodArgs {
                namespace: "default".into(),
                name: "web-0".into(),
                uid: "u-1".into()
            }
        );
    }

    #[test]
    fn command_is_required_and_must_be_known() {
        assert_eq!(
            parse(env(&without("CNI_COMMAND"))),
            Err(EnvError::MissingCommand)
        );
        assert_eq!(
            parse(env(&with("CNI_COMMAND", ""))),
            Err(EnvError::MissingCommand)
        );
        assert_eq!(
            parse(env(&with("CNI_COMMAND", "add"))),
            Err(EnvError::UnknownCommand("add".into()))
        );
        let err = CniError::from(EnvError::UnknownCommand("ATTACH".into()));
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.details.contains("ADD, DEL"), "{err}");
    }

    #[test]
    fn netns_is_required_for_add_and_check_but_not_del() {
        for command in ["ADD", "CHECK"] {
            let mut pairs = without("CNI_NETNS");
            pairs.retain(|(k, _)| *k != "CNI_COMMAND");
            pairs.push(("CNI_COMMAND", command));
            let err = parse(env(&pairs)).unwrap_err();
            assert!(
                matches!(&err, EnvError::Missing { vars, .. } if vars == &["CNI_NETNS"]),
                "{err}"
            );
            let cni = CniError::from(err);
            assert_eq!(cni.code, code::INVALID_ENV);
            assert!(cni.msg.contains("CNI_NETNS"), "{cni}");
            assert!(cni.details.contains("network namespace"), "{cni}");
        }
        let mut pairs = without("CNI_NETNS");
        pairs.retain(|(k, _)| *k != "CNI_COMMAND");
        pairs.push(("CNI_COMMAND", "DEL"));
        assert_eq!(parse(env(&pairs)).unwrap().netns, None);
    }

    #[test]
    fn every_missing_variable_is_named() {
        let err = parse(env(&[("CNI_COMMAND", "ADD")])).unwrap_err();
        assert_eq!(
            err,
            EnvError::Missing {
                command: Command::Add,
                vars: vec!["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]
            }
        );
    }

    #[test]
    fn status_gc_and_version_need_only_the_command() {
        for command in ["STATUS", "GC", "VERSION"] {
            let inv = parse(env(&[("CNI_COMMAND", command)])).unwrap();
            assert_eq!(inv.command.as_str(), command);
        }
    }

    #[test]
    fn container_id_and_ifname_are_validated() {
        assert!(matches!(
            parse(env(&with("CNI_CONTAINERID", "-abc"))),
            Err(EnvError::InvalidContainerId(_))
        ));
        assert!(matches!(
            parse(env(&with("CNI_CONTAINERID", "a b"))),
            Err(EnvError::InvalidContainerId(_))
        ));
        for bad in [".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
            assert!(
                matches!(
                    parse(env(&with("CNI_IFNAME", bad))),
                    Err(EnvError::InvalidIfname { .. })
                ),
                "{bad}"
            );
        }
        assert!(parse(env(&with("CNI_IFNAME", "fifteen-chars-x"))).is_ok());
    }

    #[test]
    fn cni_args_entries_must_be_pairs_and_unknown_keys_are_ignored() {
        assert!(matches!(
            parse(env(&with("CNI_ARGS", "K8S_POD_NAME"))),
            Err(EnvError::InvalidArgs(_))
        ));
        let inv = parse(env(&with("CNI_ARGS", "FOO=bar;;K8S_POD_NAME=x=y"))).unwrap();
        assert_eq!(inv.pod.name, "x=y");
        assert_eq!(inv.pod.namespace, "");
    }

    #[test]
    fn non_utf8_values_are_rejected() {
        use std::os::unix::ffi::OsStringExt as _;
        let get = |key: &str| match key {
            "CNI_COMMAND" => Some(OsString::from("DEL")),
            "CNI_CONTAINERID" => Some(OsString::from_vec(vec![0xff])),
            "CNI_IFNAME" => Some(OsString::from("eth0")),
            _ => None,
        };
        assert_eq!(parse(get), Err(EnvError::NotUtf8("CNI_CONTAINERID")));
    }
}
