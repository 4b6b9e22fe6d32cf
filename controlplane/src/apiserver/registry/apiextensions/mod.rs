//! `apiextensions.k8s.io`: CustomResourceDefinitions, whose kinds [`crate::apiserver::custom_resources`] serves.

pub mod custom_resource_definition;
