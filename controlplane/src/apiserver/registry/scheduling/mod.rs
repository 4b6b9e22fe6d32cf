//! `scheduling.k8s.io/v1`.

pub mod priority_class;
