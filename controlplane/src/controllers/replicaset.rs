//! The replica controllers of ReplicaSets and ReplicationControllers: keep `spec.replicas` pods
//! from the template, owned by the workload, and report counts in its status. The two kinds
//! differ only in how they spell their fields (see [`Replicated`]), so one reconciler serves both,
//! as upstream's ReplicationManager wraps its ReplicaSetController.

use std::{fmt::Debug, sync::Arc};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::ReplicaSet,
        core::v1::{Pod, PodTemplateSpec, ReplicationController},
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
};
use kube::{
    Api, Client, Resource as _, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Context, ReconcileError, drive, pod_ready, retry_later, selector_string};

/// Upstream's burst limit: at most this many pods created or deleted per reconcile.
const BURST: usize = 500;

/// A workload that keeps a number of identical pods: what the reconciler needs to know of it.
pub trait Replicated:
    k8s_openapi::Resource<Scope = NamespaceResourceScope>
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// `spec.replicas`; unset means 1, as defaulting would have made it.
    fn desired(&self) -> i32;
    /// The selector of its pods as a label selector string (`app=web,tier=front`); `None` when
    /// it has none or an invalid one, and so selects no pods.
    fn selector(&self) -> Option<String>;
    /// The template its pods are made from.
    fn template(&self) -> PodTemplateSpec;
    /// `status.replicas`, `status.readyReplicas` and `status.observedGeneration` as last written.
    fn recorded(&self) -> (i32, i32, Option<i64>);
}

/// The methods of [`Replicated`] whose fields both kinds spell alike: `spec.replicas`,
/// `spec.template` and the status counts.
macro_rules! alike_fields {
    () => {
        fn desired(&self) -> i32 {
            self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
        }

        fn template(&self) -> PodTemplateSpec {
            self.spec
                .as_ref()
                .and_then(|s| s.template.clone())
                .unwrap_or_default()
        }

        fn recorded(&self) -> (i32, i32, Option<i64>) {
            let status = self.status.as_ref();
            (
                status.map_or(0, |s| s.replicas),
                status.and_then(|s| s.ready_replicas).unwrap_or(0),
                status.and_then(|s| s.observed_generation),
            )
        }
    };
}

impl Replicated for ReplicaSet {
    alike_fields!();

    fn selector(&self) -> Option<String> {
        selector_string(&self.spec.as_ref()?.selector)
    }
}

impl Replicated for ReplicationController {
    alike_fields!();

    fn selector(&self) -> Option<String> {
        // A plain label map: the matchLabels of a LabelSelector, rendered the same way.
        selector_string(&LabelSelector {
            match_labels: self.spec.as_ref()?.selector.clone(),
            match_expressions: None,
        })
    }
}

/// Runs the controller of `K` (ReplicaSets or ReplicationControllers) until the task is dropped.
pub async fn run<K: Replicated>(client: Client) {
    let workloads: Api<K> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let results = Controller::new(workloads, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile::<K>, retry_later, Arc::new(Context { client }));
    drive(K::KIND, results).await;
}

/// Pods that count toward the workload: owned by it, not finished, not being deleted.
fn active<'a>(pods: &'a [Pod], uid: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|pod| super::controlled_by(&pod.metadata, uid))
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| !super::pod_finished(pod))
        .collect()
}

/// Which pods to delete when scaling down: unscheduled first, then not ready, then the newest.
pub fn deletion_order(mut pods: Vec<&Pod>) -> Vec<&Pod> {
    pods.sort_by_key(|pod| {
        let scheduled = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let created = pod.metadata.creation_timestamp.clone().map(|t| t.0);
        (scheduled, pod_ready(pod), std::cmp::Reverse(created))
    });
    pods
}

async fn reconcile<K: Replicated>(
    workload: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = workload.namespace().unwrap_or_default();
    let name = workload.name_any();
    let fail = ReconcileError::about(K::KIND, &namespace, &name);
    if workload.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = workload.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(selector) = workload.selector() else {
        return Ok(Action::await_change());
    };
    let pods = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(fail)?
        .items;
    let active = active(&pods, &uid);
    let desired = usize::try_from(workload.desired()).unwrap_or(0);

    if active.len() < desired {
        let template = workload.template();
        let owner = OwnerReference {
            api_version: K::API_VERSION.into(),
            kind: K::KIND.into(),
            name: name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        for _ in 0..(desired - active.len()).min(BURST) {
            let mut metadata = template.metadata.clone().unwrap_or_default();
            metadata.generate_name = Some(format!("{name}-"));
            metadata.name = None;
            metadata.namespace = Some(namespace.clone());
            metadata.owner_references = Some(vec![owner.clone()]);
            let pod = Pod {
                metadata,
                spec: template.spec.clone(),
                status: None,
            };
            pods_api
                .create(&PostParams::default(), &pod)
                .await
                .map_err(fail)?;
        }
    } else if active.len() > desired {
        let excess = active.len() - desired;
        for pod in deletion_order(active.clone())
            .into_iter()
            .take(excess.min(BURST))
        {
            match pods_api
                .delete(&pod.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(fail(err)),
            }
        }
    }

    let replicas = active.len();
    let ready = active.iter().filter(|pod| pod_ready(pod)).count();
    let generation = workload.meta().generation;
    let counted = (
        i32::try_from(replicas).unwrap_or(i32::MAX),
        i32::try_from(ready).unwrap_or(i32::MAX),
        generation,
    );
    if workload.recorded() != counted {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&status_patch(replicas, ready, generation)),
        )
        .await
        .map_err(fail)?;
    }
    Ok(Action::await_change())
}

/// The status both kinds report: their status types have the same fields.
fn status_patch(replicas: usize, ready: usize, generation: Option<i64>) -> Value {
    json!({"status": {
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": generation,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, ready: bool, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [{"name": "c"}], "nodeName": node},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn both_kinds_render_selectors_and_read_counts() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"tier": "front", "app": "web"}},
            "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 3},
        }))
        .unwrap();
        assert_eq!(rc.selector().as_deref(), Some("app=web,tier=front"));
        assert_eq!((rc.desired(), rc.recorded()), (1, (2, 1, Some(3))));
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}},
        }))
        .unwrap();
        assert_eq!(rs.selector().as_deref(), Some("app=web,tier in (front)"));
        assert_eq!((rs.desired(), rs.recorded()), (4, (0, 0, None)));
    }

    #[test]
    fn scale_down_removes_unscheduled_then_unready_then_newest() {
        let a = pod("ready-old", Some("n"), true, "2026-01-01T00:00:00Z");
        let b = pod("ready-new", Some("n"), true, "2026-01-02T00:00:00Z");
        let c = pod("unready", Some("n"), false, "2025-01-01T00:00:00Z");
        let d = pod("pending", None, false, "2025-01-01T00:00:00Z");
        let order: Vec<String> = deletion_order(vec![&a, &b, &c, &d])
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(order, ["pending", "unready", "ready-new", "ready-old"]);
    }
}
