//! The node's pod network configuration for containerd: Flotilla's CNI plugin (`flotilla-cni`)
//! and the reference `loopback` plugin in the node's CNI bin dir, and a conflist naming the
//! plugin and the agent's socket in its conf dir. containerd reads the conflist for every pod
//! sandbox; until it exists the node reports NetworkReady=false.

use std::{
    io,
    path::{Path, PathBuf},
};

use serde_json::json;

/// Where Debian's containernetworking-plugins installs the reference plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
/// The conflist's file name (containerd takes the first file in name order).
pub const CONFLIST: &str = "10-flotilla.conflist";
/// The network's name.
pub const NETWORK_NAME: &str = "flotilla";
/// The CNI version of the conflist: containerd 1.6 (libcni 1.1) speaks up to 1.0.0; the plugin
/// answers 0.4.0, 1.0.0 and 1.1.0.
pub const CONFLIST_VERSION: &str = "1.0.0";

/// Errors writing the network configuration.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A plugin binary is missing.
    #[error("CNI plugin {path} is missing; {hint}")]
    MissingPlugin {
        /// Where it was expected.
        path: PathBuf,
        /// How to get it.
        hint: &'static str,
    },
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

/// The conflist: Flotilla's plugin, talking to the agent at `agent_socket`.
pub fn conflist(agent_socket: &Path, mtu: u32) -> serde_json::Value {
    json!({
        "cniVersion": CONFLIST_VERSION,
        "name": NETWORK_NAME,
        "plugins": [{
            "type": "flotilla-cni",
            "agentSocket": agent_socket.display().to_string(),
            "mtu": mtu,
        }],
    })
}

/// The flotilla-cni binary next to the running agent (how both are installed and built).
pub fn default_plugin_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("flotilla-cni")))
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/flotilla-cni"))
}

/// Copies the plugins into `bin_dir` and writes the conflist into `conf_dir` (atomically, so
/// containerd never reads half a file). Idempotent. The plugin is copied, not linked, so a
/// rebuild of the agent's tree does not change the binary under running pods.
pub fn install(
    plugin: &Path,
    agent_socket: &Path,
    mtu: u32,
    bin_dir: &Path,
    conf_dir: &Path,
) -> Result<(), NetworkError> {
    for dir in [bin_dir, conf_dir] {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    }
    if !plugin.exists() {
        return Err(NetworkError::MissingPlugin {
            path: plugin.to_owned(),
            hint: "build it with `cargo build -p flotilla-cni` or pass --cni-plugin",
        });
    }
    install_file(plugin, &bin_dir.join("flotilla-cni"))?;
    let loopback = Path::new(REFERENCE_PLUGINS).join("loopback");
    if !loopback.exists() {
        return Err(NetworkError::MissingPlugin {
            path: loopback,
            hint: "install containernetworking-plugins (`cargo xtask setup` does)",
        });
    }
    let target = bin_dir.join("loopback");
    if std::fs::read_link(&target).ok().as_deref() != Some(loopback.as_path()) {
        let _ = std::fs::remove_file(&target);
        std::os::unix::fs::symlink(&loopback, &target).map_err(io_error("linking", &target))?;
    }
    // The bridge stand-in of earlier versions named its file the same; anything else is left.
    let file = conf_dir.join(CONFLIST);
    let text = serde_json::to_string_pretty(&conflist(agent_socket, mtu)).unwrap_or_default();
    if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
        let partial = conf_dir.join(format!(".{CONFLIST}.partial"));
        std::fs::write(&partial, &text).map_err(io_error("writing", &partial))?;
        std::fs::rename(&partial, &file).map_err(io_error("renaming", &file))?;
    }
    Ok(())
}

/// Copies `source` to `target` through a temporary file and a rename, unless identical: a
/// running plugin keeps its old inode, a new exec gets the new binary.
fn install_file(source: &Path, target: &Path) -> Result<(), NetworkError> {
    let new = std::fs::read(source).map_err(io_error("reading", source))?;
    if std::fs::read(target).ok().as_deref() == Some(new.as_slice()) {
        return Ok(());
    }
    let partial = target.with_extension("partial");
    std::fs::write(&partial, &new).map_err(io_error("writing", &partial))?;
    std::fs::set_permissions(
        &partial,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(io_error("making executable", &partial))?;
    std::fs::rename(&partial, target).map_err(io_error("renaming", target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_names_the_plugin_and_socket() {
        let list = conflist(Path::new("/run/n1/cni.sock"), 1450);
        assert_eq!(list["cniVersion"], "1.0.0");
        assert_eq!(list["plugins"][0]["type"], "flotilla-cni");
        assert_eq!(list["plugins"][0]["agentSocket"], "/run/n1/cni.sock");
        assert_eq!(list["plugins"][0]["mtu"], 1450);
    }

    #[test]
    fn install_copies_the_plugin_once() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("flotilla-cni-src");
        std::fs::write(&plugin, b"#!/bin/true\n").unwrap();
        let bin = dir.path().join("bin");
        let conf = dir.path().join("net.d");
        // A skip here would let CI pass without ever installing the plugin.
        assert!(
            Path::new(REFERENCE_PLUGINS).join("loopback").exists(),
            "{REFERENCE_PLUGINS}/loopback is missing: install containernetworking-plugins \
             (`cargo xtask setup` does)"
        );
        install(&plugin, Path::new("/s"), 1450, &bin, &conf).unwrap();
        install(&plugin, Path::new("/s"), 1450, &bin, &conf).unwrap();
        assert_eq!(
            std::fs::read(bin.join("flotilla-cni")).unwrap(),
            b"#!/bin/true\n"
        );
        assert!(conf.join(CONFLIST).exists());
    }
}
