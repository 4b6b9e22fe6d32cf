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

/// Aborts a task when dropped (a helper task that must not outlive its owner).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
