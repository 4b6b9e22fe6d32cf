//! API errors as Kubernetes `Status` objects, with the code and reason kubectl expects, so it
//! prints its usual messages ("Error from server (NotFound): pods \"x\" not found").

use axum::response::{IntoResponse, Response};
use flotilla_apimachinery::json;
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::storage::StorageError;

/// A cause of an Invalid error (StatusCause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldCause {
    /// Upstream cause type, e.g. "FieldValueRequired".
    pub reason: String,
    /// What is wrong with the field.
    pub message: String,
    /// The field path, e.g. "spec.template.spec.containers[0].image".
    pub field: String,
}

/// An error answered as a `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (NotFound, AlreadyExists, Conflict, Invalid, ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Details: the object's kind (resource), name and field causes.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(qualified_resource: &str, name: &str, why: &str) -> Self {
        let mut err = Self::new(
            403,
            "Forbidden",
            format!("{qualified_resource} \"{name}\" is forbidden: {why}"),
        );
        err.details = Some(details(qualified_resource, name, &[]));
        err
    }

    /// 403 Forbidden for a request authorization denied (upstream's `responsewriters.Forbidden`):
    /// `pods "web" is forbidden: User "jane" cannot get resource "pods" ...`, with RBAC's
    /// `reason` after a colon when it gave one.
    pub fn denied(
        attributes: &crate::auth::rbac::Attributes,
        user: &crate::auth::User,
        reason: &str,
    ) -> Self {
        let mut why = attributes
            .denial(user)
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        if !reason.is_empty() {
            why = format!("{why}: {reason}");
        }
        let (group, resource, name) = if attributes.resource_request {
            (
                attributes.api_group.as_str(),
                attributes.resource.as_str(),
                attributes.name.as_str(),
            )
        } else {
            ("", "", "")
        };
        let qualified = if group.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}.{group}")
        };
        let message = match (resource.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {why}"),
            (false, true) => format!("{qualified} is forbidden: {why}"),
            (false, false) => format!("{qualified} {name:?} is forbidden: {why}"),
        };
        let mut err = Self::new(403, "Forbidden", message);
        let mut details = json!({});
        if !resource.is_empty() {
            details["kind"] = json!(resource);
        }
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        err.details = Some(details);
        err
    }

    /// 404 NotFound for an object.
    pub fn not_found(qualified_resource: &str, name: &str) -> Self {
        let mut err = Self::new(
            404,
            "NotFound",
            format!("{qualified_resource} \"{name}\" not found"),
        );
        err.details = Some(details(qualified_resource, name, &[]));
        err
    }

    /// 404 NotFound with a message of its own (e.g. a node agent's "pod not found on this node").
    pub fn not_found_message(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }

    /// 404 NotFound for a path that is not served.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(method: &str, what: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {what}"),
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(qualified_resource: &str, name: &str) -> Self {
        let mut err = Self::new(
            409,
            "AlreadyExists",
            format!("{qualified_resource} \"{name}\" already exists"),
        );
        err.details = Some(details(qualified_resource, name, &[]));
        err
    }

    /// 409 Conflict (stale resourceVersion, failed precondition).
    pub fn conflict(qualified_resource: &str, name: &str, why: &str) -> Self {
        let mut err = Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {qualified_resource} \"{name}\": {why}"),
        );
        err.details = Some(details(qualified_resource, name, &[]));
        err
    }

    /// 409 Conflict of a server-side apply: `causes` are (message, field) pairs, each a
    /// `FieldManagerConflict`, as upstream's `NewApplyConflict`.
    pub fn apply_conflict(message: impl Into<String>, causes: &[(String, String)]) -> Self {
        let mut err = Self::new(409, "Conflict", message);
        let causes: Vec<Value> = causes
            .iter()
            .map(|(message, field)| {
                json!({"reason": "FieldManagerConflict", "message": message, "field": field})
            })
            .collect();
        err.details = Some(json!({"causes": causes}));
        err
    }

    /// 410 Expired: the resourceVersion is too old.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 422 Invalid with field causes.
    pub fn invalid(kind: &str, name: &str, causes: &[FieldCause]) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|cause| {
                if cause.field.is_empty() {
                    cause.message.clone()
                } else {
                    format!("{}: {}", cause.field, cause.message)
                }
            })
            .collect();
        let message = format!("{kind} \"{name}\" is invalid: {}", join_causes(&summary));
        let mut err = Self::new(422, "Invalid", message);
        err.details = Some(details(kind, name, causes));
        err
    }

    /// 422 for a request that is well-formed but cannot be applied (e.g. a failing JSON Patch).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 429 TooManyRequests: try again later, after `retry_after_seconds` when it is not 0 (then
    /// also sent as `Retry-After`, which client-go honours by retrying on its own); `causes`
    /// are (reason, message) pairs, as upstream's eviction gives a `DisruptionBudget` cause.
    pub fn too_many_requests(
        message: impl Into<String>,
        retry_after_seconds: u32,
        causes: &[(&str, String)],
    ) -> Self {
        let mut err = Self::new(429, "TooManyRequests", message);
        let mut details = json!({});
        if retry_after_seconds > 0 {
            details["retryAfterSeconds"] = json!(retry_after_seconds);
        }
        if !causes.is_empty() {
            details["causes"] = causes
                .iter()
                .map(|(reason, message)| json!({"reason": reason, "message": message}))
                .collect();
        }
        err.details = Some(details);
        err
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// An admission webhook's refusal: its code, its reason when it is one of the API's, and
    /// the message naming the webhook.
    pub fn webhook_denied(code: u16, reason: &str, message: String) -> Self {
        const REASONS: [&str; 10] = [
            "BadRequest",
            "Unauthorized",
            "Forbidden",
            "NotFound",
            "AlreadyExists",
            "Conflict",
            "Invalid",
            "TooManyRequests",
            "InternalError",
            "ServiceUnavailable",
        ];
        let reason = REASONS
            .into_iter()
            .find(|known| *known == reason)
            .unwrap_or(match code {
                403 => "Forbidden",
                404 => "NotFound",
                409 => "Conflict",
                422 => "Invalid",
                _ => "BadRequest",
            });
        Self::new(code, reason, message)
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// Maps a storage error on `name` of `qualified_resource`.
    pub fn from_storage(err: StorageError, qualified_resource: &str, name: &str) -> Self {
        match err {
            StorageError::NotFound { .. } => Self::not_found(qualified_resource, name),
            StorageError::AlreadyExists { .. } => Self::already_exists(qualified_resource, name),
            StorageError::Conflict { .. } => Self::conflict(
                qualified_resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            StorageError::Expired {
                requested,
                compacted,
            } => Self::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StorageError::InvalidContinue(message) => Self::bad_request(format!(
                "the provided continue parameter is not valid: {message}"
            )),
            StorageError::Corrupt { key, message } => {
                Self::internal(format!("stored object at {key} is corrupt: {message}"))
            }
            StorageError::Etcd(err) => Self::unavailable(format!("etcd: {err}")),
            err @ StorageError::NoLeader(_) => Self::unavailable(err.to_string()),
        }
    }

    /// The Status object.
    pub fn to_status(&self) -> Value {
        // Cannot fail: the body has string keys and no floats.
        serde_json::to_value(self.status()).unwrap_or_default()
    }
}

/// `metav1.Status` with the fields upstream leaves out when empty left out; `json::to_vec`
/// writes it in the Go struct's order (`{"kind":"Status","apiVersion":"v1","metadata":{},...`).
#[derive(serde::Serialize)]
pub struct StatusBody<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Map<String, Value>,
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<StatusDetails<'a>>,
    code: u16,
}

/// `metav1.StatusDetails`, in the Go struct's order.
#[derive(serde::Serialize)]
struct StatusDetails<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<StatusCause<'a>>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<&'a Value>,
}

/// `metav1.StatusCause`, in the Go struct's order.
#[derive(serde::Serialize)]
struct StatusCause<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a Value>,
}

impl<'a> StatusDetails<'a> {
    fn of(details: &'a Value) -> Self {
        let field = |name: &str| details.get(name).filter(|v| !v.is_null());
        let causes = details
            .get("causes")
            .and_then(Value::as_array)
            .map(|causes| {
                causes
                    .iter()
                    .map(|cause| StatusCause {
                        reason: cause.get("reason"),
                        message: cause.get("message"),
                        field: cause.get("field"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            name: field("name"),
            group: field("group"),
            kind: field("kind"),
            uid: field("uid"),
            causes,
            retry_after_seconds: field("retryAfterSeconds"),
        }
    }
}

impl ApiError {
    /// The `Status` to encode, in upstream's field order (responses and watch ERROR events).
    pub fn status(&self) -> StatusBody<'_> {
        StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: Map::new(),
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details: self.details.as_ref().map(StatusDetails::of),
            code: self.code,
        }
    }

    /// The response body: the `Status` as kube-apiserver encodes it, fields in Go order and a
    /// trailing newline.
    pub fn status_body(&self) -> Vec<u8> {
        let mut text = json::to_vec(&self.to_status());
        text.push(b'\n');
        text
    }
}

fn join_causes(causes: &[String]) -> String {
    match causes {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn details(kind: &str, name: &str, causes: &[FieldCause]) -> Value {
    let (group, kind) = kind.split_once('.').map_or(("", kind), |(k, g)| (g, k));
    let mut details = json!({"name": name, "kind": kind});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    if !causes.is_empty() {
        details["causes"] = causes
            .iter()
            .map(|cause| json!({"reason": cause.reason, "message": cause.message, "field": cause.field}))
            .collect();
    }
    details
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self
            .details
            .as_ref()
            .and_then(|details| details["retryAfterSeconds"].as_u64())
            .filter(|seconds| *seconds > 0);
        let mut response = (
            code,
            [(http::header::CONTENT_TYPE, "application/json")],
            self.status_body(),
        )
            .into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = http::HeaderValue::from_str(&seconds.to_string())
        {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
        response
    }
}

/// A `Status` for a successful deletion.
pub fn success(kind: &str, name: &str, uid: Option<&str>) -> Value {
    let mut details = json!({"name": name, "kind": kind});
    if let Some(uid) = uid {
        details["uid"] = json!(uid);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_kube_apiserver() {
        let status = ApiError::not_found("deployments.apps", "web").to_status();
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["group"], "apps");
        assert_eq!(status["details"]["kind"], "deployments");
    }

    #[test]
    fn bodies_are_encoded_as_kube_apiserver_encodes_them() {
        // Byte for byte what kube-apiserver 1.33 answers (Go struct order, trailing newline).
        assert_eq!(
            String::from_utf8(ApiError::not_found("deployments.apps", "web").status_body())
                .unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
             \"message\":\"deployments.apps \\\"web\\\" not found\",\"reason\":\"NotFound\",\
             \"details\":{\"name\":\"web\",\"group\":\"apps\",\"kind\":\"deployments\"},\"code\":404}\n"
        );
        let cause = FieldCause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "spec.containers".into(),
        };
        let body =
            String::from_utf8(ApiError::invalid("Pod", "p", &[cause]).status_body()).unwrap();
        assert!(
            body.contains(
                "\"details\":{\"name\":\"p\",\"kind\":\"Pod\",\"causes\":[{\"reason\":\
                 \"FieldValueRequired\",\"message\":\"Required value\",\"field\":\"spec.containers\"}]},\
                 \"code\":422}\n"
            ),
            "{body}"
        );
        // Every field of the Value form survives in the text form.
        let error = ApiError::invalid("Pod", "p", &[]);
        let text: Value = serde_json::from_slice(&error.status_body()).unwrap();
        assert_eq!(text, error.to_status());
    }

    #[test]
    fn invalid_lists_every_cause() {
        let causes = [
            FieldCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "spec.containers[0].image".into(),
            },
            FieldCause {
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: \"A\"".into(),
                field: "metadata.name".into(),
            },
        ];
        let status = ApiError::invalid("Pod", "A", &causes).to_status();
        assert_eq!(
            status["message"],
            "Pod \"A\" is invalid: [spec.containers[0].image: Required value, metadata.name: Invalid value: \"A\"]"
        );
        assert_eq!(status["details"]["causes"].as_array().unwrap().len(), 2);
    }
}
