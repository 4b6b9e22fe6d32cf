//! The pieces of k8s.io/apimachinery that the API server, the controllers, the scheduler and the
//! node agent all need, each written once so they agree: label and field selectors
//! ([`selectors`]), name and format rules with upstream's messages ([`names`]) and exact resource
//! quantities ([`quantity`]), query strings ([`query`]), the node conditions kubelet posts
//! ([`node_conditions`]), which the agent and the control plane's hollow nodes both report, the
//! Leases nodes hold ([`node_leases`]), the
//! upgrade headers of streaming requests ([`httpstream`]), the annotations that tie claims,
//! volumes and provisioners together ([`volumes`]),
//! what upstream's Go types say about every kind ([`schema`]), Kubernetes' protobuf wire
//! format ([`protobuf`]) and its JSON as kube-apiserver writes it ([`json`]).

pub mod bootstrap;
pub mod httpstream;
pub mod json;
pub mod kubeconfig;
pub mod names;
pub mod node_conditions;
pub mod node_leases;
pub mod protobuf;
pub mod quantity;
pub mod query;
pub mod schema;
pub mod selectors;
pub mod volumes;
