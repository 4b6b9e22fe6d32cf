//! `flotilla-widget-operator`: the program of the `flotilla/widget-operator` image, a small
//! operator written with kube-rs that the end-to-end tests run as a pod under its own
//! ServiceAccount. For every `Widget` (`widgets.example.com/v1`: `spec.replicas`,
//! `spec.image`) it keeps a Deployment of that name, owned by the Widget, with that many pods
//! of that image (server-side apply, field manager `widget-operator`), and reports the
//! Deployment's replicas and ready replicas in the Widget's status (through `/status`).
//! Level-triggered, as kube-runtime's Controller is: each reconcile starts from the current
//! Widget and Deployment, whatever woke it. SIGTERM ends it with status 0 (as PID 1 it has no
//! default signal actions).

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client, ResourceExt as _,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

/// What the reconciler needs.
struct Context {
    client: Client,
    widgets: ApiResource,
}

/// Why a reconcile failed (the Widget is tried again shortly).
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("the Widget has no namespace")]
    NoNamespace,
    #[error("the API: {0}")]
    Api(#[from] kube::Error),
}

/// The image when the Widget names none.
const DEFAULT_IMAGE: &str = "docker.io/flotilla/testapp:v1";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let widgets = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let context = Arc::new(Context {
        client: client.clone(),
        widgets: widgets.clone(),
    });
    let controller = Controller::new_with(
        Api::<DynamicObject>::all_with(client.clone(), &widgets),
        watcher::Config::default(),
        widgets,
    )
    .owns(Api::<Deployment>::all(client), watcher::Config::default())
    .run(reconcile, error_policy, context)
    .for_each(|result| async move {
        match result {
            Ok((widget, _)) => println!(
                "reconciled {}/{}",
                widget.namespace.unwrap_or_default(),
                widget.name
            ),
            Err(err) => eprintln!("reconcile failed: {err}"),
        }
    });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = controller => {}
        _ = terminate.recv() => println!("SIGTERM: stopping"),
    }
    Ok(())
}

/// Makes the Widget's Deployment what the Widget asks for and reports it in the Widget.
async fn reconcile(widget: Arc<DynamicObject>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = widget.namespace().ok_or(Error::NoNamespace)?;
    let name = widget.name_any();
    let replicas = widget.data["spec"]["replicas"].as_i64().unwrap_or(1);
    let image = widget.data["spec"]["image"]
        .as_str()
        .unwrap_or(DEFAULT_IMAGE);
    let owner = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "name": name,
        "uid": widget.uid().unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    });
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"widget": name}, "ownerReferences": [owner]},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"widget": name}},
            "template": {
                "metadata": {"labels": {"widget": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": image, "imagePullPolicy": "Never"}],
                },
            },
        },
    });
    let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), &namespace);
    let applied = deployments
        .patch(
            &name,
            &PatchParams::apply("widget-operator").force(),
            &Patch::Apply(&deployment),
        )
        .await?;
    let status = applied.status.unwrap_or_default();
    let report = json!({"status": {
        "replicas": status.replicas.unwrap_or(0),
        "readyReplicas": status.ready_replicas.unwrap_or(0),
        "selector": format!("widget={name}"),
    }});
    if widget.data["status"] != report["status"] {
        let widgets: Api<DynamicObject> =
            Api::namespaced_with(context.client.clone(), &namespace, &context.widgets);
        widgets
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&report))
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// A failed reconcile is tried again after a short pause.
fn error_policy(_widget: Arc<DynamicObject>, _error: &Error, _context: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(2))
}
