//! Test doubles of [`Net`] and [`Agent`]: in-memory kernel and agent state, a call log, and
//! failures injected on a chosen call.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::Path,
};

use crate::{
    agent::{Agent, AgentError, proto},
    net::{
        HostVeth, LinkState, NeighbourState, Net, NetError, NetnsState, Ns, PodSetup, RouteState,
    },
};

/// The key of a namespace in the fake kernel.
pub(crate) fn ns_key(ns: Ns<'_>) -> String {
    match ns {
        Ns::Node => "node".into(),
        Ns::Pod(path) => path.display().to_string(),
    }
}

/// A link in the fake kernel.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeLink {
    pub(crate) peer: Option<(String, String)>,
    pub(crate) state: LinkState,
}

/// An in-memory kernel: links per namespace, veth pairs that die together.
#[derive(Debug)]
pub(crate) struct FakeNet {
    pub(crate) calls: RefCell<Vec<String>>,
    /// Fail the n-th (0-based) call of the named method.
    pub(crate) fail_on: Cell<Option<(&'static str, usize)>>,
    pub(crate) netns: Cell<NetnsState>,
    pub(crate) links: RefCell<BTreeMap<(String, String), FakeLink>>,
    next_index: Cell<u32>,
}

impl Default for FakeNet {
    fn default() -> Self {
        Self {
            calls: RefCell::default(),
            fail_on: Cell::new(None),
            netns: Cell::new(NetnsState::Present),
            links: RefCell::default(),
            next_index: Cell::new(10),
        }
    }
}

impl FakeNet {
    /// Records a call of `method` and fails it if asked to.
    fn call(&self, method: &'static str, detail: String) -> Result<(), NetError> {
        let earlier = self
            .calls
            .borrow()
            .iter()
            .filter(|call| call.split(' ').next() == Some(method))
            .count();
        self.calls.borrow_mut().push(format!("{method} {detail}"));
        if self.fail_on.get() == Some((method, earlier)) {
            return Err(NetError::Netlink {
                action: format!("{method} {detail}"),
                reason: "injected failure".into(),
            });
        }
        Ok(())
    }

    /// The names of the links in `ns`.
    pub(crate) fn names(&self, ns: Ns<'_>) -> Vec<String> {
        let key = ns_key(ns);
        self.links
            .borrow()
            .keys()
            .filter(|(ns, _)| *ns == key)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// Adds a link that is not ours (e.g. an existing eth0 in the pod).
    pub(crate) fn add_foreign(&self, ns: Ns<'_>, name: &str) {
        self.links
            .borrow_mut()
            .insert((ns_key(ns), name.to_owned()), FakeLink::default());
    }

    /// The state of a link, for assertions and to tamper with.
    pub(crate) fn with_link<R>(
        &self,
        ns: Ns<'_>,
        name: &str,
        f: impl FnOnce(&mut LinkState) -> R,
    ) -> R {
        let mut links = self.links.borrow_mut();
        let link = links
            .get_mut(&(ns_key(ns), name.to_owned()))
            .unwrap_or_else(|| panic!("no link {name} in {}", ns_key(ns)));
        f(&mut link.state)
    }

    /// Deletes a node link and its peer behind the plugin's back.
    pub(crate) fn delete_link_now(&self, name: &str) {
        let mut links = self.links.borrow_mut();
        if let Some(link) = links.remove(&("node".to_owned(), name.to_owned()))
            && let Some(peer) = link.peer
        {
            links.remove(&peer);
        }
    }

    fn mac(&self) -> [u8; 6] {
        let index = self.next_index.get();
        self.next_index.set(index + 1);
        [0x02, 0, 0, 0, 0, u8::try_from(index).unwrap_or(0xff)]
    }

    fn missing(what: String) -> NetError {
        NetError::Netlink {
            action: what,
            reason: "No such device".into(),
        }
    }
}

impl Net for FakeNet {
    async fn netns_state(&self, netns: &Path) -> Result<NetnsState, NetError> {
        self.call("netns_state", netns.display().to_string())?;
        Ok(self.netns.get())
    }

    async fn link_exists(&self, ns: Ns<'_>, name: &str) -> Result<bool, NetError> {
        self.call("link_exists", format!("{} {name}", ns_key(ns)))?;
        Ok(self
            .links
            .borrow()
            .contains_key(&(ns_key(ns), name.to_owned())))
    }

    async fn create_veth(
        &self,
        host: &str,
        netns: &Path,
        ifname: &str,
        mtu: Option<u32>,
    ) -> Result<HostVeth, NetError> {
        self.call(
            "create_veth",
            format!("{host} {} {ifname} {mtu:?}", netns.display()),
        )?;
        let host_key = ("node".to_owned(), host.to_owned());
        let peer_key = (netns.display().to_string(), ifname.to_owned());
        let mut links = self.links.borrow_mut();
        if links.contains_key(&host_key) || links.contains_key(&peer_key) {
            return Err(NetError::Netlink {
                action: format!("creating veth pair {host}/{ifname}"),
                reason: "File exists".into(),
            });
        }
        let host_mac = self.mac();
        let host_state = LinkState {
            index: u32::from(host_mac[5]),
            mac: host_mac.to_vec(),
            mtu,
            ..LinkState::default()
        };
        let peer_mac = self.mac();
        let peer_state = LinkState {
            index: u32::from(peer_mac[5]),
            mac: peer_mac.to_vec(),
            mtu,
            ..LinkState::default()
        };
        links.insert(
            host_key.clone(),
            FakeLink {
                peer: Some(peer_key.clone()),
                state: host_state,
            },
        );
        links.insert(
            peer_key,
            FakeLink {
                peer: Some(host_key),
                state: peer_state,
            },
        );
        Ok(HostVeth {
            index: u32::from(host_mac[5]),
            mac: host_mac,
        })
    }

    async fn configure_pod(&self, netns: &Path, setup: &PodSetup) -> Result<[u8; 6], NetError> {
        self.call(
            "configure_pod",
            format!("{} {}", netns.display(), setup.address),
        )?;
        let mut links = self.links.borrow_mut();
        let link = links
            .get_mut(&(netns.display().to_string(), setup.ifname.clone()))
            .ok_or_else(|| Self::missing(format!("configuring {}", setup.ifname)))?;
        let state = &mut link.state;
        state.up = true;
        state.addresses.push((setup.address, setup.prefix_len));
        state.routes.push(RouteState {
            dst: setup.gateway,
            prefix_len: 32,
            gateway: None,
        });
        state.routes.push(RouteState {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway: Some(setup.gateway),
        });
        state.neighbours.push(NeighbourState {
            ip: setup.gateway,
            mac: setup.gateway_mac.to_vec(),
            permanent: true,
        });
        <[u8; 6]>::try_from(state.mac.clone()).map_err(|_| Self::missing("mac".into()))
    }

    async fn configure_host(&self, host: &str, address: Ipv4Addr) -> Result<(), NetError> {
        self.call("configure_host", format!("{host} {address}"))?;
        let mut links = self.links.borrow_mut();
        let link = links
            .get_mut(&("node".to_owned(), host.to_owned()))
            .ok_or_else(|| Self::missing(format!("configuring {host}")))?;
        link.state.up = true;
        link.state.routes.push(RouteState {
            dst: address,
            prefix_len: 32,
            gateway: None,
        });
        Ok(())
    }

    async fn delete_link(&self, ns: Ns<'_>, name: &str) -> Result<bool, NetError> {
        self.call("delete_link", format!("{} {name}", ns_key(ns)))?;
        let mut links = self.links.borrow_mut();
        let Some(link) = links.remove(&(ns_key(ns), name.to_owned())) else {
            return Ok(false);
        };
        if let Some(peer) = link.peer {
            links.remove(&peer);
        }
        Ok(true)
    }

    async fn inspect_link(&self, ns: Ns<'_>, name: &str) -> Result<Option<LinkState>, NetError> {
        self.call("inspect_link", format!("{} {name}", ns_key(ns)))?;
        Ok(self
            .links
            .borrow()
            .get(&(ns_key(ns), name.to_owned()))
            .map(|link| link.state.clone()))
    }
}

/// An in-memory agent: an address pool, registered endpoints, injected failures.
#[derive(Debug)]
pub(crate) struct FakeAgent {
    pub(crate) calls: RefCell<Vec<String>>,
    /// Methods that fail, with the status code they fail with.
    pub(crate) fail: RefCell<BTreeMap<&'static str, tonic::Code>>,
    /// Every call fails as if the socket were absent.
    pub(crate) unreachable: Cell<bool>,
    pub(crate) allocations: RefCell<BTreeMap<(String, String), String>>,
    pub(crate) registered: RefCell<BTreeSet<(String, String)>>,
    pub(crate) ready: Cell<bool>,
    /// Overrides Allocate's answer.
    pub(crate) answer: RefCell<Option<proto::AllocateResponse>>,
    /// Host ifname Release reports.
    pub(crate) recorded_host: RefCell<String>,
}

impl Default for FakeAgent {
    fn default() -> Self {
        Self {
            calls: RefCell::default(),
            fail: RefCell::default(),
            unreachable: Cell::new(false),
            allocations: RefCell::default(),
            registered: RefCell::default(),
            ready: Cell::new(true),
            answer: RefCell::default(),
            recorded_host: RefCell::default(),
        }
    }
}

fn key(attachment: Option<&proto::Attachment>) -> (String, String) {
    attachment.map_or_else(Default::default, |a| {
        (a.container_id.clone(), a.ifname.clone())
    })
}

impl FakeAgent {
    fn call(&self, method: &'static str) -> Result<(), AgentError> {
        self.calls.borrow_mut().push(method.to_owned());
        if self.unreachable.get() {
            return Err(AgentError::Unreachable {
                socket: "/run/fake.sock".into(),
                reason: "the socket does not exist".into(),
            });
        }
        if let Some(code) = self.fail.borrow().get(method) {
            return Err(AgentError::Rejected {
                call: method,
                code: *code,
                message: format!("injected {method} failure"),
            });
        }
        Ok(())
    }
}

impl Agent for FakeAgent {
    async fn allocate(
        &self,
        request: proto::AllocateRequest,
    ) -> Result<proto::AllocateResponse, AgentError> {
        self.call("Allocate")?;
        let mut allocations = self.allocations.borrow_mut();
        let next = allocations.len() + 7;
        let address = allocations
            .entry(key(request.attachment.as_ref()))
            .or_insert_with(|| format!("10.244.1.{next}"))
            .clone();
        Ok(self
            .answer
            .borrow()
            .clone()
            .unwrap_or(proto::AllocateResponse {
                address,
                prefix_len: 32,
                gateway: "169.254.1.1".into(),
                mtu: 1450,
                pod_cidr: "10.244.1.0/24".into(),
            }))
    }

    async fn register_endpoint(
        &self,
        request: proto::RegisterEndpointRequest,
    ) -> Result<(), AgentError> {
        self.call("RegisterEndpoint")?;
        self.registered
            .borrow_mut()
            .insert(key(request.attachment.as_ref()));
        Ok(())
    }

    async fn release(
        &self,
        attachment: proto::Attachment,
    ) -> Result<proto::ReleaseResponse, AgentError> {
        self.call("Release")?;
        let key = key(Some(&attachment));
        self.registered.borrow_mut().remove(&key);
        let address = self.allocations.borrow_mut().remove(&key);
        Ok(proto::ReleaseResponse {
            found: address.is_some(),
            address: address.unwrap_or_default(),
            host_ifname: self.recorded_host.borrow().clone(),
        })
    }

    async fn check(&self, request: proto::CheckRequest) -> Result<(), AgentError> {
        self.call("Check")?;
        let key = key(request.attachment.as_ref());
        match self.allocations.borrow().get(&key) {
            Some(address) if *address == request.address => Ok(()),
            _ => Err(AgentError::Rejected {
                call: "Check",
                code: tonic::Code::NotFound,
                message: "unknown attachment".into(),
            }),
        }
    }

    async fn status(&self) -> Result<proto::StatusResponse, AgentError> {
        self.call("Status")?;
        Ok(proto::StatusResponse {
            ready: self.ready.get(),
            message: if self.ready.get() {
                String::new()
            } else {
                "no podCIDR yet".into()
            },
        })
    }

    async fn gc(
        &self,
        valid: Vec<proto::Attachment>,
    ) -> Result<Vec<proto::Attachment>, AgentError> {
        self.call("Gc")?;
        let valid: BTreeSet<_> = valid.iter().map(|a| key(Some(a))).collect();
        let mut allocations = self.allocations.borrow_mut();
        let stale: Vec<_> = allocations
            .keys()
            .filter(|key| !valid.contains(*key))
            .cloned()
            .collect();
        for key in &stale {
            allocations.remove(key);
            self.registered.borrow_mut().remove(key);
        }
        Ok(stale
            .into_iter()
            .map(|(container_id, ifname)| proto::Attachment {
                container_id,
                ifname,
            })
            .collect())
    }
}

/// Lets a test keep its fake agent while `commands::run` takes a factory by value.
impl Agent for &FakeAgent {
    async fn allocate(
        &self,
        request: proto::AllocateRequest,
    ) -> Result<proto::AllocateResponse, AgentError> {
        (**self).allocate(request).await
    }

    async fn register_endpoint(
        &self,
        request: proto::RegisterEndpointRequest,
    ) -> Result<(), AgentError> {
        (**self).register_endpoint(request).await
    }

    async fn release(
        &self,
        attachment: proto::Attachment,
    ) -> Result<proto::ReleaseResponse, AgentError> {
        (**self).release(attachment).await
    }

    async fn check(&self, request: proto::CheckRequest) -> Result<(), AgentError> {
        (**self).check(request).await
    }

    async fn status(&self) -> Result<proto::StatusResponse, AgentError> {
        (**self).status().await
    }

    async fn gc(
        &self,
        valid: Vec<proto::Attachment>,
    ) -> Result<Vec<proto::Attachment>, AgentError> {
        (**self).gc(valid).await
    }
}
