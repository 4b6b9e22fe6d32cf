//! Which nodes can take a pod, and how good each one is: plain functions over the pod, the nodes
//! and the pods already bound, so every rule is unit-tested without a cluster.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};

use flotilla_apimachinery::quantity::Quantity;
use flotilla_apimachinery::selectors::{
    node_selector_fields, node_selector_requirements, set_matches,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

/// Why one node was filtered out (phrased like upstream's FailedScheduling messages).
pub type Reason = String;

/// Resource totals in milli-units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU, millicores.
    pub cpu: i128,
    /// Memory, milli-bytes.
    pub memory: i128,
}

/// What a pod requests (init containers run one at a time, so their max counts).
pub fn requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let of = |c: &k8s_openapi::api::core::v1::Container, name: &str| -> i128 {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(name))
            .and_then(milli_units)
            .unwrap_or(0)
    };
    let mut total = Resources::default();
    for container in &spec.containers {
        total.cpu += of(container, "cpu");
        total.memory += of(container, "memory");
    }
    for container in spec.init_containers.iter().flatten() {
        total.cpu = total.cpu.max(of(container, "cpu"));
        total.memory = total.memory.max(of(container, "memory"));
    }
    total
}

/// A quantity in thousandths of its unit (millicores, milli-bytes); unparseable counts as unset.
fn milli_units(quantity: &ApiQuantity) -> Option<i128> {
    Quantity::parse(&quantity.0)
        .ok()
        .map(|quantity| quantity.scaled_value(-3))
}

fn allocatable(node: &Node, name: &str) -> Option<i128> {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get(name))
        .and_then(milli_units)
}

/// Whether a pod is done (its resources are free again).
pub fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

/// A host port a pod claims: (port, protocol, host IP; empty = all addresses).
type HostPort = (i32, String, String);

/// What the scheduler needs of a pod, computed once per pod rather than once per node.
#[derive(Debug, Clone, Default)]
pub struct Demand {
    /// Resource requests.
    pub requests: Resources,
    /// Host ports it binds.
    pub host_ports: Vec<HostPort>,
    /// UIDs of its owners (replicas of one owner are spread).
    pub owners: Vec<String>,
}

impl Demand {
    /// Reads a pod's demand.
    pub fn of(pod: &Pod) -> Self {
        let host_ports = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|port| {
                port.host_port.filter(|hp| *hp > 0).map(|hp| {
                    (
                        hp,
                        port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port.host_ip.clone().unwrap_or_default(),
                    )
                })
            })
            .collect();
        Self {
            requests: requests(pod),
            host_ports,
            owners: pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.uid.clone())
                .collect(),
        }
    }
}

/// A node with the totals of the pods bound to it: what each filter and score reads, kept up
/// to date as pods are placed so a decision costs O(1) in the number of pods.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node.
    pub node: std::sync::Arc<Node>,
    allocatable: (Option<i128>, Option<i128>, Option<i128>),
    requested: Resources,
    pods: i128,
    host_ports: Vec<HostPort>,
    owners: std::collections::HashMap<String, i128>,
}

impl NodeInfo {
    /// A node with nothing bound to it yet.
    pub fn new(node: std::sync::Arc<Node>) -> Self {
        let allocatable = (
            allocatable(&node, "cpu"),
            allocatable(&node, "memory"),
            allocatable(&node, "pods"),
        );
        Self {
            node,
            allocatable,
            requested: Resources::default(),
            pods: 0,
            host_ports: Vec::new(),
            owners: std::collections::HashMap::new(),
        }
    }

    /// Counts a (non-terminal) pod as bound to this node.
    pub fn add(&mut self, demand: &Demand) {
        self.requested.cpu += demand.requests.cpu;
        self.requested.memory += demand.requests.memory;
        self.pods += 1;
        self.host_ports.extend(demand.host_ports.iter().cloned());
        for owner in &demand.owners {
            *self.owners.entry(owner.clone()).or_default() += 1;
        }
    }

    /// Stops counting a pod that [`NodeInfo::add`] counted (it finished, was deleted or moved).
    pub fn remove(&mut self, demand: &Demand) {
        self.requested.cpu -= demand.requests.cpu;
        self.requested.memory -= demand.requests.memory;
        self.pods -= 1;
        for port in &demand.host_ports {
            if let Some(i) = self.host_ports.iter().position(|p| p == port) {
                self.host_ports.swap_remove(i);
            }
        }
        for owner in &demand.owners {
            if let Some(count) = self.owners.get_mut(owner) {
                *count -= 1;
                if *count <= 0 {
                    self.owners.remove(owner);
                }
            }
        }
    }

    /// Swaps in a newer version of the node, keeping the totals of its pods. Returns whether
    /// anything a filter reads changed (allocatable, labels, spec: taints, cordon),
    /// that is whether pods that did not fit before might fit now.
    pub fn set_node(&mut self, node: std::sync::Arc<Node>) -> bool {
        let fresh = Self::new(node);
        let changed = fresh.allocatable != self.allocatable
            || fresh.node.metadata.labels != self.node.metadata.labels
            || fresh.node.spec != self.node.spec;
        self.node = fresh.node;
        self.allocatable = fresh.allocatable;
        changed
    }

    /// The requests of the pods counted on this node, and how many there are.
    pub fn requested(&self) -> (Resources, i128) {
        (self.requested, self.pods)
    }

    fn with_pods(node: &Node, bound: &[&Pod]) -> Self {
        let mut info = Self::new(std::sync::Arc::new(node.clone()));
        for pod in bound.iter().filter(|p| !terminal(p)) {
            info.add(&Demand::of(pod));
        }
        info
    }
}

/// The reasons `node` cannot take `pod` (empty = it can). `bound` are the pods on that node.
pub fn filter(pod: &Pod, node: &Node, bound: &[&Pod]) -> Vec<Reason> {
    fits(pod, &Demand::of(pod), &NodeInfo::with_pods(node, bound))
}

/// The reasons the node of `info` cannot take `pod`, whose demand is `demand` (empty = it can).
pub fn fits(pod: &Pod, demand: &Demand, info: &NodeInfo) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let node = &*info.node;
    let spec = pod.spec.as_ref();
    let tolerations = spec
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    // Readiness is not checked here: as with upstream's TaintNodesByCondition, a node that is
    // not ready carries the not-ready or unreachable NoSchedule taint (the node lifecycle
    // controller keeps it), so pods that tolerate it, like DaemonSet pods, still land there.
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if unschedulable {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        if !tolerations.iter().any(|t| tolerates(t, &cordon)) {
            reasons.push("node(s) were unschedulable".to_owned());
        }
    }
    if !spec.is_none_or(|spec| matches_node_selection(spec, node)) {
        reasons.push("node(s) didn't match Pod's node affinity/selector".to_owned());
    }
    let untolerated = untolerated_taint(tolerations, node, |effect| {
        effect == "NoSchedule" || effect == "NoExecute"
    });
    if let Some(taint) = untolerated {
        reasons.push(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.clone().unwrap_or_default()
        ));
    }
    let (cpu, memory, pods) = info.allocatable;
    if let Some(cpu) = cpu
        && info.requested.cpu + demand.requests.cpu > cpu
    {
        reasons.push("Insufficient cpu".to_owned());
    }
    if let Some(memory) = memory
        && info.requested.memory + demand.requests.memory > memory
    {
        reasons.push("Insufficient memory".to_owned());
    }
    if let Some(pods) = pods
        && (info.pods + 1) * 1000 > pods
    {
        reasons.push("Too many pods".to_owned());
    }
    let conflict = info.host_ports.iter().any(|(port, protocol, ip)| {
        demand.host_ports.iter().any(|(wp, wproto, wip)| {
            wp == port
                && wproto == protocol
                && (ip.is_empty()
                    || wip.is_empty()
                    || ip == wip
                    || ip == "0.0.0.0"
                    || wip == "0.0.0.0")
        })
    });
    if conflict {
        reasons.push("node(s) didn't have free ports for the requested pod ports".to_owned());
    }
    reasons
}

/// Whether `node` satisfies the pod's nodeSelector and required node affinity (matchFields on
/// `metadata.name` included).
pub fn matches_node_selection(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_ok = spec
        .node_selector
        .as_ref()
        .is_none_or(|selector| set_matches(selector, labels));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|required| {
            required
                .node_selector_terms
                .iter()
                .any(|term| term_matches(term, labels, node_name(node)))
        });
    selector_ok && affinity_ok
}

/// Whether `node` satisfies a NodeSelector (its terms ORed), as a PersistentVolume's
/// `nodeAffinity.required` is checked.
pub fn node_selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    selector
        .node_selector_terms
        .iter()
        .any(|term| term_matches(term, labels, node_name(node)))
}

/// The first taint of `node` with an effect `effect_filter` accepts that no toleration tolerates.
pub fn untolerated_taint<'a>(
    tolerations: &[Toleration],
    node: &'a Node,
    effect_filter: impl Fn(&str) -> bool,
) -> Option<&'a Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|taint| effect_filter(&taint.effect))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// Upstream's toleration matching.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = &toleration.effect
        && !effect.is_empty()
        && *effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => {
            key == taint.key
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    }
}

/// `NodeSelectorTerm` matching: every expression against the node's labels and every field
/// requirement against `metadata.name`; an empty or invalid term matches nothing.
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    // `metadata.name` is the one node field; any other reads as empty, as in a fields.Set.
    let node_field = |field: &str| Cow::Borrowed(if field == "metadata.name" { name } else { "" });
    node_selector_requirements(expressions).is_ok_and(|selector| selector.matches(labels))
        && node_selector_fields(fields).is_ok_and(|selector| selector.matches_with(node_field))
}

/// How good `node` is for `pod` (higher is better): least allocated, then fewest pods of the
/// same owner (spreading replicas).
pub fn score(pod: &Pod, node: &Node, bound: &[&Pod]) -> i128 {
    rank(&Demand::of(pod), &NodeInfo::with_pods(node, bound))
}

/// How good the node of `info` is for a pod with `demand` (higher is better).
pub fn rank(demand: &Demand, info: &NodeInfo) -> i128 {
    let free_share = |used: i128, capacity: Option<i128>| -> i128 {
        match capacity {
            Some(capacity) if capacity > 0 => ((capacity - used).max(0) * 100) / capacity,
            _ => 100,
        }
    };
    let (cpu, memory, _) = info.allocatable;
    let least_allocated = (free_share(info.requested.cpu + demand.requests.cpu, cpu)
        + free_share(info.requested.memory + demand.requests.memory, memory))
        / 2;
    let siblings: i128 = demand
        .owners
        .iter()
        .filter_map(|owner| info.owners.get(owner))
        .sum();
    // Spreading weighs more than packing: a sibling costs more than any resource difference.
    least_allocated - siblings * 1000
}

/// The summary upstream puts in FailedScheduling events: "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were not ready."
pub fn unschedulable_message(nodes: usize, reasons: &[Reason]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in reasons {
        *counts.entry(reason.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    if parts.is_empty() {
        format!("0/{nodes} nodes are available: no nodes registered.")
    } else {
        format!("0/{nodes} nodes are available: {}.", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, extra: serde_json::Value) -> Node {
        let mut base = serde_json::json!({
            "metadata": {"name": name, "labels": {"zone": "a"}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            },
        });
        json_patch::merge(&mut base, &extra);
        serde_json::from_value(base).unwrap()
    }

    fn pod(extra: serde_json::Value) -> Pod {
        let mut base = serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]},
        });
        json_patch::merge(&mut base, &extra);
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn a_ready_roomy_node_fits() {
        assert!(
            filter(
                &pod(serde_json::json!({})),
                &node("n", serde_json::json!({})),
                &[]
            )
            .is_empty()
        );
    }

    #[test]
    fn each_filter_names_its_reason() {
        // A not-ready node is kept out by its taint, not by its condition, so a pod that
        // tolerates the taint (a DaemonSet's) still fits.
        let not_ready = node(
            "n",
            serde_json::json!({
                "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
                "status": {"conditions": [{"type": "Ready", "status": "False"}]},
            }),
        );
        assert_eq!(
            filter(&pod(serde_json::json!({})), &not_ready, &[]),
            ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );
        let daemon = pod(
            serde_json::json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert!(filter(&daemon, &not_ready, &[]).is_empty());
        let cordoned = node("n", serde_json::json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            filter(&pod(serde_json::json!({})), &cordoned, &[]),
            ["node(s) were unschedulable"]
        );
        let selector = pod(serde_json::json!({"spec": {"nodeSelector": {"zone": "b"}}}));
        assert_eq!(
            filter(&selector, &node("n", serde_json::json!({})), &[]),
            ["node(s) didn't match Pod's node affinity/selector"]
        );
        let tainted = node(
            "n",
            serde_json::json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            filter(&pod(serde_json::json!({})), &tainted, &[]),
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        let tolerating = pod(
            serde_json::json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
        );
        assert!(filter(&tolerating, &tainted, &[]).is_empty());
        let big = pod(
            serde_json::json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "3"}}}]}}),
        );
        assert_eq!(
            filter(&big, &node("n", serde_json::json!({})), &[]),
            ["Insufficient cpu"]
        );
        let hp = pod(
            serde_json::json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
        );
        assert_eq!(
            filter(&hp, &node("n", serde_json::json!({})), &[&hp]),
            ["node(s) didn't have free ports for the requested pod ports"]
        );
    }

    #[test]
    fn required_node_affinity_terms_are_ored_expressions_anded() {
        let affinity = pod(
            serde_json::json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}, {"key": "gpu", "operator": "DoesNotExist"}]},
            ]}}}}}),
        );
        assert!(filter(&affinity, &node("n", serde_json::json!({})), &[]).is_empty());
        let gpu = node(
            "n",
            serde_json::json!({"metadata": {"labels": {"gpu": "yes"}}}),
        );
        assert!(!filter(&affinity, &gpu, &[]).is_empty());
    }

    #[test]
    fn replicas_spread_before_packing() {
        let owned = pod(
            serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1"}]}}),
        );
        let busy = node("busy", serde_json::json!({}));
        let empty = node("empty", serde_json::json!({}));
        assert!(score(&owned, &empty, &[]) > score(&owned, &busy, &[&owned]));
    }

    #[test]
    fn removing_a_pod_undoes_adding_it() {
        let hp = pod(
            serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1"}]},
                               "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}],
                                                        "resources": {"requests": {"cpu": "500m"}}}]}}),
        );
        let demand = Demand::of(&hp);
        let mut info = NodeInfo::new(std::sync::Arc::new(node("n", serde_json::json!({}))));
        let empty_rank = rank(&demand, &info);
        info.add(&demand);
        assert_eq!(info.requested().1, 1);
        assert!(!fits(&hp, &demand, &info).is_empty());
        info.remove(&demand);
        assert_eq!(info.requested(), (Resources::default(), 0));
        assert!(fits(&hp, &demand, &info).is_empty());
        assert_eq!(rank(&demand, &info), empty_rank);
    }

    #[test]
    fn swapping_the_node_keeps_totals_and_tells_relevant_changes() {
        let mut info = NodeInfo::new(std::sync::Arc::new(node("n", serde_json::json!({}))));
        info.add(&Demand::of(&pod(serde_json::json!({}))));
        let mut renewed = node("n", serde_json::json!({}));
        renewed.metadata.resource_version = Some("2".into());
        assert!(!info.set_node(std::sync::Arc::new(renewed)));
        assert!(info.set_node(std::sync::Arc::new(node(
            "n",
            serde_json::json!({"spec": {"unschedulable": true}})
        ))));
        assert_eq!(info.requested().1, 1);
        assert_eq!(info.requested().0.cpu, 500);
    }

    #[test]
    fn messages_count_reasons() {
        let reasons = vec![
            "Insufficient cpu".to_owned(),
            "Insufficient cpu".to_owned(),
            "node(s) were not ready".to_owned(),
        ];
        assert_eq!(
            unschedulable_message(3, &reasons),
            "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were not ready."
        );
    }
}
