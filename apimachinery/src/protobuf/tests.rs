use serde_json::{Map, Value, json};

use super::*;
use crate::schema::kinds;

/// A JSON object of `schema` with every field set to a non-zero value, nested messages down to
/// `depth` levels: what a round trip must carry through unchanged.
pub(super) fn sample(schema: &Message, depth: usize, object: &mut Map<String, Value>) {
    for field in schema.fields {
        if field.inline {
            if let Ty::Message(id) = field.ty {
                sample(message(id), depth, object);
            }
            continue;
        }
        let Some(value) = sample_value(field.ty, depth) else {
            continue;
        };
        let value = match field.label {
            Label::Single => value,
            Label::Repeated => Value::Array(vec![value.clone(), value]),
            Label::Map => json!({"a": value.clone(), "b/c": value}),
        };
        object.insert(field.json.to_owned(), value);
    }
}

fn sample_value(ty: Ty, depth: usize) -> Option<Value> {
    Some(match ty {
        Ty::String => json!("text"),
        Ty::Bytes => json!("AQID"),
        Ty::Bool => json!(true),
        Ty::Int32 => json!(-7),
        Ty::Int64 => json!(1_234_567_890_123_i64),
        Ty::Message(id) => {
            if depth == 0 {
                return None;
            }
            let mut object = Map::new();
            sample(message(id), depth - 1, &mut object);
            Value::Object(object)
        }
        Ty::Time => json!("2026-12-06T07:08:09Z"),
        Ty::MicroTime => json!("2026-12-06T07:08:09.123456Z"),
        Ty::FieldsV1 => json!({"f:metadata": {"f:labels": {".": {}}}}),
        Ty::RawExtension => json!({"apiVersion": "v1", "kind": "Example", "n": 1}),
        Ty::IntOrString => json!("http"),
        Ty::Quantity => json!("250m"),
        Ty::StringList => json!(["get", "list"]),
        Ty::Double => json!(9.5),
        Ty::Json => json!({"any": ["json", 1, null, true]}),
        // Each union in its non-schema form at the deepest level, its schema form above.
        Ty::SchemaOrBool(id) => {
            if depth == 0 {
                return Some(json!(false));
            }
            sample_value(Ty::Message(id), depth)?
        }
        Ty::SchemaOrArray(id) => {
            let schema = sample_value(Ty::Message(id), depth)?;
            json!([schema.clone(), schema])
        }
        Ty::SchemaOrStringArray(id) => {
            if depth == 0 {
                return Some(json!(["a", "b"]));
            }
            sample_value(Ty::Message(id), depth)?
        }
    })
}

#[test]
fn every_kind_round_trips_with_every_field_set() {
    assert!(
        kinds().len() > 100,
        "the table holds {} kinds",
        kinds().len()
    );
    for kind in kinds() {
        let api_version = if kind.group.is_empty() {
            kind.version.to_owned()
        } else {
            format!("{}/{}", kind.group, kind.version)
        };
        let mut object = Map::new();
        object.insert("apiVersion".into(), json!(api_version));
        object.insert("kind".into(), json!(kind.kind));
        sample(message(kind.message), 4, &mut object);
        let object = Value::Object(object);
        let bytes = encode_object(&object).unwrap_or_else(|err| panic!("{}: {err}", kind.kind));
        let back = decode_object(&bytes).unwrap_or_else(|err| panic!("{}: {err}", kind.kind));
        assert_eq!(back, object, "{api_version} {}", kind.kind);
    }
}

#[test]
fn int_or_string_numbers_round_trip_too() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"strategy": {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": "25%"}}},
    });
    let back = decode_object(&encode_object(&deployment).unwrap()).unwrap();
    assert_eq!(back, deployment);
}

/// The bytes a Go client writes for a Namespace named "dev" (gogo-protobuf writes every
/// non-pointer field, zero or not), decoded as kube-apiserver would read them.
#[test]
fn a_go_clients_namespace_decodes_to_upstreams_json() {
    let mut raw = Vec::new();
    // metadata (1): name (1) "dev", generateName (2) "", namespace (3) "", generation (7) 0,
    // creationTimestamp (8) {} (the zero Time).
    let meta: &[u8] = &[
        0x0a, 3, b'd', b'e', b'v', 0x12, 0, 0x1a, 0, 0x38, 0, 0x42, 0,
    ];
    raw.extend_from_slice(&[0x0a, meta.len() as u8]);
    raw.extend_from_slice(meta);
    // spec (2) {}, status (3) {phase (1) ""}.
    raw.extend_from_slice(&[0x12, 0, 0x1a, 2, 0x0a, 0]);
    let mut body = MAGIC.to_vec();
    let type_meta: &[u8] = &[
        0x0a, 2, b'v', b'1', 0x12, 9, b'N', b'a', b'm', b'e', b's', b'p', b'a', b'c', b'e',
    ];
    body.extend_from_slice(&[0x0a, type_meta.len() as u8]);
    body.extend_from_slice(type_meta);
    body.extend_from_slice(&[0x12, raw.len() as u8]);
    body.extend_from_slice(&raw);
    body.extend_from_slice(&[0x1a, 0, 0x22, 0]);

    let decoded = decode_object(&body).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "dev"}, "spec": {}, "status": {},
        })
    );
    // And the encoder writes the same envelope for it (fields it has, in number order).
    let encoded = encode_object(&json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"},
    }))
    .unwrap();
    assert_eq!(
        &encoded[..4 + 2 + type_meta.len()],
        &body[..4 + 2 + type_meta.len()]
    );
    assert!(encoded.ends_with(&[0x1a, 0, 0x22, 0]));
}

#[test]
fn pointers_keep_zero_and_plain_fields_follow_omitempty() {
    // replicas is *int32: an explicit 0 stays. minReadySeconds is int32,omitempty: 0 goes.
    // Container.name is a plain string without omitempty: it appears even when not sent.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "generation": 0},
        "spec": {
            "replicas": 0, "minReadySeconds": 0, "paused": false,
            "template": {"spec": {"containers": [{"image": "nginx"}]}},
        },
    });
    let back = decode_object(&encode_object(&deployment).unwrap()).unwrap();
    assert_eq!(back["spec"]["replicas"], json!(0));
    assert!(back["spec"].get("minReadySeconds").is_none(), "{back}");
    assert!(back["spec"].get("paused").is_none(), "{back}");
    assert!(back["metadata"].get("generation").is_none(), "{back}");
    assert_eq!(
        back["spec"]["template"]["spec"]["containers"][0]["name"],
        json!("")
    );
}

#[test]
fn inline_structs_flatten_into_their_parent() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
            "containers": [{"name": "c", "readinessProbe": {"httpGet": {"port": 8080}, "periodSeconds": 3}}],
            "imagePullSecrets": [{"name": "pull"}],
        },
    });
    let back = decode_object(&encode_object(&pod).unwrap()).unwrap();
    assert_eq!(back["spec"]["volumes"], pod["spec"]["volumes"]);
    assert_eq!(
        back["spec"]["containers"][0]["readinessProbe"],
        pod["spec"]["containers"][0]["readinessProbe"]
    );
    assert_eq!(
        back["spec"]["imagePullSecrets"],
        pod["spec"]["imagePullSecrets"]
    );
}

#[test]
fn secrets_bytes_and_times_keep_their_json_form() {
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "creationTimestamp": "2026-12-06T07:08:09Z"},
        "data": {"password": "c2VjcmV0", "empty": ""}, "type": "Opaque",
    });
    let back = decode_object(&encode_object(&secret).unwrap()).unwrap();
    assert_eq!(back, secret);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n"},
        "spec": {"renewTime": "2026-12-06T07:08:09.500000Z", "holderIdentity": "n"},
    });
    assert_eq!(
        decode_object(&encode_object(&lease).unwrap()).unwrap(),
        lease
    );
}

#[test]
fn status_and_delete_options_belong_to_every_version() {
    let status = json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": "pods \"x\" not found", "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"}, "code": 404,
    });
    assert_eq!(
        decode_object(&encode_object(&status).unwrap()).unwrap(),
        status
    );
    let options = json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"});
    assert_eq!(
        decode_object(&encode_object(&options).unwrap()).unwrap(),
        options
    );
}

#[test]
fn watch_events_are_length_prefixed_and_carry_an_enveloped_object() {
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
    let mut stream = encode_watch_event("ADDED", &object).unwrap();
    stream.extend(encode_watch_event("DELETED", &object).unwrap());
    let length = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
    let (first, rest) = decode_watch_event(&stream).unwrap();
    assert_eq!(rest.len(), stream.len() - 4 - length);
    assert_eq!(first, json!({"type": "ADDED", "object": object}));
    let (second, rest) = decode_watch_event(rest).unwrap();
    assert_eq!(second["type"], "DELETED");
    assert!(rest.is_empty());
    assert!(decode_watch_event(&stream[..10]).is_err());
}

#[test]
fn malformed_bodies_say_what_is_wrong() {
    let good = encode_object(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}})).unwrap();

    let err = decode_object(b"{\"kind\":\"ConfigMap\"}").unwrap_err();
    assert!(err.message.contains("magic"), "{err}");

    for cut in 5..good.len() {
        // Every truncation is an error, never a panic (a cut at a field boundary of the
        // envelope may still parse: then the object differs).
        let _ = decode_object(&good[..cut]);
    }
    let err = decode_object(&good[..good.len() - 8]).unwrap_err();
    assert!(err.message.contains("runs past the end"), "{err}");

    let unknown = encode_object(&json!({"apiVersion": "v1", "kind": "ConfigMap"}))
        .unwrap()
        .into_iter()
        .collect::<Vec<u8>>();
    let renamed = String::from_utf8_lossy(&unknown).replace("ConfigMap", "ConfigMop");
    let err = decode_object(renamed.as_bytes()).unwrap_err();
    assert_eq!(
        err.message,
        "no kind \"ConfigMop\" is registered for version \"v1\""
    );

    // data (field 2 of ConfigMap) as a varint instead of a map entry.
    let mut wrong = MAGIC.to_vec();
    let type_meta: &[u8] = &[
        0x0a, 2, b'v', b'1', 0x12, 9, b'C', b'o', b'n', b'f', b'i', b'g', b'M', b'a', b'p',
    ];
    wrong.extend_from_slice(&[0x0a, type_meta.len() as u8]);
    wrong.extend_from_slice(type_meta);
    wrong.extend_from_slice(&[0x12, 2, 0x10, 1]);
    let err = decode_object(&wrong).unwrap_err();
    assert_eq!(err.path, "data");
    assert!(err.message.contains("wire type"), "{err}");

    // A message nested past the depth limit.
    let mut deep = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0x0a];
        let mut length = Vec::new();
        prost::encoding::encode_varint(deep.len() as u64, &mut length);
        outer.extend(length);
        outer.extend(deep);
        deep = outer;
    }
    let _ = decode_object(&deep);
}

#[test]
fn encoding_refuses_values_of_the_wrong_type() {
    let err = encode_object(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "three"},
    }))
    .unwrap_err();
    assert_eq!(err.path, "spec.replicas");
    let err = encode_object(&json!({"apiVersion": "v1", "kind": "Widget"})).unwrap_err();
    assert!(err.message.contains("no protobuf schema"), "{err}");
}

/// Mutated bodies (bytes flipped, cut, duplicated) decode to a value or an error, never a panic
/// or a hang: a bounded, seeded version of the fuzz target in `apimachinery/fuzz`.
#[test]
fn mutated_bodies_never_panic() {
    let mut seeds = Vec::new();
    for kind in kinds()
        .iter()
        .filter(|kind| kind.group.is_empty() || kind.group == "apps")
    {
        let mut object = Map::new();
        object.insert(
            "apiVersion".into(),
            json!(if kind.group.is_empty() {
                kind.version.to_owned()
            } else {
                format!("{}/{}", kind.group, kind.version)
            }),
        );
        object.insert("kind".into(), json!(kind.kind));
        sample(message(kind.message), 3, &mut object);
        seeds.push(encode_object(&Value::Object(object)).unwrap());
    }
    // xorshift: deterministic, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let started = std::time::Instant::now();
    for round in 0..20_000 {
        let seed = &seeds[round % seeds.len()];
        let mut body = seed.clone();
        for _ in 0..=(next() % 4) {
            let at = (next() as usize) % body.len().max(1);
            match next() % 4 {
                0 => body[at] ^= 1 << (next() % 8),
                1 => body.truncate(at.max(4)),
                2 => body[at] = next() as u8,
                _ => {
                    let end = (at + (next() as usize % 16)).min(body.len());
                    let copy = body[at..end].to_vec();
                    body.splice(at..at, copy);
                }
            }
        }
        let _ = decode_object(&body);
        let _ = decode_watch_event(&body);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "decoding is too slow"
        );
    }
}
