//! Tables of kinds upstream prints that Flotilla does not serve yet (PodTemplate, Ingress,
//! RBAC bindings,
//! RuntimeClass, webhook configurations, and those printed with "Created At"). Each moves into
//! its kind's registry file when the kind is served; until then the registry falls back to
//! these for kinds registered at run time under the same names. (PersistentVolume(Claim) and
//! StorageClass are served; their registry files print with these.)

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

pub(crate) const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    col("Containers", "string", CONTAINERS_DOC),
    col("Images", "string", IMAGES_DOC),
    col("Pod Labels", "string", "The labels for the pod template."),
];

pub(crate) const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

pub(crate) const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

pub(crate) const PERSISTENT_VOLUME_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted.",
    ),
    col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    col(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    col("StorageClass", "string", "StorageClass of the pv"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
    ),
];

pub(crate) const PERSISTENT_VOLUME_CLAIM_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim.",
    ),
];

pub(crate) const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
    ),
];

pub(crate) const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

pub(crate) const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Provisioner",
        "string",
        "provisioner indicates the type of the provisioner.",
    ),
    col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    AGE,
];

pub(crate) const RUNTIME_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Handler",
        "string",
        "handler specifies the underlying runtime and configuration that the CRI implementation will use.",
    ),
    AGE,
];

pub(crate) const WEBHOOK_CONFIGURATION_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
];

/// Built-in kinds that upstream prints with the generic `rest.defaultTableConvertor`.
pub(crate) const CREATED_AT_COLUMNS: &[Column] = &[NAME, col("Created At", "date", CREATION_DOC)];

pub(crate) fn pod_template_cells(o: &Value) -> Vec<Value> {
    let (names, images) = container_cells(o, &["template"]);
    vec![
        json!(name(o)),
        json!(names),
        json!(images),
        json!(format_labels(get(o, &["template", "metadata", "labels"]))),
    ]
}

pub(crate) fn ingress_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let rules = list_at(o, &["spec", "rules"]);
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else if more {
        format!(
            "{} + {} more...",
            hosts.join(","),
            rules.len().saturating_sub(MAX)
        )
    } else {
        hosts.join(",")
    };
    let ports = if list_at(o, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        json!(name(o)),
        json!(or_default(
            str_at(o, &["spec", "ingressClassName"]),
            "<none>"
        )),
        json!(hosts),
        json!(load_balancer_ingress(o)),
        json!(ports),
        json!(age(o, now)),
    ]
}

pub(crate) fn ingress_class_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match get(o, &["spec", "parameters"]) {
        Some(p) => {
            let mut kind = str_at(p, &["kind"]).to_string();
            if let Some(group) = get(p, &["apiGroup"]).and_then(Value::as_str) {
                kind = format!("{kind}.{group}");
            }
            format!("{kind}/{}", str_at(p, &["name"]))
        }
        None => "<none>".to_string(),
    };
    vec![
        json!(name(o)),
        json!(str_at(o, &["spec", "controller"])),
        json!(parameters),
        json!(age(o, now)),
    ]
}

/// helper.GetAccessModesAsString: RWO, ROX, RWX, RWOP in that order.
pub(crate) fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class of a PV or PVC: the legacy beta annotation wins over the spec field.
pub(crate) fn storage_class_of(o: &Value) -> &str {
    get(
        o,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .and_then(Value::as_str)
    .unwrap_or_else(|| str_at(o, &["spec", "storageClassName"]))
}

pub(crate) fn persistent_volume_cells(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match get(pv, &["spec", "claimRef"]) {
        Some(c) => format!("{}/{}", str_at(c, &["namespace"]), str_at(c, &["name"])),
        None => String::new(),
    };
    // PV defaulting: reclaim policy Retain, phase Pending, volume mode Filesystem.
    let phase = if is_deleting(pv) {
        "Terminating"
    } else {
        or_default(str_at(pv, &["status", "phase"]), "Pending")
    };
    vec![
        json!(name(pv)),
        json!(quantity(get(pv, &["spec", "capacity", "storage"]))),
        json!(access_modes(list_at(pv, &["spec", "accessModes"]))),
        json!(or_default(
            str_at(pv, &["spec", "persistentVolumeReclaimPolicy"]),
            "Retain"
        )),
        json!(phase),
        json!(claim),
        json!(storage_class_of(pv)),
        json!(or_default(
            str_at(pv, &["spec", "volumeAttributesClassName"]),
            "<unset>"
        )),
        json!(str_at(pv, &["status", "reason"])),
        json!(age(pv, now)),
        json!(or_default(
            str_at(pv, &["spec", "volumeMode"]),
            "Filesystem"
        )),
    ]
}

pub(crate) fn persistent_volume_claim_cells(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let volume = str_at(pvc, &["spec", "volumeName"]);
    // Capacity and access modes are only shown once the claim is bound to a volume.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(get(pvc, &["status", "capacity", "storage"])),
            access_modes(list_at(pvc, &["status", "accessModes"])),
        )
    };
    // PVC defaulting: phase Pending, volume mode Filesystem.
    let phase = if is_deleting(pvc) {
        "Terminating"
    } else {
        or_default(str_at(pvc, &["status", "phase"]), "Pending")
    };
    vec![
        json!(name(pvc)),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class_of(pvc)),
        json!(or_default(
            str_at(pvc, &["spec", "volumeAttributesClassName"]),
            "<unset>"
        )),
        json!(age(pvc, now)),
        json!(or_default(
            str_at(pvc, &["spec", "volumeMode"]),
            "Filesystem"
        )),
    ]
}

pub(crate) fn role_binding_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        str_at(o, &["roleRef", "kind"]),
        str_at(o, &["roleRef", "name"])
    );
    let mut users: Vec<String> = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    let mut service_accounts: Vec<String> = Vec::new();
    for subject in list_at(o, &["subjects"]) {
        let subject_name = str_at(subject, &["name"]).to_string();
        match str_at(subject, &["kind"]) {
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{subject_name}",
                str_at(subject, &["namespace"])
            )),
            "User" => users.push(subject_name),
            "Group" => groups.push(subject_name),
            _ => {}
        }
    }
    vec![
        json!(name(o)),
        json!(role),
        json!(age(o, now)),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(service_accounts.join(", ")),
    ]
}

pub(crate) fn storage_class_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let mut class_name = name(o).to_string();
    if crate::apiserver::registry::storage::storage_class::is_default_class(o) {
        class_name.push_str(" (default)");
    }
    vec![
        json!(class_name),
        json!(str_at(o, &["provisioner"])),
        json!(or_default(str_at(o, &["reclaimPolicy"]), "Delete")),
        json!(or_default(str_at(o, &["volumeBindingMode"]), "Immediate")),
        json!(bool_at(o, &["allowVolumeExpansion"]).unwrap_or(false)),
        json!(age(o, now)),
    ]
}

/// The columns of an unserved kind upstream prints, if it is one.
pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    Some(match kind {
        "PodTemplate" => POD_TEMPLATE_COLUMNS,
        "Ingress" => INGRESS_COLUMNS,
        "IngressClass" => INGRESS_CLASS_COLUMNS,
        "PersistentVolume" => PERSISTENT_VOLUME_COLUMNS,
        "PersistentVolumeClaim" => PERSISTENT_VOLUME_CLAIM_COLUMNS,
        "RoleBinding" => ROLE_BINDING_COLUMNS,
        "ClusterRoleBinding" => CLUSTER_ROLE_BINDING_COLUMNS,
        "StorageClass" => STORAGE_CLASS_COLUMNS,
        "RuntimeClass" => RUNTIME_CLASS_COLUMNS,
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            WEBHOOK_CONFIGURATION_COLUMNS
        }
        "Role" | "ClusterRole" | "CustomResourceDefinition" | "LimitRange" => CREATED_AT_COLUMNS,
        _ => return None,
    })
}

/// One row of an unserved kind upstream prints, if it is one.
pub(crate) fn row_cells(kind: &str, object: &Value, now: Timestamp) -> Option<Vec<Value>> {
    let o = object;
    Some(match kind {
        "PodTemplate" => pod_template_cells(o),
        "Ingress" => ingress_cells(o, now),
        "IngressClass" => ingress_class_cells(o, now),
        "PersistentVolume" => persistent_volume_cells(o, now),
        "PersistentVolumeClaim" => persistent_volume_claim_cells(o, now),
        "RoleBinding" | "ClusterRoleBinding" => role_binding_cells(o, now),
        "StorageClass" => storage_class_cells(o, now),
        "RuntimeClass" => vec![
            json!(name(o)),
            json!(str_at(o, &["handler"])),
            json!(age(o, now)),
        ],
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => vec![
            json!(name(o)),
            json!(list_at(o, &["webhooks"]).len()),
            json!(age(o, now)),
        ],
        "Role" | "ClusterRole" | "CustomResourceDefinition" | "LimitRange" => created_at_cells(o),
        _ => return None,
    })
}
