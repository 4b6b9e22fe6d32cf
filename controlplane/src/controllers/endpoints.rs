//! The endpoints controller: for every Service with a selector, one EndpointSlice
//! (`<service>-<hash>`, labelled `kubernetes.io/service-name`) and the legacy Endpoints object,
//! listing the selected pods that have an IP, with ready/serving/terminating conditions and
//! named target ports resolved per pod, as the upstream EndpointSlice and Endpoints controllers do.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, PoisonError},
};

use k8s_openapi::api::{
    core::v1::{Endpoints, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use serde_json::{Value, json};

use flotilla_apimachinery::selectors::set_matches;

use super::{ReconcileError, drive, pod_ready, retry_later};

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The manager label value of slices this controller owns.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Runs the controller until the task is dropped. A pod change re-reconciles only the Services
/// that select the pod now or listed it last time (the membership), as upstream's selector
/// matching does: a Service listing a pod in every reconcile costs the API server three
/// requests, so re-reconciling every Service of the namespace made each pod change cost 30,000
/// requests beside 10,000 Services. A change to a slice or Endpoints object it owns (an edit, a
/// deletion) re-reconciles its Service, so nothing is polled.
pub async fn run(client: Client) {
    let services: Api<Service> = Api::all(client.clone());
    let service_cache = Controller::new(services.clone(), watcher::Config::default());
    let store = service_cache.store();
    let membership = Arc::new(Mutex::new(Membership::default()));
    let mapper_membership = Arc::clone(&membership);
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
                let services = store.state();
                let mut membership = mapper_membership
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                membership
                    .services_for(&pod, services.iter().map(AsRef::as_ref))
                    .into_iter()
                    .map(|(namespace, name)| ObjectRef::new(&name).within(&namespace))
                    .collect::<Vec<_>>()
            },
        )
        .run(
            reconcile,
            retry_later,
            Arc::new(EndpointsContext { client, membership }),
        );
    drive("endpoints", results).await;
}

/// What the reconciler shares with the pod mapper.
struct EndpointsContext {
    client: Client,
    membership: Arc<Mutex<Membership>>,
}

/// Which Services each pod belongs to, as far as the controller knows: what each Service's last
/// reconcile listed, plus what the pod's labels matched when its events were mapped. A pod
/// relabelled away from a Service still reaches that Service's reconcile through it (the mapper
/// sees only the pod's new labels). Over-approximating costs one reconcile; missing one leaves a
/// stale slice, so a listing never drops a link the mapper made after the listing began.
#[derive(Debug, Default)]
struct Membership {
    /// Counts mapped pod events; a reconcile reads it before it lists the pods.
    clock: u64,
    /// (namespace, pod) -> its Services.
    services: HashMap<(String, String), BTreeSet<String>>,
    /// (namespace, Service) -> its pods, each with the clock when it was last linked.
    pods: HashMap<(String, String), BTreeMap<String, u64>>,
}

impl Membership {
    /// The Services (namespace, name) that `pod`'s change concerns, among `services`; each is
    /// remembered for the pod's later changes.
    fn services_for<'a>(
        &mut self,
        pod: &Pod,
        services: impl Iterator<Item = &'a Service>,
    ) -> Vec<(String, String)> {
        self.clock += 1;
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let labels = pod.labels();
        let selecting: Vec<String> = services
            .filter(|svc| svc.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|svc| {
                svc.spec
                    .as_ref()
                    .and_then(|spec| spec.selector.as_ref())
                    .is_some_and(|selector| !selector.is_empty() && set_matches(selector, labels))
            })
            .map(ResourceExt::name_any)
            .collect();
        for service in &selecting {
            self.pods
                .entry((namespace.clone(), service.clone()))
                .or_default()
                .insert(name.clone(), self.clock);
        }
        let pod_key = (namespace.clone(), name);
        let mut known = self.services.remove(&pod_key).unwrap_or_default();
        known.extend(selecting);
        let concerned = known
            .iter()
            .map(|service| (namespace.clone(), service.clone()))
            .collect();
        if !known.is_empty() {
            self.services.insert(pod_key, known);
        }
        concerned
    }

    /// Records that the Service `name` in `namespace` lists no pods now (it lost its selector or
    /// is being deleted).
    fn forget(&mut self, namespace: &str, name: &str) {
        let now = self.clock;
        self.listed(namespace, name, BTreeSet::new(), now);
    }

    /// Records that the Service `name` in `namespace` listed exactly `pods`, with the listing
    /// begun at clock `since`.
    fn listed(&mut self, namespace: &str, name: &str, pods: BTreeSet<String>, since: u64) {
        let key = (namespace.to_owned(), name.to_owned());
        let before = self.pods.remove(&key).unwrap_or_default();
        let mut linked: BTreeMap<String, u64> = BTreeMap::new();
        for (pod, stamp) in before {
            if pods.contains(&pod) || stamp > since {
                linked.insert(pod, stamp.max(since));
                continue;
            }
            let pod_key = (namespace.to_owned(), pod);
            if let Some(services) = self.services.get_mut(&pod_key) {
                services.remove(name);
                if services.is_empty() {
                    self.services.remove(&pod_key);
                }
            }
        }
        for pod in pods {
            self.services
                .entry((namespace.to_owned(), pod.clone()))
                .or_default()
                .insert(name.to_owned());
            linked.entry(pod).or_insert(since);
        }
        if !linked.is_empty() {
            self.pods.insert(key, linked);
        }
    }
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

async fn reconcile(
    service: Arc<Service>,
    ctx: Arc<EndpointsContext>,
) -> Result<Action, ReconcileError> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let fail = ReconcileError::about("Service", &namespace, &name);
    let spec = service.spec.clone().unwrap_or_default();
    // Services without a selector (like `kubernetes`) have endpoints managed by someone else.
    let Some(selector) = spec.selector.clone().filter(|s| !s.is_empty()) else {
        ctx.membership().forget(&namespace, &name);
        return Ok(Action::await_change());
    };
    if service.metadata.deletion_timestamp.is_some() {
        ctx.membership().forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    let labels = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let since = ctx.membership().clock;
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&labels))
        .await
        .map_err(fail)?
        .items;
    ctx.membership().listed(
        &namespace,
        &name,
        pods.iter().map(ResourceExt::name_any).collect(),
        since,
    );
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

impl EndpointsContext {
    fn membership(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.membership
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns", "labels": labels}}),
        )
        .unwrap()
    }

    fn service(name: &str, selector: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"selector": selector}}),
        )
        .unwrap()
    }

    #[test]
    fn a_pod_concerns_only_the_services_selecting_it_or_listing_it() {
        let mut services: Vec<Service> = (0..1000)
            .map(|i| service(&format!("other-{i}"), json!({"app": format!("other-{i}")})))
            .collect();
        services.push(service("web", json!({"app": "web"})));
        services.push(service("manual", json!({})));
        let mut membership = Membership::default();

        let web = pod("p", json!({"app": "web", "tier": "front"}));
        let names =
            |found: Vec<(String, String)>| found.into_iter().map(|(_, n)| n).collect::<Vec<_>>();
        assert_eq!(
            names(membership.services_for(&web, services.iter())),
            ["web"]
        );

        // Relabelled away: "web" still hears of it (its slice lists the pod) until it lists
        // the pods again without it.
        let moved = pod("p", json!({"app": "other-7"}));
        assert_eq!(
            names(membership.services_for(&moved, services.iter())),
            ["other-7", "web"]
        );
        let since = membership.clock;
        membership.listed("ns", "web", BTreeSet::new(), since);
        assert_eq!(
            names(membership.services_for(&moved, services.iter())),
            ["other-7"]
        );
    }

    #[test]
    fn a_listing_is_remembered_for_the_pods_it_holds() {
        let mut membership = Membership::default();
        membership.listed(
            "ns",
            "web",
            BTreeSet::from(["a".to_owned(), "b".to_owned()]),
            0,
        );
        // The pod's labels no longer match anything the mapper sees, but "web" listed it.
        let unlabelled = pod("a", json!({}));
        assert_eq!(
            membership.services_for(&unlabelled, std::iter::empty()),
            [("ns".to_owned(), "web".to_owned())]
        );
        let since = membership.clock;
        membership.listed("ns", "web", BTreeSet::from(["b".to_owned()]), since);
        assert!(
            membership
                .services_for(&unlabelled, std::iter::empty())
                .is_empty()
        );
        // A pod of another namespace with the same name is another pod.
        let mut elsewhere = pod("b", json!({}));
        elsewhere.metadata.namespace = Some("other".to_owned());
        assert!(
            membership
                .services_for(&elsewhere, std::iter::empty())
                .is_empty()
        );
    }

    #[test]
    fn a_listing_keeps_links_made_while_it_ran() {
        let services = [service("web", json!({"app": "web"}))];
        let mut membership = Membership::default();
        // The reconcile notes the clock and lists; meanwhile the pod joins "web".
        let since = membership.clock;
        let joined = pod("p", json!({"app": "web"}));
        membership.services_for(&joined, services.iter());
        // The listing, begun before the pod joined, does not hold it.
        membership.listed("ns", "web", BTreeSet::new(), since);
        // The pod leaves again before the next listing: "web" must still hear of it.
        let left = pod("p", json!({}));
        assert_eq!(
            membership.services_for(&left, services.iter()),
            [("ns".to_owned(), "web".to_owned())]
        );
    }
}
