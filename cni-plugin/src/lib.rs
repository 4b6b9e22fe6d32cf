//! `flotilla-cni`: the CNI (spec 1.1.0; also every older version from 0.1.0) plugin containerd executes for every
//! pod sandbox. It creates the pod's veth pair, address, routes and gateway neighbour, and asks the
//! node agent (agent/proto/cni.proto, over a unix socket) for the address and to put the pod into
//! the eBPF datapath.
//!
//! Layout: [`env`] and [`config`] parse the invocation, [`version`] and [`result`] speak the
//! spec's versions, [`error`] holds every error code, [`commands`] is the command logic over two
//! traits, [`net::Net`] (kernel; real one in [`netlink`]) and [`agent::Agent`] (real one:
//! [`agent::GrpcAgent`]). [`run`] wires the real ones together; `main.rs` only does I/O.

pub mod agent;
pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod naming;
pub mod net;
pub mod netlink;
pub mod result;
pub mod timings;
pub mod version;

use std::{ffi::OsString, io::Read, path::Path};

use serde_json::Value;

use crate::{
    agent::{Agent, GrpcAgent},
    config::NetConf,
    env::Command,
    error::{CniError, code},
    net::Net,
    netlink::Rtnl,
    version::{CniVersion, version_reply},
};

/// What the plugin prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The JSON to print on stdout, if any (results, errors, VERSION).
    pub output: Option<Value>,
    /// Exit status 0 (true) or 1.
    pub success: bool,
}

impl Reply {
    fn error(err: &CniError, version: CniVersion) -> Self {
        Self {
            output: Some(err.to_json(version.as_str())),
            success: false,
        }
    }
}

/// Runs one invocation with the real kernel and agent: `env` reads the process environment,
/// `stdin` is the network configuration.
pub fn run(env: impl Fn(&str) -> Option<OsString>, stdin: impl Read) -> Reply {
    run_with(env, stdin, &Rtnl::new(), |socket: &Path| {
        GrpcAgent::new(socket)
    })
}

/// [`run`] with the kernel and the agent given, so the whole path from environment to reply is
/// testable with fakes.
pub fn run_with<N: Net, A: Agent>(
    env: impl Fn(&str) -> Option<OsString>,
    mut stdin: impl Read,
    net: &N,
    agent_for: impl FnOnce(&Path) -> A,
) -> Reply {
    let invocation = match env::parse(env) {
        Ok(invocation) => invocation,
        Err(err) => return Reply::error(&err.into(), CniVersion::LATEST),
    };
    // As in libcni's skel, VERSION does not read stdin.
    if invocation.command == Command::Version {
        return Reply {
            output: Some(version_reply()),
            success: true,
        };
    }
    let mut bytes = Vec::new();
    if let Err(err) = stdin.read_to_end(&mut bytes) {
        let err = CniError::new(
            code::IO_FAILURE,
            format!("reading the network configuration from stdin failed: {err}"),
            "pass the network configuration on stdin",
        );
        return Reply::error(&err, CniVersion::LATEST);
    }
    let conf = match NetConf::parse(&bytes) {
        Ok(conf) => conf,
        Err(err) => return Reply::error(&err.into(), CniVersion::LATEST),
    };
    timings::mark("config");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let err = CniError::new(
                code::IO_FAILURE,
                format!("starting the async runtime failed: {err}"),
                "the node may be out of file descriptors or memory",
            );
            return Reply::error(&err, conf.cni_version);
        }
    };
    timings::mark("runtime");
    match runtime.block_on(commands::run(&invocation, &conf, net, agent_for)) {
        Ok(output) => Reply {
            output,
            success: true,
        },
        Err(err) => Reply::error(&err, conf.cni_version),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::commands::fakes::{FakeAgent, FakeNet};

    fn reply(pairs: &[(&str, &str)], stdin: &str) -> Reply {
        let env: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let agent = FakeAgent::default();
        run_with(
            |key| env.get(key).cloned(),
            stdin.as_bytes(),
            &FakeNet::default(),
            |_: &Path| &agent,
        )
    }

    #[test]
    fn version_ignores_stdin() {
        let reply = reply(&[("CNI_COMMAND", "VERSION")], "not json");
        assert!(reply.success);
        assert_eq!(reply.output, Some(version_reply()));
    }

    #[test]
    fn environment_errors_come_first_in_the_latest_version() {
        let reply = reply(&[], "not json");
        assert!(!reply.success);
        let output = reply.output.unwrap();
        assert_eq!(output["code"], 4);
        assert_eq!(output["cniVersion"], "1.1.0");
    }

    #[test]
    fn invalid_json_is_6() {
        let reply = reply(&[("CNI_COMMAND", "STATUS")], "{");
        assert_eq!(reply.output.unwrap()["code"], 6);
    }

    #[test]
    fn errors_use_the_configurations_version() {
        let conf = json!({"cniVersion": "0.4.0", "name": "n", "type": "flotilla-cni"});
        let reply = reply(
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
            ],
            &conf.to_string(),
        );
        let output = reply.output.unwrap();
        assert_eq!(output["code"], 7);
        assert_eq!(output["cniVersion"], "0.4.0");
    }

    #[test]
    fn a_successful_del_prints_nothing() {
        let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "flotilla-cni", "agentSocket": "/run/a.sock"});
        let reply = reply(
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
            ],
            &conf.to_string(),
        );
        assert_eq!(
            reply,
            Reply {
                output: None,
                success: true
            }
        );
    }
}
