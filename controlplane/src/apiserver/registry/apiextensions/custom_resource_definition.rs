//! `apiextensions.k8s.io/v1` CustomResourceDefinition: upstream's validation of the definition
//! (names, versions, scope, schemas, printer columns, subresources), its defaults, the status
//! it starts with and keeps (stored versions), the cleanup finalizer and Terminating condition
//! a delete sets, and the table. Serving the kinds it defines is
//! [`crate::apiserver::custom_resources`]' job.

use crate::apiserver::custom_resources::schema::Structural;
use crate::apiserver::registry::prelude::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as api;

/// The `customresourcedefinitions` resource.
pub static RESOURCE: Resource = Resource {
    group: "apiextensions.k8s.io",
    version: "v1",
    kind: "CustomResourceDefinition",
    plural: "customresourcedefinitions",
    singular: "customresourcedefinition",
    namespaced: false,
    short_names: &["crd", "crds"],
    categories: &["api-extensions"],
    subresources: &[Subresource::Status],
    storage_prefix: "apiextensions.k8s.io/customresourcedefinitions",
    field_labels: &[],
    strategy: &CustomResourceDefinitions,
};

/// The finalizer a delete adds: the definition stays (Terminating) until every object of its
/// kind is gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The printer column types upstream accepts.
const COLUMN_TYPES: [&str; 5] = ["boolean", "date", "integer", "number", "string"];

/// The printer column formats upstream accepts.
const COLUMN_FORMATS: [&str; 8] = [
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "password",
];

/// The `CustomResourceDefinition` strategy.
pub struct CustomResourceDefinitions;

impl Strategy for CustomResourceDefinitions {
    typed_as!("v1.CustomResourceDefinition", api::CustomResourceDefinition);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        validate_definition(e, object, old);
    }

    /// `SetDefaults_CustomResourceDefinitionSpec`.
    fn default(&self, object: &mut Value) {
        let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let kind = names
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if names
                .get("singular")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                names.insert("singular".into(), json!(kind.to_lowercase()));
            }
            if !kind.is_empty()
                && names
                    .get("listKind")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                names.insert("listKind".into(), json!(format!("{kind}List")));
            }
        }
        if spec.get("conversion").is_none_or(Value::is_null) {
            spec.insert("conversion".into(), json!({"strategy": "None"}));
        }
        if let Some(port) = spec
            .get_mut("conversion")
            .and_then(|c| c.get_mut("webhook"))
            .and_then(|w| w.get_mut("clientConfig"))
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
            && port.get("port").is_none_or(Value::is_null)
        {
            port.insert("port".into(), json!(443));
        }
    }

    /// Upstream's PrepareForCreate: an empty status but for the storage version.
    fn status_on_create(&self, _object: &Value) -> Option<Value> {
        Some(json!({"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": []}))
    }

    /// The storage version is always among `status.storedVersions` (upstream's
    /// PrepareForCreate/Update), so a storage migration knows what may be in etcd.
    fn canonicalize(&self, object: &mut Value) {
        let Some(storage) = storage_version(object).map(str::to_owned) else {
            return;
        };
        let status = &mut object["status"];
        if !status.is_object() {
            *status = json!({"acceptedNames": {"plural": "", "kind": ""}});
        }
        let stored = &mut status["storedVersions"];
        if !stored.is_array() {
            *stored = json!([]);
        }
        if let Some(list) = stored.as_array_mut()
            && !list.iter().any(|v| v.as_str() == Some(&storage))
        {
            list.push(json!(storage));
        }
    }

    /// A delete never removes a definition at once: its objects go first.
    fn deletion_finalizers(&self) -> &'static [&'static str] {
        &[CLEANUP_FINALIZER]
    }

    /// The Terminating condition, as upstream's REST Delete sets it.
    fn mark_terminating(&self, object: &mut Value) {
        set_condition(
            object,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(crate::apiserver::tables::upstream::CREATED_AT_COLUMNS)
    }

    fn cells(&self, object: &Value, _now: Timestamp) -> Vec<Value> {
        crate::apiserver::tables::created_at_cells(object)
    }

    fn samples(&self) -> Samples {
        let crd = |plural: &str| {
            json!({"metadata": {"name": "widgets.example.com"}, "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": plural, "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                    "openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}})
        };
        Samples {
            valid: crd("widgets"),
            invalid: crd("gadgets"),
            invalid_field: "metadata.name",
        }
    }
}

/// The name of the (first) version marked as the storage version.
pub fn storage_version(definition: &Value) -> Option<&str> {
    definition["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"] == json!(true))
        .and_then(|v| v["name"].as_str())
}

/// Sets the condition `kind` (replacing one of that type; the transition time moves only when
/// the status does), as upstream's `SetCRDCondition`.
pub fn set_condition(object: &mut Value, kind: &str, status: &str, reason: &str, message: &str) {
    if !object["status"].is_object() {
        object["status"] = json!({});
    }
    let conditions = &mut object["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let fresh = json!({
        "type": kind,
        "status": status,
        "lastTransitionTime": crate::apiserver::meta::now(),
        "reason": reason,
        "message": message,
    });
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(existing) => {
            let since = if existing["status"] == status {
                existing["lastTransitionTime"].clone()
            } else {
                fresh["lastTransitionTime"].clone()
            };
            *existing = fresh;
            existing["lastTransitionTime"] = since;
        }
        None => list.push(fresh),
    }
}

/// The condition `kind`'s status ("True", "False", "Unknown"; None when absent).
pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
}

/// `ValidateCustomResourceDefinition` (and `...Update` when `old` is given), apart from the
/// ObjectMeta rules every kind gets.
fn validate_definition(e: &mut Errs, object: &Value, old: Option<&Value>) {
    let spec = object.get("spec");
    let group = str_of(spec, "group");
    let names = get(spec, "names");
    let plural = str_of(names, "plural");
    let name = str_of(object.get("metadata"), "name");
    if name != format!("{plural}.{group}") {
        e.invalid_s(
            "metadata.name",
            name,
            r#"must be spec.names.plural+"."+spec.group"#,
        );
    }
    if group.is_empty() {
        e.required("spec.group", "");
    } else if let msgs @ [_, ..] = is_dns1123_subdomain(group).as_slice() {
        e.invalid_s("spec.group", group, &msgs.join(","));
    } else if !group.contains('.') {
        e.invalid_s(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        );
    }
    let scope = str_of(spec, "scope");
    if scope.is_empty() {
        e.required("spec.scope", "");
    } else if !["Cluster", "Namespaced"].contains(&scope) {
        e.not_supported("spec.scope", scope, &["Cluster", "Namespaced"]);
    }
    versions(e, spec);
    for field in ["plural", "singular", "kind", "listKind"] {
        if str_of(names, field).is_empty() {
            e.required(&format!("spec.names.{field}"), "");
        }
    }
    definition_names(e, names, "spec.names");
    definition_names(
        e,
        get(object.get("status"), "acceptedNames"),
        "status.acceptedNames",
    );
    conversion(e, get(spec, "conversion"));
    if let Some(old) = old {
        let old_spec = old.get("spec");
        for (field, path) in [("group", "spec.group")] {
            if str_of(spec, field) != str_of(old_spec, field) {
                e.invalid_s(path, str_of(spec, field), IMMUTABLE);
            }
        }
        if plural != str_of(get(old_spec, "names"), "plural") {
            e.invalid_s("spec.names.plural", plural, IMMUTABLE);
        }
    }
}

/// The versions: names, exactly one storage version, a structural schema each, subresources
/// and printer columns.
fn versions(e: &mut Errs, spec: Option<&Value>) {
    let versions = arr_of(spec, "versions");
    if versions.is_empty() {
        e.required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        );
        return;
    }
    let mut seen = BTreeSet::new();
    let mut unique = true;
    let mut storage = 0;
    for (i, version) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = str_of(Some(version), "name");
        if !seen.insert(name) {
            unique = false;
        }
        if version["storage"] == json!(true) {
            storage += 1;
        }
        if let msgs @ [_, ..] = is_dns1035_label(name).as_slice() {
            e.invalid_s(&format!("{path}.name"), name, &msgs.join(","));
        }
        let schema = &version["schema"]["openAPIV3Schema"];
        let schema_path = format!("{path}.schema.openAPIV3Schema");
        if schema.is_null() {
            e.required(&schema_path, "schemas are required");
        } else {
            if let Err(causes) = Structural::parse(schema, &schema_path) {
                e.0.extend(causes);
            }
            if schema["nullable"] == json!(true) {
                e.forbidden(
                    &format!("{schema_path}.nullable"),
                    "nullable cannot be true at the root",
                );
            }
        }
        subresources(
            e,
            version.get("subresources"),
            &format!("{path}.subresources"),
        );
        for (j, column) in arr_of(Some(version), "additionalPrinterColumns")
            .iter()
            .enumerate()
        {
            printer_column(e, column, &format!("{path}.additionalPrinterColumns[{j}]"));
        }
        if let Some(warning) = str_opt(Some(version), "deprecationWarning")
            && warning.len() > 256
        {
            e.invalid_s(
                &format!("{path}.deprecationWarning"),
                warning,
                "must be <= 256 characters long",
            );
        }
    }
    if !unique {
        e.invalid(
            "spec.versions",
            &compact(&json!(versions)),
            "must contain unique version names",
        );
    }
    if storage != 1 {
        e.invalid(
            "spec.versions",
            &compact(&json!(versions)),
            "must have exactly one version marked as storage version",
        );
    }
}

/// `ValidateCustomResourceDefinitionNames`, for the spec's names and the accepted ones.
fn definition_names(e: &mut Errs, names: Option<&Value>, path: &str) {
    for field in ["plural", "singular"] {
        let value = str_of(names, field);
        if let msgs @ [_, ..] = is_dns1035_label(value).as_slice()
            && !value.is_empty()
        {
            e.invalid_s(&format!("{path}.{field}"), value, &msgs.join(","));
        }
    }
    for field in ["kind", "listKind"] {
        let value = str_of(names, field);
        if let msgs @ [_, ..] = is_dns1035_label(&value.to_lowercase()).as_slice()
            && !value.is_empty()
        {
            e.invalid_s(
                &format!("{path}.{field}"),
                value,
                &format!(
                    "may have mixed case, but should otherwise match: {}",
                    msgs.join(",")
                ),
            );
        }
    }
    for (list, field) in [("shortNames", "shortNames"), ("categories", "categories")] {
        for (i, value) in strings_of(names, list).into_iter().enumerate() {
            if let msgs @ [_, ..] = is_dns1035_label(value).as_slice() {
                e.invalid_s(&format!("{path}.{field}[{i}]"), value, &msgs.join(","));
            }
        }
    }
    let kind = str_of(names, "kind");
    if !kind.is_empty() && kind == str_of(names, "listKind") {
        e.invalid_s(
            &format!("{path}.listKind"),
            kind,
            "kind and listKind may not be the same",
        );
    }
}

/// `ValidateCustomResourceDefinitionSubresources`: the scale paths.
fn subresources(e: &mut Errs, subresources: Option<&Value>, path: &str) {
    let Some(scale) = get(subresources, "scale") else {
        return;
    };
    for (field, under) in [
        ("specReplicasPath", ".spec."),
        ("statusReplicasPath", ".status."),
    ] {
        let value = str_of(Some(scale), field);
        let at = format!("{path}.scale.{field}");
        if value.is_empty() {
            e.required(&at, "");
        } else if simple_json_path(e, value, &at) && !value.starts_with(under) {
            e.invalid_s(
                &at,
                value,
                &format!(
                    "should be a json path under {}",
                    under.trim_end_matches('.')
                ),
            );
        }
    }
    let selector = str_of(Some(scale), "labelSelectorPath");
    let at = format!("{path}.scale.labelSelectorPath");
    if !selector.is_empty()
        && simple_json_path(e, selector, &at)
        && !selector.starts_with(".spec.")
        && !selector.starts_with(".status.")
    {
        e.invalid_s(
            &at,
            selector,
            "should be a json path under either .spec or .status",
        );
    }
}

/// `ValidateCustomResourceColumnDefinition`.
fn printer_column(e: &mut Errs, column: &Value, path: &str) {
    let column = Some(column);
    if str_of(column, "name").is_empty() {
        e.required(&format!("{path}.name"), "");
    }
    let types = COLUMN_TYPES.join(",");
    match str_of(column, "type") {
        "" => e.required(&format!("{path}.type"), &format!("must be one of {types}")),
        kind if !COLUMN_TYPES.contains(&kind) => {
            e.invalid_s(
                &format!("{path}.type"),
                kind,
                &format!("must be one of {types}"),
            );
        }
        _ => {}
    }
    let format = str_of(column, "format");
    if !format.is_empty() && !COLUMN_FORMATS.contains(&format) {
        e.invalid_s(
            &format!("{path}.format"),
            format,
            &format!("must be one of {}", COLUMN_FORMATS.join(",")),
        );
    }
    let json_path = str_of(column, "jsonPath");
    if json_path.is_empty() {
        e.required(&format!("{path}.JSONPath"), "");
    } else {
        simple_json_path(e, json_path, &format!("{path}.JSONPath"));
    }
}

/// `validateSimpleJSONPath`: whether `value` is a dotted path (a cause otherwise).
fn simple_json_path(e: &mut Errs, value: &str, path: &str) -> bool {
    if !value.starts_with('.') {
        e.invalid_s(path, value, "must be a simple json path starting with .");
        return false;
    }
    true
}

/// `validateCustomResourceConversion`: None, or a Webhook with its client config.
fn conversion(e: &mut Errs, conversion: Option<&Value>) {
    let strategy = str_of(conversion, "strategy");
    match strategy {
        "None" | "" => {
            if get(conversion, "webhook").is_some() {
                e.forbidden(
                    "spec.conversion.webhookClientConfig",
                    "should not be set when strategy is not set to Webhook",
                );
            }
        }
        "Webhook" => {
            let client = get(get(conversion, "webhook"), "clientConfig");
            let url = str_of(client, "url");
            let service = get(client, "service");
            if client.is_none() {
                e.required(
                    "spec.conversion.webhookClientConfig",
                    "required when strategy is set to Webhook",
                );
            } else if url.is_empty() == service.is_none() {
                e.required(
                    "spec.conversion.webhookClientConfig",
                    "exactly one of url or service is required",
                );
            }
        }
        other => e.not_supported("spec.conversion.strategy", other, &["None", "Webhook"]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn causes(object: &Value) -> Vec<String> {
        RESOURCE.cause_messages(object)
    }

    fn widget() -> Value {
        let mut object = CustomResourceDefinitions.samples().valid;
        object["apiVersion"] = json!("apiextensions.k8s.io/v1");
        object["kind"] = json!("CustomResourceDefinition");
        CustomResourceDefinitions.default(&mut object);
        object
    }

    #[test]
    fn defaults_fill_the_names_and_conversion() {
        let mut object = CustomResourceDefinitions.samples().valid;
        object["spec"]["names"] = json!({"plural": "widgets", "kind": "Widget"});
        CustomResourceDefinitions.default(&mut object);
        assert_eq!(object["spec"]["names"]["singular"], "widget");
        assert_eq!(object["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(object["spec"]["conversion"], json!({"strategy": "None"}));
        assert!(causes(&object).is_empty(), "{:?}", causes(&object));
    }

    #[test]
    fn names_group_versions_and_columns_are_checked_as_upstream() {
        let mut object = widget();
        object["spec"]["group"] = json!("example");
        object["metadata"]["name"] = json!("widgets.example");
        assert_eq!(
            causes(&object),
            vec![
                r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#
            ]
        );

        let mut object = widget();
        object["spec"]["versions"][0]["storage"] = json!(false);
        let found = causes(&object);
        assert!(
            found
                .iter()
                .any(|c| c.starts_with("spec.versions: Invalid value: ")
                    && c.ends_with("must have exactly one version marked as storage version")),
            "{found:?}"
        );

        let mut object = widget();
        object["spec"]["versions"][0]["schema"] = Value::Null;
        assert_eq!(
            causes(&object),
            vec!["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]
        );

        let mut object = widget();
        object["spec"]["versions"][0]["additionalPrinterColumns"] =
            json!([{"name": "Size", "type": "int", "jsonPath": "spec.size"}]);
        assert_eq!(
            causes(&object),
            vec![
                r#"spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "int": must be one of boolean,date,integer,number,string"#,
                r#"spec.versions[0].additionalPrinterColumns[0].JSONPath: Invalid value: "spec.size": must be a simple json path starting with ."#,
            ]
        );

        let mut object = widget();
        object["spec"]["names"]["kind"] = json!("Wid_get");
        object["spec"]["scope"] = json!("Global");
        let found = causes(&object);
        assert!(found.contains(&r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#.to_owned()), "{found:?}");
        assert!(found.iter().any(|c| c.starts_with(r#"spec.names.kind: Invalid value: "Wid_get": may have mixed case, but should otherwise match: "#)), "{found:?}");
    }

    #[test]
    fn group_and_plural_are_immutable() {
        let old = widget();
        let mut new = old.clone();
        new["spec"]["names"]["plural"] = json!("gizmos");
        new["metadata"]["name"] = json!("gizmos.example.com");
        let found: Vec<String> = RESOURCE
            .validate(&new, Some(&old))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            found
                .iter()
                .any(|c| c == r#"spec.names.plural: Invalid value: "gizmos": field is immutable"#),
            "{found:?}"
        );
    }

    #[test]
    fn a_delete_adds_the_cleanup_finalizer_and_terminating() {
        assert_eq!(
            CustomResourceDefinitions.deletion_finalizers(),
            [CLEANUP_FINALIZER]
        );
        let mut object = widget();
        CustomResourceDefinitions.mark_terminating(&mut object);
        assert_eq!(condition(&object, "Terminating"), Some("True"));
    }

    #[test]
    fn the_storage_version_is_always_stored() {
        let mut object = widget();
        CustomResourceDefinitions.canonicalize(&mut object);
        assert_eq!(object["status"]["storedVersions"], json!(["v1"]));
        object["spec"]["versions"] = json!([
            {"name": "v1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}},
            {"name": "v2", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]);
        CustomResourceDefinitions.canonicalize(&mut object);
        assert_eq!(object["status"]["storedVersions"], json!(["v1", "v2"]));
    }
}
