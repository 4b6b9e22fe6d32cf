//! `certificates.k8s.io/v1`.

pub mod certificate_signing_request;
