//! `v1` Secret: validation (types, keys, size, immutability), the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::core::v1 as api;

/// The `secrets` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "secrets",
    field_labels: &["type"],
    strategy: &Secrets,
};

/// The `Secret` strategy.
pub struct Secrets;

impl Strategy for Secrets {
    typed_as!("v1.Secret", api::Secret);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        secret(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::SECRET_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}}),
            invalid: json!({"metadata": {"name": "s"}, "data": {"a b": "MQ=="}}),
            invalid_field: "data[a b]",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ConfigMap, Secret, Namespace, Node, Event, Binding, Lease, Scale
// ---------------------------------------------------------------------------------------------

pub(crate) const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Decoded length of a base64 string (what the typed object holds for Secret data).
pub(crate) fn base64_len(s: &str) -> usize {
    let s = s.trim_end_matches('=');
    s.len() * 3 / 4
}

pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

pub(crate) fn secret(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    // stringData is merged into data before validation upstream.
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in obj_of(obj, "data").into_iter().flatten() {
        data.insert(
            k.clone(),
            v.as_str().and_then(base64_decode).unwrap_or_default(),
        );
    }
    for (k, v) in obj_of(obj, "stringData").into_iter().flatten() {
        data.insert(k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec());
    }
    let mut total = 0usize;
    for (k, v) in &data {
        for m in is_config_map_key(k) {
            e.invalid_s(&key("data", k), k, &m);
        }
        total += v.len();
    }
    if total > MAX_SECRET_SIZE {
        e.too_long("data", MAX_SECRET_SIZE);
    }
    let secret_type = str_of(obj, "type");
    let need = |e: &mut Errs, k: &str| {
        if !data.contains_key(k) {
            e.required(&key("data", k), "");
        }
    };
    match secret_type {
        "kubernetes.io/service-account-token" => {
            let ann = obj_of(get(obj, "metadata"), "annotations");
            let sa = ann
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if sa.is_empty() {
                e.required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                );
            }
        }
        "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
            let k = if secret_type == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match data.get(k) {
                None => need(e, k),
                Some(bytes) => {
                    let parsed: Result<Map<String, Value>, _> = serde_json::from_slice(bytes);
                    if let Err(err) = parsed {
                        e.invalid_s(
                            &key("data", k),
                            "<secret contents redacted>",
                            &err.to_string(),
                        );
                    }
                }
            }
        }
        "kubernetes.io/basic-auth"
            if !data.contains_key("username") && !data.contains_key("password") =>
        {
            need(e, "username");
            need(e, "password");
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(Vec::is_empty) => {
            e.required("data[ssh-privatekey]", "");
        }
        "kubernetes.io/tls" => {
            need(e, "tls.crt");
            need(e, "tls.key");
        }
        _ => {}
    }
    if let Some(old) = old {
        let old_type = str_of(Some(old), "type");
        // An omitted type is defaulted to Opaque.
        let norm = |t: &str| {
            if t.is_empty() {
                "Opaque".to_string()
            } else {
                t.to_string()
            }
        };
        if norm(secret_type) != norm(old_type) {
            e.invalid_s("type", secret_type, IMMUTABLE);
        }
        immutable_guard(e, obj, Some(old), &["data"]);
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const SECRET_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Type",
            "string",
            "Used to facilitate programmatic handling of secret data.",
        ),
        col("Data", "string", "Data contains the secret data."),
        AGE,
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        let o = object;
        vec![
            json!(name(o)),
            // Secret defaulting turns an unset type into Opaque.
            json!(or_default(str_at(o, &["type"]), "Opaque")),
            json!(map_len(o, &["data"])),
            json!(age(o, now)),
        ]
    }
}
