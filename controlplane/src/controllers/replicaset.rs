//! The ReplicaSet controller: keeps `spec.replicas` pods from the template, owned by the
//! ReplicaSet, and reports counts in its status.

use std::sync::Arc;

use k8s_openapi::{
    api::{apps::v1::ReplicaSet, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use super::{Context, ReconcileError, drive, pod_ready, retry_later};

/// Upstream's burst limit: at most this many pods created or deleted per reconcile.
const BURST: usize = 500;

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let replicasets: Api<ReplicaSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let results = Controller::new(replicasets, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile, retry_later, Arc::new(Context { client }));
    drive("replicaset", results).await;
}

/// Pods that count toward the ReplicaSet: owned by it, not finished, not being deleted.
fn active<'a>(pods: &'a [Pod], uid: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|pod| {
            pod.owner_references()
                .iter()
                .any(|owner| owner.uid == uid && owner.controller == Some(true))
        })
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            !matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
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

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let fail = ReconcileError::about("ReplicaSet", &namespace, &name);
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = rs.uid().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let selector = spec
        .selector
        .match_labels
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(fail)?
        .items;
    let active = active(&pods, &uid);
    let desired = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);

    if active.len() < desired {
        let template = spec.template.clone().unwrap_or_default();
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
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
    let status = json!({"status": {
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs.metadata.generation,
    }});
    let current = rs.status.clone().unwrap_or_default();
    let unchanged = current.replicas == i32::try_from(replicas).unwrap_or(0)
        && current.ready_replicas.unwrap_or(0) == i32::try_from(ready).unwrap_or(0)
        && current.observed_generation == rs.metadata.generation;
    if !unchanged {
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
        rs_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(fail)?;
    }
    Ok(Action::await_change())
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
