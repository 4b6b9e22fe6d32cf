//! What every registry file has in scope: the machinery's validation helpers, the shared PodSpec
//! and workload rules, the strategy types, and the strategic-merge and table building blocks.

pub(crate) use futures::future::BoxFuture;
pub(crate) use jiff::Timestamp;
pub(crate) use serde_json::json;
pub(crate) use std::borrow::Cow;

pub(crate) use super::{
    Lookup, Resource, Review, Samples, Strategy, Subresource,
    core::pod_spec::*,
    strategy::{answered, typed_as},
    workloads::*,
};
pub(crate) use crate::apiserver::machinery::decode::{RoundTrip, round_trip};
pub(crate) use crate::apiserver::machinery::prelude::*;
pub(crate) use crate::apiserver::openapi::{SchemaOf, schema_of};
pub(crate) use crate::apiserver::tables::Column;
