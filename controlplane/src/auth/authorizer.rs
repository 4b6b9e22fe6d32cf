//! The authorization chain kube-apiserver runs with `--authorization-mode=Node,RBAC`: the Node
//! authorizer for node agents, then RBAC. The first to allow decides; when none does, the
//! denial carries every reason given.

use std::sync::Arc;

use super::User;
use super::node_authorizer::{self, NodeGraph};
use super::rbac::{Attributes, Rule, cache::PolicyCache};

/// Both authorizers and what they read.
#[derive(Debug, Clone)]
pub struct Authorizer {
    /// The RBAC policy.
    pub policy: Arc<PolicyCache>,
    /// The pods by node, for the Node authorizer.
    pub nodes: Arc<NodeGraph>,
    /// What every node may do (upstream's `NodeRules`).
    node_rules: Arc<Vec<Rule>>,
}

impl Default for Authorizer {
    /// An authorizer with nothing loaded: only `system:masters` may do anything.
    fn default() -> Self {
        Self::new(Arc::default(), Arc::default())
    }
}

impl Authorizer {
    /// The chain over `policy` and `nodes`.
    pub fn new(policy: Arc<PolicyCache>, nodes: Arc<NodeGraph>) -> Self {
        Self {
            policy,
            nodes,
            node_rules: Arc::new(node_authorizer::default_node_rules()),
        }
    }

    /// Whether `user` may do what `attributes` ask; when not, the reasons joined by newlines
    /// (upstream's union authorizer), possibly empty.
    pub fn authorize(&self, user: &User, attributes: &Attributes) -> Result<(), String> {
        let mut reasons = Vec::new();
        let graph = self.nodes.read();
        match node_authorizer::authorize(&graph, &self.node_rules, user, attributes) {
            Some(Ok(())) => return Ok(()),
            Some(Err(reason)) if !reason.is_empty() => reasons.push(reason),
            _ => {}
        }
        drop(graph);
        match self.policy.read().authorize(user, attributes) {
            Ok(()) => return Ok(()),
            Err(reason) if !reason.is_empty() => reasons.push(reason),
            Err(_) => {}
        }
        Err(reasons.join("\n"))
    }
}
