//! Machinery every kind shares, each piece once: field-path errors, name and format rules,
//! ObjectMeta validation, addresses, and typed decoding with unknown-field
//! detection. Kind-specific code lives in [`super::registry`] and builds on these.

pub mod decode;
pub mod field;
pub mod names;
pub mod net;
pub mod object_meta;

/// What a kind's validation code needs in scope: the error list, path helpers, JSON accessors
/// and the shared rules. Registry files import it whole, as upstream's validation packages
/// import `field` and `validation`.
pub(crate) mod prelude {
    pub(crate) use std::collections::{BTreeMap, BTreeSet};
    pub(crate) use std::net::IpAddr;

    pub(crate) use serde_json::{Map, Value};

    pub(crate) use super::field::*;
    pub(crate) use super::names::*;
    pub(crate) use super::net::*;
    pub(crate) use super::object_meta::*;
    pub(crate) use flotilla_apimachinery::quantity::Quantity;
}
