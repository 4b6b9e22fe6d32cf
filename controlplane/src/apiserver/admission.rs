//! Mutating admission that upstream enables by default and that the rest of the system relies
//! on. DefaultTolerationSeconds: every pod tolerates the not-ready and unreachable NoExecute
//! taints for a bounded time, so a lost node's pods are evicted after that delay rather than at
//! once (or never).

use serde_json::{Value, json};

/// The taint the node lifecycle controller puts on nodes whose Ready condition is False.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// The taint it puts on nodes that stopped heartbeating (Ready Unknown).
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Settings of the admission plugins.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// tolerationSeconds added for the not-ready taint (upstream's
    /// --default-not-ready-toleration-seconds, 300).
    pub not_ready_toleration_seconds: i64,
    /// tolerationSeconds added for the unreachable taint (upstream's
    /// --default-unreachable-toleration-seconds, 300).
    pub unreachable_toleration_seconds: i64,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 300,
        }
    }
}

impl Admission {
    /// Adds `{key} Exists NoExecute for N s` unless a toleration of the pod already covers the
    /// taint's NoExecute effect (as upstream's plugin decides).
    pub(crate) fn default_toleration_seconds(&self, spec: &mut Value) {
        if !spec.is_object() {
            return;
        }
        for (key, seconds) in [
            (NOT_READY_TAINT, self.not_ready_toleration_seconds),
            (UNREACHABLE_TAINT, self.unreachable_toleration_seconds),
        ] {
            let covered = spec["tolerations"].as_array().is_some_and(|tolerations| {
                tolerations.iter().any(|t| {
                    let key_ok = t["key"].as_str().is_none_or(|k| k.is_empty() || k == key);
                    let effect_ok = t["effect"]
                        .as_str()
                        .is_none_or(|e| e.is_empty() || e == "NoExecute");
                    key_ok && effect_ok
                })
            });
            if covered {
                continue;
            }
            let toleration = json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": seconds});
            match spec.get_mut("tolerations").and_then(Value::as_array_mut) {
                Some(tolerations) => tolerations.push(toleration),
                None => spec["tolerations"] = json!([toleration]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_bounded_tolerations_for_failed_nodes() {
        let admission = Admission {
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 60,
        };
        let mut pod = json!({"spec": {"containers": [{"name": "c"}]}});
        admission.default_toleration_seconds(&mut pod["spec"]);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            ])
        );
    }

    #[test]
    fn own_tolerations_are_kept() {
        let admission = Admission::default();
        let mut pod = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
        ]}});
        admission.default_toleration_seconds(&mut pod["spec"]);
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0]["tolerationSeconds"], 5);
        assert_eq!(tolerations[1]["key"], NOT_READY_TAINT);
        // A toleration of everything (DaemonSet-style "operator: Exists") covers both.
        let mut tolerant = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        admission.default_toleration_seconds(&mut tolerant["spec"]);
        assert_eq!(tolerant["spec"]["tolerations"].as_array().unwrap().len(), 1);
        let mut deployment = json!({"spec": {}});
        futures::executor::block_on(
            crate::apiserver::registry::apps::deployment::RESOURCE
                .strategy
                .admit(&admission, &NoObjects, &mut deployment, None),
        )
        .unwrap();
        assert_eq!(deployment, json!({"spec": {}}));
    }

    /// A store with nothing in it.
    struct NoObjects;

    impl crate::apiserver::registry::Lookup for NoObjects {
        fn list<'a>(
            &'a self,
            _resource: &'static crate::apiserver::registry::Resource,
            _namespace: Option<&'a str>,
        ) -> futures::future::BoxFuture<'a, Result<Vec<Value>, crate::apiserver::status::ApiError>>
        {
            Box::pin(async { Ok(Vec::new()) })
        }
    }
}
