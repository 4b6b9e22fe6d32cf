//! Checks the protobuf codec against upstream's round-trip fixtures: a k8s.io/api checkout at
//! the release `apimachinery/src/schema/generated.rs` was generated from holds every kind with
//! every field set in `testdata/HEAD`, as `.pb` and `.json`.
//!
//! `cargo run -p flotilla-apimachinery --example protobuf_check -- <k8s.io/api checkout>`
//!
//! k8s.io/apiextensions-apiserver keeps its fixtures in `pkg/apis/testdata/HEAD`: pass
//! `<k8s.io/apiextensions-apiserver checkout>/pkg/apis` to check CustomResourceDefinitions.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, bail};
use flotilla_apimachinery::{protobuf, schema};

/// Checks the codec (as compiled into this binary) against upstream's round-trip fixtures: each
/// served-version kind's `.pb` must decode to its `.json`, and the `.json` must encode to a body
/// that decodes to it again.
fn main() -> Result<()> {
    let api = std::env::args()
        .nth(1)
        .context("usage: protobuf_check <k8s.io/api checkout at the table's release>")?;
    let dir = Path::new(&api).join("testdata/HEAD");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".pb"))
        .collect();
    names.sort();
    let (mut checked, mut identical, mut failures) = (0, 0, Vec::new());
    for name in names {
        let stem = name.trim_end_matches(".pb");
        let Some((group_version, kind)) = stem.rsplit_once('.') else {
            continue;
        };
        let version = group_version.rsplit('.').next().unwrap_or_default();
        if !matches!(version, "v1" | "v2") {
            continue;
        }
        let bytes = fs::read(dir.join(&name))?;
        let expected: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(format!("{stem}.json")))?)?;
        let api_version = expected["apiVersion"].as_str().unwrap_or_default();
        if schema::kind_message(api_version, kind).is_none() {
            continue;
        }
        checked += 1;
        match protobuf::decode_object(&bytes).map(without_nulls) {
            Ok(decoded) if decoded == without_nulls(expected.clone()) => {}
            Ok(decoded) => failures.push(format!(
                "{name}: decodes differently:\n{}",
                first_difference(&expected, &decoded, "")
            )),
            Err(err) => failures.push(format!("{name}: {err}")),
        }
        match protobuf::encode_object(&expected).and_then(|encoded| {
            if encoded == bytes {
                identical += 1;
            }
            protobuf::decode_object(&encoded)
        }) {
            Ok(decoded) if without_nulls(decoded.clone()) == without_nulls(expected.clone()) => {}
            Ok(decoded) => failures.push(format!(
                "{stem}.json: does not survive encoding:\n{}",
                first_difference(&expected, &decoded, "")
            )),
            Err(err) => failures.push(format!("{stem}.json: {err}")),
        }
    }
    println!(
        "{checked} kinds checked against upstream's fixtures; {identical} encode byte for byte as upstream"
    );
    if failures.is_empty() {
        return Ok(());
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    bail!("{} differences", failures.len())
}

/// Go writes a zero time as null; the codec leaves such fields out (but keeps a null map value).
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(without_nulls).collect())
        }
        other => other,
    }
}

/// Where two JSON values first differ, for the report.
fn first_difference(
    expected: &serde_json::Value,
    actual: &serde_json::Value,
    path: &str,
) -> String {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                if a.get(key) != b.get(key) {
                    return match (a.get(key), b.get(key)) {
                        (Some(x), Some(y)) => first_difference(x, y, &format!("{path}.{key}")),
                        (x, y) => format!("  {path}.{key}: expected {x:?}, got {y:?}"),
                    };
                }
            }
            String::new()
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                if x != y {
                    return first_difference(x, y, &format!("{path}[{index}]"));
                }
            }
            String::new()
        }
        _ => format!("  {path}: expected {expected}, got {actual}"),
    }
}
