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
    drop_incompatible_pins(pins);
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

/// Removes pinned maps whose layout differs from this agent's programs (an upgrade changed a key,
/// value or size): the kernel would refuse the programs against them, so the map starts over
/// empty instead, and the agent refills what it owns (endpoints, tunnels, services).
fn drop_incompatible_pins(pins: &NodePins) {
    let Ok(object) = aya_obj::Object::parse(DATAPATH_OBJECT) else {
        return;
    };
    for (name, definition) in &object.maps {
        if !PINNED_MAPS.contains(&name.as_str()) {
            continue;
        }
        let path = pins.map(name);
        let Ok(pinned) = aya::maps::MapData::from_pin(&path) else {
            continue;
        };
        let Ok(info) = pinned.info() else {
            continue;
        };
        let wanted = (
            definition.key_size(),
            definition.value_size(),
            definition.max_entries(),
        );
        let found = (info.key_size(), info.value_size(), info.max_entries());
        if found != wanted {
            tracing::warn!(
                map = %name,
                ?found,
                ?wanted,
                "the pinned map has another layout than this agent's programs; starting it afresh"
            );
            let _ = std::fs::remove_file(&path);
        }
    }
}
