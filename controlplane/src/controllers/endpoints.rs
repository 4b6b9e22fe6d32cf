//! The endpoints controller: for every Service with a selector, one EndpointSlice
//! (`<service>-<hash>`, labelled `kubernetes.io/service-name`) and the legacy Endpoints object,
//! listing the selected pods that have an IP, with ready/serving/terminating conditions and
//! named target ports resolved per pod, as the upstream EndpointSlice and Endpoints controllers do.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::{
    core::v1::{Endpoints, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use serde_json::{Value, json};

use super::{Context, ReconcileError, drive, pod_ready, retry_later};

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The manager label value of slices this controller owns.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Runs the controller until the task is dropped. Every pod change re-reconciles the Services of
/// its namespace (selectors are not indexed; fine at this scale). A change to a slice or
/// Endpoints object it owns (an edit, a deletion) re-reconciles its Service, so nothing is
/// polled: with 10,000 Services a periodic resync cost the API server 500 requests/s.
pub async fn run(client: Client) {
    let services: Api<Service> = Api::all(client.clone());
    let service_cache = Controller::new(services.clone(), watcher::Config::default());
    let store = service_cache.store();
    let managed = format!("endpointslice.kubernetes.io/managed-by={MANAGED_BY}");
    let results = service_cache
        .owns(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&managed),
        )
        .owns(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            move |pod: Pod| {
                let namespace = pod.namespace().unwrap_or_default();
                store
                    .state()
                    .iter()
                    .filter(|svc| svc.namespace().as_deref() == Some(namespace.as_str()))
                    .map(|svc| ObjectRef::from_obj(svc.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, retry_later, Arc::new(Context { client }));
    drive("endpoints", results).await;
}

/// The endpoint's hostname: the pod's `hostname` when its `subdomain` is this Service (the
/// Service's namespace being the pod's), as upstream sets it; the cluster DNS then answers
/// `<hostname>.<service>.<namespace>.svc.<domain>` (a StatefulSet's `web-0.web`).
fn hostname<'a>(pod: &'a Pod, service: &str) -> Option<&'a str> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(service)).then_some(hostname)
}

/// The container port a Service port's targetPort names (or the number itself).
fn target_port(pod: &Pod, target: &Value, fallback: i64) -> Option<i64> {
    match target {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| i64::from(p.container_port)),
        _ => Some(fallback),
    }
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let fail = ReconcileError::about("Service", &namespace, &name);
    let spec = service.spec.clone().unwrap_or_default();
    // Services without a selector (like `kubernetes`) have endpoints managed by someone else.
    let Some(selector) = spec.selector.clone().filter(|s| !s.is_empty()) else {
        return Ok(Action::await_change());
    };
    if service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let labels = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&labels))
        .await
        .map_err(fail)?
        .items;
    let service_ports =
        serde_json::to_value(spec.ports.clone().unwrap_or_default()).unwrap_or_default();
    let service_ports = service_ports.as_array().cloned().unwrap_or_default();

    // Pods that have an IP; each resolves named target ports for itself.
    let mut endpoints = Vec::new();
    let mut ready_addresses = Vec::new();
    let mut not_ready_addresses = Vec::new();
    let mut slice_ports: Option<Vec<Value>> = None;
    for pod in &pods {
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let terminating = pod.metadata.deletion_timestamp.is_some();
        // publishNotReadyAddresses (typical of a StatefulSet's headless Service, so its pods
        // find each other by name while starting) counts every pod as ready, as upstream.
        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
        let ready = publish_not_ready || (pod_ready(pod) && !terminating);
        let ports: Vec<Value> = service_ports
            .iter()
            .filter_map(|port| {
                let number = port["port"].as_i64().unwrap_or(0);
                let target = target_port(pod, &port["targetPort"], number)?;
                Some(json!({"name": port["name"].as_str().unwrap_or(""), "port": target, "protocol": port["protocol"].as_str().unwrap_or("TCP")}))
            })
            .collect();
        slice_ports.get_or_insert_with(|| ports.clone());
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let target_ref = json!({"kind": "Pod", "namespace": namespace, "name": pod.name_any(), "uid": pod.uid()});
        let mut endpoint = json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": pod_ready(pod), "terminating": terminating},
            "nodeName": node,
            "targetRef": target_ref,
        });
        let mut address = json!({"ip": ip, "nodeName": node, "targetRef": target_ref});
        if let Some(hostname) = hostname(pod, &name) {
            endpoint["hostname"] = json!(hostname);
            address["hostname"] = json!(hostname);
        }
        endpoints.push(endpoint);
        if terminating && !publish_not_ready {
            continue;
        }
        if ready {
            ready_addresses.push(address);
        } else {
            not_ready_addresses.push(address);
        }
    }
    let ports = slice_ports.unwrap_or_default();
    let owner = json!([{
        "apiVersion": "v1", "kind": "Service", "name": name, "uid": service.uid(),
        "controller": true, "blockOwnerDeletion": true,
    }]);

    let slices: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &namespace,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
            "endpointslices",
        ),
    );
    let mut slice_labels = BTreeMap::new();
    slice_labels.insert(SERVICE_NAME_LABEL.to_owned(), name.clone());
    slice_labels.insert(
        "endpointslice.kubernetes.io/managed-by".to_owned(),
        MANAGED_BY.to_owned(),
    );
    let slice_name = format!("{name}-{}", short_hash(&name));
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice_name, "namespace": namespace, "labels": slice_labels, "ownerReferences": owner},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    });
    apply(&slices, &slice_name, slice).await.map_err(fail)?;

    let legacy: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &namespace,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("", "v1", "Endpoints"),
            "endpoints",
        ),
    );
    let subsets = if ready_addresses.is_empty() && not_ready_addresses.is_empty() {
        json!([])
    } else {
        let mut subset = json!({"ports": ports});
        if !ready_addresses.is_empty() {
            subset["addresses"] = json!(ready_addresses);
        }
        if !not_ready_addresses.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready_addresses);
        }
        json!([subset])
    };
    let endpoints_object = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace, "labels": {SERVICE_NAME_LABEL: name}, "ownerReferences": owner},
        "subsets": subsets,
    });
    apply(&legacy, &name, endpoints_object)
        .await
        .map_err(fail)?;
    Ok(Action::await_change())
}

/// Creates the object, or replaces its content if it exists and differs.
async fn apply(api: &Api<DynamicObject>, name: &str, desired: Value) -> Result<(), kube::Error> {
    match api.get_opt(name).await? {
        None => {
            let object: DynamicObject =
                serde_json::from_value(desired).map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                Err(err) => Err(err),
            }
        }
        Some(current) => {
            let current = &current.data;
            let differs = ["endpoints", "ports", "subsets", "addressType"]
                .iter()
                .any(|field| {
                    current.get(*field).unwrap_or(&Value::Null)
                        != desired.get(*field).unwrap_or(&Value::Null)
                });
            if differs {
                let mut patch = desired.clone();
                if let Some(map) = patch.as_object_mut() {
                    map.remove("metadata");
                }
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Ok(())
        }
    }
}

fn short_hash(text: &str) -> String {
    super::deployment::template_hash(&json!(text))[..5].to_owned()
}
