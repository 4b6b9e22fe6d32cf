//! The annotations and names that tie claims, volumes and provisioners together, written once
//! for the PV controller, the scheduler's volume binding, the API server's NodeRestriction and
//! the node agent's local-path provisioner.

/// The node the scheduler picked for a claim whose class waits for the first consumer.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner a claim was handed to.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The same, as older controllers wrote it (still read by external provisioners).
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Which provisioner made a volume.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The built-in local-path provisioner: its node half runs in every agent.
pub const LOCAL_PATH_PROVISIONER: &str = "flotilla.dev/local-path";
/// The annotation naming the node that holds a local-path volume's directory.
pub const LOCAL_PATH_NODE: &str = "flotilla.dev/local-path-node";
/// The finalizer that keeps a local-path volume until its node has removed the directory.
pub const LOCAL_PATH_CLEANUP: &str = "flotilla.dev/local-path";
/// The node label a local-path volume's node affinity selects.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
