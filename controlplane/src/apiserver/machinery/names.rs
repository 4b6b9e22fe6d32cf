//! The name rules kinds pick for `metadata.name`; the format rules themselves live in
//! [`flotilla_apimachinery::names`], shared with the agent and the controllers.

pub(crate) use flotilla_apimachinery::names::*;

/// Name rule of a kind's `ValidateXxxName` function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// `NameIsDNSSubdomain`.
    Subdomain,
    /// `NameIsDNSLabel`.
    Label,
    /// `NameIsDNS1035Label` (Services: must start with a letter).
    Dns1035,
    /// Only the path-segment rules the storage key needs (no `/`, no `%`, not `.`/`..`).
    PathSegment,
    /// Path-segment rules when a name is given, which it need not be (Binding: from the URL).
    Unchecked,
}

/// Every problem with `name` under `rule`; a `generateName` prefix is judged with a character appended.
pub(crate) fn name_msgs(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix {
        masked = mask_trailing_dash(name);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::Dns1035 => is_dns1035_label(name),
        NameRule::PathSegment | NameRule::Unchecked => is_path_segment_name(name, prefix),
    }
}
