//! `/scale` (an autoscaling/v1 Scale view of spec.replicas, used by `kubectl scale`) and
//! `/binding` (how the scheduler assigns a pod to a node).

use http::Method;
use serde_json::{Value, json};

use super::{
    ApiServer,
    handlers::{PatchKind, Scope, apply_json_patch, reject_invalid},
    meta,
    negotiation::decode_body,
    query::{Query, WriteOptions},
    registry::{Resource, Subresource, core::pod::validate_binding, workloads::validate_scale},
    status::ApiError,
    tables,
};

impl ApiServer {
    /// The Scale of a workload.
    pub async fn get_scale(&self, scope: &Scope, name: &str) -> Result<Value, ApiError> {
        let stored = self.get_object(scope, name).await?;
        Ok(scale_of(&stored.object, scope.resource))
    }

    /// Updates spec.replicas from a Scale (PUT) or a patch of the Scale (PATCH).
    pub async fn write_scale(
        &self,
        scope: &Scope,
        name: &str,
        method: &Method,
        content_type: Option<&str>,
        body: &[u8],
        query: &Query,
    ) -> Result<Value, ApiError> {
        query.check_write_options(if *method == Method::PUT {
            WriteOptions::Update
        } else {
            WriteOptions::Patch { apply: false }
        })?;
        let request = if *method == Method::PUT {
            Some(decode_body(body, content_type)?)
        } else {
            None
        };
        let patch = if *method == Method::PATCH {
            let kind = match content_type
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
            {
                "application/json-patch+json" => PatchKind::Json,
                // A Scale has no lists, so strategic and JSON merge patches are the same.
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    PatchKind::Merge
                }
                other => {
                    return Err(ApiError::unsupported_media_type(format!(
                        "cannot patch a Scale with {other}"
                    )));
                }
            };
            let patch: Value = serde_json::from_slice(body).map_err(|err| {
                ApiError::bad_request(format!("error decoding the patch as JSON: {err}"))
            })?;
            Some((kind, patch))
        } else {
            None
        };
        let updated = self
            .write_update(
                scope,
                name,
                query,
                |current| {
                    let scale = scale_of(&current.object, scope.resource);
                    let desired = match (&request, &patch) {
                        (Some(request), _) => request.clone(),
                        (None, Some((kind, patch))) => patch_scale(*kind, &scale, patch)?,
                        (None, None) => scale.clone(),
                    };
                    let mut desired = desired;
                    desired["metadata"] = scale["metadata"].clone();
                    reject_invalid("Scale", &desired, validate_scale(&desired))?;
                    let replicas = desired["spec"]["replicas"].as_i64().ok_or_else(|| {
                        ApiError::bad_request("the Scale has no integer spec.replicas")
                    })?;
                    let mut next = current.object.clone();
                    scope
                        .resource
                        .strategy
                        .set_scale_replicas(&mut next, replicas);
                    Ok(next)
                },
                Some(Subresource::Scale),
            )
            .await?;
        Ok(scale_of(&updated, scope.resource))
    }

    /// Binds a pod to a node: sets spec.nodeName and the PodScheduled condition.
    pub async fn bind_pod(
        &self,
        scope: &Scope,
        name: &str,
        binding: &Value,
        query: &Query,
    ) -> Result<Value, ApiError> {
        // The Binding's name and namespace are the pod's, from the URL.
        let mut binding = binding.clone();
        if let Some(metadata) = meta::metadata_mut(&mut binding) {
            metadata.insert("name".into(), json!(name));
            metadata.insert("namespace".into(), json!(scope.namespace));
        }
        reject_invalid("Binding", &binding, validate_binding(&binding))?;
        let node = binding["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let qualified = scope.resource.qualified_name();
        self.write_update(
            scope,
            name,
            query,
            |current| {
                let object = &current.object;
                if let Some(bound) = object["spec"]["nodeName"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                {
                    return Err(ApiError::conflict(
                        &qualified,
                        name,
                        &format!("pod {name} is already assigned to node \"{bound}\""),
                    ));
                }
                if !object["metadata"]["deletionTimestamp"].is_null() {
                    return Err(ApiError::conflict(
                        &qualified,
                        name,
                        "pod is being deleted, cannot be assigned to a host",
                    ));
                }
                let mut next = object.clone();
                next["spec"]["nodeName"] = json!(node);
                let mut conditions: Vec<Value> = next["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                conditions.retain(|c| c["type"] != "PodScheduled");
                conditions.push(json!({
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": null,
                    "lastTransitionTime": meta::now(),
                }));
                next["status"]["conditions"] = json!(conditions);
                Ok(next)
            },
            Some(Subresource::Binding),
        )
        .await?;
        Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }
}

/// The Scale view of a workload; its status.selector is the selector as a string.
pub(crate) fn scale_of(object: &Value, resource: &Resource) -> Value {
    let selector = match resource.strategy.scale_selector(object) {
        Some(Value::String(text)) => text,
        selector => tables::selector_string(selector.as_ref()).unwrap_or_default(),
    };
    let (desired, current) = resource.strategy.scale_replicas(object);
    let metadata = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": desired},
        "status": {
            "replicas": current,
            "selector": selector,
        },
    })
}

fn patch_scale(kind: PatchKind, scale: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut patched = scale.clone();
    match kind {
        PatchKind::Json => apply_json_patch(&mut patched, patch)?,
        PatchKind::Merge | PatchKind::Strategic => json_patch::merge(&mut patched, patch),
        // Never chosen above: a Scale is not applied server-side here (415 from the caller).
        PatchKind::Apply => {
            return Err(ApiError::unsupported_media_type(
                "server-side apply of a Scale is not supported",
            ));
        }
    }
    Ok(patched)
}
