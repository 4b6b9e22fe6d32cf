//! The questions the generic REST code asks of a kind. Every served kind answers them in its
//! own file; methods with a default are those most kinds answer the same way.

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::apiserver::{
    admission::Admission,
    allocations::{Allocations, Ipam},
    machinery::{decode::RoundTrip, field::Errs, names::NameRule},
    openapi::SchemaOf,
    registry::Subresource,
    status::ApiError,
    tables::Column,
};

/// What a review is answered with.
#[derive(Clone, Copy)]
pub struct Review<'a> {
    /// Who asks.
    pub requester: &'a crate::auth::User,
    /// The authorizer that access reviews ask.
    pub authorizer: &'a crate::auth::authorizer::Authorizer,
    /// The authenticator that token reviews ask.
    pub tokens: &'a dyn crate::auth::TokenAuthenticator,
}

/// A review answered at once, without waiting on anything.
pub(crate) fn answered<'a>(result: Result<(), ApiError>) -> BoxFuture<'a, Result<(), ApiError>> {
    Box::pin(std::future::ready(result))
}

/// The three methods that tie a [`Strategy`] to its k8s-openapi type, written once:
/// `typed_as!("v1.Pod", api::Pod);` gives `go_type` (the name in upstream's decode errors),
/// `round_trip` and `schema`.
macro_rules! typed_as {
    ($go_type:literal, $typed:ty) => {
        fn go_type(&self) -> &'static str {
            $go_type
        }

        fn round_trip(&self) -> RoundTrip {
            round_trip::<$typed>
        }

        fn schema(&self) -> SchemaOf {
            schema_of::<$typed>
        }
    };
}
pub(crate) use typed_as;

/// What admission may read: the stored objects of a resource, in one namespace or all.
pub trait Lookup: Send + Sync {
    /// Every stored object of `resource` in `namespace` (all, for None).
    fn list<'a>(
        &'a self,
        resource: &'static super::Resource,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ApiError>>;

    /// Who makes the request and the RBAC policy that judges them; None when the server itself
    /// writes (its bootstrap), which may do anything.
    fn requester(&self) -> Option<crate::auth::rbac::Requester<'_>> {
        None
    }

    /// The node the requester is, when a node agent makes the request (NodeRestriction
    /// admission applies to it).
    fn requesting_node(&self) -> Option<String> {
        self.requester().and_then(|requester| {
            crate::auth::node_authorizer::node_name(requester.user).map(str::to_owned)
        })
    }
}

/// NodeRestriction for the objects a node may create only under its own name (its Node, its
/// Lease): 403 with `why(node, name)` when a node creates `object` of `qualified_resource` under
/// another name.
pub(crate) fn own_name_only(
    lookup: &dyn Lookup,
    qualified_resource: &str,
    object: &Value,
    why: impl Fn(&str, &str) -> String,
) -> Result<(), ApiError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match lookup.requesting_node() {
        Some(node) if node != name => Err(ApiError::forbidden(
            qualified_resource,
            name,
            &why(&node, name),
        )),
        _ => Ok(()),
    }
}

/// Example objects of a kind, for the registry test: `valid` passes validation, round-trips
/// and prints a row; `invalid` fails the kind's own validation at `invalid_field`.
#[derive(Debug, Clone)]
pub struct Samples {
    /// A valid object (as a client sends it).
    pub valid: Value,
    /// An object the kind's own rules reject (its ObjectMeta is valid).
    pub invalid: Value,
    /// The field path of the first cause `invalid` gets.
    pub invalid_field: &'static str,
}

/// Everything kind-specific about a served resource (upstream's `RESTCreateStrategy`,
/// `RESTUpdateStrategy`, `RESTDeleteStrategy`, table convertor and patch metadata in one).
pub trait Strategy: Send + Sync {
    /// The Go type upstream decodes into (`v1.Pod`), for decode error messages.
    fn go_type(&self) -> &'static str;

    /// Decodes JSON text into the kind's typed object and encodes it again.
    fn round_trip(&self) -> RoundTrip;

    /// The kind's OpenAPI schema (and those it refers to), for `/openapi/v3`.
    fn schema(&self) -> SchemaOf;

    /// Decodes a request body into the kind's object in place (400 with the message when it does
    /// not fit), returning the fields the kind does not know, which are dropped.
    fn decode(&self, object: &mut Value) -> Result<Vec<String>, String> {
        crate::apiserver::machinery::decode::decode_object(
            self.go_type(),
            self.round_trip(),
            object,
        )
    }

    /// A kind whose schema is data rather than a Rust type (a custom resource) gives it here:
    /// its name in the OpenAPI documents (`com.example.v1.Widget`) and the schema, to which the
    /// documents add apiVersion, kind and metadata.
    fn openapi_schema(&self) -> Option<(String, Value)> {
        None
    }

    /// Shows a stored object as the served version has it (a custom kind served in several
    /// versions stores one; conversion None changes only apiVersion).
    fn present(&self, _object: &mut Value) {}

    /// The rule `metadata.name` must follow.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// The kind's own validation (ObjectMeta is checked before): create when `old` is None.
    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>);

    /// Upstream's defaulting (`SetDefaults_*`), applied to every object written.
    fn default(&self, _object: &mut Value) {}

    /// The status a new object starts with (only asked of kinds with a status subresource);
    /// None keeps the status the client sent, null removes it.
    fn status_on_create(&self, _object: &Value) -> Option<Value> {
        Some(json!({}))
    }

    /// Fields the server keeps in line on every write (after defaulting), e.g. a label derived
    /// from the name.
    fn canonicalize(&self, _object: &mut Value) {}

    /// What a create does once the object has its final name and uid, before validation.
    fn prepare_named(&self, _object: &mut Value) {}

    /// What an update does to the new object given the stored one, before validation.
    fn prepare_update(&self, _old: &Value, _new: &mut Value) {}

    /// What a write through a status-like subresource (`/status`, `/approval`) keeps of the
    /// stored object: `new` comes as the stored object with the new status; kinds whose
    /// subresources own only part of the status say so here.
    fn prepare_subresource_update(
        &self,
        _subresource: Subresource,
        _old: &Value,
        _new: &mut Value,
    ) {
    }

    /// Admission of a write through a subresource (the object as it will be stored).
    fn admit_subresource<'a>(
        &'a self,
        _subresource: Subresource,
        _lookup: &'a dyn Lookup,
        _object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }

    /// Admission of an object being created (`old` None) or updated: may change it, or refuse
    /// it, reading other objects through `lookup` (upstream's admission plugins for the kind).
    fn admit<'a>(
        &'a self,
        _admission: &'a Admission,
        _lookup: &'a dyn Lookup,
        _object: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }

    /// The table's columns, in upstream's order.
    fn columns(&self) -> std::borrow::Cow<'static, [Column]>;

    /// One table row's cells (the same order as the columns), given the current time.
    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value>;

    /// What the object holds from the allocation pools.
    fn held(&self, _object: &Value) -> Allocations {
        Vec::new()
    }

    /// Allocates what the object needs (`old` is the stored object on update), writing it into
    /// the object and recording each item in `allocated` as soon as it is taken.
    fn allocate<'a>(
        &'a self,
        _ipam: &'a Ipam,
        _old: Option<&'a Value>,
        _object: &'a mut Value,
        _allocated: &'a mut Allocations,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }

    /// Why the object `name` may not be deleted, if it may not.
    fn undeletable(&self, _name: &str) -> Option<&'static str> {
        None
    }

    /// Seconds of graceful termination a delete of `object` waits for (None: delete at once),
    /// given the period the request asked for.
    fn grace_period(&self, _object: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Whether deleting the object first deletes everything inside it (a Namespace); such an
    /// object always goes through a pending deletion.
    fn deletes_contents(&self) -> bool {
        false
    }

    /// Finalizers every delete adds, so the object stays (pending deletion) until whoever
    /// owns each has done its work (a CustomResourceDefinition's cleanup of its objects).
    fn deletion_finalizers(&self) -> &'static [&'static str] {
        &[]
    }

    /// What an object pending deletion shows (a Namespace's `Terminating` phase).
    fn mark_terminating(&self, _object: &mut Value) {}

    /// Whether a delete answers with the deleted object rather than a Status.
    fn delete_returns_object(&self) -> bool {
        false
    }

    /// The label selector the Scale subresource reports: a LabelSelector, or a selector
    /// already in string form.
    fn scale_selector(&self, object: &Value) -> Option<Value> {
        object["spec"].get("selector").cloned()
    }

    /// The desired and the current replicas the Scale subresource reports.
    fn scale_replicas(&self, object: &Value) -> (i64, i64) {
        (
            object["spec"]["replicas"].as_i64().unwrap_or(0),
            object["status"]["replicas"].as_i64().unwrap_or(0),
        )
    }

    /// Sets the desired replicas from a Scale.
    fn set_scale_replicas(&self, object: &mut Value, replicas: i64) {
        object["spec"]["replicas"] = json!(replicas);
    }

    /// Whether the kind is a review (SubjectAccessReview, SelfSubjectReview, ...): created to
    /// ask a question, answered at once by [`Strategy::answer`], never stored.
    fn is_review(&self) -> bool {
        false
    }

    /// A review's answer: fills in `object`'s status as `review` allows.
    fn answer<'a>(
        &'a self,
        _review: Review<'a>,
        _object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(std::future::ready(Err(ApiError::internal(
            "this kind is stored, not answered",
        ))))
    }

    /// Example objects for the registry test.
    fn samples(&self) -> Samples;
}
