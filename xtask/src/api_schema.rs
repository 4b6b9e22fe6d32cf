//! `cargo xtask api-schema`: writes `apimachinery/src/schema/generated.rs`, the table the protobuf
//! codec walks and the OpenAPI documents read, from upstream's API definitions.
//!
//! The wire format of every kind is fixed by upstream's `generated.proto` files (message names,
//! field numbers, scalar types), but how a decoded message becomes JSON is not: that depends on the
//! Go struct behind each message (`*int32` keeps an explicit 0, `int32` with `omitempty` drops it,
//! `json:",inline"` flattens a nested message into its parent), and how objects merge is in the Go
//! struct tags and markers too (`patchStrategy`, `patchMergeKey`, `+listType`, `+listMapKey`,
//! `+mapType`, `+structType`). So the generator reads both: the `.proto` files for the structure
//! and the Go struct tags and markers, matched by field number (JSON names such as `$ref` or
//! `x-kubernetes-preserve-unknown-fields` come from the tags, never from the proto names). It runs
//! at development time against checkouts of `k8s.io/api`, `k8s.io/apimachinery` and (for
//! `apiextensions.k8s.io/v1`, optional) `k8s.io/apiextensions-apiserver`, all at the release
//! k8s-openapi's feature names; the output is checked in, so building Flotilla needs none of them:
//!
//! ```text
//! for repo in api apimachinery apiextensions-apiserver; do
//!     mkdir -p /tmp/k8s/$repo
//!     git -C <a clone of kubernetes/$repo> archive v0.33.9 | tar -x -C /tmp/k8s/$repo
//! done
//! cargo xtask api-schema --api /tmp/k8s/api --apimachinery /tmp/k8s/apimachinery \
//!     --apiextensions /tmp/k8s/apiextensions-apiserver --release v0.33.9
//! ```
//!
//! Messages whose JSON form is not their fields (Go types with a `MarshalJSON` of their own) are
//! in [`SPECIAL`]: the table names each by a `Ty` of its own and the codec handles it by hand.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

/// Arguments of `cargo xtask api-schema`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApiSchemaArgs {
    /// A checkout of k8s.io/api (e.g. `git -C <mirror> archive v0.33.9 | tar -x -C DIR`).
    #[arg(long)]
    api: PathBuf,
    /// A checkout of k8s.io/apimachinery at the same release.
    #[arg(long)]
    apimachinery: PathBuf,
    /// A checkout of k8s.io/apiextensions-apiserver at the same release: adds
    /// `apiextensions.k8s.io/v1` (CustomResourceDefinition). Without it the table lacks that group.
    #[arg(long)]
    apiextensions: Option<PathBuf>,
    /// The release the checkouts are at; written into the generated file's header.
    #[arg(long)]
    release: String,
    /// Where to write the table.
    #[arg(long, default_value = "apimachinery/src/schema/generated.rs")]
    out: PathBuf,
}

/// The messages whose JSON form is not their fields: the codec handles each by hand. Each is
/// (proto name, `Ty` variant, the message its JSON form may hold, whose id the variant carries).
const SPECIAL: &[(&str, &str, Option<&str>)] = &[
    ("k8s.io.apimachinery.pkg.apis.meta.v1.Time", "Time", None),
    (
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime",
        "MicroTime",
        None,
    ),
    (
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1",
        "FieldsV1",
        None,
    ),
    (
        "k8s.io.apimachinery.pkg.runtime.RawExtension",
        "RawExtension",
        None,
    ),
    (
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
        "IntOrString",
        None,
    ),
    (
        "k8s.io.apimachinery.pkg.api.resource.Quantity",
        "Quantity",
        None,
    ),
    // apiextensions' marshal.go: JSON is its raw bytes; each union is a schema object or else
    // `true`/`false`, a list of schemas or a list of strings.
    (
        "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON",
        "Json",
        None,
    ),
    (
        "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
        "SchemaOrBool",
        Some(JSON_SCHEMA_PROPS),
    ),
    (
        "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
        "SchemaOrArray",
        Some(JSON_SCHEMA_PROPS),
    ),
    (
        "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
        "SchemaOrStringArray",
        Some(JSON_SCHEMA_PROPS),
    ),
];

/// The schema message the apiextensions unions hold.
const JSON_SCHEMA_PROPS: &str =
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";

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

/// The k8s.io/apiextensions-apiserver packages of a served GA version.
const APIEXTENSIONS_PACKAGES: &[&str] = &["pkg/apis/apiextensions/v1"];

/// The proto scalar types and the `Ty` each becomes.
const SCALARS: &[(&str, &str)] = &[
    ("string", "Ty::String"),
    ("bytes", "Ty::Bytes"),
    ("bool", "Ty::Bool"),
    ("int32", "Ty::Int32"),
    ("int64", "Ty::Int64"),
    // JSONSchemaProps' maximum, minimum and multipleOf (Go `*float64`).
    ("double", "Ty::Double"),
];

/// Runs the generator.
pub(crate) fn run(args: &ApiSchemaArgs) -> Result<()> {
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
    let mut sources = "k8s.io/api and k8s.io/apimachinery";
    if let Some(root) = &args.apiextensions {
        for dir in APIEXTENSIONS_PACKAGES {
            packages.push(Package::read(root, dir, "k8s.io/apiextensions-apiserver")?);
        }
        sources = "k8s.io/api, k8s.io/apimachinery and k8s.io/apiextensions-apiserver";
    }
    let text = render(&packages, sources, &args.release)?;
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
    /// `+structType=atomic`.
    atomic: bool,
    /// By protobuf field number.
    fields: BTreeMap<u32, GoField>,
}

struct GoField {
    /// Its place among the struct's serialized fields: encoding/json writes them in this order.
    declared: usize,
    json: String,
    omitempty: bool,
    pointer: bool,
    inline: bool,
    patch_strategy: String,
    patch_merge_key: String,
    list_type: String,
    list_map_keys: Vec<String>,
    map_type: String,
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
    // The `// +key=value` markers since the last declaration: they belong to the next one.
    let mut markers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(marker) = trimmed.strip_prefix("// +") {
            let (key, value) = marker.split_once('=').unwrap_or((marker, ""));
            markers.push((key.trim().to_owned(), value.trim().to_owned()));
            continue;
        }
        // Other comments and blank lines keep the markers for the declaration that follows.
        if trimmed.is_empty() || trimmed.starts_with("//") {
            continue;
        }
        let pending = std::mem::take(&mut markers);
        let marker = |key: &str| {
            pending
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if let Some(rest) = line.strip_prefix("type ") {
            let declaration = rest.split_once("//").map_or(rest, |(code, _)| code).trim();
            let parsed = GoStruct {
                atomic: marker("structType") == "atomic",
                ..GoStruct::default()
            };
            if let Some(name) = declaration.strip_suffix(" struct {") {
                current = Some((name.trim().to_owned(), parsed));
            } else if let Some(name) = declaration.strip_suffix(" struct{}") {
                structs.insert(name.trim().to_owned(), parsed);
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
        let declared = parsed.fields.len();
        parsed.fields.insert(
            number,
            GoField {
                declared,
                json: json_name,
                omitempty: options.contains(&"omitempty"),
                pointer: go_type.starts_with('*'),
                inline: options.contains(&"inline"),
                patch_strategy: tag(tags, "patchStrategy").unwrap_or_default().to_owned(),
                patch_merge_key: tag(tags, "patchMergeKey").unwrap_or_default().to_owned(),
                list_type: marker("listType"),
                list_map_keys: pending
                    .iter()
                    .filter(|(key, _)| key == "listMapKey")
                    .map(|(_, value)| value.clone())
                    .collect(),
                map_type: marker("mapType"),
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
fn render(packages: &[Package], sources: &str, release: &str) -> Result<String> {
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
        if let Some((_, _, embedded)) = SPECIAL.iter().find(|(name, _, _)| *name == full) {
            // A special type's own fields are not in the table, but the message its JSON form
            // holds (a union's schema) is.
            if let Some(embedded) = embedded {
                roots.push((*embedded).to_owned());
            }
            continue;
        }
        let short = full.rsplit('.').next().unwrap_or_default();
        if STRING_LISTS.contains(&short) || !reachable.insert(full.clone()) {
            continue;
        }
        let (package, message) = all
            .get(&full)
            .with_context(|| format!("message {full} is referenced but not declared"))?;
        for field in &message.fields {
            if !SCALARS.iter().any(|(scalar, _)| *scalar == field.ty) {
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
            let mut by_json: Vec<(String, usize)> = Vec::new();
            let mut by_declaration: Vec<(usize, usize)> = Vec::new();
            for (position, field) in message.fields.iter().enumerate() {
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
                by_json.push((json.clone(), position));
                by_declaration.push((go_field.declared, position));
                let keys: Vec<String> = go_field
                    .list_map_keys
                    .iter()
                    .map(|key| format!("{key:?}"))
                    .collect();
                fields.push(format!(
                    "Field {{ number: {}, json: {json:?}, ty: {ty}, label: Label::{}, pointer: {}, omitempty: {}, inline: {}, patch_strategy: {:?}, patch_merge_key: {:?}, list_type: {:?}, list_map_keys: &[{}], map_type: {:?} }}",
                    field.number,
                    match field.label {
                        ProtoLabel::Optional => "Single",
                        ProtoLabel::Repeated => "Repeated",
                        ProtoLabel::Map => "Map",
                    },
                    go_field.pointer,
                    go_field.omitempty,
                    go_field.inline,
                    go_field.patch_strategy,
                    go_field.patch_merge_key,
                    go_field.list_type,
                    keys.join(", "),
                    go_field.map_type,
                ));
            }
            by_json.sort();
            by_declaration.sort_unstable();
            messages.insert(
                id,
                (
                    full.clone(),
                    fields,
                    by_json,
                    by_declaration,
                    go.has_type_meta,
                    go.atomic,
                ),
            );
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
        "// @generated by `cargo xtask api-schema` from {sources} {release}.\n\
         // Do not edit: regenerate (see xtask/src/api_schema.rs).\n\
         \n\
         //! Every kind's messages: protobuf fields, JSON form and merge facts.\n\
         \n\
         use super::{{Field, Kind, Label, Message, Ty}};\n"
    )?;
    writeln!(out, "/// Every message, by id (`Ty::Message(id)`).")?;
    writeln!(out, "pub(super) static MESSAGES: &[Message] = &[")?;
    for (id, (name, fields, by_json, by_declaration, type_meta, atomic)) in &messages {
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
        let positions: Vec<String> = by_declaration.iter().map(|(_, p)| p.to_string()).collect();
        writeln!(out, "        by_declaration: &[{}],", positions.join(", "))?;
        writeln!(out, "        type_meta: {type_meta},")?;
        writeln!(out, "        atomic: {atomic},")?;
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
    if let Some((_, scalar)) = SCALARS.iter().find(|(scalar, _)| *scalar == ty) {
        return Ok((*scalar).to_owned());
    }
    let full = qualified(ty, package);
    if let Some((_, special, embedded)) = SPECIAL.iter().find(|(name, _, _)| *name == full) {
        return match embedded.map(|embedded| (embedded, ids.get(embedded))) {
            None => Ok(format!("Ty::{special}")),
            Some((_, Some(id))) => Ok(format!("Ty::{special}({id})")),
            Some((embedded, None)) => bail!("{full} holds {embedded}, which is not in the table"),
        };
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
