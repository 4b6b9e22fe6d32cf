//! Load balancer addresses for Services of type LoadBalancer, from `--loadbalancer-pool` (the
//! control-plane half of MetalLB's and k3s ServiceLB's L2 mode): every such Service without a
//! `spec.loadBalancerClass` gets one address of the pool in `status.loadBalancer.ingress`.
//!
//! There is no state of its own: what is allocated is read on every pass from the Services'
//! status, so a restart, a leader change or a restored backup finds the allocations where the
//! Services are. The decisions are [`plan`], a plain function from Services to [`Action`]s:
//! - `spec.loadBalancerIP` (deprecated upstream, still what MetalLB, kube-vip and Cilium honour)
//!   asks for one address: outside the pool, or held by another Service, the Service gets no
//!   address and a Warning `AllocationFailed`;
//! - otherwise the lowest free address, entries in the order the flag gives them;
//! - a Service keeps the address its status holds; when two hold one (a restore), the older
//!   keeps it and the other gets another, with a Warning `IPConflict`;
//! - a Service that stops being ours (another type, or a class) while its status holds an
//!   address of the pool has its `status.loadBalancer` cleared, as upstream's service controller
//!   does; a deleted Service's address is free on the next pass.
//!
//! A Service whose status is already right is not written; a failure is recorded once per
//! distinct message ([`Failures`]), not on every resync.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::Ipv4Addr,
    sync::Arc,
    time::Duration,
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::reflector::{self, ObjectRef, Store},
};
use serde_json::json;

use super::{next_pass, record_event, reflect, watch_until};
use crate::ipam::{
    AddressRange,
    loadbalancer_pool::{describe_pool, pool_contains, pool_size},
};

/// The component named in our Events.
const COMPONENT: &str = "loadbalancer-ipam-controller";
/// How often every Service is looked at even without a change.
const RESYNC: Duration = Duration::from_secs(15);
/// How long a pass waits for the watch to show what it wrote before the next pass.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);
/// The `ipMode` written: the address is a virtual IP the nodes answer for.
const IP_MODE: &str = "VIP";

/// Which Service an action is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid (a Service deleted and created again under its name is another).
    pub uid: String,
}

impl ServiceKey {
    fn of(service: &Service) -> Self {
        let meta = &service.metadata;
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What to do about one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set `status.loadBalancer.ingress` to `[{ip, ipMode: VIP}]`, then record a Normal
    /// `IPAllocated` Event.
    Assign {
        /// The Service.
        service: ServiceKey,
        /// Its address.
        ip: Ipv4Addr,
    },
    /// Clear `status.loadBalancer`.
    Clear {
        /// The Service.
        service: ServiceKey,
    },
    /// Record a Warning Event.
    Warn {
        /// The Service.
        service: ServiceKey,
        /// `AllocationFailed` or `IPConflict`.
        reason: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// The reason of a Warning about a Service that gets no address.
pub const ALLOCATION_FAILED: &str = "AllocationFailed";
/// The reason of a Warning about a Service that held an address an older one holds too.
pub const IP_CONFLICT: &str = "IPConflict";
/// The reason of the Normal Event about a Service given its address (MetalLB's).
pub const IP_ALLOCATED: &str = "IPAllocated";

/// Whether the Service is this controller's: type LoadBalancer, no class.
pub fn ours(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|spec| {
        spec.type_.as_deref() == Some("LoadBalancer")
            && spec
                .load_balancer_class
                .as_deref()
                .is_none_or(str::is_empty)
    })
}

/// The IPv4 addresses of the Service's `status.loadBalancer.ingress`, in order.
fn status_ips(service: &Service) -> Vec<Ipv4Addr> {
    ingress(service)
        .iter()
        .filter_map(|entry| entry.ip.as_deref()?.parse().ok())
        .collect()
}

fn ingress(service: &Service) -> &[k8s_openapi::api::core::v1::LoadBalancerIngress] {
    service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default()
}

/// Whether the status says exactly what [`Action::Assign`] writes for `ip`.
fn status_is(service: &Service, ip: Ipv4Addr) -> bool {
    let ip = ip.to_string();
    matches!(ingress(service), [entry]
        if entry.ip.as_deref() == Some(ip.as_str())
            && entry.ip_mode.as_deref() == Some(IP_MODE)
            && entry.hostname.as_deref().is_none_or(str::is_empty)
            && entry.ports.as_deref().is_none_or(<[_]>::is_empty))
}

/// What a pass decided for one of our Services.
#[derive(Debug, Clone)]
enum Outcome {
    /// Not decided yet.
    Pending,
    /// This address (held already, or newly given).
    Address(Ipv4Addr),
    /// No address, for this reason.
    Failed(String),
}

/// The lowest addresses of the pool not in `taken`, entry by entry in the pool's order; only
/// moves forward, as a pass hands out lowest-first addresses only after every held and
/// requested one is known.
struct FreeAddresses<'a> {
    pool: &'a [AddressRange],
    entry: usize,
    offset: u64,
}

impl FreeAddresses<'_> {
    fn next(&mut self, taken: &HashMap<Ipv4Addr, usize>) -> Option<Ipv4Addr> {
        while let Some(range) = self.pool.get(self.entry) {
            match range.nth(self.offset) {
                Some(ip) => {
                    self.offset += 1;
                    if !taken.contains_key(&ip) {
                        return Some(ip);
                    }
                }
                None => {
                    self.entry += 1;
                    self.offset = 0;
                }
            }
        }
        None
    }
}

/// What to do so that every Service of ours holds one address of `pool` (or says why not),
/// and no other Service holds one. Writes only what differs from the Services' status; a
/// Warning about a Service that gets no address is in every pass's answer ([`Failures`] keeps
/// it to one Event per message).
pub fn plan(pool: &[AddressRange], services: &[&Service]) -> Vec<Action> {
    let mut actions = Vec::new();
    for service in services.iter().filter(|service| !ours(service)) {
        if status_ips(service)
            .into_iter()
            .any(|ip| pool_contains(pool, ip))
        {
            actions.push(Action::Clear {
                service: ServiceKey::of(service),
            });
        }
    }

    let mut mine: Vec<&Service> = services
        .iter()
        .copied()
        .filter(|service| ours(service))
        .collect();
    // Oldest first: on a duplicate the older Service keeps the address.
    mine.sort_by_cached_key(|service| {
        let meta = &service.metadata;
        let created = meta.creation_timestamp.as_ref().map(|time| time.0);
        (
            created.is_none(),
            created,
            meta.namespace.clone(),
            meta.name.clone(),
        )
    });
    let held: Vec<Vec<Ipv4Addr>> = mine
        .iter()
        .map(|service| {
            status_ips(service)
                .into_iter()
                .filter(|ip| pool_contains(pool, *ip))
                .collect()
        })
        .collect();
    let requested: Vec<Option<&str>> = mine
        .iter()
        .map(|service| {
            service
                .spec
                .as_ref()
                .and_then(|spec| spec.load_balancer_ip.as_deref())
                .map(str::trim)
                .filter(|ip| !ip.is_empty())
        })
        .collect();
    let mut outcomes = vec![Outcome::Pending; mine.len()];
    // Who has each address (an index into `mine`).
    let mut taken: HashMap<Ipv4Addr, usize> = HashMap::new();

    // Each Service keeps the address its status holds, if it is the one it asks for and no
    // older Service holds it.
    for (index, outcome) in outcomes.iter_mut().enumerate() {
        let keep = match requested[index] {
            Some(text) => match text.parse::<Ipv4Addr>() {
                Ok(ip) if pool_contains(pool, ip) => Some(ip).filter(|ip| held[index].contains(ip)),
                _ => {
                    *outcome = Outcome::Failed(format!(
                        "spec.loadBalancerIP {text} is not in the load balancer pool {}",
                        describe_pool(pool)
                    ));
                    continue;
                }
            },
            None => held[index].first().copied(),
        };
        if let Some(ip) = keep.filter(|ip| !taken.contains_key(ip)) {
            taken.insert(ip, index);
            *outcome = Outcome::Address(ip);
        }
    }
    // Then the addresses asked for, oldest Service first, before any is handed out by order.
    for (index, outcome) in outcomes.iter_mut().enumerate() {
        let asked = requested[index].and_then(|text| text.parse::<Ipv4Addr>().ok());
        let (Outcome::Pending, Some(ip)) = (&*outcome, asked) else {
            continue;
        };
        *outcome = match taken.get(&ip) {
            Some(holder) => Outcome::Failed(format!(
                "spec.loadBalancerIP {ip} is already assigned to Service {}",
                ServiceKey::of(mine[*holder])
            )),
            None => {
                taken.insert(ip, index);
                Outcome::Address(ip)
            }
        };
    }
    // Then the lowest free address to each Service that asks for none.
    let mut free = FreeAddresses {
        pool,
        entry: 0,
        offset: 0,
    };
    for (index, outcome) in outcomes.iter_mut().enumerate() {
        if !matches!(outcome, Outcome::Pending) {
            continue;
        }
        *outcome = match free.next(&taken) {
            Some(ip) => {
                taken.insert(ip, index);
                Outcome::Address(ip)
            }
            None => Outcome::Failed(format!(
                "no free address in the load balancer pool ({}): {} of {} in use",
                describe_pool(pool),
                taken.len(),
                pool_size(pool)
            )),
        };
    }

    for (index, outcome) in outcomes.into_iter().enumerate() {
        let service = mine[index];
        let key = ServiceKey::of(service);
        match outcome {
            Outcome::Address(ip) if status_is(service, ip) => {}
            Outcome::Address(ip) => {
                // It held an address an older Service holds too, and got another (not one it
                // left for the address it asks for, handed to another in this pass).
                let conflict = held[index].iter().find_map(|ip| {
                    let holder = *taken.get(ip)?;
                    (holder < index && held[holder].contains(ip)).then_some((ip, holder))
                });
                if let Some((address, holder)) = conflict {
                    actions.push(Action::Warn {
                        service: key.clone(),
                        reason: IP_CONFLICT,
                        message: format!(
                            "{address} is also held by the older Service {}; assigned {ip} \
                             instead",
                            ServiceKey::of(mine[holder])
                        ),
                    });
                }
                actions.push(Action::Assign { service: key, ip });
            }
            Outcome::Failed(message) => {
                if !ingress(service).is_empty() {
                    actions.push(Action::Clear {
                        service: key.clone(),
                    });
                }
                actions.push(Action::Warn {
                    service: key,
                    reason: ALLOCATION_FAILED,
                    message,
                });
            }
            Outcome::Pending => {}
        }
    }
    actions
}

/// The last `AllocationFailed` message recorded about each Service, so a failure that stays
/// is recorded once, not on every pass.
#[derive(Debug, Default)]
pub struct Failures(HashMap<ServiceKey, String>);

impl Failures {
    /// `actions` without the `AllocationFailed` Warnings already recorded; forgets the Services
    /// that no longer fail.
    pub fn filter(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let failing: HashSet<ServiceKey> = actions
            .iter()
            .filter_map(|action| match action {
                Action::Warn {
                    service,
                    reason: ALLOCATION_FAILED,
                    ..
                } => Some(service.clone()),
                _ => None,
            })
            .collect();
        self.0.retain(|service, _| failing.contains(service));
        actions
            .into_iter()
            .filter(|action| match action {
                Action::Warn {
                    service,
                    reason: ALLOCATION_FAILED,
                    message,
                } => {
                    let new = self.0.get(service) != Some(message);
                    self.0.insert(service.clone(), message.clone());
                    new
                }
                _ => true,
            })
            .collect()
    }
}

/// Runs the controller until the task is dropped.
pub async fn run(client: Client, pool: Vec<AddressRange>) {
    let (services, writer) = reflector::store::<Service>();
    let mut changes = reflect(writer, Api::all(client.clone()));
    watch_until(&mut changes, services.wait_until_ready()).await;
    tracing::info!(
        "handing out load balancer addresses from {}",
        describe_pool(&pool)
    );
    let mut failures = Failures::default();
    let mut resync = tokio::time::interval(RESYNC);
    let mut follow_up = false;
    loop {
        let state = services.state();
        let by_key: HashMap<ServiceKey, &Arc<Service>> = state
            .iter()
            .map(|service| (ServiceKey::of(service), service))
            .collect();
        let listed: Vec<&Service> = state.iter().map(|service| &**service).collect();
        let actions = failures.filter(plan(&pool, &listed));
        let mut written = Vec::new();
        for action in actions {
            if let Some(version) = act(&client, &by_key, action).await {
                written.push(version);
            }
        }
        // The next pass must see what this one wrote, or it would hand an address out again.
        catch_up(&mut changes, &services, &written).await;
        // What arrived while catching up is looked at at once (once: a pass that writes again
        // right after waits for the next change as usual).
        follow_up = !written.is_empty() && !follow_up;
        if !follow_up {
            next_pass(&mut changes, &mut resync).await;
        }
    }
}

/// Carries out one action; returns the Service and the version it wrote, if it wrote one.
async fn act(
    client: &Client,
    services: &HashMap<ServiceKey, &Arc<Service>>,
    action: Action,
) -> Option<(ObjectRef<Service>, u64)> {
    let (key, status) = match &action {
        Action::Assign { service, ip } => (
            service,
            json!({"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": IP_MODE}]}}),
        ),
        // `{}` would merge into nothing; a null ingress leaves `loadBalancer: {}`, as upstream.
        Action::Clear { service } => (service, json!({"loadBalancer": {"ingress": null}})),
        Action::Warn {
            service,
            reason,
            message,
        } => {
            tracing::warn!(service = %service, "{reason}: {message}");
            if let Some(object) = services.get(service) {
                record_event(client, &***object, COMPONENT, ("Warning", reason, message)).await;
            }
            return None;
        }
    };
    let object = services.get(key)?;
    let version = object.metadata.resource_version.clone().unwrap_or_default();
    // The version read is a precondition: a Service changed since is looked at again.
    let patch = json!({"metadata": {"resourceVersion": version}, "status": status});
    let api: Api<Service> = Api::namespaced(client.clone(), &key.namespace);
    match api
        .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(written) => {
            if let Action::Assign { ip, .. } = &action {
                tracing::info!(service = %key, %ip, "assigned a load balancer address");
                let message = format!("Assigned IP [{:?}]", ip.to_string());
                record_event(
                    client,
                    &written,
                    COMPONENT,
                    ("Normal", IP_ALLOCATED, &message),
                )
                .await;
            } else {
                tracing::info!(service = %key, "cleared the load balancer status");
            }
            let version = written.metadata.resource_version.as_deref()?.parse().ok()?;
            Some((ObjectRef::from_obj(&written), version))
        }
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
            tracing::debug!(service = %key, "the Service changed before its status was written; looked at again");
            None
        }
        Err(err) => {
            tracing::warn!(service = %key, "writing the load balancer status (retried): {err}");
            None
        }
    }
}

/// Drives the watch until the store shows every write of `written` (or the Service is gone),
/// for at most [`CATCH_UP_LIMIT`].
async fn catch_up(
    changes: &mut futures::stream::BoxStream<'static, ()>,
    services: &Store<Service>,
    written: &[(ObjectRef<Service>, u64)],
) {
    let seen = |(object, version): &(ObjectRef<Service>, u64)| {
        services.get(object).is_none_or(|service| {
            service
                .metadata
                .resource_version
                .as_deref()
                .and_then(|seen| seen.parse::<u64>().ok())
                .is_none_or(|seen| seen >= *version)
        })
    };
    let deadline = tokio::time::Instant::now() + CATCH_UP_LIMIT;
    while !written.iter().all(seen) {
        match tokio::time::timeout_at(deadline, changes.next()).await {
            Ok(Some(())) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(entries: &[&str]) -> Vec<AddressRange> {
        entries.iter().map(|entry| entry.parse().unwrap()).collect()
    }

    /// A Service `name` in `default`, created at second `age` of the day, of `type_`, with
    /// extra spec fields and a status holding `ips`.
    fn service(name: &str, age: u32, spec: serde_json::Value, ips: &[&str]) -> Service {
        let mut spec_value = json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
        if let (Some(base), Some(extra)) = (spec_value.as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        let ingress: Vec<_> = ips
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        let load_balancer = if ingress.is_empty() {
            json!({})
        } else {
            json!({"ingress": ingress})
        };
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "resourceVersion": "7",
                "creationTimestamp": format!("2026-01-01T00:00:{age:02}Z"),
            },
            "spec": spec_value,
            "status": {"loadBalancer": load_balancer},
        }))
        .unwrap()
    }

    fn lb(name: &str, age: u32, ips: &[&str]) -> Service {
        service(name, age, json!({}), ips)
    }

    fn run(pool: &[AddressRange], services: &[Service]) -> Vec<Action> {
        plan(pool, &services.iter().collect::<Vec<_>>())
    }

    /// The actions as short strings: `assign web 1.2.3.4`, `clear web`, `warn web Reason: msg`.
    fn brief(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|action| match action {
                Action::Assign { service, ip } => format!("assign {} {ip}", service.name),
                Action::Clear { service } => format!("clear {}", service.name),
                Action::Warn {
                    service,
                    reason,
                    message,
                } => format!("warn {} {reason}: {message}", service.name),
            })
            .collect()
    }

    /// `service` as it reads once `actions` are written.
    fn applied(mut service: Service, actions: &[Action]) -> Service {
        for action in actions {
            match action {
                Action::Assign { service: key, ip } if key == &ServiceKey::of(&service) => {
                    service.status = Some(
                        serde_json::from_value(json!({"loadBalancer": {"ingress": [
                            {"ip": ip.to_string(), "ipMode": "VIP"}]}}))
                        .unwrap(),
                    );
                }
                Action::Clear { service: key } if key == &ServiceKey::of(&service) => {
                    service.status =
                        Some(serde_json::from_value(json!({"loadBalancer": {}})).unwrap());
                }
                _ => {}
            }
        }
        service
    }

    #[test]
    fn lowest_free_address_across_the_entries_in_order() {
        let pool = pool(&["192.168.78.240-192.168.78.241", "10.0.0.0/31"]);
        let services = [
            lb("a", 1, &["192.168.78.241"]),
            lb("b", 2, &[]),
            lb("c", 3, &[]),
            lb("d", 4, &[]),
        ];
        assert_eq!(
            brief(&run(&pool, &services)),
            [
                "assign b 192.168.78.240",
                "assign c 10.0.0.0",
                "assign d 10.0.0.1"
            ]
        );
    }

    #[test]
    fn nothing_is_written_when_every_status_is_right() {
        let pool = pool(&["192.168.78.240/28"]);
        let services = [
            lb("a", 1, &["192.168.78.240"]),
            lb("b", 2, &["192.168.78.245"]),
            service(
                "c",
                3,
                json!({"loadBalancerIP": "192.168.78.250"}),
                &["192.168.78.250"],
            ),
            // Not ours, and holding nothing of the pool.
            service("d", 4, json!({"type": "ClusterIP"}), &[]),
            service(
                "e",
                5,
                json!({"loadBalancerClass": "example.com/lb"}),
                &["203.0.113.9"],
            ),
        ];
        assert_eq!(run(&pool, &services), []);
        // Each assignment is stable: applying a plan leaves nothing to do on the next pass.
        let fresh = [lb("x", 1, &[]), lb("y", 2, &[])];
        let actions = run(&pool, &fresh);
        let after: Vec<Service> = fresh.into_iter().map(|s| applied(s, &actions)).collect();
        assert_eq!(run(&pool, &after), []);
    }

    #[test]
    fn a_status_without_ip_mode_is_rewritten() {
        let pool = pool(&["192.168.78.240/28"]);
        let mut service = lb("a", 1, &["192.168.78.243"]);
        service
            .status
            .as_mut()
            .and_then(|s| s.load_balancer.as_mut())
            .and_then(|lb| lb.ingress.as_mut())
            .unwrap()[0]
            .ip_mode = None;
        assert_eq!(brief(&run(&pool, &[service])), ["assign a 192.168.78.243"]);
    }

    #[test]
    fn requested_addresses_in_and_out_of_the_pool() {
        let pool = pool(&["192.168.78.240/28"]);
        let services = [
            lb("first", 1, &[]),
            service("asks", 2, json!({"loadBalancerIP": "192.168.78.240"}), &[]),
            service(
                "outside",
                3,
                json!({"loadBalancerIP": "10.1.2.3"}),
                &["192.168.78.241"],
            ),
        ];
        // The request is served before lowest-first picks, so `first` gets the next address.
        assert_eq!(
            brief(&run(&pool, &services)),
            [
                "assign first 192.168.78.241",
                "assign asks 192.168.78.240",
                "clear outside",
                "warn outside AllocationFailed: spec.loadBalancerIP 10.1.2.3 is not in the load \
                 balancer pool 192.168.78.240/28",
            ]
        );
    }

    #[test]
    fn a_requested_address_another_service_holds_is_refused() {
        let pool = pool(&["192.168.78.240/28"]);
        let services = [
            lb("holder", 5, &["192.168.78.242"]),
            // Older, but the address is held: holders are not preempted.
            service("wants", 1, json!({"loadBalancerIP": "192.168.78.242"}), &[]),
        ];
        assert_eq!(
            brief(&run(&pool, &services)),
            [
                "warn wants AllocationFailed: spec.loadBalancerIP 192.168.78.242 is already \
                 assigned to Service default/holder"
            ]
        );
        // A Service whose request changes moves to the new address, and the one it leaves is
        // free at once (no conflict: the Service given it is older, but held nothing).
        let moved = [
            service(
                "moves",
                2,
                json!({"loadBalancerIP": "192.168.78.249"}),
                &["192.168.78.240"],
            ),
            lb("older", 1, &[]),
        ];
        assert_eq!(
            brief(&run(&pool, &moved)),
            ["assign older 192.168.78.240", "assign moves 192.168.78.249"]
        );
    }

    #[test]
    fn duplicates_go_to_the_older_service() {
        let pool = pool(&["192.168.78.240/28"]);
        let services = [
            lb("young", 9, &["192.168.78.240"]),
            lb("old", 1, &["192.168.78.240"]),
            lb("other", 5, &["192.168.78.241"]),
        ];
        assert_eq!(
            brief(&run(&pool, &services)),
            [
                "warn young IPConflict: 192.168.78.240 is also held by the older Service \
                 default/old; assigned 192.168.78.242 instead",
                "assign young 192.168.78.242",
            ]
        );
        // Same age: the namespace/name decides.
        let twins = [
            lb("b", 1, &["192.168.78.240"]),
            lb("a", 1, &["192.168.78.240"]),
        ];
        assert_eq!(brief(&run(&pool, &twins))[1], "assign b 192.168.78.241");
    }

    #[test]
    fn an_exhausted_pool_says_so() {
        let pool = pool(&["192.168.78.240/28"]);
        let mut services: Vec<Service> = (0..16)
            .map(|i| lb(&format!("s{i}"), i, &[&format!("192.168.78.{}", 240 + i)]))
            .collect();
        services.push(lb("late", 30, &[]));
        assert_eq!(
            brief(&run(&pool, &services)),
            [
                "warn late AllocationFailed: no free address in the load balancer pool \
                 (192.168.78.240/28): 16 of 16 in use"
            ]
        );
        // A deleted Service frees its address for the next pass.
        services.remove(3);
        assert_eq!(
            brief(&run(&pool, &services)),
            ["assign late 192.168.78.243"]
        );
    }

    #[test]
    fn services_that_stop_being_ours_lose_the_pool_address() {
        let pool = pool(&["192.168.78.240/28"]);
        let services = [
            service(
                "now-nodeport",
                1,
                json!({"type": "NodePort"}),
                &["192.168.78.240"],
            ),
            service(
                "classed",
                2,
                json!({"loadBalancerClass": "example.com/lb"}),
                &["192.168.78.241"],
            ),
            // Another implementation's address is left alone.
            service(
                "elsewhere",
                3,
                json!({"loadBalancerClass": "example.com/lb"}),
                &["203.0.113.9"],
            ),
        ];
        assert_eq!(
            brief(&run(&pool, &services)),
            ["clear now-nodeport", "clear classed"]
        );
        // Their addresses are free for ours in the same pass.
        let mut with_new = services.to_vec();
        with_new.push(lb("new", 4, &[]));
        assert_eq!(
            brief(&run(&pool, &with_new)),
            [
                "clear now-nodeport",
                "clear classed",
                "assign new 192.168.78.240"
            ]
        );
    }

    #[test]
    fn a_failure_is_recorded_once_per_message() {
        let pool = pool(&["192.168.78.240/32"]);
        let mut failures = Failures::default();
        let mut services = vec![
            lb("a", 1, &["192.168.78.240"]),
            service("b", 2, json!({"loadBalancerIP": "10.1.2.3"}), &[]),
        ];
        let pass = |failures: &mut Failures, services: &[Service]| {
            brief(&failures.filter(run(&pool, services)))
        };
        assert_eq!(pass(&mut failures, &services).len(), 1);
        assert_eq!(pass(&mut failures, &services), Vec::<String>::new());
        // Another reason is another Event.
        services[1] = service("b", 2, json!({}), &[]);
        let exhausted = pass(&mut failures, &services);
        assert!(exhausted[0].contains("1 of 1 in use"), "{exhausted:?}");
        assert_eq!(pass(&mut failures, &services), Vec::<String>::new());
        // Once it has an address, a later failure is recorded again.
        services.remove(0);
        assert_eq!(pass(&mut failures, &services), ["assign b 192.168.78.240"]);
        services[0] = service(
            "b",
            2,
            json!({"loadBalancerIP": "10.1.2.3"}),
            &["192.168.78.240"],
        );
        assert_eq!(
            pass(&mut failures, &services),
            [
                "clear b",
                "warn b AllocationFailed: spec.loadBalancerIP 10.1.2.3 is not in the load \
                 balancer pool 192.168.78.240/32"
            ]
        );
    }
}
