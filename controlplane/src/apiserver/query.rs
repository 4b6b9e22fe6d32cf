//! Query parameters and content negotiation of API requests.

use std::collections::HashMap;

use flotilla_apimachinery::query::pairs;
use serde_json::Value;

use super::{
    apply::managed_fields::{MAX_MANAGER_LENGTH, manager_from_user_agent},
    selectors::{FieldSelector, LabelSelector, parse_field_selector, parse_label_selector},
    status::{ApiError, FieldCause},
};

/// The options of a write, which upstream validates as an object of their own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOptions {
    /// `CreateOptions` (POST).
    Create,
    /// `UpdateOptions` (PUT).
    Update,
    /// `PatchOptions`; an apply needs a fieldManager and alone may `force`.
    Patch {
        /// `application/apply-patch+yaml`.
        apply: bool,
    },
}

impl WriteOptions {
    fn kind(self) -> &'static str {
        match self {
            Self::Create => "CreateOptions.meta.k8s.io",
            Self::Update => "UpdateOptions.meta.k8s.io",
            Self::Patch { .. } => "PatchOptions.meta.k8s.io",
        }
    }
}

/// The query string of a request, the User-Agent that names the manager of its writes, and
/// the user making it (whom admission judges; None for the server's own writes).
#[derive(Debug, Clone, Default)]
pub struct Query(
    HashMap<String, String>,
    Option<String>,
    Option<std::sync::Arc<crate::auth::User>>,
);

impl Query {
    /// Parses a raw query string (`a=b&c=d`).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|raw| pairs(raw).into_iter().collect::<HashMap<String, String>>())
            .unwrap_or_default();
        Self(pairs, None, None)
    }

    /// The request's User-Agent (empty when it sent none), which names the manager of its
    /// writes when it gives no `fieldManager`.
    pub fn with_user_agent(mut self, user_agent: Option<&str>) -> Self {
        self.1 = Some(user_agent.unwrap_or_default().to_owned());
        self
    }

    /// The request is made by `user`.
    pub fn with_requester(mut self, user: std::sync::Arc<crate::auth::User>) -> Self {
        self.2 = Some(user);
        self
    }

    /// Who makes the request (None: the server itself).
    pub fn requester(&self) -> Option<&crate::auth::User> {
        self.2.as_deref()
    }

    /// Whether `name` is present, even empty.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The manager of a write (upstream's `managerOrUserAgent`): `fieldManager`, else the
    /// User-Agent's prefix; writes the API server makes itself (no request) are
    /// `kube-apiserver`'s, as upstream's loopback client names itself.
    pub fn field_manager(&self) -> String {
        match (self.get("fieldManager"), &self.1) {
            (Some(manager), _) => manager.to_owned(),
            (None, Some(user_agent)) => manager_from_user_agent(user_agent),
            (None, None) => "kube-apiserver".to_owned(),
        }
    }

    /// Every decoded `key=value` pair of a raw query string in order, repeated keys kept (exec's
    /// `command=sh&command=-c`).
    pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
        raw.map(pairs).unwrap_or_default()
    }

    /// The value of `name`, if present and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter as kube-apiserver converts it: absent is false, present is true
    /// unless it is `0` or `false` in any case (so `?watch`, `?watch=True` and `?watch=yes` watch).
    pub fn flag(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|value| is_true(value))
    }

    /// Upstream's validation of a write's options (`ValidateCreateOptions` and its siblings):
    /// 422 on `CreateOptions`/`UpdateOptions`/`PatchOptions` naming every bad parameter.
    pub fn check_write_options(&self, options: WriteOptions) -> Result<(), ApiError> {
        let mut causes = Vec::new();
        let mut cause = |reason: &str, field: &str, message: String| {
            causes.push(FieldCause {
                reason: reason.into(),
                message,
                field: field.into(),
            });
        };
        let manager = self.get("fieldManager").unwrap_or_default();
        match options {
            WriteOptions::Patch { apply: true } if manager.is_empty() => cause(
                "FieldValueRequired",
                "fieldManager",
                "Required value: is required for apply patch".into(),
            ),
            WriteOptions::Patch { apply: false } if self.has("force") => cause(
                "FieldValueForbidden",
                "force",
                "Forbidden: may not be specified for non-apply patch".into(),
            ),
            _ => {}
        }
        if manager.len() > MAX_MANAGER_LENGTH {
            cause(
                "FieldValueTooLong",
                "fieldManager",
                format!("Too long: may not be more than {MAX_MANAGER_LENGTH} bytes"),
            );
        }
        for (position, c) in manager.char_indices() {
            if !is_printable(c) {
                cause(
                    "FieldValueInvalid",
                    "fieldManager",
                    format!(
                        "Invalid value: {manager:?}: invalid character U+{:04X} (at position {position})",
                        u32::from(c)
                    ),
                );
            }
        }
        // The values each accepts are the ones `dry_run` and `field_validation` read.
        if self.dry_run().is_err() {
            let dry_run = self.get("dryRun").unwrap_or_default();
            cause(
                "FieldValueNotSupported",
                "dryRun",
                format!("Unsupported value: []string{{{dry_run:?}}}: supported values: \"All\""),
            );
        }
        if self.field_validation().is_err() {
            let validation = self.get("fieldValidation").unwrap_or_default();
            cause(
                "FieldValueNotSupported",
                "fieldValidation",
                format!(
                    "Unsupported value: {validation:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                ),
            );
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(options.kind(), "", &causes))
        }
    }

    /// `?dryRun=All` (the only value Kubernetes defines).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "unsupported dryRun value {other:?}: the only supported value is \"All\""
            ))),
        }
    }

    /// A non-negative integer parameter.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|value| {
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "invalid {name} {value:?}: must be a non-negative integer"
                        ))
                    })
            })
            .transpose()
    }

    /// `?labelSelector=`.
    pub fn label_selector(&self) -> Result<LabelSelector, ApiError> {
        parse_label_selector(self.get("labelSelector").unwrap_or_default())
            .map_err(|err| ApiError::bad_request(format!("unable to parse labelSelector: {err}")))
    }

    /// `?fieldSelector=`, checked against the fields the resource supports.
    pub fn field_selector(&self, supported: &[&str]) -> Result<FieldSelector, ApiError> {
        let selector = parse_field_selector(self.get("fieldSelector").unwrap_or_default())
            .map_err(|err| {
                ApiError::bad_request(format!("unable to parse fieldSelector: {err}"))
            })?;
        let mut allowed = vec!["metadata.name", "metadata.namespace"];
        allowed.extend_from_slice(supported);
        selector
            .check_supported(&allowed)
            .map_err(|err| ApiError::bad_request(err.to_string()))?;
        Ok(selector)
    }

    /// `?fieldValidation=`: Strict, Warn (the default) or Ignore.
    pub fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        match self.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation {other:?} is not one of Strict, Warn, Ignore"
            ))),
        }
    }
}

pub use flotilla_apimachinery::query::is_true;

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
/// Rust's std has no general categories, so the format characters (Cf) are listed.
fn is_printable(c: char) -> bool {
    let format = matches!(
        c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
            | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    );
    c == ' ' || !(c.is_control() || c.is_whitespace() || format || is_private_use(c))
}

/// Private-use code points, which Go's IsPrint also refuses.
fn is_private_use(c: char) -> bool {
    matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}')
}

/// What to do with fields the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject the request.
    Strict,
    /// Accept, with a Warning header.
    Warn,
    /// Accept silently (drop them).
    Ignore,
}

/// How the client wants objects rendered (from the Accept header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    /// The objects themselves.
    Object,
    /// A meta.k8s.io/v1 Table (kubectl get).
    Table,
    /// PartialObjectMetadata(List).
    Metadata,
}

/// Picks the rendering from an Accept header: the first alternative we can produce wins.
pub fn rendering(accept: Option<&str>) -> Rendering {
    let Some(accept) = accept else {
        return Rendering::Object;
    };
    for alternative in accept.split(',') {
        let alternative = alternative.trim();
        if !alternative.starts_with("application/json") && !alternative.starts_with("*/*") {
            continue;
        }
        if alternative.contains("as=Table") {
            return Rendering::Table;
        }
        if alternative.contains("as=PartialObjectMetadata") {
            return Rendering::Metadata;
        }
        return Rendering::Object;
    }
    Rendering::Object
}

/// PartialObjectMetadata of an object.
pub fn partial_metadata(object: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object["metadata"].clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_options_are_validated_as_upstreams_options_kinds() {
        let status = |raw: &str, options| {
            Query::parse(Some(raw))
                .check_write_options(options)
                .unwrap_err()
                .to_status()
        };
        let apply = WriteOptions::Patch { apply: true };
        let missing = status("force=true", apply);
        assert_eq!(missing["code"], 422);
        assert_eq!(
            missing["message"],
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        let long = format!("fieldManager={}", "m".repeat(129));
        assert_eq!(
            status(&long, WriteOptions::Create)["message"],
            "CreateOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"
        );
        let bell = status("fieldManager=a%07b", WriteOptions::Update);
        assert_eq!(bell["details"]["causes"][0]["field"], "fieldManager");
        assert_eq!(
            bell["details"]["causes"][0]["message"],
            "Invalid value: \"a\\u{7}b\": invalid character U+0007 (at position 1)"
        );
        assert_eq!(
            status(
                "fieldManager=x&force=true",
                WriteOptions::Patch { apply: false }
            )["message"],
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
        );
        let both = status("dryRun=Yes&fieldValidation=Loose", WriteOptions::Create);
        assert_eq!(both["details"]["causes"].as_array().unwrap().len(), 2);
        assert_eq!(
            both["details"]["causes"][1]["message"],
            "Unsupported value: \"Loose\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
        );
        // What kubectl sends passes: a printable manager (spaces too), apply with force.
        for (raw, options) in [
            (
                "fieldManager=kubectl-client-side-apply",
                WriteOptions::Patch { apply: false },
            ),
            ("fieldManager=my manager&force=true", apply),
            ("dryRun=All&fieldValidation=Strict", WriteOptions::Create),
            ("", WriteOptions::Update),
        ] {
            assert!(
                Query::parse(Some(raw)).check_write_options(options).is_ok(),
                "{raw}"
            );
        }
    }

    #[test]
    fn query_strings_are_decoded() {
        let query = Query::parse(Some(
            "labelSelector=environment+in+%28production%2C+qa%29&limit=500&dryRun=All",
        ));
        assert_eq!(
            query.get("labelSelector"),
            Some("environment in (production, qa)")
        );
        assert_eq!(query.integer("limit").unwrap(), Some(500));
        assert!(query.dry_run().unwrap());
        assert!(Query::parse(Some("limit=-1")).integer("limit").is_err());
        assert!(Query::parse(Some("dryRun=Yes")).dry_run().is_err());
        // Booleans as upstream converts them: present and not 0/false (any case) is true.
        for (raw, expected) in [
            ("watch=true", true),
            ("watch=True", true),
            ("watch=1", true),
            ("watch=yes", true),
            ("watch", true),
            ("watch=", true),
            ("watch=false", false),
            ("watch=FALSE", false),
            ("watch=0", false),
            ("other=1", false),
        ] {
            assert_eq!(Query::parse(Some(raw)).flag("watch"), expected, "{raw}");
        }
        assert_eq!(pairs("a=%2"), [("a".to_owned(), "%2".to_owned())]);
    }

    #[test]
    fn kubectl_accept_headers() {
        assert_eq!(
            rendering(Some(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            )),
            Rendering::Table
        );
        assert_eq!(
            rendering(Some("application/vnd.kubernetes.protobuf,application/json")),
            Rendering::Object
        );
        assert_eq!(rendering(None), Rendering::Object);
    }
}
