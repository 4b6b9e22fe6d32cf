//! The CertificateSigningRequest controllers of kube-controller-manager, in one loop:
//! - approving (`csrapproving`): a node client certificate request is approved when its
//!   requester may `create certificatesigningrequests/nodeclient` (a bootstrap token's group) or,
//!   for its own name, `.../selfnodeclient` (a node renewing); a node's own kubelet serving
//!   request is approved too, as k3s signs its agents' serving certificates (upstream leaves those
//!   to an admin);
//! - signing (`csrsigning`): approved requests for the `kubernetes.io/*` signers are signed with
//!   the cluster CA, for `expirationSeconds` or a year at most; a request the signer does not
//!   accept gets a Failed condition saying why.

use std::{sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use k8s_openapi::api::{
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
    certificates::v1::CertificateSigningRequest,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use super::{ReconcileError, drive, retry_later};
use crate::auth::certificates::{self as csr, KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER};

/// The cluster CA the signers sign with (PEM).
#[derive(Clone)]
pub struct ClusterCa {
    /// Its certificate.
    pub cert: String,
    /// Its key.
    pub key: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

struct Context {
    client: Client,
    ca: ClusterCa,
}

/// Runs the controller until the task is dropped.
pub async fn run(client: Client, ca: ClusterCa) {
    let requests: Api<CertificateSigningRequest> = Api::all(client.clone());
    let results = Controller::new(requests, watcher::Config::default()).run(
        reconcile,
        retry_later,
        Arc::new(Context { client, ca }),
    );
    drive("certificatesigningrequests", results).await;
}

/// What happened to a request's approval.
fn condition(request: &CertificateSigningRequest, kind: &str) -> bool {
    request
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == kind && c.status == "True")
}

async fn reconcile(
    request: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let name = request.name_any();
    let failed = ReconcileError::about("CertificateSigningRequest", "", &name);
    let issued = request
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if issued || condition(&request, "Denied") || condition(&request, "Failed") {
        return Ok(Action::await_change());
    }
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let spec = &request.spec;
    let usages = spec.usages.clone().unwrap_or_default();
    let pem = String::from_utf8_lossy(&spec.request.0).into_owned();
    let parsed = csr::parse(pem.as_bytes());
    if !condition(&request, "Approved") {
        let Ok(parsed) = &parsed else {
            return Ok(Action::await_change());
        };
        if let Some(message) = auto_approval(&ctx.client, &request, parsed)
            .await
            .map_err(failed)?
        {
            let approval = json!({"status": {"conditions": [{
                "type": "Approved", "status": "True", "reason": "AutoApproved", "message": message,
            }]}});
            api.patch_approval(&name, &PatchParams::default(), &Patch::Merge(approval))
                .await
                .map_err(failed)?;
        }
        return Ok(Action::await_change());
    }
    if !matches!(
        spec.signer_name.as_str(),
        KUBELET_CLIENT_SIGNER | KUBELET_SERVING_SIGNER | csr::CLIENT_SIGNER
    ) {
        // Another signer's request: not ours to sign.
        return Ok(Action::await_change());
    }
    let checked = parsed.and_then(|parsed| {
        csr::check_for_signer(&spec.signer_name, &parsed, &usages)?;
        let duration = spec
            .expiration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(csr::MAX_DURATION, Duration::from_secs);
        csr::sign(&pem, &usages, &ctx.ca.cert, &ctx.ca.key, duration)
    });
    let status = match checked {
        Ok(certificate) => json!({"status": {"certificate": STANDARD.encode(certificate)}}),
        Err(why) => json!({"status": {"conditions": [{
            "type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": why,
        }]}}),
    };
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map_err(failed)?;
    Ok(Action::await_change())
}

/// Why the request is approved automatically (the condition's message), if it is.
async fn auto_approval(
    client: &Client,
    request: &CertificateSigningRequest,
    parsed: &csr::Request,
) -> Result<Option<&'static str>, kube::Error> {
    let spec = &request.spec;
    let usages = spec.usages.clone().unwrap_or_default();
    let own = spec.username.as_deref() == Some(parsed.common_name.as_str());
    match spec.signer_name.as_str() {
        KUBELET_CLIENT_SIGNER if csr::check_kubelet_client(parsed, &usages).is_ok() => {
            if own && may(client, request, "selfnodeclient").await? {
                return Ok(Some(
                    "Auto approving self kubelet client certificate after SubjectAccessReview.",
                ));
            }
            if may(client, request, "nodeclient").await? {
                return Ok(Some(
                    "Auto approving kubelet client certificate after SubjectAccessReview.",
                ));
            }
            Ok(None)
        }
        KUBELET_SERVING_SIGNER
            if own
                && csr::check_kubelet_serving(parsed, &usages).is_ok()
                && spec
                    .groups
                    .iter()
                    .flatten()
                    .any(|group| group == "system:nodes") =>
        {
            Ok(Some(
                "Auto approving the node's own kubelet serving certificate.",
            ))
        }
        _ => Ok(None),
    }
}

/// Whether the request's requester may `create certificatesigningrequests/<subresource>`.
async fn may(
    client: &Client,
    request: &CertificateSigningRequest,
    subresource: &str,
) -> Result<bool, kube::Error> {
    let spec = &request.spec;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            groups: spec.groups.clone(),
            uid: spec.uid.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                version: Some("*".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
