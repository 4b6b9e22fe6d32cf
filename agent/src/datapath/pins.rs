//! Where a node's datapath lives on bpffs: `/sys/fs/bpf/flotilla/<node>/{maps,links}/`.
//!
//! Several nodes of the local cluster share one kernel (and one bpffs), so every pin is scoped by
//! node name.
//!
//! bpffs refuses any name containing '.' with EPERM (kernel/bpf/inode.c reserves dots), yet node
//! names (DNS subdomains) and interface names may contain dots, so names are escaped with
//! [`bpffs_name`] before they become path components.

use std::path::{Path, PathBuf};

use super::DatapathError;

/// Where bpffs is mounted.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// The directory under bpffs that holds every Flotilla node's pins.
pub const FLOTILLA_PIN_ROOT: &str = "/sys/fs/bpf/flotilla";

/// Traffic direction of a TC attachment, as seen from the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Packets the interface receives (for a pod's host-side veth: packets the pod sends).
    Ingress,
    /// Packets the interface transmits.
    Egress,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

/// The pin paths of one node's datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePins {
    root: PathBuf,
}

impl NodePins {
    /// Pins for `node` under the default bpffs location.
    pub fn new(node: &str) -> Result<Self, DatapathError> {
        Self::under(Path::new(FLOTILLA_PIN_ROOT), node)
    }

    /// Pins for `node` under `base` (tests use a scratch directory).
    pub fn under(base: &Path, node: &str) -> Result<Self, DatapathError> {
        validate_node_name(node)?;
        Ok(Self {
            root: base.join(bpffs_name(node)),
        })
    }

    /// The node's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory for maps pinned by name.
    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    /// Pin path of the map called `name`.
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    /// Directory for pinned TCX links.
    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }

    /// Pin path of `program`'s link on `iface` in `direction`.
    pub fn link(&self, program: &str, iface: &str, direction: Direction) -> PathBuf {
        self.links_dir().join(format!(
            "{}@{}@{}",
            bpffs_name(program),
            bpffs_name(iface),
            direction.as_str()
        ))
    }
}

/// Escapes `name` for bpffs: '%' becomes "%25" and '.' becomes "%2e", so distinct names stay
/// distinct.
pub fn bpffs_name(name: &str) -> String {
    name.replace('%', "%25").replace('.', "%2e")
}

/// Node names become directory names: Kubernetes names (DNS-1123 subdomains) are fine, anything
/// that could escape the pin root is not.
fn validate_node_name(node: &str) -> Result<(), DatapathError> {
    let reason = if node.is_empty() {
        Some("it is empty")
    } else if node.len() > 253 {
        Some("it is longer than 253 characters")
    } else if !node
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        Some("only lowercase letters, digits, '-' and '.' are allowed")
    } else if node.starts_with(['-', '.']) || node.ends_with(['-', '.']) {
        Some("it must start and end with a letter or digit")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DatapathError::InvalidNodeName {
            name: node.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Fails with a clear message unless bpffs is mounted at [`BPFFS_ROOT`].
pub fn ensure_bpffs_mounted() -> Result<(), DatapathError> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").map_err(|source| DatapathError::Io {
            action: "reading",
            path: PathBuf::from("/proc/self/mounts"),
            source,
        })?;
    if is_bpffs_mounted(&mounts, BPFFS_ROOT) {
        Ok(())
    } else {
        Err(DatapathError::BpffsNotMounted(PathBuf::from(BPFFS_ROOT)))
    }
}

/// Whether `mounts` (the text of /proc/self/mounts) has a bpf file system at `target`.
pub fn is_bpffs_mounted(mounts: &str, target: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let _source = fields.next();
        fields.next() == Some(target) && fields.next() == Some("bpf")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_scoped_by_node() {
        let pins = NodePins::new("node-1").unwrap();
        assert_eq!(
            pins.map("PROTO_COUNTERS"),
            Path::new("/sys/fs/bpf/flotilla/node-1/maps/PROTO_COUNTERS")
        );
        assert_eq!(
            pins.link("from_pod_count", "veth1", Direction::Ingress),
            Path::new("/sys/fs/bpf/flotilla/node-1/links/from_pod_count@veth1@ingress")
        );
    }

    #[test]
    fn dots_are_escaped_because_bpffs_rejects_them() {
        let pins = NodePins::new("worker-1.example").unwrap();
        assert_eq!(
            pins.root(),
            Path::new("/sys/fs/bpf/flotilla/worker-1%2eexample")
        );
        assert_eq!(
            pins.link("from_pod_count", "eth0.100", Direction::Egress)
                .file_name()
                .unwrap(),
            "from_pod_count@eth0%2e100@egress"
        );
        assert_ne!(bpffs_name("a%2eb"), bpffs_name("a.b"));
    }

    #[test]
    fn node_names_that_escape_the_pin_root_are_rejected() {
        for bad in ["", "..", "a/b", "Node1", "-a", "a.", "a b"] {
            let err = NodePins::new(bad).unwrap_err();
            assert!(
                matches!(err, DatapathError::InvalidNodeName { .. }),
                "{bad:?} gave {err}"
            );
        }
        assert!(NodePins::new("worker-1.example").is_ok());
    }

    #[test]
    fn bpffs_detection_reads_mount_table() {
        let mounts = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime 0 0\n";
        assert!(is_bpffs_mounted(mounts, "/sys/fs/bpf"));
        assert!(!is_bpffs_mounted(
            "sysfs /sys sysfs rw 0 0\n",
            "/sys/fs/bpf"
        ));
        assert!(!is_bpffs_mounted(
            "tmpfs /sys/fs/bpf tmpfs rw 0 0\n",
            "/sys/fs/bpf"
        ));
    }
}
