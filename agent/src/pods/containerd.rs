//! The containerd configuration a node needs: one containerd per node, each with its own root,
//! state, socket, CNI folders and cgroup parent, so several nodes can share one machine.
//!
//! Settings that are not taste but requirements on this kind of machine (see PLATFORM.md):
//! `restrict_oom_score_adj` (root lacks CAP_SYS_RESOURCE, and runc fails with "can't get final
//! child's PID from pipe: EOF" without it), the cgroupfs driver (no systemd), AppArmor off.

use std::path::{Path, PathBuf};

/// The sandbox (pause) image every pod starts with; `cargo xtask images` builds it.
pub const PAUSE_IMAGE: &str = "docker.io/flotilla/pause:3.10";
/// containerd's namespace for CRI-managed containers and images.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// Where one node's containerd and agent keep their files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDirs {
    /// Persistent state: containerd's root, the agent's own state.
    pub lib: PathBuf,
    /// Runtime state: containerd's state dir and socket.
    pub run: PathBuf,
    /// Container logs (`<log>/pods/<ns>_<pod>_<uid>/<container>/<restart>.log`, as kubelet).
    pub log: PathBuf,
}

impl NodeDirs {
    /// The layout under one base directory (tests use a temp dir).
    pub fn under(base: &Path) -> Self {
        Self {
            lib: base.join("lib"),
            run: base.join("run"),
            log: base.join("log"),
        }
    }

    /// The system layout for `node`: /var/lib/flotilla/nodes/<node>, /run/flotilla/nodes/<node>,
    /// /var/log/flotilla/nodes/<node>.
    pub fn system(node: &str) -> Self {
        Self {
            lib: Path::new("/var/lib/flotilla/nodes").join(node),
            run: Path::new("/run/flotilla/nodes").join(node),
            log: Path::new("/var/log/flotilla/nodes").join(node),
        }
    }

    /// containerd's gRPC socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.run.join("containerd/containerd.sock")
    }

    /// The containerd config file.
    pub fn containerd_config(&self) -> PathBuf {
        self.lib.join("containerd/config.toml")
    }

    /// Where containerd bind-mounts the pods' network namespaces (`netns_mounts_under_state_dir`).
    pub fn pod_netns_dir(&self) -> PathBuf {
        self.run
            .join("containerd/state/io.containerd.grpc.v1.cri/netns")
    }

    /// The CNI plugin binaries containerd runs.
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.lib.join("cni/bin")
    }

    /// The API servers the agent's balancer learned, for its next start.
    pub fn api_servers_file(&self) -> PathBuf {
        self.lib.join("api-servers")
    }

    /// The agent's socket for the CNI plugin.
    pub fn cni_socket(&self) -> PathBuf {
        self.run.join("cni.sock")
    }

    /// The pod address pool (one file per allocated address).
    pub fn ipam_dir(&self) -> PathBuf {
        self.lib.join("ipam")
    }

    /// The CNI network configuration containerd reads.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.lib.join("cni/net.d")
    }

    /// Where the local-path provisioner keeps volumes (one directory each).
    pub fn local_path_dir(&self) -> PathBuf {
        self.lib.join("local-path")
    }

    /// Pod volumes (emptyDir, configMap, secret) as kubelet's `pods/<uid>/volumes`.
    pub fn pods_dir(&self) -> PathBuf {
        self.lib.join("pods")
    }

    /// The pods' log root.
    pub fn pod_logs(&self) -> PathBuf {
        self.log.join("pods")
    }

    /// Every directory containerd and the agent expect to exist.
    pub fn all(&self) -> Vec<PathBuf> {
        vec![
            self.lib.join("containerd/root"),
            self.lib.join("containerd/opt"),
            self.run.join("containerd/state"),
            self.cni_bin_dir(),
            self.cni_conf_dir(),
            self.pods_dir(),
            self.pod_logs(),
        ]
    }
}

/// containerd's config.toml (version 2) for a node's directories.
pub fn config_toml(dirs: &NodeDirs) -> String {
    let lib = dirs.lib.display();
    let run = dirs.run.display();
    format!(
        r#"# Written by Flotilla for one node; see agent/src/pods/containerd.rs.
version = 2
root = "{lib}/containerd/root"
state = "{run}/containerd/state"

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{lib}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  # Pod network namespaces live under this node's state dir, not in the machine-wide /run/netns:
  # they are found per node, never confused with another node's or another containerd's pods,
  # and whatever a killed node leaves is removed with its directory.
  netns_mounts_under_state_dir = true
  # The streaming server (exec, attach, port-forward) listens on the node's loopback only; the
  # agent proxies to it, as kubelet does.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"#,
        socket = dirs.containerd_socket().display(),
        cni_bin = dirs.cni_bin_dir().display(),
        cni_conf = dirs.cni_conf_dir().display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_each_node_apart() {
        let a = config_toml(&NodeDirs::system("a"));
        let b = config_toml(&NodeDirs::system("b"));
        assert!(a.contains(r#"address = "/run/flotilla/nodes/a/containerd/containerd.sock""#));
        assert!(a.contains(r#"root = "/var/lib/flotilla/nodes/a/containerd/root""#));
        assert!(a.contains("restrict_oom_score_adj = true"));
        assert!(a.contains("SystemdCgroup = false"));
        assert!(a.contains("netns_mounts_under_state_dir = true"));
        assert_ne!(a, b);
    }
}
