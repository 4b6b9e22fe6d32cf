//! Command logic with the fake kernel and agent: ordering, rollback at every step, idempotent
//! DEL, CHECK, STATUS, GC and version gating.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{
    fakes::{FakeAgent, FakeNet},
    run,
};
use crate::{
    agent::proto,
    config::NetConf,
    env::{Command, Invocation, PodArgs},
    error::{CniError, code},
    naming,
    net::{NetnsState, Ns},
};

const NETNS: &str = "/run/netns/pod-1";

fn invocation(command: Command) -> Invocation {
    Invocation {
        command,
        container_id: "c1".into(),
        netns: Some(PathBuf::from(NETNS)),
        ifname: "eth0".into(),
        pod: PodArgs {
            namespace: "default".into(),
            name: "web-0".into(),
            uid: "u1".into(),
        },
    }
}

fn conf_json(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "flotilla",
        "type": "flotilla-cni",
        "agentSocket": "/run/flotilla/cni.sock",
    })
}

fn conf(value: &Value) -> NetConf {
    NetConf::parse(value.to_string().as_bytes()).unwrap()
}

fn host() -> String {
    naming::host_veth("c1", "eth0")
}

fn pod() -> Ns<'static> {
    Ns::Pod(Path::new(NETNS))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn exec(
    command: Command,
    conf_value: &Value,
    net: &FakeNet,
    agent: &FakeAgent,
) -> Result<Option<Value>, CniError> {
    block_on(run(
        &invocation(command),
        &conf(conf_value),
        net,
        |socket| {
            assert_eq!(socket, Path::new("/run/flotilla/cni.sock"));
            agent
        },
    ))
}

fn add(net: &FakeNet, agent: &FakeAgent) -> Result<Option<Value>, CniError> {
    exec(Command::Add, &conf_json("1.0.0"), net, agent)
}

/// Asserts that nothing of the attachment is left: no link in either namespace, no address.
fn assert_clean(net: &FakeNet, agent: &FakeAgent) {
    assert_eq!(net.names(Ns::Node), Vec::<String>::new(), "node links");
    assert_eq!(net.names(pod()), Vec::<String>::new(), "pod links");
    assert!(agent.allocations.borrow().is_empty(), "allocations");
    assert!(agent.registered.borrow().is_empty(), "registrations");
}

#[test]
fn add_creates_the_pair_and_reports_it() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let output = add(&net, &agent).unwrap().unwrap();

    let host = host();
    let host_mac = net.with_link(Ns::Node, &host, |link| crate::result::format_mac(&link.mac));
    let pod_mac = net.with_link(pod(), "eth0", |link| crate::result::format_mac(&link.mac));
    assert_eq!(
        output,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": host, "mac": host_mac},
                {"name": "eth0", "mac": pod_mac, "sandbox": NETNS},
            ],
            "ips": [{"address": "10.244.1.7/32", "gateway": "169.254.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
            "dns": {},
        })
    );
    assert_eq!(
        *net.calls.borrow(),
        vec![
            format!("netns_state {NETNS}"),
            format!("link_exists {NETNS} eth0"),
            format!("delete_link node {host}"),
            format!("create_veth {host} {NETNS} eth0 Some(1450)"),
            format!("configure_pod {NETNS} 10.244.1.7"),
            format!("configure_host {host} 10.244.1.7"),
        ]
    );
    assert_eq!(*agent.calls.borrow(), vec!["Allocate", "RegisterEndpoint"]);
    assert!(
        agent
            .registered
            .borrow()
            .contains(&("c1".into(), "eth0".into()))
    );
    // The pod's gateway neighbour points at the host veth.
    let neighbour_mac = net.with_link(pod(), "eth0", |link| link.neighbours[0].mac.clone());
    assert_eq!(crate::result::format_mac(&neighbour_mac), host_mac);
}

#[test]
fn add_results_follow_the_configs_version() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let output = exec(Command::Add, &conf_json("0.4.0"), &net, &agent)
        .unwrap()
        .unwrap();
    assert_eq!(output["cniVersion"], "0.4.0");
    assert_eq!(output["ips"][0]["version"], "4");

    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let output = exec(Command::Add, &conf_json("1.1.0"), &net, &agent)
        .unwrap()
        .unwrap();
    assert_eq!(output["cniVersion"], "1.1.0");
    assert_eq!(output["interfaces"][1]["mtu"], 1450);
    assert!(output["ips"][0].get("version").is_none());
}

#[test]
fn add_appends_to_a_prev_result_and_honours_the_config_mtu() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let mut value = conf_json("1.0.0");
    value["mtu"] = json!(1400);
    value["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo0", "sandbox": NETNS}],
        "ips": [{"address": "192.168.0.2/24", "interface": 0}],
        "dns": {"nameservers": ["10.96.0.10"]},
    });
    let output = exec(Command::Add, &value, &net, &agent).unwrap().unwrap();
    assert_eq!(output["interfaces"].as_array().unwrap().len(), 3);
    assert_eq!(output["interfaces"][0]["name"], "lo0");
    assert_eq!(output["interfaces"][2]["name"], "eth0");
    assert_eq!(output["ips"][0]["address"], "192.168.0.2/24");
    assert_eq!(output["ips"][1]["interface"], 2);
    assert_eq!(output["dns"], json!({"nameservers": ["10.96.0.10"]}));
    assert!(
        net.calls
            .borrow()
            .iter()
            .any(|call| call.starts_with("create_veth") && call.ends_with("Some(1400)"))
    );
}

#[test]
fn add_refuses_a_missing_or_wrong_namespace_before_any_change() {
    for (state, expected) in [
        (NetnsState::Missing, code::UNKNOWN_CONTAINER),
        (NetnsState::NotNamespace, code::UNKNOWN_CONTAINER),
        (NetnsState::Own, code::INVALID_ENV),
    ] {
        let (net, agent) = (FakeNet::default(), FakeAgent::default());
        net.netns.set(state);
        let err = add(&net, &agent).unwrap_err();
        assert_eq!(err.code, expected, "{state:?}: {err}");
        assert_eq!(net.calls.borrow().len(), 1);
        assert!(agent.calls.borrow().is_empty());
    }
}

#[test]
fn add_fails_with_101_and_changes_nothing_when_the_interface_exists() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    net.add_foreign(pod(), "eth0");
    let err = add(&net, &agent).unwrap_err();
    assert_eq!(err.code, code::INTERFACE_EXISTS, "{err}");
    assert!(err.msg.contains("eth0") && err.msg.contains(NETNS), "{err}");
    assert_eq!(net.names(pod()), vec!["eth0"]);
    assert!(net.names(Ns::Node).is_empty());
    assert!(agent.calls.borrow().is_empty());
}

#[test]
fn add_maps_agent_failures() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    agent.unreachable.set(true);
    assert_eq!(add(&net, &agent).unwrap_err().code, code::TRY_AGAIN_LATER);

    for (status, expected) in [
        (tonic::Code::Unavailable, code::TRY_AGAIN_LATER),
        (tonic::Code::ResourceExhausted, code::POOL_EXHAUSTED),
        (tonic::Code::InvalidArgument, code::AGENT_ERROR),
    ] {
        let (net, agent) = (FakeNet::default(), FakeAgent::default());
        agent.fail.borrow_mut().insert("Allocate", status);
        let err = add(&net, &agent).unwrap_err();
        assert_eq!(err.code, expected, "{status:?}: {err}");
        assert!(net.names(Ns::Node).is_empty());
    }
}

/// Every step after the allocation, failed in turn: ADD must leave nothing behind.
#[test]
fn add_undoes_everything_when_any_step_fails() {
    let net_steps = [
        ("delete_link", code::NETLINK_FAILED),
        ("create_veth", code::NETLINK_FAILED),
        ("configure_pod", code::NETLINK_FAILED),
        ("configure_host", code::NETLINK_FAILED),
    ];
    for (step, expected) in net_steps {
        let (net, agent) = (FakeNet::default(), FakeAgent::default());
        net.fail_on.set(Some((step, 0)));
        let err = add(&net, &agent).unwrap_err();
        assert_eq!(err.code, expected, "{step}: {err}");
        assert!(err.msg.contains(step), "{step}: {err}");
        assert_clean(&net, &agent);
        assert_eq!(
            agent.calls.borrow().last().map(String::as_str),
            Some("Release"),
            "{step}"
        );
    }

    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    agent
        .fail
        .borrow_mut()
        .insert("RegisterEndpoint", tonic::Code::Internal);
    let err = add(&net, &agent).unwrap_err();
    assert_eq!(err.code, code::AGENT_ERROR, "{err}");
    assert_clean(&net, &agent);

    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    *agent.answer.borrow_mut() = Some(proto::AllocateResponse {
        address: "not-an-ip".into(),
        ..proto::AllocateResponse::default()
    });
    let err = add(&net, &agent).unwrap_err();
    assert_eq!(err.code, code::AGENT_ERROR, "{err}");
    assert_eq!(*agent.calls.borrow(), vec!["Allocate", "Release"]);
}

#[test]
fn a_failed_undo_is_reported_with_the_original_error() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    net.fail_on.set(Some(("delete_link", 1)));
    agent
        .fail
        .borrow_mut()
        .insert("Release", tonic::Code::Internal);
    agent
        .fail
        .borrow_mut()
        .insert("RegisterEndpoint", tonic::Code::Internal);
    let err = add(&net, &agent).unwrap_err();
    assert_eq!(err.code, code::AGENT_ERROR);
    assert!(err.msg.contains("RegisterEndpoint"), "{err}");
    assert!(err.details.contains("undoing the ADD failed too"), "{err}");
    assert!(
        err.details.contains("releasing the address failed too"),
        "{err}"
    );
}

#[test]
fn add_replaces_a_leftover_host_veth_of_the_same_attachment() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    net.add_foreign(Ns::Node, &host());
    add(&net, &agent).unwrap();
    assert_eq!(net.names(Ns::Node), vec![host()]);
    assert_eq!(net.names(pod()), vec!["eth0"]);
}

#[test]
fn del_removes_everything_and_is_idempotent() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    add(&net, &agent).unwrap();
    for _ in 0..2 {
        assert_eq!(
            exec(Command::Del, &conf_json("1.0.0"), &net, &agent).unwrap(),
            None
        );
        assert_clean(&net, &agent);
    }
}

#[test]
fn del_without_a_namespace_still_cleans_up() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    add(&net, &agent).unwrap();
    net.netns.set(NetnsState::Missing);
    let mut invocation = invocation(Command::Del);
    invocation.netns = None;
    block_on(run(&invocation, &conf(&conf_json("1.0.0")), &net, |_| {
        &agent
    }))
    .unwrap();
    assert_eq!(net.names(Ns::Node), Vec::<String>::new());
    assert!(agent.allocations.borrow().is_empty());
}

#[test]
fn del_leaves_an_interface_that_is_not_ours() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    net.add_foreign(pod(), "eth0");
    assert_eq!(add(&net, &agent).unwrap_err().code, code::INTERFACE_EXISTS);
    exec(Command::Del, &conf_json("1.0.0"), &net, &agent).unwrap();
    assert_eq!(net.names(pod()), vec!["eth0"]);
}

#[test]
fn del_with_the_agent_unreachable_deletes_the_links_and_succeeds() {
    // The agent frees the address itself once the sandbox is gone from containerd.
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    add(&net, &agent).unwrap();
    agent.unreachable.set(true);
    exec(Command::Del, &conf_json("1.0.0"), &net, &agent).unwrap();
    assert!(net.names(Ns::Node).is_empty());
}

#[test]
fn del_deletes_the_agents_recorded_host_veth_only_if_it_is_ours() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    net.add_foreign(Ns::Node, "fltaaaaaaaaaaaa");
    net.add_foreign(Ns::Node, "eth0");
    *agent.recorded_host.borrow_mut() = "fltaaaaaaaaaaaa".into();
    exec(Command::Del, &conf_json("1.0.0"), &net, &agent).unwrap();
    assert_eq!(net.names(Ns::Node), vec!["eth0"]);
    *agent.recorded_host.borrow_mut() = "eth0".into();
    exec(Command::Del, &conf_json("1.0.0"), &net, &agent).unwrap();
    assert_eq!(net.names(Ns::Node), vec!["eth0"]);
}

#[test]
fn del_reports_a_netlink_failure() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    net.fail_on.set(Some(("delete_link", 0)));
    let err = exec(Command::Del, &conf_json("1.0.0"), &net, &agent).unwrap_err();
    assert_eq!(err.code, code::NETLINK_FAILED);
}

fn check_conf(net: &FakeNet, agent: &FakeAgent) -> Value {
    let result = add(net, agent).unwrap().unwrap();
    let mut value = conf_json("1.0.0");
    value["prevResult"] = result;
    value
}

#[test]
fn check_accepts_what_add_did() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let value = check_conf(&net, &agent);
    assert_eq!(exec(Command::Check, &value, &net, &agent).unwrap(), None);
    assert_eq!(
        agent.calls.borrow().last().map(String::as_str),
        Some("Check")
    );
}

#[test]
fn check_needs_a_prev_result() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let err = exec(Command::Check, &conf_json("1.0.0"), &net, &agent).unwrap_err();
    assert_eq!(err.code, code::INVALID_CONFIG);
}

#[test]
fn check_reports_kernel_and_agent_differences_as_104() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let value = check_conf(&net, &agent);
    net.with_link(pod(), "eth0", |link| link.routes.clear());
    let err = exec(Command::Check, &value, &net, &agent).unwrap_err();
    assert_eq!(err.code, code::CHECK_MISMATCH);
    assert!(err.msg.contains("default route"), "{err}");

    agent.allocations.borrow_mut().clear();
    let err = exec(Command::Check, &value, &net, &agent).unwrap_err();
    assert!(err.msg.contains("the agent disagrees"), "{err}");

    net.delete_link_now(&host());
    let err = exec(Command::Check, &value, &net, &agent).unwrap_err();
    assert!(err.msg.contains("eth0 is missing"), "{err}");
    assert!(err.msg.contains("host veth"), "{err}");
}

#[test]
fn check_with_the_agent_unreachable_is_11() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let value = check_conf(&net, &agent);
    agent.unreachable.set(true);
    let err = exec(Command::Check, &value, &net, &agent).unwrap_err();
    assert_eq!(err.code, code::TRY_AGAIN_LATER);
}

#[test]
fn check_of_a_missing_namespace_is_3() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let value = check_conf(&net, &agent);
    net.netns.set(NetnsState::Missing);
    let err = exec(Command::Check, &value, &net, &agent).unwrap_err();
    assert_eq!(err.code, code::UNKNOWN_CONTAINER);
}

#[test]
fn status_follows_the_agent() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    let value = conf_json("1.1.0");
    assert_eq!(exec(Command::Status, &value, &net, &agent).unwrap(), None);

    agent.ready.set(false);
    let err = exec(Command::Status, &value, &net, &agent).unwrap_err();
    assert_eq!(err.code, code::PLUGIN_NOT_AVAILABLE);
    assert!(err.msg.contains("no podCIDR yet"), "{err}");

    agent.unreachable.set(true);
    let err = exec(Command::Status, &value, &net, &agent).unwrap_err();
    assert_eq!(err.code, code::PLUGIN_NOT_AVAILABLE);
    assert!(err.msg.contains("cannot reach"), "{err}");
}

#[test]
fn status_and_gc_need_1_1_0_before_anything_else() {
    for command in [Command::Status, Command::Gc] {
        let (net, agent) = (FakeNet::default(), FakeAgent::default());
        let mut value = conf_json("1.0.0");
        value.as_object_mut().unwrap().remove("agentSocket");
        let err = exec(command, &value, &net, &agent).unwrap_err();
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION, "{command:?}");
        assert!(agent.calls.borrow().is_empty());
    }
}

#[test]
fn every_command_but_version_needs_the_agent_socket() {
    for command in [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Gc,
    ] {
        let (net, agent) = (FakeNet::default(), FakeAgent::default());
        let mut value = conf_json("1.1.0");
        value.as_object_mut().unwrap().remove("agentSocket");
        let err = exec(command, &value, &net, &agent).unwrap_err();
        assert_eq!(err.code, code::INVALID_CONFIG, "{command:?}");
        assert!(net.calls.borrow().is_empty());
    }
}

#[test]
fn gc_releases_the_stale_attachments_and_deletes_their_veths() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    add(&net, &agent).unwrap();
    let mut other = invocation(Command::Add);
    other.container_id = "c2".into();
    other.netns = Some(PathBuf::from("/run/netns/pod-2"));
    block_on(run(&other, &conf(&conf_json("1.0.0")), &net, |_| &agent)).unwrap();
    assert_eq!(net.names(Ns::Node).len(), 2);

    let mut value = conf_json("1.1.0");
    value["cni.dev/valid-attachments"] = json!([{"containerID": "c2", "ifname": "eth0"}]);
    assert_eq!(exec(Command::Gc, &value, &net, &agent).unwrap(), None);
    assert_eq!(net.names(Ns::Node), vec![naming::host_veth("c2", "eth0")]);
    assert_eq!(agent.allocations.borrow().len(), 1);

    value
        .as_object_mut()
        .unwrap()
        .remove("cni.dev/valid-attachments");
    let err = exec(Command::Gc, &value, &net, &agent).unwrap_err();
    assert_eq!(err.code, code::INVALID_CONFIG);
}

#[test]
fn gc_with_the_agent_unreachable_is_11() {
    let (net, agent) = (FakeNet::default(), FakeAgent::default());
    agent.unreachable.set(true);
    let mut value = conf_json("1.1.0");
    value["cni.dev/valid-attachments"] = json!([]);
    let err = exec(Command::Gc, &value, &net, &agent).unwrap_err();
    assert_eq!(err.code, code::TRY_AGAIN_LATER);
}
