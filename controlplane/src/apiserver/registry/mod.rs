//! The resource registry: one file per served kind (`registry/<group>/<kind>.rs`) holds
//! everything kind-specific, as kube-apiserver's `pkg/registry/<group>/<kind>/strategy.go` does:
//! the REST names and etcd prefix ([`Resource`]), and a [`Strategy`] for defaulting, status
//! rules, validation, the table, the strategic-merge schema, allocations, admission and
//! deletion. The generic request code in `handlers.rs` asks the strategy and never names a kind.
//!
//! Built-in kinds are listed in [`BUILTIN`]; kinds defined at run time (custom resources) join
//! through [`Registry::register`] and are served by the same code.

pub mod admissionregistration;
pub mod apiextensions;
pub mod apps;
pub mod authentication;
pub mod authorization;
pub mod batch;
pub mod certificates;
pub mod coordination;
pub mod core;
pub mod discovery;
pub mod networking;
pub mod policy;
pub(crate) mod prelude;
pub mod rbac;
mod resource;
pub mod scheduling;
pub mod storage;
pub(crate) mod strategy;
pub mod workloads;

#[cfg(test)]
mod tests;

use std::sync::RwLock;

pub use resource::{Resource, Subresource};
pub use strategy::{Lookup, Review, Samples, Strategy};

/// Every built-in resource, in discovery order.
pub static BUILTIN: &[&Resource] = &[
    &core::namespace::RESOURCE,
    &core::node::RESOURCE,
    &core::pod::RESOURCE,
    &core::service::RESOURCE,
    &core::endpoints::RESOURCE,
    &core::config_map::RESOURCE,
    &core::secret::RESOURCE,
    &core::persistent_volume::RESOURCE,
    &core::persistent_volume_claim::RESOURCE,
    &core::service_account::RESOURCE,
    &core::event::RESOURCE,
    &core::replication_controller::RESOURCE,
    &coordination::lease::RESOURCE,
    &apps::deployment::RESOURCE,
    &apps::replica_set::RESOURCE,
    &apps::stateful_set::RESOURCE,
    &apps::daemon_set::RESOURCE,
    &apps::controller_revision::RESOURCE,
    &batch::job::RESOURCE,
    &batch::cron_job::RESOURCE,
    &networking::network_policy::RESOURCE,
    &discovery::endpoint_slice::RESOURCE,
    &policy::pod_disruption_budget::RESOURCE,
    &scheduling::priority_class::RESOURCE,
    &rbac::cluster_role::RESOURCE,
    &rbac::cluster_role_binding::RESOURCE,
    &rbac::role::RESOURCE,
    &rbac::role_binding::RESOURCE,
    &storage::storage_class::RESOURCE,
    &authorization::self_subject_access_review::RESOURCE,
    &authorization::self_subject_rules_review::RESOURCE,
    &authorization::subject_access_review::RESOURCE,
    &authorization::local_subject_access_review::RESOURCE,
    &authentication::self_subject_review::RESOURCE,
    &authentication::token_review::RESOURCE,
    &certificates::certificate_signing_request::RESOURCE,
    &admissionregistration::validating_webhook_configuration::RESOURCE,
    &admissionregistration::mutating_webhook_configuration::RESOURCE,
    &admissionregistration::validating_admission_policy::RESOURCE,
    &admissionregistration::validating_admission_policy_binding::RESOURCE,
    &apiextensions::custom_resource_definition::RESOURCE,
];

/// Why a kind could not be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    /// Another kind already has the REST name or the kind name in that group and version.
    #[error("{group}/{version} already serves {what}")]
    Taken {
        /// The API group.
        group: String,
        /// The API version.
        version: String,
        /// `resource "widgets"` or `kind "Widget"`.
        what: String,
    },
    /// Its etcd prefix would overlap another kind's, so one could read the other's objects.
    #[error("the storage prefix /registry/{prefix}/ overlaps that of {other}")]
    StorageOverlap {
        /// The new kind's prefix.
        prefix: String,
        /// The resource it overlaps.
        other: String,
    },
}

/// The kinds one API server serves: the built-ins and those registered at run time.
#[derive(Debug, Default)]
pub struct Registry {
    custom: RwLock<Vec<&'static Resource>>,
}

impl Registry {
    /// A registry of the built-in kinds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every served resource: the built-ins in discovery order, then the registered ones.
    pub fn all(&self) -> Vec<&'static Resource> {
        let mut all = BUILTIN.to_vec();
        all.extend(self.custom().iter().copied());
        all
    }

    /// Every served resource that keeps objects (all but the reviews, which are only answered).
    pub fn stored(&self) -> Vec<&'static Resource> {
        let mut all = self.all();
        all.retain(|r| !r.strategy.is_review());
        all
    }

    /// The resource `plural` in `group`/`version`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        self.find_by(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource of `kind` in `api_version` (`v1`, `apps/v1`).
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<&'static Resource> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.find_by(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// The first served resource `matches` accepts. Every request routes through here, so it
    /// looks at the built-ins and then the registered kinds without collecting them.
    fn find_by(&self, matches: impl Fn(&Resource) -> bool) -> Option<&'static Resource> {
        if let Some(found) = BUILTIN.iter().copied().find(|r| matches(r)) {
            return Some(found);
        }
        self.custom().iter().copied().find(|r| matches(r))
    }

    /// The API groups served besides the core group, each with its versions, the preferred
    /// one first (upstream's version priority: GA before beta before alpha, higher first).
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for resource in self.all() {
            if resource.group.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(g, _)| *g == resource.group) {
                Some((_, versions)) => {
                    if !versions.contains(&resource.version) {
                        versions.push(resource.version);
                    }
                }
                None => groups.push((resource.group, vec![resource.version])),
            }
        }
        for (_, versions) in &mut groups {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }

    /// Serves `resource` from now on. A kind lives as long as the process (its descriptor is
    /// leaked once, so requests can hold it without counting references); registering the
    /// same definition again returns the one already served.
    pub fn register(&self, resource: Resource) -> Result<&'static Resource, RegistryError> {
        let mut custom = self
            .custom
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let served: Vec<&'static Resource> = BUILTIN.iter().chain(custom.iter()).copied().collect();
        if let Some(same) = served.iter().find(|r| r.same_definition(&resource)) {
            return Ok(same);
        }
        for other in &served {
            if other.group == resource.group && other.version == resource.version {
                let what = if other.plural == resource.plural {
                    Some(format!("resource {:?}", resource.plural))
                } else if other.kind == resource.kind {
                    Some(format!("kind {:?}", resource.kind))
                } else {
                    None
                };
                if let Some(what) = what {
                    return Err(RegistryError::Taken {
                        group: resource.group.to_owned(),
                        version: resource.version.to_owned(),
                        what,
                    });
                }
            }
            // The versions of one custom kind share their storage, as upstream's do.
            let same_kind = other.group == resource.group && other.plural == resource.plural;
            let (mine, theirs) = (resource.prefix(None), other.prefix(None));
            if !same_kind && (mine.starts_with(&theirs) || theirs.starts_with(&mine)) {
                return Err(RegistryError::StorageOverlap {
                    prefix: resource.storage_prefix.to_owned(),
                    other: other.qualified_name(),
                });
            }
        }
        let leaked: &'static Resource = Box::leak(Box::new(resource));
        custom.push(leaked);
        Ok(leaked)
    }

    /// Stops serving the registered resource `plural` in `group`/`version` (its descriptor
    /// stays valid for requests still holding it). Built-in kinds cannot be removed.
    pub fn unregister(&self, group: &str, version: &str, plural: &str) -> bool {
        let mut custom = self
            .custom
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = custom.len();
        custom.retain(|r| !(r.group == group && r.version == version && r.plural == plural));
        custom.len() != before
    }

    /// The other served versions of `resource` (upstream's equivalent resources): the
    /// versions of a custom resource share their storage; a built-in kind has one.
    pub fn equivalents(&self, resource: &Resource) -> Vec<&'static Resource> {
        if builtin(resource.group, resource.plural).is_some() {
            return Vec::new();
        }
        let mut others = self.registered();
        others.retain(|r| {
            r.group == resource.group
                && r.plural == resource.plural
                && r.version != resource.version
        });
        others
    }

    /// The registered (custom) resources.
    pub fn registered(&self) -> Vec<&'static Resource> {
        self.custom().clone()
    }

    fn custom(&self) -> std::sync::RwLockReadGuard<'_, Vec<&'static Resource>> {
        self.custom
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How upstream orders versions (`version.CompareKubeAwareVersionStrings`): `v2` > `v1` >
/// `v1beta2` > `v1beta1` > `v1alpha1` > anything not of that form (ordered by name, reversed).
fn version_priority(version: &str) -> (u8, u64, u64, std::cmp::Reverse<String>) {
    let parsed = version.strip_prefix('v').and_then(|rest| {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let major: u64 = rest.get(..digits)?.parse().ok()?;
        let tail = rest.get(digits..)?;
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        for (label, rank) in [("beta", 2), ("alpha", 1)] {
            if let Some(minor) = tail.strip_prefix(label) {
                return Some((rank, major, minor.parse().ok()?));
            }
        }
        None
    });
    match parsed {
        Some((rank, major, minor)) => (rank, major, minor, std::cmp::Reverse(String::new())),
        None => (0, 0, 0, std::cmp::Reverse(version.to_owned())),
    }
}

/// A built-in resource by REST name, for code that runs without an API server at hand
/// (controllers, the IPAM repair) and may name only built-in kinds.
pub fn builtin(group: &str, plural: &str) -> Option<&'static Resource> {
    BUILTIN
        .iter()
        .copied()
        .find(|r| r.group == group && r.plural == plural)
}
