//! The registry test: every served kind has every piece (validation of its own, defaults that
//! settle, a table, a patch schema, a typed JSON round trip, a protobuf round trip), so no kind
//! is half-served.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (project rule).

mod fixtures;
mod validation;
mod validation_more;

use serde_json::{Value, json};

use super::{BUILTIN, Registry, RegistryError, Resource, Subresource};
use crate::apiserver::machinery::decode::decode_object;
use crate::apiserver::meta::prepare_create;

/// A sample as the generic code sees it on create: apiVersion, kind and namespace filled in.
fn as_sent(resource: &Resource, mut object: Value) -> Value {
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    if resource.namespaced {
        object["metadata"]["namespace"] = json!("default");
    }
    object
}

#[test]
fn every_served_kind_has_every_piece() {
    // Every kind is checked, and all that lack a piece are named at the end.
    let lacking: Vec<&str> = Registry::new()
        .all()
        .into_iter()
        .filter(|resource| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_every_piece(resource)))
                .is_err()
        })
        .map(|resource| resource.kind)
        .collect();
    assert!(lacking.is_empty(), "kinds lacking a piece: {lacking:?}");
}

/// Panics, saying which piece, when `resource` lacks one.
fn check_every_piece(resource: &Resource) {
    let now = jiff::Timestamp::now();
    {
        let kind = resource.kind;
        let strategy = resource.strategy;
        let samples = strategy.samples();

        // A typed JSON round trip that knows every field of the valid sample.
        let mut valid = as_sent(resource, samples.valid.clone());
        let unknown = decode_object(strategy.go_type(), strategy.round_trip(), &mut valid)
            .unwrap_or_else(|err| panic!("{kind}: the valid sample does not decode: {err}"));
        assert!(unknown.is_empty(), "{kind}: unknown fields {unknown:?}");

        // Validation accepts the valid sample and the kind's own rules reject the invalid one.
        let causes = resource.validate(&valid, None);
        assert!(
            causes.is_empty(),
            "{kind}: valid sample rejected: {causes:?}"
        );
        let invalid = as_sent(resource, samples.invalid.clone());
        let causes = resource.validate(&invalid, None);
        // Only a review may have nothing to reject (a SelfSubjectReview asks nothing).
        let nothing_to_reject = strategy.is_review() && samples.invalid_field.is_empty();
        assert!(
            nothing_to_reject || causes.iter().any(|c| c.field == samples.invalid_field),
            "{kind}: the invalid sample got {causes:?}, not a cause at {}",
            samples.invalid_field
        );

        // Defaults settle: applying them to a created object changes nothing more, and the
        // defaulted object is still valid and still decodes.
        let mut created = valid.clone();
        // A review is answered as sent: nothing is created.
        if !strategy.is_review() {
            prepare_create(resource, &mut created);
        }
        strategy.prepare_named(&mut created);
        let mut again = created.clone();
        strategy.default(&mut again);
        assert_eq!(again, created, "{kind}: defaults are not idempotent");
        let causes = resource.validate(&created, None);
        assert!(
            causes.is_empty(),
            "{kind}: defaulted sample rejected: {causes:?}"
        );
        let mut reencoded = created.clone();
        let unknown = decode_object(strategy.go_type(), strategy.round_trip(), &mut reencoded)
            .unwrap_or_else(|err| panic!("{kind}: the defaulted sample does not decode: {err}"));
        assert!(
            unknown.is_empty(),
            "{kind}: defaults wrote unknown fields {unknown:?}"
        );

        // A protobuf round trip (what kubectl 1.32+ and client-go send and ask for): the kind
        // and its list are in the generated schema, and the created object survives it.
        let encoded = flotilla_apimachinery::protobuf::encode_object(&created)
            .unwrap_or_else(|err| panic!("{kind}: no protobuf encoding: {err}"));
        let decoded = flotilla_apimachinery::protobuf::decode_object(&encoded)
            .unwrap_or_else(|err| panic!("{kind}: its protobuf does not decode: {err}"));
        assert_eq!(
            decoded, created,
            "{kind}: the protobuf round trip changed the object"
        );
        // Reviews are never listed, and have no list kind.
        if !strategy.is_review() {
            let list = json!({
                "apiVersion": resource.api_version(),
                "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": "7"},
                "items": [created],
            });
            let encoded = flotilla_apimachinery::protobuf::encode_object(&list)
                .unwrap_or_else(|err| panic!("{kind}List: no protobuf encoding: {err}"));
            let decoded = flotilla_apimachinery::protobuf::decode_object(&encoded).unwrap();
            // A list's items carry no apiVersion and kind in protobuf (nor in upstream's JSON).
            let mut item = created.clone();
            if let Some(item) = item.as_object_mut() {
                item.remove("apiVersion");
                item.remove("kind");
            }
            assert_eq!(
                decoded["items"][0], item,
                "{kind}List: the round trip changed an item"
            );
        }

        // JSON as kube-apiserver writes it: the Go struct's field order, nothing lost.
        let text = flotilla_apimachinery::json::to_vec(&created);
        // A review's metadata has no name to come first.
        let first_in_metadata = if strategy.is_review() {
            ""
        } else {
            "\"name\":"
        };
        let prefix = format!(
            "{{\"kind\":\"{kind}\",\"apiVersion\":\"{}\",\"metadata\":{{{first_in_metadata}",
            resource.api_version()
        );
        assert!(
            text.starts_with(prefix.as_bytes()),
            "{kind}: JSON not in Go's order: {}",
            String::from_utf8_lossy(&text)
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&text).unwrap(),
            created,
            "{kind}: the JSON encoding changed the object"
        );

        // A table with a row as wide as its columns.
        let columns = strategy.columns();
        assert!(!columns.is_empty(), "{kind}: no table columns");
        let cells = strategy.cells(&created, now);
        assert_eq!(cells.len(), columns.len(), "{kind}: row and columns differ");

        // A strategic-merge schema, and a patch of a label goes through it.
        let schema =
            crate::apiserver::strategic_merge::Schema::of_kind(&resource.api_version(), kind)
                .unwrap_or_else(|| panic!("{kind}: no strategic-merge schema"));
        let patched = crate::apiserver::strategic_merge::apply_strategic_merge_patch(
            &created,
            &json!({"metadata": {"labels": {"patched": "yes"}}}),
            schema,
        )
        .unwrap();
        assert_eq!(patched["metadata"]["labels"]["patched"], "yes", "{kind}");

        // A status subresource starts from the strategy's status, not the client's.
        if resource.has(Subresource::Status) && strategy.status_on_create(&valid).is_some() {
            let mut with_status = valid.clone();
            with_status["status"] = json!({"bogus": true});
            prepare_create(resource, &mut with_status);
            assert!(
                with_status["status"].get("bogus").is_none(),
                "{kind}: status kept"
            );
            // ...and has every field its Go type always writes (no `omitempty`), as the
            // answer to a create does upstream: a typed round trip adds nothing to it.
            let typed = (strategy.round_trip())(&with_status.to_string())
                .unwrap_or_else(|err| panic!("{kind}: the created object does not decode: {err}"));
            assert_eq!(
                typed["status"], with_status["status"],
                "{kind}: the created status lacks fields its type always has"
            );
        }
    }
}

#[test]
fn created_statuses_have_the_fields_upstream_always_writes() {
    let created = |plural: &str, object: Value| {
        let resource = *BUILTIN.iter().find(|r| r.plural == plural).unwrap();
        let mut object = as_sent(resource, object);
        prepare_create(resource, &mut object);
        object["status"].clone()
    };
    let rc = created(
        "replicationcontrollers",
        json!({"metadata": {"name": "rc"}, "spec": {"selector": {"a": "b"}}}),
    );
    assert_eq!(rc, json!({"replicas": 0}));
    let ds = created(
        "daemonsets",
        json!({"metadata": {"name": "ds"}, "spec": {}}),
    );
    assert_eq!(
        ds,
        json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
               "numberMisscheduled": 0, "numberReady": 0})
    );
    // A Deployment's status fields are all optional: it starts empty, as upstream's.
    let deployment = created(
        "deployments",
        json!({"metadata": {"name": "d"}, "spec": {}}),
    );
    assert_eq!(deployment, json!({}));
}

#[test]
fn the_registry_lists_each_kind_once_with_distinct_storage() {
    for (i, a) in BUILTIN.iter().enumerate() {
        for b in &BUILTIN[i + 1..] {
            assert!(a != b, "{} listed twice", a.plural);
            assert!(
                !a.prefix(None).starts_with(&b.prefix(None))
                    && !b.prefix(None).starts_with(&a.prefix(None)),
                "{} and {} share storage",
                a.plural,
                b.plural
            );
        }
    }
}

#[test]
fn kinds_registered_at_run_time_are_served_beside_the_built_ins() {
    let registry = Registry::new();
    let pods = *BUILTIN.iter().find(|r| r.plural == "pods").unwrap();
    let widgets = Resource {
        group: "example.com",
        version: "v1",
        kind: "Widget",
        plural: "widgets",
        singular: "widget",
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage_prefix: "example.com/widgets",
        field_labels: &[],
        ..*pods
    };
    let served = registry.register(widgets).unwrap();
    assert_eq!(registry.find("example.com", "v1", "widgets"), Some(served));
    assert_eq!(registry.find_kind("example.com/v1", "Widget"), Some(served));
    assert!(registry.groups().contains(&("example.com", vec!["v1"])));
    // The same definition again is the one already served; a clash is refused.
    assert!(std::ptr::eq(registry.register(widgets).unwrap(), served));
    let clash = Resource {
        kind: "Gadget",
        storage_prefix: "example.com/gadgets",
        ..widgets
    };
    assert!(matches!(
        registry.register(clash),
        Err(RegistryError::Taken { .. })
    ));
    let overlap = Resource {
        plural: "pods",
        kind: "Thing",
        group: "example.org",
        storage_prefix: "pods",
        ..widgets
    };
    assert!(matches!(
        registry.register(overlap),
        Err(RegistryError::StorageOverlap { .. })
    ));
    // Another API server's registry does not see it.
    assert!(
        Registry::new()
            .find("example.com", "v1", "widgets")
            .is_none()
    );
}
