//! Server-side Table printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! `kubectl get` asks the API server for a `meta.k8s.io/v1` Table and prints its columns as they
//! come, so the columns and cells here follow kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`, Kubernetes 1.32) kind by kind. The server always
//! prints "wide" rows: every column, priority 1 ones included, and kubectl hides those unless it
//! is given `-o wide`. Objects arrive as the stored `v1` JSON; where upstream would see a value
//! that API defaulting fills in (a Service's type, a Deployment's replicas, ...) the printer
//! applies the same default, so an object stored without it prints the same as upstream.

use jiff::Timestamp;
use serde_json::{Value, json};

/// `ObjectMeta.name`'s API documentation, upstream's description of every Name column.
const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp`'s API documentation, upstream's description of every Age column.
const CREATION_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";
const SELECTOR_DOC: &str = "A label query over pods that should match the replica count.";

/// One `metav1.TableColumnDefinition`.
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

/// A column shown by default.
const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        priority: 0,
        description,
    }
}

/// A column shown only with `-o wide`.
const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        priority: 1,
        description,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: NAME_DOC,
};
const AGE: Column = col("Age", "string", CREATION_DOC);
const CONTAINERS: Column = wide("Containers", "string", CONTAINERS_DOC);
const IMAGES: Column = wide("Images", "string", IMAGES_DOC);

const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
];

const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    col("Containers", "string", CONTAINERS_DOC),
    col("Images", "string", IMAGES_DOC),
    col("Pod Labels", "string", "The labels for the pod template."),
];

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName.",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service, usually assigned randomly.",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

const EVENT_COLUMNS: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col("Type", "string", "Type of this event (Normal, Warning)."),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
    ),
    wide("Source", "string", "The component reporting this event."),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded.",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    Column {
        priority: 1,
        ..NAME
    },
];

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", SELECTOR_DOC),
];

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", SELECTOR_DOC),
];

const REPLICATION_CONTROLLER_COLUMNS: &[Column] = REPLICA_SET_COLUMNS;

const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod.",
    ),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
    ),
    col(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
    ),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
    ),
    col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that are managed by the daemon set.",
    ),
];

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that should match the pod count.",
    ),
];

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
    ),
    col(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
    ),
    col(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that should match the pod count.",
    ),
];

const NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

const INGRESS_COLUMNS: &[Column] = &[
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

const INGRESS_CLASS_COLUMNS: &[Column] = &[
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

const POD_DISRUPTION_BUDGET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

const PERSISTENT_VOLUME_COLUMNS: &[Column] = &[
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

const PERSISTENT_VOLUME_CLAIM_COLUMNS: &[Column] = &[
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

const ROLE_BINDING_COLUMNS: &[Column] = &[
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

const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
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

const STORAGE_CLASS_COLUMNS: &[Column] = &[
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

const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Value",
        "integer",
        "value represents the integer value of this priority class.",
    ),
    col(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority.",
    ),
];

const RUNTIME_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Handler",
        "string",
        "handler specifies the underlying runtime and configuration that the CRI implementation will use.",
    ),
    AGE,
];

const WEBHOOK_CONFIGURATION_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
];

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// Built-in kinds that upstream prints with the generic `rest.defaultTableConvertor`.
const CREATED_AT_COLUMNS: &[Column] = &[NAME, col("Created At", "date", CREATION_DOC)];

/// Any other kind (custom resources): the columns a CRD without printer columns gets.
const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

/// The columns of `kind`, in upstream's order.
fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Pod" => POD_COLUMNS,
        "PodTemplate" => POD_TEMPLATE_COLUMNS,
        "Namespace" => NAMESPACE_COLUMNS,
        "Node" => NODE_COLUMNS,
        "Service" => SERVICE_COLUMNS,
        "Endpoints" => ENDPOINTS_COLUMNS,
        "EndpointSlice" => ENDPOINT_SLICE_COLUMNS,
        "ConfigMap" => CONFIG_MAP_COLUMNS,
        "Secret" => SECRET_COLUMNS,
        "ServiceAccount" => SERVICE_ACCOUNT_COLUMNS,
        "Event" => EVENT_COLUMNS,
        "Lease" => LEASE_COLUMNS,
        "Deployment" => DEPLOYMENT_COLUMNS,
        "ReplicaSet" => REPLICA_SET_COLUMNS,
        "ReplicationController" => REPLICATION_CONTROLLER_COLUMNS,
        "StatefulSet" => STATEFUL_SET_COLUMNS,
        "DaemonSet" => DAEMON_SET_COLUMNS,
        "Job" => JOB_COLUMNS,
        "CronJob" => CRON_JOB_COLUMNS,
        "NetworkPolicy" => NETWORK_POLICY_COLUMNS,
        "Ingress" => INGRESS_COLUMNS,
        "IngressClass" => INGRESS_CLASS_COLUMNS,
        "PodDisruptionBudget" => POD_DISRUPTION_BUDGET_COLUMNS,
        "PersistentVolume" => PERSISTENT_VOLUME_COLUMNS,
        "PersistentVolumeClaim" => PERSISTENT_VOLUME_CLAIM_COLUMNS,
        "RoleBinding" => ROLE_BINDING_COLUMNS,
        "ClusterRoleBinding" => CLUSTER_ROLE_BINDING_COLUMNS,
        "StorageClass" => STORAGE_CLASS_COLUMNS,
        "PriorityClass" => PRIORITY_CLASS_COLUMNS,
        "RuntimeClass" => RUNTIME_CLASS_COLUMNS,
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            WEBHOOK_CONFIGURATION_COLUMNS
        }
        "ControllerRevision" => CONTROLLER_REVISION_COLUMNS,
        "Role" | "ClusterRole" | "CustomResourceDefinition" | "LimitRange" => CREATED_AT_COLUMNS,
        _ => DEFAULT_COLUMNS,
    }
}

/// Column definitions (metav1.TableColumnDefinition JSON objects: name, type, format, description, priority) for objects of `kind`.
pub fn column_definitions(kind: &str) -> Vec<Value> {
    columns(kind)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// The cells of one row for `object` (same order as the columns), given the current time.
pub fn row_cells(kind: &str, object: &Value, now: Timestamp) -> Vec<Value> {
    let o = object;
    match kind {
        "Pod" => pod_cells(o, now),
        "PodTemplate" => pod_template_cells(o),
        "Namespace" => {
            // Namespace status defaulting makes an unset phase read back as Active.
            let phase = or_default(str_at(o, &["status", "phase"]), "Active");
            vec![json!(name(o)), json!(phase), json!(age(o, now))]
        }
        "Node" => node_cells(o, now),
        "Service" => service_cells(o, now),
        "Endpoints" => vec![
            json!(name(o)),
            json!(format_endpoints(o)),
            json!(age(o, now)),
        ],
        "EndpointSlice" => vec![
            json!(name(o)),
            json!(str_at(o, &["addressType"])),
            json!(format_discovery_ports(list_at(o, &["ports"]))),
            json!(format_discovery_endpoints(list_at(o, &["endpoints"]))),
            json!(age(o, now)),
        ],
        "ConfigMap" => vec![
            json!(name(o)),
            json!(map_len(o, &["data"]) + map_len(o, &["binaryData"])),
            json!(age(o, now)),
        ],
        "Secret" => vec![
            json!(name(o)),
            // Secret defaulting turns an unset type into Opaque.
            json!(or_default(str_at(o, &["type"]), "Opaque")),
            json!(map_len(o, &["data"])),
            json!(age(o, now)),
        ],
        "ServiceAccount" => vec![
            json!(name(o)),
            json!(list_at(o, &["secrets"]).len()),
            json!(age(o, now)),
        ],
        "Event" => event_cells(o, now),
        "Lease" => vec![
            json!(name(o)),
            json!(str_at(o, &["spec", "holderIdentity"])),
            json!(age(o, now)),
        ],
        "Deployment" => deployment_cells(o, now),
        "ReplicaSet" => replica_cells(o, now, format_label_selector(get(o, &["spec", "selector"]))),
        "ReplicationController" => {
            replica_cells(o, now, format_labels(get(o, &["spec", "selector"])))
        }
        "StatefulSet" => {
            let (names, images) = container_cells(o, &["spec", "template"]);
            vec![
                json!(name(o)),
                json!(format!(
                    "{}/{}",
                    int_at(o, &["status", "readyReplicas"]),
                    replicas(o)
                )),
                json!(age(o, now)),
                json!(names),
                json!(images),
            ]
        }
        "DaemonSet" => daemon_set_cells(o, now),
        "Job" => job_cells(o, now),
        "CronJob" => cron_job_cells(o, now),
        "NetworkPolicy" => vec![
            json!(name(o)),
            json!(format_label_selector(get(o, &["spec", "podSelector"]))),
            json!(age(o, now)),
        ],
        "Ingress" => ingress_cells(o, now),
        "IngressClass" => ingress_class_cells(o, now),
        "PodDisruptionBudget" => vec![
            json!(name(o)),
            json!(int_or_string(get(o, &["spec", "minAvailable"]))),
            json!(int_or_string(get(o, &["spec", "maxUnavailable"]))),
            json!(int_at(o, &["status", "disruptionsAllowed"])),
            json!(age(o, now)),
        ],
        "PersistentVolume" => persistent_volume_cells(o, now),
        "PersistentVolumeClaim" => persistent_volume_claim_cells(o, now),
        "RoleBinding" | "ClusterRoleBinding" => role_binding_cells(o, now),
        "StorageClass" => storage_class_cells(o, now),
        "PriorityClass" => vec![
            json!(name(o)),
            json!(int_at(o, &["value"])),
            json!(bool_at(o, &["globalDefault"]).unwrap_or(false)),
            json!(age(o, now)),
            // PriorityClass defaulting fills in the preemption policy.
            json!(or_default(
                str_at(o, &["preemptionPolicy"]),
                "PreemptLowerPriority"
            )),
        ],
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
        "ControllerRevision" => vec![
            json!(name(o)),
            json!(controller_of(o)),
            json!(int_at(o, &["revision"])),
            json!(age(o, now)),
        ],
        "Role" | "ClusterRole" | "CustomResourceDefinition" | "LimitRange" => {
            vec![json!(name(o)), json!(created_at(o))]
        }
        _ => vec![json!(name(o)), json!(age(o, now))],
    }
}

/// Kubernetes' HumanDuration ("5s", "3m2s"?, "10m", "5h", "3d", "2y"...) exactly as upstream.
pub fn human_duration(duration: std::time::Duration) -> String {
    // Go's time.Duration is int64 nanoseconds and saturates there (~292 years).
    human_nanos(i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX))
}

/// HumanDuration over a signed Go-style duration in nanoseconds, negative values included.
fn human_nanos(d: i64) -> String {
    const SECOND: i64 = 1_000_000_000;
    const MINUTE: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MINUTE;
    // Up to two seconds into the future still counts as "now", to tolerate clock skew.
    let seconds = d / SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{days}d");
        }
        return format!("{days}d{h}h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        if dy == 0 {
            return format!("{years}y");
        }
        return format!("{years}y{dy}d");
    }
    format!("{years}y")
}

// ---------------------------------------------------------------------------------------------
// JSON access. A JSON null counts as absent, as a nil pointer does upstream.

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(Value::as_i64)
}

fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

fn list_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn map_len(v: &Value, path: &[&str]) -> usize {
    get(v, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

fn name(o: &Value) -> &str {
    str_at(o, &["metadata", "name"])
}

fn is_deleting(o: &Value) -> bool {
    get(o, &["metadata", "deletionTimestamp"]).is_some()
}

/// `spec.replicas`, which workload defaulting sets to 1 when unset.
fn replicas(o: &Value) -> i64 {
    opt_int(o, &["spec", "replicas"]).unwrap_or(1)
}

/// A Quantity as upstream prints it: the stored string, or "0" for an absent quantity.
fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// An IntOrString as upstream prints it, "N/A" when unset.
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Time.

/// Unix seconds of Go's zero time (0001-01-01T00:00:00Z), which upstream treats as unset.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    let text = get(v, path)?.as_str()?;
    let t: Timestamp = text.parse().ok()?;
    (t.as_second() != GO_ZERO_TIME_SECONDS).then_some(t)
}

/// Clamps jiff's signed span to Go's int64 nanoseconds, which saturate the same way.
fn go_nanos(nanos: i128) -> i64 {
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// upstream's translateTimestampSince: "<unknown>" for an unset time.
fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => human_nanos(go_nanos(now.duration_since(t).as_nanos())),
        None => "<unknown>".to_string(),
    }
}

fn age(o: &Value, now: Timestamp) -> String {
    since(time_at(o, &["metadata", "creationTimestamp"]), now)
}

/// The default table convertor's cell: creation time in RFC 3339 at whole seconds.
fn created_at(o: &Value) -> String {
    let seconds = time_at(o, &["metadata", "creationTimestamp"])
        .map_or(GO_ZERO_TIME_SECONDS, Timestamp::as_second);
    Timestamp::from_second(seconds)
        .map_or_else(|_| "0001-01-01T00:00:00Z".to_string(), |t| t.to_string())
}

// ---------------------------------------------------------------------------------------------
// Shared formatting.

/// Names and images of the containers in the pod template at `template`, comma-separated.
fn container_cells(o: &Value, template: &[&str]) -> (String, String) {
    let mut path = template.to_vec();
    path.extend(["spec", "containers"]);
    let containers = list_at(o, &path);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// labels.FormatLabels: sorted `k=v` pairs, "<none>" when empty.
fn format_labels(v: Option<&Value>) -> String {
    let mut pairs: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// LabelSelectorAsSelector(selector).String(), or None where upstream reports the selector invalid.
pub fn selector_string(selector: Option<&Value>) -> Option<String> {
    // A nil selector selects nothing and an empty one everything; both print as "".
    let Some(selector) = selector else {
        return Some(String::new());
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = get(selector, &["matchLabels"]).and_then(Value::as_object) {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or("");
            requirements.push((key.clone(), format!("{key}={value}")));
        }
    }
    for expression in list_at(selector, &["matchExpressions"]) {
        let key = str_at(expression, &["key"]);
        let mut values: Vec<&str> = list_at(expression, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        // Requirement.String() prints set values sorted.
        values.sort_unstable();
        let rendered = match str_at(expression, &["operator"]) {
            "In" | "NotIn" if values.is_empty() => return None,
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return None,
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.to_string(), rendered));
    }
    // The selector keeps its requirements sorted by key.
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    let rendered: Vec<String> = requirements.into_iter().map(|(_, r)| r).collect();
    Some(rendered.join(","))
}

/// metav1.FormatLabelSelector: "<none>" when empty, "<error>" when invalid.
fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        None => "<error>".to_string(),
        Some(s) if s.is_empty() => "<none>".to_string(),
        Some(s) => s,
    }
}

/// net.JoinHostPort: brackets around IPv6 hosts.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Up to three items, then " + N more...", "<unset>" when there are none.
fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count.saturating_sub(max));
    }
    if ret.is_empty() {
        return "<unset>".to_string();
    }
    ret
}

/// The load balancer's ingress points, sorted and deduplicated, IP preferred to hostname.
fn load_balancer_ingress(o: &Value) -> String {
    let mut points: Vec<&str> = list_at(o, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let hostname = str_at(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !hostname.is_empty() {
                Some(hostname)
            } else {
                None
            }
        })
        .collect();
    points.sort_unstable();
    points.dedup();
    // Server-side tables are always generated wide, so upstream never truncates this.
    points.join(",")
}

// ---------------------------------------------------------------------------------------------
// Pods.

fn has_condition(o: &Value, condition_type: &str) -> Option<bool> {
    list_at(o, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == condition_type)
        .map(|c| str_at(c, &["status"]) == "True")
}

/// Keeps the later of `latest` and the container's last termination time.
fn note_termination(latest: &mut Option<Timestamp>, status: &Value) {
    if let Some(t) = time_at(status, &["lastState", "terminated", "finishedAt"])
        && latest.is_none_or(|l| l < t)
    {
        *latest = Some(t);
    }
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let init_containers = list_at(pod, &["spec", "initContainers"]);
    // A sidecar is an init container that keeps running: restartPolicy Always.
    let is_sidecar = |container_name: &str| {
        init_containers
            .iter()
            .find(|c| str_at(c, &["name"]) == container_name)
            .is_some_and(|c| str_at(c, &["restartPolicy"]) == "Always")
    };
    let total = list_at(pod, &["spec", "containers"]).len()
        + init_containers
            .iter()
            .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);
    let mut reason = or_default(status_reason, phase).to_string();
    for condition in list_at(pod, &["status", "conditions"]) {
        if str_at(condition, &["type"]) == "PodScheduled"
            && str_at(condition, &["reason"]) == "SchedulingGated"
        {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut initializing = false;
    for (i, status) in list_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let restart_count = int_at(status, &["restartCount"]);
        restarts = restarts.saturating_add(restart_count);
        note_termination(&mut last_restart, status);
        let sidecar = is_sidecar(str_at(status, &["name"]));
        if sidecar {
            sidecar_restarts = sidecar_restarts.saturating_add(restart_count);
            note_termination(&mut last_sidecar_restart, status);
        }
        let terminated = get(status, &["state", "terminated"]);
        let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && bool_at(status, &["started"]) == Some(true) {
            if bool_at(status, &["ready"]) == Some(true) {
                ready += 1;
            }
            continue;
        }
        // The first init container that has not finished decides the status.
        reason = if let Some(t) = terminated {
            let terminated_reason = str_at(t, &["reason"]);
            let signal = int_at(t, &["signal"]);
            if !terminated_reason.is_empty() {
                format!("Init:{terminated_reason}")
            } else if signal != 0 {
                format!("Init:Signal:{signal}")
            } else {
                format!("Init:ExitCode:{}", int_at(t, &["exitCode"]))
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") == Some(true) {
        // Once initialized, only sidecars' restarts still count among the init containers'.
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in list_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts = restarts.saturating_add(int_at(status, &["restartCount"]));
            note_termination(&mut last_restart, status);
            let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
            let terminated = get(status, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let terminated_reason = str_at(t, &["reason"]);
                let signal = int_at(t, &["signal"]);
                reason = if !terminated_reason.is_empty() {
                    terminated_reason.to_string()
                } else if signal != 0 {
                    format!("Signal:{signal}")
                } else {
                    format!("ExitCode:{}", int_at(t, &["exitCode"]))
                };
            } else if bool_at(status, &["ready"]) == Some(true)
                && get(status, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose some containers completed while others still run is not "Completed".
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") == Some(true) {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    if is_deleting(pod) && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if is_deleting(pod) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    // The v1 -> internal conversion fills podIPs from podIP when only the latter is set.
    let pod_ip = list_at(pod, &["status", "podIPs"]).first().map_or_else(
        || str_at(pod, &["status", "podIP"]),
        |ip| str_at(ip, &["ip"]),
    );
    let gates = list_at(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passed = gates
            .iter()
            .filter(|g| has_condition(pod, str_at(g, &["conditionType"])) == Some(true))
            .count();
        format!("{passed}/{}", gates.len())
    };

    vec![
        json!(name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(pod, now)),
        json!(or_default(pod_ip, "<none>")),
        json!(or_default(str_at(pod, &["spec", "nodeName"]), "<none>")),
        json!(or_default(
            str_at(pod, &["status", "nominatedNodeName"]),
            "<none>"
        )),
        json!(readiness_gates),
    ]
}

fn pod_template_cells(o: &Value) -> Vec<Value> {
    let (names, images) = container_cells(o, &["template"]);
    vec![
        json!(name(o)),
        json!(names),
        json!(images),
        json!(format_labels(get(o, &["template", "metadata", "labels"]))),
    ]
}

// ---------------------------------------------------------------------------------------------
// Cluster objects.

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition makes it into the status; the last one of that type wins.
    let ready = list_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if bool_at(node, &["spec", "unschedulable"]) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }

    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = get(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role);
                }
            } else if key == "kubernetes.io/role"
                && let Some(role) = value.as_str().filter(|r| !r.is_empty())
            {
                roles.push(role);
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };

    let address = |address_type: &str| {
        list_at(node, &["status", "addresses"])
            .iter()
            .find(|a| str_at(a, &["type"]) == address_type)
            .map_or("<none>", |a| str_at(a, &["address"]))
    };
    let info = |field: &str| or_default(str_at(node, &["status", "nodeInfo", field]), "<unknown>");

    vec![
        json!(name(node)),
        json!(status),
        json!(roles),
        json!(age(node, now)),
        json!(str_at(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    // Service defaulting makes an unset type ClusterIP and an unset port protocol TCP.
    let svc_type = or_default(str_at(svc, &["spec", "type"]), "ClusterIP");
    let cluster_ip = list_at(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(svc, &["spec", "clusterIP"]));
    let cluster_ip = or_default(cluster_ip, "<none>");

    let external_ips: Vec<&str> = list_at(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external_ip = match svc_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let lb = load_balancer_ingress(svc);
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(','));
                }
                all.extend(&external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };

    let ports: Vec<String> = list_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let protocol = or_default(str_at(p, &["protocol"]), "TCP");
            let node_port = int_at(p, &["nodePort"]);
            if node_port > 0 {
                format!("{port}:{node_port}/{protocol}")
            } else {
                format!("{port}/{protocol}")
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };

    vec![
        json!(name(svc)),
        json!(svc_type),
        json!(cluster_ip),
        json!(external_ip),
        json!(ports),
        json!(age(svc, now)),
        json!(format_labels(get(svc, &["spec", "selector"]))),
    ]
}

fn format_endpoints(o: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list_at(o, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for subset in subsets {
        let addresses = list_at(subset, &["addresses"]);
        let ports = list_at(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports: list the bare addresses.
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(address, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(
                    str_at(address, &["ip"]),
                    int_at(port, &["port"]),
                ));
            }
        }
    }
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count.saturating_sub(MAX));
    }
    ret
}

fn format_discovery_ports(ports: &[Value]) -> String {
    const MAX: usize = 3;
    let list: Vec<String> = ports
        .iter()
        .take(MAX)
        .map(|p| match (opt_int(p, &["port"]), get(p, &["name"])) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.as_str().unwrap_or("").to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    list_with_more(&list, ports.len() > MAX, ports.len(), MAX)
}

fn format_discovery_endpoints(endpoints: &[Value]) -> String {
    const MAX: usize = 3;
    let addresses: Vec<String> = endpoints
        .iter()
        .flat_map(|e| list_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    let shown = addresses.len().min(MAX);
    list_with_more(
        &addresses[..shown],
        addresses.len() > MAX,
        addresses.len(),
        MAX,
    )
}

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    // Events from the events.k8s.io API carry eventTime and series instead of the old fields.
    let first_seen = match time_at(event, &["firstTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => since(time_at(event, &["eventTime"]), now),
    };
    let mut last_seen = match time_at(event, &["lastTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = int_at(event, &["count"]);
    if let Some(series) = get(event, &["series"]) {
        last_seen = since(time_at(series, &["lastObservedTime"]), now);
        count = int_at(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }

    let kind = str_at(event, &["involvedObject", "kind"]).to_lowercase();
    let object_name = str_at(event, &["involvedObject", "name"]);
    let target = if object_name.is_empty() {
        kind
    } else {
        format!("{kind}/{object_name}")
    };

    let component = or_default(
        str_at(event, &["source", "component"]),
        str_at(event, &["reportingComponent"]),
    );
    let host = or_default(
        str_at(event, &["source", "host"]),
        str_at(event, &["reportingInstance"]),
    );
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };

    vec![
        json!(last_seen),
        json!(str_at(event, &["type"])),
        json!(str_at(event, &["reason"])),
        json!(target),
        json!(str_at(event, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(str_at(event, &["message"]).trim()),
        json!(first_seen),
        json!(count),
        json!(name(event)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Workloads.

fn deployment_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(o, &["spec", "template"]);
    // Deployments print the selector unformatted: an empty selector is "", not "<none>".
    let selector =
        selector_string(get(o, &["spec", "selector"])).unwrap_or_else(|| "<invalid>".to_string());
    vec![
        json!(name(o)),
        json!(format!(
            "{}/{}",
            int_at(o, &["status", "readyReplicas"]),
            replicas(o)
        )),
        json!(int_at(o, &["status", "updatedReplicas"])),
        json!(int_at(o, &["status", "availableReplicas"])),
        json!(age(o, now)),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

/// Rows of ReplicaSets and ReplicationControllers, which differ only in how the selector prints.
fn replica_cells(o: &Value, now: Timestamp, selector: String) -> Vec<Value> {
    let (names, images) = container_cells(o, &["spec", "template"]);
    vec![
        json!(name(o)),
        json!(replicas(o)),
        json!(int_at(o, &["status", "replicas"])),
        json!(int_at(o, &["status", "readyReplicas"])),
        json!(age(o, now)),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

fn daemon_set_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(o, &["spec", "template"]);
    let status = |field: &str| int_at(o, &["status", field]);
    vec![
        json!(name(o)),
        json!(status("desiredNumberScheduled")),
        json!(status("currentNumberScheduled")),
        json!(status("numberReady")),
        json!(status("updatedNumberScheduled")),
        json!(status("numberAvailable")),
        json!(format_labels(get(
            o,
            &["spec", "template", "spec", "nodeSelector"]
        ))),
        json!(age(o, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(get(o, &["spec", "selector"]))),
    ]
}

fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(job, &["status", "succeeded"]);
    let completions = match opt_int(job, &["spec", "completions"]) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match opt_int(job, &["spec", "parallelism"]).unwrap_or(0) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = time_at(job, &["status", "startTime"]);
    let completion = time_at(job, &["status", "completionTime"]);
    let duration = match (start, completion) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start), now),
        (Some(start), Some(end)) => human_nanos(go_nanos(end.duration_since(start).as_nanos())),
    };
    let condition = |condition_type: &str| has_condition(job, condition_type) == Some(true);
    let status = if condition("Complete") {
        "Complete"
    } else if condition("Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if condition("Suspended") {
        "Suspended"
    } else if condition("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(job, &["spec", "template"]);
    vec![
        json!(name(job)),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age(job, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(get(job, &["spec", "selector"]))),
    ]
}

fn cron_job_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match time_at(o, &["status", "lastScheduleTime"]) {
        Some(t) => since(Some(t), now),
        None if get(o, &["status", "lastScheduleTime"]).is_some() => "<unknown>".to_string(),
        None => "<none>".to_string(),
    };
    // CronJob defaulting sets suspend to false, so upstream never meets it unset.
    let suspend = if bool_at(o, &["spec", "suspend"]) == Some(true) {
        "True"
    } else {
        "False"
    };
    let (names, images) = container_cells(o, &["spec", "jobTemplate", "spec", "template"]);
    vec![
        json!(name(o)),
        json!(str_at(o, &["spec", "schedule"])),
        json!(or_default(str_at(o, &["spec", "timeZone"]), "<none>")),
        json!(suspend),
        json!(list_at(o, &["status", "active"]).len()),
        json!(last_schedule),
        json!(age(o, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(get(
            o,
            &["spec", "jobTemplate", "spec", "selector"]
        ))),
    ]
}

// ---------------------------------------------------------------------------------------------
// Networking, storage, RBAC and the rest.

fn ingress_cells(o: &Value, now: Timestamp) -> Vec<Value> {
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

fn ingress_class_cells(o: &Value, now: Timestamp) -> Vec<Value> {
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
fn access_modes(modes: &[Value]) -> String {
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
fn storage_class_of(o: &Value) -> &str {
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

fn persistent_volume_cells(pv: &Value, now: Timestamp) -> Vec<Value> {
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

fn persistent_volume_claim_cells(pvc: &Value, now: Timestamp) -> Vec<Value> {
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

fn role_binding_cells(o: &Value, now: Timestamp) -> Vec<Value> {
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

fn storage_class_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let annotation = |key: &str| str_at(o, &["metadata", "annotations", key]) == "true";
    let mut class_name = name(o).to_string();
    if annotation("storageclass.kubernetes.io/is-default-class")
        || annotation("storageclass.beta.kubernetes.io/is-default-class")
    {
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

/// The owning controller as `kind.group/name` (lower-cased), "<none>" without one.
fn controller_of(o: &Value) -> String {
    let Some(owner) = list_at(o, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| bool_at(r, &["controller"]) == Some(true))
    else {
        return "<none>".to_string();
    };
    let owner_name = str_at(owner, &["name"]);
    let kind = str_at(owner, &["kind"]);
    // The group is what precedes the version in apiVersion ("apps/v1"); core has none ("v1").
    let group = str_at(owner, &["apiVersion"])
        .split_once('/')
        .map_or("", |(group, _)| group);
    if kind.is_empty() && group.is_empty() {
        return owner_name.to_string();
    }
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NOW: &str = "2025-01-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// `now` minus `seconds`, as an RFC 3339 string.
    fn ago(seconds: i64) -> String {
        now()
            .checked_sub(jiff::SignedDuration::from_secs(seconds))
            .unwrap()
            .to_string()
    }

    fn strings(cells: &[Value]) -> Vec<String> {
        cells
            .iter()
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn human_duration_matches_upstream_table() {
        let hour = 3600;
        let cases: &[(u64, &str)] = &[
            (1, "1s"),
            (70, "70s"),
            (190, "3m10s"),
            (70 * 60, "70m"),
            (47 * hour, "47h"),
            (49 * hour, "2d1h"),
            ((8 * 24 + 2) * hour, "8d"),
            ((367 * 24) * hour, "367d"),
            ((365 * 2 * 24 + 25) * hour, "2y1d"),
            ((365 * 8 * 24 + 2) * hour, "8y"),
        ];
        for &(secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn human_duration_matches_upstream_boundaries() {
        let ms = Duration::from_millis(1);
        let s = |n: u64| Duration::from_secs(n);
        let (minute, hour, day, year) = (60, 3600, 86_400, 365 * 86_400);
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (s(1) - ms, "0s"),
            (s(2 * minute) - ms, "119s"),
            (s(2 * minute), "2m"),
            (s(2 * minute + 1), "2m1s"),
            (s(10 * minute) - ms, "9m59s"),
            (s(10 * minute), "10m"),
            (s(10 * minute + 1), "10m"),
            (s(3 * hour) - ms, "179m"),
            (s(3 * hour), "3h"),
            (s(3 * hour + minute), "3h1m"),
            (s(8 * hour) - ms, "7h59m"),
            (s(8 * hour), "8h"),
            (s(8 * hour + 59 * minute), "8h"),
            (s(2 * day) - ms, "47h"),
            (s(2 * day), "2d"),
            (s(2 * day + hour), "2d1h"),
            (s(8 * day) - ms, "7d23h"),
            (s(8 * day), "8d"),
            (s(8 * day + 23 * hour), "8d"),
            (s(2 * year) - ms, "729d"),
            (s(2 * year), "2y"),
            (s(2 * year + 23 * hour), "2y"),
            (s(2 * year + 23 * hour + 59 * minute), "2y"),
            (s(2 * year + day) - ms, "2y"),
            (s(2 * year + day), "2y1d"),
            (s(3 * year), "3y"),
            (s(7 * year), "7y"),
            (s(8 * year) - ms, "7y364d"),
            (s(8 * year), "8y"),
            (s(8 * year + 364 * day), "8y"),
            (s(9 * year), "9y"),
        ];
        for &(d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
        // Go durations saturate at ~292 years.
        assert_eq!(human_duration(Duration::MAX), "292y");
    }

    #[test]
    fn negative_durations_match_upstream() {
        assert_eq!(human_nanos(-2_000_000_000), "<invalid>");
        assert_eq!(human_nanos(-2_000_000_000 + 1), "0s");
        // A creation time slightly in the future reads as "0s", further out as "<invalid>".
        assert_eq!(
            since(Some(now() + jiff::SignedDuration::from_secs(1)), now()),
            "0s"
        );
        assert_eq!(
            since(Some(now() + jiff::SignedDuration::from_secs(5)), now()),
            "<invalid>"
        );
        assert_eq!(since(None, now()), "<unknown>");
    }

    #[test]
    fn running_pod_with_one_restart() {
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": ago(600)},
            "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "nginx"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.244.1.7",
                "podIPs": [{"ip": "10.244.1.7"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{
                    "name": "web",
                    "ready": true,
                    "restartCount": 1,
                    "state": {"running": {"startedAt": ago(300)}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}}
                }]
            }
        });
        let cells = row_cells("Pod", &pod, now());
        assert_eq!(
            strings(&cells),
            [
                "web-1",
                "1/1",
                "Running",
                "1 (5m ago)",
                "10m",
                "10.244.1.7",
                "node-a",
                "<none>",
                "<none>"
            ]
        );
        assert_eq!(cells.len(), column_definitions("Pod").len());
    }

    #[test]
    fn pending_pods() {
        let unscheduled = json!({
            "metadata": {"name": "p", "creationTimestamp": ago(5)},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Pending"}
        });
        assert_eq!(
            strings(&row_cells("Pod", &unscheduled, now())),
            [
                "p", "0/2", "Pending", "0", "5s", "<none>", "<none>", "<none>", "<none>"
            ]
        );

        let creating = json!({
            "metadata": {"name": "c", "creationTimestamp": ago(30)},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}]},
            "status": {
                "phase": "Pending",
                "containerStatuses": [{
                    "name": "a", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}}
                }]
            }
        });
        let cells = strings(&row_cells("Pod", &creating, now()));
        assert_eq!(cells[1..4], ["0/1", "ContainerCreating", "0"]);

        let init = json!({
            "metadata": {"name": "i"},
            "spec": {"initContainers": [{"name": "setup"}, {"name": "migrate"}], "containers": [{"name": "a"}]},
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                    {"name": "migrate", "restartCount": 0, "state": {"running": {}}}
                ]
            }
        });
        let cells = strings(&row_cells("Pod", &init, now()));
        assert_eq!(cells[1..5], ["0/1", "Init:1/2", "0", "<unknown>"]);
    }

    #[test]
    fn pod_with_sidecar_counts_its_restarts() {
        let pod = json!({
            "metadata": {"name": "side"},
            "spec": {
                "initContainers": [{"name": "init"}, {"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "app"}]
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "init", "restartCount": 5, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(10)}}},
                    {"name": "proxy", "restartCount": 2, "started": true, "ready": true, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 137, "finishedAt": ago(60)}}}
                ],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]
            }
        });
        // The finished plain init container's restarts no longer count once the pod is initialized.
        let cells = strings(&row_cells("Pod", &pod, now()));
        assert_eq!(cells[1..4], ["2/2", "Running", "2 (60s ago)"]);
    }

    #[test]
    fn crash_looping_and_completed_pods() {
        let crashing = json!({
            "metadata": {"name": "crash"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{
                    "name": "a", "ready": false, "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(40)}}
                }]
            }
        });
        let cells = strings(&row_cells("Pod", &crashing, now()));
        assert_eq!(cells[1..4], ["0/1", "CrashLoopBackOff", "4 (40s ago)"]);

        let done = json!({
            "metadata": {"name": "done"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{
                    "name": "a", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}
                }]
            }
        });
        let cells = strings(&row_cells("Pod", &done, now()));
        assert_eq!(cells[1..3], ["0/1", "Completed"]);
    }

    #[test]
    fn terminating_pod() {
        let pod = json!({
            "metadata": {"name": "bye", "creationTimestamp": ago(3 * 86_400), "deletionTimestamp": ago(0)},
            "spec": {"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x/ok"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "x/ok", "status": "True"}],
                "containerStatuses": [{
                    "name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}
                }]
            }
        });
        let cells = strings(&row_cells("Pod", &pod, now()));
        assert_eq!(cells[1..5], ["1/1", "Terminating", "0", "3d"]);
        assert_eq!(cells[8], "1/1");

        // A finished pod being deleted keeps its terminal status.
        let mut finished = pod;
        finished["status"]["phase"] = json!("Succeeded");
        finished["status"]["containerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        let cells = strings(&row_cells("Pod", &finished, now()));
        assert_eq!(cells[2], "Completed");
    }

    #[test]
    fn deployment_row() {
        let deployment = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(7200)},
            "spec": {
                "replicas": 3,
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}]
                },
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27"},
                    {"name": "log", "image": "busybox"}
                ]}}
            },
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let cells = row_cells("Deployment", &deployment, now());
        assert_eq!(cells[1], json!("2/3"));
        assert_eq!(cells[2], json!(3));
        assert_eq!(cells[3], json!(2));
        assert_eq!(
            strings(&cells),
            [
                "web",
                "2/3",
                "3",
                "2",
                "120m",
                "web,log",
                "nginx:1.27,busybox",
                "app=web,tier in (edge,front)"
            ]
        );
        // Unset replicas default to 1; an empty status counts zero.
        let bare = json!({"metadata": {"name": "d"}});
        assert_eq!(row_cells("Deployment", &bare, now())[1], json!("0/1"));
    }

    #[test]
    fn node_port_service() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(86_400)},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "selector": {"app": "web", "tier": "front"},
                "ports": [
                    {"port": 80, "protocol": "TCP", "nodePort": 30080},
                    {"port": 443, "nodePort": 30443},
                    {"port": 53, "protocol": "UDP"}
                ]
            }
        });
        assert_eq!(
            strings(&row_cells("Service", &svc, now())),
            [
                "web",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80:30080/TCP,443:30443/TCP,53/UDP",
                "24h",
                "app=web,tier=front"
            ]
        );

        let lb = json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.11", "ports": []},
        });
        let cells = strings(&row_cells("Service", &lb, now()));
        assert_eq!(cells[3..5], ["<pending>", "<none>"]);
        assert_eq!(cells[6], "<none>");
    }

    #[test]
    fn node_with_roles() {
        let node = json!({
            "metadata": {
                "name": "cp-1",
                "creationTimestamp": ago(10 * 86_400),
                "labels": {
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/worker": "",
                    "node-role.kubernetes.io/": "",
                    "kubernetes.io/role": "worker",
                    "kubernetes.io/hostname": "cp-1"
                }
            },
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"}
                ],
                "addresses": [
                    {"type": "Hostname", "address": "cp-1"},
                    {"type": "InternalIP", "address": "192.168.1.10"}
                ],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)"}
            }
        });
        assert_eq!(
            strings(&row_cells("Node", &node, now())),
            [
                "cp-1",
                "Ready,SchedulingDisabled",
                "control-plane,worker",
                "10d",
                "v1.32.0",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "<unknown>",
                "<unknown>"
            ]
        );
        let bare = json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let cells = strings(&row_cells("Node", &bare, now()));
        assert_eq!(cells[1..3], ["NotReady", "<none>"]);
    }

    #[test]
    fn jobs_and_cron_jobs() {
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": ago(600)},
            "spec": {"completions": 1, "parallelism": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}},
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}},
            "status": {"succeeded": 1, "startTime": ago(600), "completionTime": ago(560),
                       "conditions": [{"type": "Complete", "status": "True"}]}
        });
        assert_eq!(
            strings(&row_cells("Job", &job, now())),
            [
                "pi",
                "Complete",
                "1/1",
                "40s",
                "10m",
                "pi",
                "perl",
                "batch.kubernetes.io/controller-uid=u1"
            ]
        );
        let parallel = json!({"metadata": {"name": "p"}, "spec": {"parallelism": 3}});
        let cells = strings(&row_cells("Job", &parallel, now()));
        assert_eq!(cells[1..4], ["Running", "0/1 of 3", ""]);

        let cron = json!({
            "metadata": {"name": "nightly", "creationTimestamp": ago(3600)},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "nightly-1"}]}
        });
        let cells = row_cells("CronJob", &cron, now());
        assert_eq!(cells[4], json!(1));
        assert_eq!(
            strings(&cells),
            [
                "nightly",
                "0 3 * * *",
                "<none>",
                "False",
                "1",
                "<none>",
                "60m",
                "c",
                "busybox",
                "<none>"
            ]
        );
    }

    #[test]
    fn endpoints_events_and_selectors() {
        let endpoints = json!({
            "metadata": {"name": "web"},
            "subsets": [{
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}],
                "ports": [{"port": 80}, {"port": 443}]
            }]
        });
        assert_eq!(
            row_cells("Endpoints", &endpoints, now())[1],
            json!("10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 3 more...")
        );
        assert_eq!(
            row_cells("Endpoints", &json!({}), now())[1],
            json!("<none>")
        );

        let slice = json!({
            "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "dns"}],
            "endpoints": []
        });
        let cells = strings(&row_cells("EndpointSlice", &slice, now()));
        assert_eq!(cells[1..4], ["IPv4", "80,dns", "<unset>"]);

        let event = json!({
            "metadata": {"name": "web-1.17f"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "type": "Normal",
            "reason": "Pulled",
            "message": "Container image pulled\n",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": ago(120),
            "lastTimestamp": ago(30),
            "count": 3
        });
        let cells = row_cells("Event", &event, now());
        assert_eq!(cells[8], json!(3));
        assert_eq!(
            strings(&cells),
            [
                "30s",
                "Normal",
                "Pulled",
                "pod/web-1",
                "spec.containers{web}",
                "kubelet, node-a",
                "Container image pulled",
                "2m",
                "3",
                "web-1.17f"
            ]
        );

        let policy = json!({"spec": {"podSelector": {}}});
        assert_eq!(
            row_cells("NetworkPolicy", &policy, now())[1],
            json!("<none>")
        );
        let bad = json!({"spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}});
        assert_eq!(row_cells("NetworkPolicy", &bad, now())[1], json!("<error>"));
        let exprs = json!({"matchExpressions": [
            {"key": "b", "operator": "DoesNotExist"},
            {"key": "a", "operator": "Exists"},
            {"key": "c", "operator": "NotIn", "values": ["y", "x"]}
        ]});
        assert_eq!(
            selector_string(Some(&exprs)).as_deref(),
            Some("a,!b,c notin (x,y)")
        );
    }

    #[test]
    fn config_objects_and_defaults() {
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(row_cells("ConfigMap", &cm, now())[1], json!(3));
        let secret = json!({"metadata": {"name": "s"}, "data": {"k": "dg=="}});
        assert_eq!(
            row_cells("Secret", &secret, now())[1..3],
            [json!("Opaque"), json!(1)]
        );
        let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-a"}});
        assert_eq!(row_cells("Lease", &lease, now())[1], json!("node-a"));

        let widget = json!({"metadata": {"name": "w", "creationTimestamp": ago(90)}});
        assert_eq!(strings(&row_cells("Widget", &widget, now())), ["w", "90s"]);
        let role =
            json!({"metadata": {"name": "r", "creationTimestamp": "2024-05-01T10:20:30.5Z"}});
        assert_eq!(
            strings(&row_cells("ClusterRole", &role, now())),
            ["r", "2024-05-01T10:20:30Z"]
        );
        let columns = column_definitions("Widget");
        assert_eq!(
            columns[0],
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0})
        );
        assert_eq!(columns[1]["name"], json!("Age"));
    }

    #[test]
    fn every_kind_has_one_cell_per_column() {
        let kinds = [
            "Pod",
            "PodTemplate",
            "Namespace",
            "Node",
            "Service",
            "Endpoints",
            "EndpointSlice",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Event",
            "Lease",
            "Deployment",
            "ReplicaSet",
            "ReplicationController",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "NetworkPolicy",
            "Ingress",
            "IngressClass",
            "PodDisruptionBudget",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "RoleBinding",
            "ClusterRoleBinding",
            "StorageClass",
            "PriorityClass",
            "RuntimeClass",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
            "ControllerRevision",
            "Role",
            "ClusterRole",
            "CustomResourceDefinition",
            "LimitRange",
            "SomethingCustom",
        ];
        for kind in kinds {
            let columns = column_definitions(kind);
            for object in [json!({}), json!(null), json!({"metadata": {"name": "x"}})] {
                assert_eq!(
                    row_cells(kind, &object, now()).len(),
                    columns.len(),
                    "{kind}"
                );
            }
            assert!(
                columns
                    .iter()
                    .any(|c| c["name"] == "Name" && c["format"] == "name"),
                "{kind}"
            );
            // The wide columns come last except for PriorityClass and Event, as upstream.
            let priorities: Vec<u64> = columns
                .iter()
                .map(|c| c["priority"].as_u64().unwrap())
                .collect();
            if kind != "Event" {
                assert!(priorities.is_sorted(), "{kind}");
            }
        }
        assert_eq!(column_definitions("Pod")[3]["type"], json!("string"));
        let event_columns = column_definitions("Event");
        assert_eq!(event_columns[9]["name"], json!("Name"));
        assert_eq!(event_columns[9]["priority"], json!(1));
    }

    #[test]
    fn other_upstream_printers() {
        let binding = json!({
            "metadata": {"name": "rb"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "User", "name": "bob"},
                {"kind": "Group", "name": "devs"},
                {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"}
            ]
        });
        let cells = strings(&row_cells("RoleBinding", &binding, now()));
        assert_eq!(cells[1], "ClusterRole/view");
        assert_eq!(cells[3..6], ["alice, bob", "devs", "ci/runner"]);

        let pvc = json!({
            "metadata": {"name": "data"},
            "spec": {"volumeName": "pv-1", "storageClassName": "standard"},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}
        });
        let cells = strings(&row_cells("PersistentVolumeClaim", &pvc, now()));
        assert_eq!(
            cells[1..7],
            ["Bound", "pv-1", "10Gi", "RWO,ROX", "standard", "<unset>"]
        );
        assert_eq!(cells[8], "Filesystem");

        let ingress = json!({
            "spec": {"rules": [{"host": "a"}, {"host": "b"}, {}, {"host": "d"}, {"host": "e"}], "tls": [{}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
        });
        let cells = strings(&row_cells("Ingress", &ingress, now()));
        assert_eq!(
            cells[1..5],
            ["<none>", "a,b,d + 2 more...", "1.2.3.4", "80, 443"]
        );

        let revision = json!({
            "metadata": {"name": "web-7d9", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}
            ]},
            "revision": 2
        });
        let cells = row_cells("ControllerRevision", &revision, now());
        assert_eq!(cells[1..3], [json!("statefulset.apps/web"), json!(2)]);

        let class = json!({
            "metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "csi.example.com"
        });
        let cells = row_cells("StorageClass", &class, now());
        assert_eq!(
            cells[..5],
            [
                json!("fast (default)"),
                json!("csi.example.com"),
                json!("Delete"),
                json!("Immediate"),
                json!(false)
            ]
        );
    }
}
