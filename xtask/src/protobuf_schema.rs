//! `cargo xtask protobuf-schema`: writes `apimachinery/src/protobuf/schema.rs`, the table the API
//! server's protobuf codec walks, from upstream's API definitions.
//!
//! The wire format of every kind is fixed by upstream's `generated.proto` files (message names,
//! field numbers, scalar types), but how a decoded message becomes JSON is not: that depends on the
//! Go struct behind each message (`*int32` keeps an explicit 0, `int32` with `omitempty` drops it,
//! `json:",inline"` flattens a nested message into its parent). So the generator reads both: the
//! `.proto` files for the structure and the Go `protobuf:"..."`/`json:"..."` struct tags, matched
//! by field number, for the JSON side. It runs at development time against checkouts of
//! `k8s.io/api` and `k8s.io/apimachinery` at the release k8s-openapi's feature names; the output is
//! checked in, so building Flotilla needs neither.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

/// Arguments of `cargo xtask protobuf-schema`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProtobufSchemaArgs {
    /// A checkout of k8s.io/api (e.g. `git -C <mirror> archive v0.33.9 | tar -x -C DIR`).
    #[arg(long)]
    api: PathBuf,
    /// A checkout of k8s.io/apimachinery at the same release.
    #[arg(long)]
    apimachinery: PathBuf,
    /// The release both checkouts are at; written into the generated file's header.
    #[arg(long)]
    release: String,
    /// Where to write the table.
    #[arg(long, default_value = "apimachinery/src/protobuf/schema.rs")]
    out: PathBuf,
}

/// The messages whose JSON form is not their fields: the codec handles each by hand.
const SPECIAL: &[(&str, &str)] = &[
    ("k8s.io.apimachinery.pkg.apis.meta.v1.Time", "Time"),
    (
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime",
        "MicroTime",
    ),
    ("k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1", "FieldsV1"),
    (
        "k8s.io.apimachinery.pkg.runtime.RawExtension",
        "RawExtension",
    ),
    (
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
        "IntOrString",
    ),
    ("k8s.io.apimachinery.pkg.api.resource.Quantity", "Quantity"),
];

/// The proto package of the meta types (ObjectMeta, Status, WatchEvent, ...).
const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// Messages upstream declares as a named Go slice (`type ExtraValue []string`): one
/// `repeated string items = 1` on the wire, a plain JSON array.
const STRING_LISTS: &[&str] = &["ExtraValue", "Verbs"];

/// The apimachinery packages the API's messages use.
const APIMACHINERY_PACKAGES: &[&str] = &[
    "pkg/apis/meta/v1",
    "pkg/runtime",
    "pkg/util/intstr",
    "pkg/api/resource",
];

/// Runs the generator.
pub(crate) fn run(args: &ProtobufSchemaArgs) -> Result<()> {
    let mut packages = Vec::new();
    for dir in stable_api_packages(&args.api)? {
        packages.push(Package::read(&args.api, &dir, "k8s.io/api")?);
    }
    for dir in APIMACHINERY_PACKAGES {
        packages.push(Package::read(
            &args.apimachinery,
            dir,
            "k8s.io/apimachinery",
        )?);
    }
    let text = render(&packages, &args.release)?;
    fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {} ({} packages)", args.out.display(), packages.len());
    Ok(())
}

/// The GA package directories of k8s.io/api (`<group>/v1`, `<group>/v2`): the versions Flotilla
/// serves or will.
fn stable_api_packages(root: &Path) -> Result<Vec<String>> {
    let mut dirs = Vec::new();
    for group in fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let group = group?;
        for version in ["v1", "v2"] {
            if group.path().join(version).join("generated.proto").is_file() {
                dirs.push(format!("{}/{version}", group.file_name().to_string_lossy()));
            }
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// One Go package with its `generated.proto`.
struct Package {
    /// The proto package (`k8s.io.api.apps.v1`).
    proto: String,
    /// The API group (`apps`, `""` for core, `meta.k8s.io`); None where there is no register.go.
    group: Option<String>,
    /// The version (the directory's last element).
    version: String,
    messages: Vec<ProtoMessage>,
    structs: BTreeMap<String, GoStruct>,
}

struct ProtoMessage {
    name: String,
    fields: Vec<ProtoField>,
}

struct ProtoField {
    label: ProtoLabel,
    /// The scalar or message type as written (`string`, `.k8s.io...ObjectMeta`, `Probe`).
    ty: String,
    name: String,
    number: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProtoLabel {
    Optional,
    Repeated,
    /// `map<string, V>`.
    Map,
}

#[derive(Default)]
struct GoStruct {
    /// Embeds TypeMeta: a kind of its own, with `apiVersion` and `kind` in JSON.
    has_type_meta: bool,
    /// By protobuf field number.
    fields: BTreeMap<u32, GoField>,
}

struct GoField {
    json: String,
    omitempty: bool,
    pointer: bool,
    inline: bool,
}

impl Package {
    fn read(root: &Path, dir: &str, module: &str) -> Result<Self> {
        let path = root.join(dir);
        let proto_text = fs::read_to_string(path.join("generated.proto"))
            .with_context(|| format!("reading {}/generated.proto", path.display()))?;
        let (proto, messages) = parse_proto(&proto_text)
            .with_context(|| format!("parsing {}/generated.proto", path.display()))?;
        let mut structs = BTreeMap::new();
        let mut group = None;
        let mut files: Vec<_> = fs::read_dir(&path)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                name.is_some_and(|n| {
                    n.ends_with(".go") && !n.ends_with("_test.go") && !n.starts_with("zz_")
                })
            })
            .collect();
        files.sort();
        for file in files {
            let text = fs::read_to_string(&file)?;
            parse_go_structs(&text, &mut structs)
                .with_context(|| format!("parsing {}", file.display()))?;
            if group.is_none() {
                group = group_name(&text);
            }
        }
        let version = dir.rsplit('/').next().unwrap_or_default().to_owned();
        let _ = module;
        Ok(Self {
            proto,
            group,
            version,
            messages,
            structs,
        })
    }
}

/// `const GroupName = "apps"` from register.go.
fn group_name(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("const GroupName = \"")?;
        Some(rest.strip_suffix('"')?.to_owned())
    })
}

/// Parses upstream's generated proto2 files: one package, top-level messages whose fields are
/// `optional|repeated T name = N;` or `map<string, V> name = N;`.
fn parse_proto(text: &str) -> Result<(String, Vec<ProtoMessage>)> {
    let mut package = None;
    let mut messages = Vec::new();
    let mut current: Option<ProtoMessage> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("package ") {
            package = Some(rest.trim_end_matches(';').to_owned());
        } else if let Some(rest) = line.strip_prefix("message ") {
            if current.is_some() {
                bail!("line {}: nested messages are not expected", index + 1);
            }
            current = Some(ProtoMessage {
                name: rest.trim_end_matches('{').trim().to_owned(),
                fields: Vec::new(),
            });
        } else if line == "}" {
            if let Some(mut message) = current.take() {
                // Declaration order is not number order (OwnerReference declares 5 first); the
                // table is in number order, the order gogo-protobuf writes and lookups expect.
                message.fields.sort_by_key(|field| field.number);
                messages.push(message);
            }
        } else if let Some(message) = current.as_mut() {
            message
                .fields
                .push(parse_proto_field(line).with_context(|| format!("line {}", index + 1))?);
        }
    }
    Ok((package.context("no package statement")?, messages))
}

fn parse_proto_field(line: &str) -> Result<ProtoField> {
    let line = line.trim_end_matches(';');
    let (declaration, number) = line.split_once('=').context("no field number")?;
    let number: u32 = number.trim().parse().context("field number")?;
    let (label, rest) = if let Some(rest) = declaration.strip_prefix("map<") {
        let (types, name) = rest.split_once('>').context("unterminated map")?;
        let (key, value) = types.split_once(',').context("map without value type")?;
        if key.trim() != "string" {
            bail!("map keys other than string are not expected: {line}");
        }
        return Ok(ProtoField {
            label: ProtoLabel::Map,
            ty: value.trim().to_owned(),
            name: name.trim().to_owned(),
            number,
        });
    } else if let Some(rest) = declaration.strip_prefix("optional ") {
        (ProtoLabel::Optional, rest)
    } else if let Some(rest) = declaration.strip_prefix("repeated ") {
        (ProtoLabel::Repeated, rest)
    } else {
        bail!("unexpected field declaration: {line}");
    };
    let mut parts = rest.split_whitespace();
    let ty = parts.next().context("no type")?.to_owned();
    let name = parts.next().context("no name")?.to_owned();
    Ok(ProtoField {
        label,
        ty,
        name,
        number,
    })
}

/// Reads the top-level `type X struct { ... }` declarations of a Go file: for each field with a
/// `protobuf:"..."` tag, its JSON name and options and whether it is a pointer.
fn parse_go_structs(text: &str, structs: &mut BTreeMap<String, GoStruct>) -> Result<()> {
    let mut current: Option<(String, GoStruct)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("type ") {
            if let Some(name) = rest.strip_suffix(" struct {") {
                current = Some((name.trim().to_owned(), GoStruct::default()));
            } else if let Some(name) = rest
                .split_once("//")
                .map_or(rest, |(code, _)| code)
                .trim()
                .strip_suffix(" struct{}")
            {
                structs.insert(name.trim().to_owned(), GoStruct::default());
            }
            continue;
        }
        if line == "}" {
            if let Some((name, parsed)) = current.take() {
                structs.insert(name, parsed);
            }
            continue;
        }
        let Some((_, parsed)) = current.as_mut() else {
            continue;
        };
        let trimmed = line.trim();
        if trimmed.starts_with("//") {
            continue;
        }
        let Some((declaration, tags)) = trimmed.split_once('`') else {
            continue;
        };
        let tags = tags.rsplit_once('`').map_or(tags, |(tags, _)| tags);
        let tokens: Vec<&str> = declaration.split_whitespace().collect();
        let go_type = match tokens.as_slice() {
            [_, ty] | [ty] => *ty,
            _ => continue,
        };
        let json = tag(tags, "json").unwrap_or_default();
        let mut json_parts = json.split(',');
        let json_name = json_parts.next().unwrap_or_default().to_owned();
        let options: Vec<&str> = json_parts.collect();
        let Some(protobuf) = tag(tags, "protobuf").filter(|tag| *tag != "-") else {
            if go_type.ends_with("TypeMeta") && options.contains(&"inline") {
                parsed.has_type_meta = true;
            }
            continue;
        };
        let number: u32 = protobuf
            .split(',')
            .nth(1)
            .context("protobuf tag without a field number")?
            .parse()
            .with_context(|| format!("protobuf tag {protobuf:?}"))?;
        parsed.fields.insert(
            number,
            GoField {
                json: json_name,
                omitempty: options.contains(&"omitempty"),
                pointer: go_type.starts_with('*'),
                inline: options.contains(&"inline"),
            },
        );
    }
    Ok(())
}

/// The value of one struct tag key (`json:"name,omitempty"` -> `name,omitempty`).
fn tag<'a>(tags: &'a str, key: &str) -> Option<&'a str> {
    let start = tags.find(&format!("{key}:\""))? + key.len() + 2;
    let end = tags[start..].find('"')? + start;
    Some(&tags[start..end])
}

/// Renders the Rust table.
fn render(packages: &[Package], release: &str) -> Result<String> {
    let meta_structs = &packages
        .iter()
        .find(|package| package.proto == META)
        .context("the meta/v1 package is missing")?
        .structs;
    // Only the messages a kind reaches (or the watch event) go into the table: the packages
    // also declare helper messages no object contains.
    let mut all = BTreeMap::new();
    let mut roots = Vec::new();
    for package in packages {
        for message in &package.messages {
            let full = format!("{}.{}", package.proto, message.name);
            let go = package
                .structs
                .get(&message.name)
                .or_else(|| meta_structs.get(&message.name));
            if go.is_some_and(|go| go.has_type_meta) || full == format!("{META}.WatchEvent") {
                roots.push(full.clone());
            }
            all.insert(full, (package, message));
        }
    }
    let mut reachable = BTreeSet::new();
    while let Some(full) = roots.pop() {
        let special = SPECIAL.iter().any(|(name, _)| *name == full);
        let short = full.rsplit('.').next().unwrap_or_default();
        if special || STRING_LISTS.contains(&short) || !reachable.insert(full.clone()) {
            continue;
        }
        let (package, message) = all
            .get(&full)
            .with_context(|| format!("message {full} is referenced but not declared"))?;
        for field in &message.fields {
            if !matches!(
                field.ty.as_str(),
                "string" | "bytes" | "bool" | "int32" | "int64"
            ) {
                roots.push(qualified(&field.ty, &package.proto));
            }
        }
    }
    // The index in this stable order is the message's id in the table.
    let ids: BTreeMap<&str, usize> = reachable
        .iter()
        .enumerate()
        .map(|(id, name)| (name.as_str(), id))
        .collect();

    let mut messages = BTreeMap::new();
    let mut kinds = BTreeSet::new();
    for package in packages {
        for message in &package.messages {
            let full = format!("{}.{}", package.proto, message.name);
            let Some(&id) = ids.get(full.as_str()) else {
                continue;
            };
            // `type List metav1.List` in core/v1 declares a message with another package's struct.
            let go = package
                .structs
                .get(&message.name)
                .or_else(|| meta_structs.get(&message.name))
                .with_context(|| format!("{full}: no Go struct {} found", message.name))?;
            let mut fields = Vec::new();
            for field in &message.fields {
                let go_field = go.fields.get(&field.number).with_context(|| {
                    format!(
                        "{full}.{}: no Go field with protobuf number {}",
                        field.name, field.number
                    )
                })?;
                let ty = rust_type(&field.ty, &package.proto, &ids)
                    .with_context(|| format!("{full}.{}", field.name))?;
                let json = if go_field.json.is_empty() {
                    field.name.clone()
                } else {
                    go_field.json.clone()
                };
                fields.push(format!(
                    "Field {{ number: {}, json: {json:?}, ty: {ty}, label: Label::{}, pointer: {}, omitempty: {}, inline: {} }}",
                    field.number,
                    match field.label {
                        ProtoLabel::Optional => "Single",
                        ProtoLabel::Repeated => "Repeated",
                        ProtoLabel::Map => "Map",
                    },
                    go_field.pointer,
                    go_field.omitempty,
                    go_field.inline,
                ));
            }
            let mut by_json: Vec<(String, usize)> = message
                .fields
                .iter()
                .enumerate()
                .map(|(position, field)| {
                    let go_field = &go.fields[&field.number];
                    let json = if go_field.json.is_empty() {
                        field.name.clone()
                    } else {
                        go_field.json.clone()
                    };
                    (json, position)
                })
                .collect();
            by_json.sort();
            messages.insert(id, (full.clone(), fields, by_json));
            if go.has_type_meta
                && let Some(group) = &package.group
            {
                kinds.insert((
                    group.clone(),
                    package.version.clone(),
                    message.name.clone(),
                    id,
                ));
            }
        }
    }

    let mut out = String::new();
    writeln!(
        out,
        "// @generated by `cargo xtask protobuf-schema` from k8s.io/api and k8s.io/apimachinery {release}.\n\
         // Do not edit: regenerate (see xtask/src/protobuf_schema.rs).\n\
         \n\
         //! The protobuf schema of every served kind: field numbers, wire types and JSON names.\n\
         \n\
         use super::schema_types::{{Field, Kind, Label, Message, Ty}};\n"
    )?;
    writeln!(out, "/// Every message, by id (`Ty::Message(id)`).")?;
    writeln!(out, "pub(super) static MESSAGES: &[Message] = &[")?;
    for (id, (name, fields, by_json)) in &messages {
        writeln!(out, "    // {id}")?;
        writeln!(out, "    Message {{")?;
        writeln!(out, "        name: {name:?},")?;
        writeln!(out, "        fields: &[")?;
        for field in fields {
            writeln!(out, "            {field},")?;
        }
        writeln!(out, "        ],")?;
        let positions: Vec<String> = by_json.iter().map(|(_, p)| p.to_string()).collect();
        writeln!(out, "        by_json: &[{}],", positions.join(", "))?;
        writeln!(out, "    }},")?;
    }
    writeln!(out, "];\n")?;
    writeln!(
        out,
        "/// The kinds (messages that carry apiVersion and kind), sorted by group, version, kind."
    )?;
    writeln!(out, "pub(super) static KINDS: &[Kind] = &[")?;
    for (group, version, kind, id) in &kinds {
        writeln!(
            out,
            "    Kind {{ group: {group:?}, version: {version:?}, kind: {kind:?}, message: {id} }},"
        )?;
    }
    writeln!(out, "];")?;
    Ok(out)
}

/// The full name of a message type as a field names it (`.k8s.io...ObjectMeta`, `Probe`).
fn qualified(ty: &str, package: &str) -> String {
    match ty.strip_prefix('.') {
        Some(full) => full.to_owned(),
        None => format!("{package}.{ty}"),
    }
}

/// The `Ty` expression of a proto field type, resolved against the package's messages.
fn rust_type(ty: &str, package: &str, ids: &BTreeMap<&str, usize>) -> Result<String> {
    let scalar = match ty {
        "string" => Some("Ty::String"),
        "bytes" => Some("Ty::Bytes"),
        "bool" => Some("Ty::Bool"),
        "int32" => Some("Ty::Int32"),
        "int64" => Some("Ty::Int64"),
        _ => None,
    };
    if let Some(scalar) = scalar {
        return Ok(scalar.to_owned());
    }
    let full = qualified(ty, package);
    if let Some((_, special)) = SPECIAL.iter().find(|(name, _)| *name == full) {
        return Ok(format!("Ty::{special}"));
    }
    let short = full.rsplit('.').next().unwrap_or_default();
    if STRING_LISTS.contains(&short) {
        return Ok("Ty::StringList".to_owned());
    }
    match ids.get(full.as_str()) {
        Some(id) => Ok(format!("Ty::Message({id})")),
        None => bail!("type {ty} ({full}) is neither a scalar, a special type nor a known message"),
    }
}

/// Arguments of `cargo xtask protobuf-check`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProtobufCheckArgs {
    /// A checkout of k8s.io/api at the release the table was generated from: its
    /// `testdata/HEAD` holds every kind with every field set, as `.pb` and `.json`.
    #[arg(long)]
    api: PathBuf,
}

/// Checks the codec (as compiled into this binary) against upstream's round-trip fixtures: each
/// served-version kind's `.pb` must decode to its `.json`, and the `.json` must encode to a body
/// that decodes to it again.
pub(crate) fn check(args: &ProtobufCheckArgs) -> Result<()> {
    use flotilla_apimachinery::protobuf;
    let dir = args.api.join("testdata/HEAD");
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
        if protobuf::kind_message(api_version, kind).is_none() {
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
