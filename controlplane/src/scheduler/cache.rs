//! The scheduler's picture of the cluster, kept up to date from watch events instead of being
//! rebuilt for every decision (upstream's scheduler cache): every node with the totals of the
//! pods counted on it, and where each counted pod is. Each event costs O(1) in the size of the
//! cluster; only a re-list, which replaces everything, walks it all.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Node, Pod};

use super::predicates::{Demand, NodeInfo};

/// A pod counted on a node.
struct Counted {
    node: String,
    demand: Arc<Demand>,
    /// Set while the pod is counted because we bound it (or are binding it) and the watch does
    /// not show it bound yet: since when, and the pod to schedule again if that never happens.
    assumed: Option<(Instant, Arc<Pod>)>,
}

/// Nodes and the pods counted on them.
#[derive(Default)]
pub struct Cache {
    /// The nodes, in no particular order (a node search rotates over them).
    nodes: Vec<NodeInfo>,
    /// Node name -> index in `nodes`.
    index: HashMap<String, usize>,
    /// Counted pods by uid.
    pods: HashMap<String, Counted>,
    /// The uids counted on each node name, whether or not that node exists (yet): what a node
    /// that appears starts with.
    on_node: HashMap<String, HashSet<String>>,
    /// The uids of assumed pods, so expiring them does not walk every pod.
    assumed: HashSet<String>,
}

fn name(node: &Node) -> Option<&str> {
    node.metadata.name.as_deref()
}

impl Cache {
    /// The nodes with their totals.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Adds a node, or refreshes it keeping its pods' totals. Returns whether pods that did not
    /// fit anywhere might fit now (the node is new, or something a filter reads changed).
    pub fn apply_node(&mut self, node: Arc<Node>) -> bool {
        let Some(name) = name(&node).map(str::to_owned) else {
            return false;
        };
        if let Some(&i) = self.index.get(&name) {
            return self.nodes[i].set_node(node);
        }
        let mut info = NodeInfo::new(node);
        for uid in self.on_node.get(&name).into_iter().flatten() {
            if let Some(pod) = self.pods.get(uid) {
                info.add(&pod.demand);
            }
        }
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        true
    }

    /// Removes a node. Its pods stay counted against its name, should it come back.
    pub fn delete_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i).and_then(|info| self.name_at(info)) {
            self.index.insert(moved, i);
        }
    }

    fn name_at(&self, info: &NodeInfo) -> Option<String> {
        name(&info.node).map(str::to_owned)
    }

    /// Replaces all nodes with a fresh listing: nodes not listed are gone. Returns whether pods
    /// might fit now that did not.
    pub fn relist_nodes(&mut self, nodes: Vec<Arc<Node>>) -> bool {
        let listed: HashSet<&str> = nodes.iter().filter_map(|n| name(n)).collect();
        let gone: Vec<String> = self
            .index
            .keys()
            .filter(|n| !listed.contains(n.as_str()))
            .cloned()
            .collect();
        for node in &gone {
            self.delete_node(node);
        }
        let mut changed = false;
        for node in nodes {
            changed |= self.apply_node(node);
        }
        changed
    }

    /// Counts a pod the watch shows bound to `node` and not finished: confirms our assumption,
    /// or moves it from wherever it was counted.
    pub fn bound(&mut self, uid: &str, node: &str, pod: &Pod) {
        if let Some(counted) = self.pods.get_mut(uid)
            && counted.node == node
        {
            if counted.assumed.take().is_some() {
                self.assumed.remove(uid);
            }
            return;
        }
        let demand = self
            .forget(uid)
            .unwrap_or_else(|| Arc::new(Demand::of(pod)));
        self.count(uid, node, demand, None);
    }

    /// Counts a pod we are binding to `node` before the watch shows it bound.
    pub fn assume(&mut self, pod: Arc<Pod>, node: &str, demand: Arc<Demand>, now: Instant) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.forget(&uid);
        self.count(&uid, node, demand, Some((now, pod)));
    }

    fn count(
        &mut self,
        uid: &str,
        node: &str,
        demand: Arc<Demand>,
        assumed: Option<(Instant, Arc<Pod>)>,
    ) {
        if let Some(&i) = self.index.get(node) {
            self.nodes[i].add(&demand);
        }
        self.on_node
            .entry(node.to_owned())
            .or_default()
            .insert(uid.to_owned());
        if assumed.is_some() {
            self.assumed.insert(uid.to_owned());
        }
        self.pods.insert(
            uid.to_owned(),
            Counted {
                node: node.to_owned(),
                demand,
                assumed,
            },
        );
    }

    /// Stops counting a pod (finished, deleted, binding failed); returns its demand if it was
    /// counted.
    pub fn forget(&mut self, uid: &str) -> Option<Arc<Demand>> {
        let counted = self.pods.remove(uid)?;
        if let Some(&i) = self.index.get(&counted.node) {
            self.nodes[i].remove(&counted.demand);
        }
        if let Some(uids) = self.on_node.get_mut(&counted.node) {
            uids.remove(uid);
            if uids.is_empty() {
                self.on_node.remove(&counted.node);
            }
        }
        self.assumed.remove(uid);
        Some(counted.demand)
    }

    /// Whether the pod is counted because we bound it and the watch has not confirmed it yet.
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.assumed.contains(uid)
    }

    /// Whether the pod is counted on some node.
    pub fn is_counted(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Drops assumptions older than `ttl` (the watch never confirmed them); returns those pods,
    /// to be scheduled again.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> Vec<Arc<Pod>> {
        let expired: Vec<String> = self
            .assumed
            .iter()
            .filter(|uid| {
                self.pods
                    .get(*uid)
                    .and_then(|p| p.assumed.as_ref())
                    .is_some_and(|(since, _)| now.duration_since(*since) >= ttl)
            })
            .cloned()
            .collect();
        let mut pods = Vec::new();
        for uid in expired {
            if let Some(Counted {
                assumed: Some((_, pod)),
                ..
            }) = self.pods.get(&uid)
            {
                pods.push(pod.clone());
            }
            self.forget(&uid);
        }
        pods
    }

    /// The uids of all counted pods.
    pub fn uids(&self) -> impl Iterator<Item = &String> {
        self.pods.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, extra: serde_json::Value) -> Arc<Node> {
        let mut base = serde_json::json!({
            "metadata": {"name": name},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            },
        });
        json_patch::merge(&mut base, &extra);
        Arc::new(serde_json::from_value(base).unwrap())
    }

    fn pod(uid: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": uid, "namespace": "default", "uid": uid},
                "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "500m"}}}]},
            }))
            .unwrap(),
        )
    }

    fn totals(cache: &Cache, node: &str) -> (i128, i128) {
        let (requested, pods) = cache.node(node).unwrap().requested();
        (requested.cpu, pods)
    }

    #[test]
    fn bound_pods_count_on_their_node_until_forgotten() {
        let mut cache = Cache::default();
        cache.apply_node(node("n1", serde_json::json!({})));
        cache.apply_node(node("n2", serde_json::json!({})));
        cache.bound("a", "n1", &pod("a"));
        cache.bound("b", "n1", &pod("b"));
        assert_eq!(totals(&cache, "n1"), (1000, 2));
        // Seen again (any update): counted once.
        cache.bound("a", "n1", &pod("a"));
        assert_eq!(totals(&cache, "n1"), (1000, 2));
        // Moved.
        cache.bound("a", "n2", &pod("a"));
        assert_eq!(totals(&cache, "n1"), (500, 1));
        assert_eq!(totals(&cache, "n2"), (500, 1));
        assert!(cache.forget("a").is_some());
        assert!(cache.forget("a").is_none());
        assert_eq!(totals(&cache, "n2"), (0, 0));
    }

    #[test]
    fn node_changes_keep_totals_and_deleted_nodes_keep_their_pods() {
        let mut cache = Cache::default();
        assert!(cache.apply_node(node("n1", serde_json::json!({}))));
        cache.apply_node(node("n2", serde_json::json!({})));
        cache.bound("a", "n1", &pod("a"));
        // A heartbeat-like update: nothing a filter reads changed.
        assert!(!cache.apply_node(node(
            "n1",
            serde_json::json!({"metadata": {"resourceVersion": "2"}})
        )));
        assert!(cache.apply_node(node(
            "n1",
            serde_json::json!({"metadata": {"labels": {"zone": "a"}}})
        )));
        assert_eq!(totals(&cache, "n1"), (500, 1));
        cache.delete_node("n1");
        assert!(cache.node("n1").is_none());
        assert_eq!(totals(&cache, "n2"), (0, 0));
        // A pod bound to a node not seen yet counts once the node appears.
        cache.bound("b", "n3", &pod("b"));
        cache.apply_node(node("n3", serde_json::json!({})));
        assert_eq!(totals(&cache, "n3"), (500, 1));
        cache.apply_node(node("n1", serde_json::json!({})));
        assert_eq!(totals(&cache, "n1"), (500, 1));
    }

    #[test]
    fn relisting_nodes_drops_the_unlisted() {
        let mut cache = Cache::default();
        for n in ["n1", "n2", "n3"] {
            cache.apply_node(node(n, serde_json::json!({})));
        }
        cache.bound("a", "n3", &pod("a"));
        cache.relist_nodes(vec![
            node("n3", serde_json::json!({})),
            node("n4", serde_json::json!({})),
        ]);
        let mut names: Vec<&str> = cache.nodes().iter().filter_map(|n| name(&n.node)).collect();
        names.sort_unstable();
        assert_eq!(names, ["n3", "n4"]);
        assert_eq!(totals(&cache, "n3"), (500, 1));
    }

    #[test]
    fn assumed_pods_count_until_confirmed_or_expired() {
        let mut cache = Cache::default();
        cache.apply_node(node("n1", serde_json::json!({})));
        let now = Instant::now();
        let a = pod("a");
        cache.assume(a.clone(), "n1", Arc::new(Demand::of(&a)), now);
        assert!(cache.is_assumed("a"));
        assert_eq!(totals(&cache, "n1"), (500, 1));
        cache.bound("a", "n1", &a);
        assert!(!cache.is_assumed("a"));
        assert_eq!(totals(&cache, "n1"), (500, 1));
        assert!(
            cache
                .expire(now + Duration::from_secs(60), Duration::from_secs(30))
                .is_empty()
        );

        let b = pod("b");
        cache.assume(b.clone(), "n1", Arc::new(Demand::of(&b)), now);
        assert!(
            cache
                .expire(now + Duration::from_secs(1), Duration::from_secs(30))
                .is_empty()
        );
        let expired = cache.expire(now + Duration::from_secs(30), Duration::from_secs(30));
        assert_eq!(expired.len(), 1);
        assert!(!cache.is_counted("b"));
        assert_eq!(totals(&cache, "n1"), (500, 1));
    }
}
