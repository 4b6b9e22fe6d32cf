//! `authentication.k8s.io/v1`.

pub mod self_subject_review;
pub mod token_review;
