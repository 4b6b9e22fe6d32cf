//! The Flotilla node agent: the kubelet of Flotilla plus the eBPF datapath.
//!
//! Today it holds the datapath loader and the per-protocol packet counters; pods (CRI), the CNI API
//! and node registration follow in their own modules.

pub mod cni_api;
pub mod datapath;
pub mod join;
pub mod node;
pub mod pods;
pub mod run;
pub mod server;
pub mod storage;
