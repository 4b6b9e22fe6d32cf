//! Loads the eBPF object embedded in the agent, with maps pinned (or re-used) under the node's
//! pin directory.

use std::path::PathBuf;

use aya::{Ebpf, EbpfLoader};
use flotilla_common::PINNED_MAPS;

use super::{DatapathError, pins::NodePins};

/// The eBPF object built from `ebpf/` by agent/build.rs (aya-build), with BTF.
pub static DATAPATH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flotilla-datapath"));

/// Loads the datapath object for the node whose pins are `pins`.
///
/// The maps in [`PINNED_MAPS`] are created under `pins.maps_dir()` the first time and re-used on
/// every later load, which is what lets a restarted agent pick up the state its predecessor left.
pub fn load(pins: &NodePins) -> Result<Ebpf, DatapathError> {
    super::pins::ensure_bpffs_mounted()?;
    let maps_dir = pins.maps_dir();
    std::fs::create_dir_all(&maps_dir).map_err(|source| DatapathError::Io {
        action: "creating",
        path: maps_dir.clone(),
        source,
    })?;
    let pin_paths: Vec<(&str, PathBuf)> = PINNED_MAPS
        .iter()
        .map(|name| (*name, pins.map(name)))
        .collect();
    let mut loader = EbpfLoader::new();
    for (name, path) in &pin_paths {
        loader.map_pin_path(name, path.as_path());
    }
    Ok(loader.load(DATAPATH_OBJECT)?)
}
