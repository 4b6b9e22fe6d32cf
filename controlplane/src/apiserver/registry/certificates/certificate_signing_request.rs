//! `certificates.k8s.io/v1` CertificateSigningRequest, as upstream's registry: the requester is
//! recorded on create; the spec never changes; `/approval` writes only the Approved and Denied
//! conditions (for those allowed to `approve` the signer), `/status` the certificate and the other
//! conditions; validation, the table (`kubectl get csr`) and the patch schema.

use base64::{Engine as _, engine::general_purpose::STANDARD};

use crate::apiserver::admission::Admission;
use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use crate::auth::certificates;
use crate::auth::rbac::Attributes;
use k8s_openapi::api::certificates::v1 as api;

/// The `certificatesigningrequests` resource.
pub static RESOURCE: Resource = Resource {
    group: "certificates.k8s.io",
    version: "v1",
    kind: "CertificateSigningRequest",
    plural: "certificatesigningrequests",
    singular: "certificatesigningrequest",
    namespaced: false,
    short_names: &["csr"],
    categories: &[],
    subresources: &[Subresource::Status, Subresource::Approval],
    storage_prefix: "certificatesigningrequests",
    field_labels: &["spec.signerName"],
    strategy: &CertificateSigningRequests,
};

/// The condition types only `/approval` writes.
const APPROVAL_CONDITIONS: [&str; 2] = ["Approved", "Denied"];
/// The condition types a CSR may have.
const CONDITION_TYPES: [&str; 3] = ["Approved", "Denied", "Failed"];
/// The shortest certificate one may ask for.
const MIN_EXPIRATION_SECONDS: i64 = 600;

/// The `CertificateSigningRequest` strategy.
pub struct CertificateSigningRequests;

impl Strategy for CertificateSigningRequests {
    typed_as!(
        "v1.CertificateSigningRequest",
        api::CertificateSigningRequest
    );

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        match old {
            None => validate_spec(e, object),
            Some(old) => validate_status(e, object, old),
        }
    }

    /// A new request starts without status.
    fn status_on_create(&self, _object: &Value) -> Option<Value> {
        Some(json!({}))
    }

    /// The spec never changes after create.
    fn prepare_update(&self, old: &Value, new: &mut Value) {
        new["spec"] = old["spec"].clone();
    }

    /// `/status` keeps the approval conditions; `/approval` changes only them.
    fn prepare_subresource_update(&self, subresource: Subresource, old: &Value, new: &mut Value) {
        new["spec"] = old["spec"].clone();
        let (from_new, from_old): (Vec<&Value>, Vec<&Value>) = match subresource {
            Subresource::Approval => (
                approval_conditions(new, true),
                approval_conditions(old, false),
            ),
            _ => (
                approval_conditions(new, false),
                approval_conditions(old, true),
            ),
        };
        let mut conditions: Vec<Value> = from_old.into_iter().chain(from_new).cloned().collect();
        let now = crate::apiserver::meta::now();
        for condition in &mut conditions {
            for field in ["lastUpdateTime", "lastTransitionTime"] {
                if condition[field].is_null() {
                    condition[field] = json!(now);
                }
            }
        }
        let certificate = old["status"]["certificate"].clone();
        let mut status = if subresource == Subresource::Approval {
            old["status"].clone()
        } else {
            new["status"].clone()
        };
        if !status.is_object() {
            status = json!({});
        }
        status["conditions"] = json!(conditions);
        if subresource == Subresource::Approval {
            status["certificate"] = certificate;
        }
        if status["certificate"].is_null()
            && let Some(status) = status.as_object_mut()
        {
            status.remove("certificate");
        }
        new["status"] = status;
    }

    /// On create, who asks is recorded (what a client sends there is replaced).
    fn admit<'a>(
        &'a self,
        _admission: &'a Admission,
        lookup: &'a dyn Lookup,
        object: &'a mut Value,
        old: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        if old.is_none()
            && let Some(spec) = object["spec"].as_object_mut()
        {
            for field in ["username", "uid", "groups", "extra"] {
                spec.remove(field);
            }
            if let Some(requester) = lookup.requester() {
                spec.insert("username".into(), json!(requester.user.name));
                if !requester.user.groups.is_empty() {
                    spec.insert("groups".into(), json!(requester.user.groups));
                }
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    /// `/approval` needs the `approve` verb on the request's signer (upstream's
    /// CertificateApproval admission).
    fn admit_subresource<'a>(
        &'a self,
        subresource: Subresource,
        lookup: &'a dyn Lookup,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        let result = match (subresource, lookup.requester()) {
            (Subresource::Approval, Some(requester)) => {
                let signer = object["spec"]["signerName"].as_str().unwrap_or_default();
                if may_approve(requester.user, requester.policy, signer) {
                    Ok(())
                } else {
                    Err(ApiError::forbidden(
                        &RESOURCE.qualified_name(),
                        object["metadata"]["name"].as_str().unwrap_or_default(),
                        &format!(
                            "user not permitted to approve requests with signerName {signer:?}"
                        ),
                    ))
                }
            }
            _ => Ok(()),
        };
        Box::pin(std::future::ready(result))
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        let request = STANDARD.encode(sample_request());
        Samples {
            valid: json!({"metadata": {"name": "node-csr"}, "spec": {
                "request": request, "signerName": certificates::KUBELET_CLIENT_SIGNER,
                "usages": ["digital signature", "client auth"]}}),
            invalid: json!({"metadata": {"name": "node-csr"}, "spec": {
                "request": request, "signerName": certificates::KUBELET_CLIENT_SIGNER}}),
            invalid_field: "spec.usages",
        }
    }
}

/// A PEM request for the registry test's samples.
fn sample_request() -> &'static str {
    "-----BEGIN CERTIFICATE REQUEST-----
MIHuMIGVAgEAMDMxFTATBgNVBAoMDHN5c3RlbTpub2RlczEaMBgGA1UEAwwRc3lz
dGVtOm5vZGU6bm9kZTEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQ/3YPlHPNw
bLpvcBoNZaO73Fo3j7a8R71JXtNjuILAfA7ofxUN9LnHpPc9f8aw5ReqR2W20Xhl
1HSnmHy3j8tVoAAwCgYIKoZIzj0EAwIDSAAwRQIhAMNgmC9UXwakdkp0Ft1Jyrrv
isZcRI8gj/ipvlz9fiMyAiBghagbTmWUgk6WZnXZ1HhdS5FqI7MfZFAHgcSk6uEn
8w==
-----END CERTIFICATE REQUEST-----
"
}

/// Whether `user` may approve requests for `signer`: the `approve` verb on
/// `certificates.k8s.io/signers` named the signer or `<domain>/*`.
fn may_approve(
    user: &crate::auth::User,
    policy: &crate::auth::rbac::cache::PolicyCache,
    signer: &str,
) -> bool {
    let policy = policy.read();
    let wildcard = signer
        .split_once('/')
        .map(|(domain, _)| format!("{domain}/*"));
    std::iter::once(signer.to_owned())
        .chain(wildcard)
        .any(|name| {
            policy
                .authorize(
                    user,
                    &Attributes::resource("approve", "certificates.k8s.io", "signers", "", &name),
                )
                .is_ok()
        })
}

/// The conditions of `object` that are approval conditions (`approval` true) or not.
fn approval_conditions(object: &Value, approval: bool) -> Vec<&Value> {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            APPROVAL_CONDITIONS.contains(&c["type"].as_str().unwrap_or_default()) == approval
        })
        .collect()
}

/// Upstream's `ValidateCertificateSigningRequestCreate`.
fn validate_spec(e: &mut Errs, object: &Value) {
    let spec = get(Some(object), "spec");
    let request = str_of(spec, "request");
    match STANDARD.decode(request) {
        Ok(pem) if !pem.is_empty() => {
            if let Err(why) = certificates::parse(&pem) {
                e.invalid("spec.request", "[]byte{...}", &why);
            }
        }
        _ => e.invalid(
            "spec.request",
            "[]byte{}",
            "PEM block type must be CERTIFICATE REQUEST",
        ),
    }
    let usages = arr_of(spec, "usages");
    if usages.is_empty() {
        e.required("spec.usages", "usages must be provided");
    }
    for (i, usage) in usages.iter().enumerate() {
        let usage = usage.as_str().unwrap_or_default();
        if !certificates::KNOWN_USAGES.contains(&usage) {
            e.not_supported(&idx("spec.usages", i), usage, certificates::KNOWN_USAGES);
        }
    }
    let signer = str_of(spec, "signerName");
    if signer.is_empty() {
        e.required("spec.signerName", "");
    } else if !signer_name_is_valid(signer) {
        e.invalid_s(
            "spec.signerName",
            signer,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        );
    }
    if let Some(seconds) = int_of(spec, "expirationSeconds")
        && seconds < MIN_EXPIRATION_SECONDS
    {
        e.invalid_i(
            "spec.expirationSeconds",
            seconds,
            "may not specify a duration less than 600 seconds (10 minutes)",
        );
    }
}

/// `<domain>/<path>`: a DNS subdomain with at least one dot, a slash, and a path.
fn signer_name_is_valid(signer: &str) -> bool {
    let Some((domain, path)) = signer.split_once('/') else {
        return false;
    };
    !path.is_empty()
        && domain.contains('.')
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Upstream's status and approval update rules.
fn validate_status(e: &mut Errs, object: &Value, old: &Value) {
    let conditions = arr_of(get(Some(object), "status"), "conditions");
    let mut seen: Vec<&str> = Vec::new();
    for (i, condition) in conditions.iter().enumerate() {
        let path = idx("status.conditions", i);
        let kind = str_of(Some(condition), "type");
        if kind.is_empty() {
            e.required(&child(&path, "type"), "");
        } else if !CONDITION_TYPES.contains(&kind) {
            e.not_supported(&child(&path, "type"), kind, &CONDITION_TYPES);
        } else if seen.contains(&kind) {
            e.duplicate(&child(&path, "type"), &q(kind));
        }
        seen.push(kind);
        let status = str_of(Some(condition), "status");
        if !matches!(status, "True" | "False" | "Unknown") {
            e.not_supported(
                &child(&path, "status"),
                status,
                &["False", "True", "Unknown"],
            );
        }
    }
    if seen.contains(&"Approved") && seen.contains(&"Denied") {
        e.invalid(
            "status.conditions",
            "",
            "Approved and Denied conditions are mutually exclusive",
        );
    }
    for kind in APPROVAL_CONDITIONS {
        let had = approval_conditions(old, true)
            .iter()
            .any(|c| c["type"] == kind);
        if had && !seen.contains(&kind) {
            e.forbidden(
                "status.conditions",
                &format!("updates may not remove a condition of type {kind:?}"),
            );
        }
    }
    let certificate = str_of(get(Some(object), "status"), "certificate");
    let before = str_of(get(Some(old), "status"), "certificate");
    if !before.is_empty() && certificate != before {
        e.forbidden(
            "status.certificate",
            "updates may not modify existing certificate content",
        );
    } else if !certificate.is_empty() && before.is_empty() {
        let approved = conditions
            .iter()
            .any(|c| c["type"] == "Approved" && c["status"] == "True");
        if !approved {
            e.invalid(
                "status.certificate",
                "",
                "certificate can only be set once the request is approved",
            );
        }
        match STANDARD.decode(certificate) {
            Ok(pem)
                if x509_parser::pem::parse_x509_pem(&pem)
                    .is_ok_and(|(_, block)| block.label == "CERTIFICATE") => {}
            _ => e.invalid(
                "status.certificate",
                "",
                "must contain at least one PEM block of type CERTIFICATE",
            ),
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const COLUMNS: &[Column] = &[
        NAME,
        AGE,
        col(
            "SignerName",
            "string",
            "signerName indicates the requested signer, and is a qualified name.",
        ),
        col(
            "Requestor",
            "string",
            "username contains the name of the user that created the CertificateSigningRequest.",
        ),
        col(
            "RequestedDuration",
            "string",
            "expirationSeconds is the requested duration of validity of the issued certificate.",
        ),
        col(
            "Condition",
            "string",
            "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".",
        ),
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(o: &Value, now: Timestamp) -> Vec<Value> {
        let signer = or_default(str_at(o, &["spec", "signerName"]), "<none>");
        let duration = opt_int(o, &["spec", "expirationSeconds"]).map_or_else(
            || "<none>".to_owned(),
            |seconds| {
                human_duration(std::time::Duration::from_secs(
                    u64::try_from(seconds).unwrap_or(0),
                ))
            },
        );
        vec![
            json!(name(o)),
            json!(age(o, now)),
            json!(signer),
            json!(str_at(o, &["spec", "username"])),
            json!(duration),
            json!(condition(o)),
        ]
    }

    /// Upstream's `extractCSRStatus`: Denied, Approved or Pending, then Failed and Issued.
    fn condition(o: &Value) -> String {
        let has = |kind: &str| {
            list_at(o, &["status", "conditions"])
                .iter()
                .any(|c| str_at(c, &["type"]) == kind)
        };
        let mut status = if has("Denied") {
            "Denied".to_owned()
        } else if has("Approved") {
            "Approved".to_owned()
        } else {
            "Pending".to_owned()
        };
        if has("Failed") {
            status.push_str(",Failed");
        }
        if !str_at(o, &["status", "certificate"]).is_empty() {
            status.push_str(",Issued");
        }
        status
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests may unwrap (project rule).

    use super::*;

    fn csr(status: Value) -> Value {
        json!({"metadata": {"name": "c"}, "spec": {"signerName": "example.com/x", "usages": ["client auth"]},
               "status": status})
    }

    #[test]
    fn approval_and_status_each_write_their_own_conditions() {
        let old = csr(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        // /approval: only Approved/Denied come from the new object.
        let mut new = csr(json!({"certificate": "Zm9v", "conditions": [
            {"type": "Approved", "status": "True", "reason": "Admin"},
            {"type": "Failed", "status": "False"}]}));
        new["spec"]["signerName"] = json!("other.io/y");
        CertificateSigningRequests.prepare_subresource_update(
            Subresource::Approval,
            &old,
            &mut new,
        );
        assert_eq!(new["spec"]["signerName"], "example.com/x");
        let conditions = new["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0]["status"], "True");
        assert_eq!(conditions[0]["type"], "Failed");
        assert_eq!(conditions[1]["type"], "Approved");
        assert!(conditions[1]["lastUpdateTime"].is_string());
        assert!(new["status"].get("certificate").is_none());
        // /status: the certificate and the other conditions; the approval stays.
        let approved = new.clone();
        let mut status = csr(json!({"certificate": "Zm9v", "conditions": []}));
        CertificateSigningRequests.prepare_subresource_update(
            Subresource::Status,
            &approved,
            &mut status,
        );
        assert_eq!(status["status"]["certificate"], "Zm9v");
        assert_eq!(status["status"]["conditions"][0]["type"], "Approved");
    }

    #[test]
    fn status_rules() {
        let old = csr(json!({"conditions": [{"type": "Approved", "status": "True"}]}));
        let mut e = Errs::default();
        validate_status(
            &mut e,
            &csr(json!({"conditions": [
            {"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]})),
            &old,
        );
        assert!(
            e.0.iter().any(|c| c.message.contains("mutually exclusive")),
            "{:?}",
            e.0
        );
        let mut e = Errs::default();
        validate_status(&mut e, &csr(json!({"conditions": []})), &old);
        assert!(e.0.iter().any(|c| {
            c.message
                .contains("may not remove a condition of type \"Approved\"")
        }));
        let mut e = Errs::default();
        validate_status(
            &mut e,
            &csr(json!({"certificate": "Zm9v"})),
            &csr(json!({})),
        );
        assert!(
            e.0.iter()
                .any(|c| c.message.contains("once the request is approved"))
        );
        assert!(signer_name_is_valid("kubernetes.io/kubelet-serving"));
        assert!(!signer_name_is_valid("kubelet-serving"));
        assert!(!signer_name_is_valid("example.com/"));
    }
}
