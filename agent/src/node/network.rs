//! The node's pod network configuration for containerd's CNI plugin.
//!
//! Until Flotilla's own CNI plugin and eBPF overlay land (issue 5), pods on a node get their
//! addresses from the node's podCIDR through the reference `bridge` + `host-local` plugins
//! (Debian's containernetworking-plugins): pods on one node reach each other and the node, which
//! is what the agent needs. Traffic between nodes is the overlay's job.

use std::{
    io,
    path::{Path, PathBuf},
};

use serde_json::json;

/// Where Debian's containernetworking-plugins installs the reference plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
/// The plugins the stand-in configuration uses (loopback is what containerd itself calls).
const PLUGINS: &[&str] = &["bridge", "host-local", "loopback"];
/// The name of the node's pod bridge.
pub const BRIDGE: &str = "flt0";

/// Errors writing the network configuration.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A plugin binary is missing.
    #[error(
        "CNI plugin {0} is missing; install containernetworking-plugins (`cargo xtask setup` does)"
    )]
    MissingPlugin(PathBuf),
    /// File system error.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> NetworkError {
    let path = path.to_path_buf();
    move |source| NetworkError::Io {
        action,
        path,
        source,
    }
}

/// The conflist for a node whose pods get addresses from `pod_cidr`.
pub fn conflist(pod_cidr: &str, ipam_dir: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "flotilla",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir.display().to_string(),
            },
        }],
    })
}

/// Links the plugins into `bin_dir` and writes the conflist into `conf_dir` (atomically, so
/// containerd never reads half a file). Idempotent.
pub fn install(
    pod_cidr: &str,
    bin_dir: &Path,
    conf_dir: &Path,
    ipam_dir: &Path,
) -> Result<(), NetworkError> {
    for dir in [bin_dir, conf_dir, ipam_dir] {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    }
    for plugin in PLUGINS {
        let source = Path::new(REFERENCE_PLUGINS).join(plugin);
        if !source.exists() {
            return Err(NetworkError::MissingPlugin(source));
        }
        let target = bin_dir.join(plugin);
        if std::fs::read_link(&target).ok().as_deref() != Some(source.as_path()) {
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(&source, &target).map_err(io_error("linking", &target))?;
        }
    }
    let file = conf_dir.join("10-flotilla.conflist");
    let partial = conf_dir.join(".10-flotilla.conflist.partial");
    let text = serde_json::to_string_pretty(&conflist(pod_cidr, ipam_dir)).unwrap_or_default();
    if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&partial, &text).map_err(io_error("writing", &partial))?;
        std::fs::rename(&partial, &file).map_err(io_error("renaming", &file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_uses_the_node_pod_cidr() {
        let list = conflist("10.244.3.0/24", Path::new("/x/ipam"));
        assert_eq!(
            list["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.3.0/24"
        );
        assert_eq!(list["plugins"][0]["ipam"]["dataDir"], "/x/ipam");
    }
}
