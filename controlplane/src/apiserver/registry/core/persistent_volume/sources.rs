//! A PersistentVolume's source: exactly one of the volume types k8s-openapi's
//! `PersistentVolumeSpec` holds, each with upstream's own rules (`validate*PersistentVolumeSource`
//! and friends in pkg/apis/core/validation) and defaults. Flotilla's agent mounts only `local`
//! and `hostPath`; the others are accepted as upstream accepts them, for external drivers.

use crate::apiserver::registry::prelude::*;

/// The source fields in the order upstream checks them, with the name its "more than 1 volume
/// type" error uses and the path its own rules report under (upstream's spellings differ).
const SOURCES: [(&str, &str, &str); 22] = [
    ("hostPath", "hostPath", "hostPath"),
    ("gcePersistentDisk", "gcePersistentDisk", "persistentDisk"),
    (
        "awsElasticBlockStore",
        "awsElasticBlockStore",
        "awsElasticBlockStore",
    ),
    ("glusterfs", "glusterfs", "glusterfs"),
    ("flocker", "flocker", "flocker"),
    ("nfs", "nfs", "nfs"),
    ("rbd", "rbd", "rbd"),
    ("quobyte", "quobyte", "quobyte"),
    ("cephfs", "cephFS", "cephfs"),
    ("iscsi", "iscsi", "iscsi"),
    ("cinder", "cinder", "cinder"),
    ("fc", "fc", "fc"),
    ("flexVolume", "flexVolume", "flexVolume"),
    ("azureFile", "azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume", "vsphereVolume"),
    (
        "photonPersistentDisk",
        "photonPersistentDisk",
        "photonPersistentDisk",
    ),
    ("portworxVolume", "portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk", "azureDisk"),
    ("scaleIO", "scaleIO", "scaleIO"),
    ("local", "local", "local"),
    ("storageos", "storageos", "storageos"),
    ("csi", "csi", "csi"),
];

/// The host path types, sorted as upstream lists them ("" is the unset type).
const HOST_PATH_TYPES: [&str; 8] = [
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// `pdPartitionErrorMsg` (upstream checks 0..=255 but words it from 1).
const PARTITION_RANGE: &str = "must be between 1 and 255, inclusive";
/// `validation.InclusiveRangeError(0, 255)`.
const LUN_RANGE: &str = "must be between 0 and 255, inclusive";
/// What a Quobyte registry must be.
const QUOBYTE_REGISTRY: &str = "must be a host:port pair or multiple pairs separated by commas";

/// The volume source part of a spec (`PersistentVolumeSource`), for the immutability check.
pub(super) fn source_of(spec: Option<&Value>) -> Value {
    let mut source = Map::new();
    for (field, _, _) in SOURCES {
        if let Some(value) = get(spec, field) {
            source.insert(field.to_owned(), value.clone());
        }
    }
    Value::Object(source)
}

/// The volume-source part of `ValidatePersistentVolumeSpec`: exactly one source, valid by its
/// own rules; a `local` one needs node affinity.
pub(super) fn volume_source(e: &mut Errs, spec: Option<&Value>, pv_name: &str, affinity_set: bool) {
    let mut count = 0;
    for (field, error_name, path_name) in SOURCES {
        let Some(source) = get(spec, field) else {
            continue;
        };
        // Upstream counts a flexVolume without checking for another source first.
        if count > 0 && field != "flexVolume" {
            e.forbidden(
                &child("spec", error_name),
                "may not specify more than 1 volume type",
            );
            continue;
        }
        count += 1;
        one_source(e, field, Some(source), &child("spec", path_name), pv_name);
        if field == "local" && !affinity_set {
            e.required("spec.nodeAffinity", "Local volume requires node affinity");
        }
    }
    if count == 0 {
        e.required("spec", "must specify a volume type");
    }
}

/// A required string field of a source.
fn required_str(e: &mut Errs, source: Option<&Value>, field: &str, path: &str) {
    if str_of(source, field).is_empty() {
        e.required(&child(path, field), "");
    }
}

/// A required list field of a source.
fn required_list(e: &mut Errs, source: Option<&Value>, field: &str, path: &str) {
    if arr_of(source, field).is_empty() {
        e.required(&child(path, field), "");
    }
}

/// `validatePathNoBacksteps` (Linux paths: only `/` separates).
fn no_backsteps(e: &mut Errs, value: &str, path: &str) {
    if value.split('/').any(|part| part == "..") {
        e.invalid_s(path, value, "must not contain '..'");
    }
}

/// A path on the node for `hostPath` and `local`: upstream requires it and refuses `..`;
/// Flotilla also requires it absolute, because its agent bind-mounts it as it stands.
fn node_path(e: &mut Errs, source: Option<&Value>, path: &str) -> bool {
    let value = str_of(source, "path");
    let path = child(path, "path");
    if value.is_empty() {
        e.required(&path, "");
        return false;
    }
    no_backsteps(e, value, &path);
    if !value.starts_with('/') {
        e.invalid_s(&path, value, "must be an absolute path");
    }
    true
}

/// One source's own rules.
fn one_source(e: &mut Errs, field: &str, source: Option<&Value>, path: &str, pv_name: &str) {
    match field {
        "hostPath" => {
            if node_path(e, source, path)
                && let Some(kind) = str_opt(source, "type")
                && !HOST_PATH_TYPES.contains(&kind)
            {
                e.not_supported(&child(path, "type"), kind, &HOST_PATH_TYPES);
            }
        }
        "local" => {
            node_path(e, source, path);
        }
        "gcePersistentDisk" | "awsElasticBlockStore" => {
            let id = if field == "gcePersistentDisk" {
                "pdName"
            } else {
                "volumeID"
            };
            required_str(e, source, id, path);
            if let Some(partition) = int_of(source, "partition")
                && !(0..=255).contains(&partition)
            {
                e.invalid_i(&child(path, "partition"), partition, PARTITION_RANGE);
            }
        }
        "glusterfs" => {
            required_str(e, source, "endpoints", path);
            required_str(e, source, "path", path);
            if let Some(namespace) = str_opt(source, "endpointsNamespace") {
                let p = child(path, "endpointsNamespace");
                if namespace.is_empty() {
                    e.invalid_s(
                        &p,
                        namespace,
                        "if the endpointnamespace is set, it must be a valid namespace name",
                    );
                } else {
                    for m in is_dns1123_label(namespace) {
                        e.invalid_s(&p, namespace, &m);
                    }
                }
            }
        }
        "flocker" => {
            let (name, uuid) = (str_of(source, "datasetName"), str_of(source, "datasetUUID"));
            if name.is_empty() && uuid.is_empty() {
                e.required(path, "one of datasetName and datasetUUID is required");
            }
            if !name.is_empty() && !uuid.is_empty() {
                e.invalid_s(
                    path,
                    "resource",
                    "datasetName and datasetUUID can not be specified simultaneously",
                );
            }
            if name.contains('/') {
                e.invalid_s(&child(path, "datasetName"), name, "must not contain '/'");
            }
        }
        "nfs" => {
            required_str(e, source, "server", path);
            required_str(e, source, "path", path);
            let value = str_of(source, "path");
            if !value.starts_with('/') {
                e.invalid_s(&child(path, "path"), value, "must be an absolute path");
            }
        }
        "rbd" => {
            required_list(e, source, "monitors", path);
            required_str(e, source, "image", path);
        }
        "quobyte" => quobyte(e, source, path),
        "cephfs" => required_list(e, source, "monitors", path),
        "iscsi" => iscsi(e, source, path, pv_name),
        "cinder" => {
            required_str(e, source, "volumeID", path);
            if let Some(secret) = get(source, "secretRef") {
                let p = child(path, "secretRef");
                required_str(e, Some(secret), "name", &p);
                required_str(e, Some(secret), "namespace", &p);
            }
        }
        "fc" => fibre_channel(e, source, path),
        "flexVolume" => {
            required_str(e, source, "driver", path);
            for k in obj_of(source, "options")
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                let namespace = k.split_once('/').map_or(k.as_str(), |(ns, _)| ns);
                let normalized = format!(".{}", namespace.to_lowercase());
                if normalized.ends_with(".kubernetes.io") || normalized.ends_with(".k8s.io") {
                    e.invalid_s(
                        &key(&child(path, "options"), k),
                        k,
                        "kubernetes.io and k8s.io namespaces are reserved",
                    );
                }
            }
        }
        "azureFile" => {
            required_str(e, source, "secretName", path);
            required_str(e, source, "shareName", path);
            if str_opt(source, "secretNamespace").is_some_and(str::is_empty) {
                e.required(&child(path, "secretNamespace"), "");
            }
        }
        "vsphereVolume" => required_str(e, source, "volumePath", path),
        "photonPersistentDisk" => required_str(e, source, "pdID", path),
        "portworxVolume" => required_str(e, source, "volumeID", path),
        "azureDisk" => azure_disk(e, source, path),
        "scaleIO" => {
            for f in ["gateway", "system", "volumeName"] {
                required_str(e, source, f, path);
            }
        }
        "storageos" => {
            let name = str_of(source, "volumeName");
            if name.is_empty() {
                e.required(&child(path, "volumeName"), "");
            } else {
                for m in is_dns1123_label(name) {
                    e.invalid_s(&child(path, "volumeName"), name, &m);
                }
            }
            let namespace = str_of(source, "volumeNamespace");
            if !namespace.is_empty() {
                for m in is_dns1123_label(namespace) {
                    e.invalid_s(&child(path, "volumeNamespace"), namespace, &m);
                }
            }
            if let Some(secret) = get(source, "secretRef") {
                let p = child(path, "secretRef");
                required_str(e, Some(secret), "name", &p);
                required_str(e, Some(secret), "namespace", &p);
            }
        }
        "csi" => {
            csi_driver_name(e, str_of(source, "driver"), &child(path, "driver"));
            required_str(e, source, "volumeHandle", path);
            for secret in [
                "controllerPublishSecretRef",
                "controllerExpandSecretRef",
                "nodePublishSecretRef",
                "nodeExpandSecretRef",
            ] {
                if let Some(reference) = get(source, secret) {
                    secret_reference(e, Some(reference), &child(path, secret));
                }
            }
        }
        _ => {}
    }
}

/// `validateQuobyteVolumeSource`.
fn quobyte(e: &mut Errs, source: Option<&Value>, path: &str) {
    let registry = str_of(source, "registry");
    if registry.is_empty() {
        e.required(&child(path, "registry"), QUOBYTE_REGISTRY);
    } else if str_of(source, "tenant").len() >= 65 {
        e.required(
            &child(path, "tenant"),
            "must be a UUID and may not exceed a length of 64 characters",
        );
    } else {
        for pair in registry.split(',') {
            if !is_host_port(pair) {
                e.invalid_s(&child(path, "registry"), registry, QUOBYTE_REGISTRY);
            }
        }
    }
    required_str(e, source, "volume", path);
}

/// Whether Go's `net.SplitHostPort` accepts `text`.
fn is_host_port(text: &str) -> bool {
    if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return false;
        };
        return !host.contains('[')
            && after
                .strip_prefix(':')
                .is_some_and(|p| !p.contains(['[', ']']));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    !host.contains([':', '[', ']']) && !port.contains(['[', ']'])
}

/// `validateISCSIPersistentVolumeSource`.
fn iscsi(e: &mut Errs, source: Option<&Value>, path: &str, pv_name: &str) {
    let portal = str_of(source, "targetPortal");
    required_str(e, source, "targetPortal", path);
    let initiator = str_opt(source, "initiatorName");
    if initiator.is_some() && pv_name.len() + 1 + portal.len() > 64 {
        e.invalid_s(
            &child(path, "targetportal"),
            portal,
            "Total length of <volume name>:<iscsi.targetPortal> must be under 64 characters if iscsi.initiatorName is specified.",
        );
    }
    let iqn = str_of(source, "iqn");
    let iqn_path = child(path, "iqn");
    if iqn.is_empty() {
        e.required(&iqn_path, "");
    } else if !["iqn", "eui", "naa"].iter().any(|p| iqn.starts_with(p)) {
        e.invalid_s(
            &iqn_path,
            iqn,
            "must be valid format starting with iqn, eui, or naa",
        );
    } else if !iscsi_name_format_ok(iqn) {
        e.invalid_s(&iqn_path, iqn, "must be valid format");
    }
    if let Some(lun) = int_of(source, "lun")
        && !(0..=255).contains(&lun)
    {
        e.invalid_i(&child(path, "lun"), lun, LUN_RANGE);
    }
    let chap = bool_of(source, "chapAuthDiscovery") == Some(true)
        || bool_of(source, "chapAuthSession") == Some(true);
    let secret = get(source, "secretRef");
    if chap && secret.is_none() {
        e.required(&child(path, "secretRef"), "");
    }
    if let Some(secret) = secret {
        required_str(e, Some(secret), "name", &child(path, "secretRef"));
    }
    if let Some(initiator) = initiator {
        let p = child(path, "initiatorname");
        if !["iqn", "eui", "naa"]
            .iter()
            .any(|pre| initiator.starts_with(pre))
            || !iscsi_name_format_ok(initiator)
        {
            e.invalid_s(&p, initiator, "must be valid format");
        }
    }
}

/// Upstream's iSCSI name regular expressions, for a name starting iqn, eui or naa:
/// `iqn\.\d{4}-\d{2}\.([[:alnum:]-.]+)(:[^,;*&$|\s]+)$` (found anywhere),
/// `^eui.[[:alnum:]]{16}$` and `^naa.[[:alnum:]]{32}$`.
fn iscsi_name_format_ok(name: &str) -> bool {
    let alnum_tail = |prefix: &str, n: usize| {
        name.strip_prefix(prefix).is_some_and(|rest| {
            let mut chars = rest.chars();
            chars.next().is_some_and(|c| c != '\n')
                && chars.clone().count() == n
                && chars.all(|c| c.is_ascii_alphanumeric())
        })
    };
    if name.starts_with("eui") {
        return alnum_tail("eui", 16);
    }
    if name.starts_with("naa") {
        return alnum_tail("naa", 32);
    }
    name.match_indices("iqn.")
        .any(|(at, _)| iqn_tail_ok(&name[at + 4..]))
}

/// What follows `iqn.` in upstream's IQN expression: `\d{4}-\d{2}\.NAME:REST` to the end.
fn iqn_tail_ok(tail: &str) -> bool {
    let bytes = tail.as_bytes();
    let date_ok = bytes.len() > 8
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[5..7].iter().all(u8::is_ascii_digit)
        && bytes[7] == b'.';
    if !date_ok {
        return false;
    }
    let Some((name, rest)) = tail[8..].split_once(':') else {
        return false;
    };
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !rest.is_empty()
        && !rest.contains([',', ';', '*', '&', '$', '|', ' ', '\t', '\n', '\r', '\u{c}'])
}

/// `validateFCVolumeSource`.
fn fibre_channel(e: &mut Errs, source: Option<&Value>, path: &str) {
    let wwns = arr_of(source, "targetWWNs");
    let wwids = arr_of(source, "wwids");
    let wwns_path = child(path, "targetWWNs");
    if wwns.is_empty() && wwids.is_empty() {
        e.required(
            &wwns_path,
            "must specify either targetWWNs or wwids, but not both",
        );
    }
    if !wwns.is_empty() && !wwids.is_empty() {
        e.invalid(
            &wwns_path,
            &go_strings(get(source, "targetWWNs")),
            "targetWWNs and wwids can not be specified simultaneously",
        );
    }
    if !wwns.is_empty() {
        match int_of(source, "lun") {
            None => e.required(
                &child(path, "lun"),
                "lun is required if targetWWNs is specified",
            ),
            Some(lun) if !(0..=255).contains(&lun) => {
                e.invalid_i(&child(path, "lun"), lun, LUN_RANGE);
            }
            Some(_) => {}
        }
    }
}

/// `validateAzureDisk`.
fn azure_disk(e: &mut Errs, source: Option<&Value>, path: &str) {
    const CACHING: [&str; 3] = ["None", "ReadOnly", "ReadWrite"];
    const KINDS: [&str; 3] = ["Dedicated", "Managed", "Shared"];
    required_str(e, source, "diskName", path);
    required_str(e, source, "diskURI", path);
    if let Some(caching) = str_opt(source, "cachingMode")
        && !CACHING.contains(&caching)
    {
        e.not_supported(&child(path, "cachingMode"), caching, &CACHING);
    }
    let kind = str_opt(source, "kind");
    if let Some(kind) = kind
        && !KINDS.contains(&kind)
    {
        e.not_supported(&child(path, "kind"), kind, &KINDS);
    }
    let uri = str_of(source, "diskURI");
    let uri_path = child(path, "diskURI");
    match kind {
        Some("Managed") if !uri.starts_with("/subscriptions/") => e.not_supported(
            &uri_path,
            uri,
            &["/subscriptions/{sub-id}/resourcegroups/{group-name}/providers/microsoft.compute/disks/{disk-id}"],
        ),
        Some(kind) if kind != "Managed" && !uri.starts_with("https://") => e.not_supported(
            &uri_path,
            uri,
            &["https://{account-name}.blob.core.windows.net/{container-name}/{disk-name}.vhd"],
        ),
        _ => {}
    }
}

/// `ValidateCSIDriverName`.
fn csi_driver_name(e: &mut Errs, driver: &str, path: &str) {
    if driver.is_empty() {
        e.required(path, "");
    }
    if driver.len() > 63 {
        e.too_long(path, 63);
    }
    for m in is_dns1123_subdomain(&driver.to_lowercase()) {
        e.invalid_s(path, driver, &m);
    }
}

/// `validatePVSecretReference`.
fn secret_reference(e: &mut Errs, reference: Option<&Value>, path: &str) {
    let name = str_of(reference, "name");
    if name.is_empty() {
        e.required(&child(path, "name"), "");
    } else {
        for m in is_dns1123_subdomain(name) {
            e.invalid_s(&child(path, "name"), name, &m);
        }
    }
    let namespace = str_of(reference, "namespace");
    if namespace.is_empty() {
        e.required(&child(path, "namespace"), "");
    } else {
        for m in is_dns1123_label(namespace) {
            e.invalid_s(&child(path, "namespace"), namespace, &m);
        }
    }
}

/// The `SetDefaults_*` of the sources a PersistentVolume spec holds.
pub(super) fn default_sources(spec: &mut Value) {
    if let Some(host_path) = spec.get_mut("hostPath").filter(|s| s.is_object()) {
        set_default(host_path, "type", json!(""));
    }
    if let Some(iscsi) = spec.get_mut("iscsi").filter(|s| s.is_object()) {
        super::default_if_empty(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = spec.get_mut("rbd").filter(|s| s.is_object()) {
        super::default_if_empty(rbd, "pool", "rbd");
        super::default_if_empty(rbd, "user", "admin");
        super::default_if_empty(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(disk) = spec.get_mut("azureDisk").filter(|s| s.is_object()) {
        set_default(disk, "cachingMode", json!("ReadWrite"));
        set_default(disk, "kind", json!("Shared"));
        set_default(disk, "fsType", json!("ext4"));
        set_default(disk, "readOnly", json!(false));
    }
    if let Some(scale_io) = spec.get_mut("scaleIO").filter(|s| s.is_object()) {
        super::default_if_empty(scale_io, "storageMode", "ThinProvisioned");
        super::default_if_empty(scale_io, "fsType", "xfs");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iscsi_names_follow_upstreams_expressions() {
        assert!(iscsi_name_format_ok(
            "iqn.2001-04.com.example:storage.disk1.sys1.xyz"
        ));
        assert!(!iscsi_name_format_ok("iqn.2001-04.com.example"));
        assert!(!iscsi_name_format_ok("iqn.01-04.com.example:x"));
        assert!(!iscsi_name_format_ok("iqn.2001-04.com.example:a;b"));
        assert!(iscsi_name_format_ok("eui.02004567A425678D"));
        assert!(!iscsi_name_format_ok("eui.02004567A425678"));
        assert!(iscsi_name_format_ok("naa.52004567BA64678D52004567BA64678D"));
    }

    #[test]
    fn host_ports_are_split_as_go_splits_them() {
        assert!(is_host_port("quobyte.example:7861"));
        assert!(is_host_port("[::1]:7861"));
        assert!(!is_host_port("quobyte.example"));
        assert!(!is_host_port("::1:7861"));
    }
}
