//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`): the `Impersonate-*` headers turn
//! a request into one made by another user, if RBAC grants the requester the `impersonate`
//! verb on each thing asked for (upstream's `WithImpersonation` filter): `users` (or the
//! `serviceaccounts` object for a `system:serviceaccount:<ns>:<name>` user), `groups`,
//! `uids` and `userextras/<key>` (the last two in `authentication.k8s.io`).

use http::HeaderMap;

use super::User;
use super::authorizer::Authorizer;
use super::rbac::Attributes;

/// The header naming the user to act as.
pub const USER: &str = "impersonate-user";
/// The header naming a group to act as (repeated for several).
pub const GROUP: &str = "impersonate-group";
/// The header naming the uid to act as.
pub const UID: &str = "impersonate-uid";
/// The prefix of headers naming extra values (`Impersonate-Extra-<key>`).
pub const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Why impersonation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The requester may not impersonate `attributes`; `reason` is RBAC's addition.
    Forbidden {
        /// What was asked for.
        attributes: Box<Attributes>,
        /// RBAC's reason (may be empty).
        reason: String,
    },
    /// The headers are malformed (groups or extras without a user).
    BadRequest(String),
}

/// The user `requester` acts as, given the request's `headers` (the requester itself when
/// there are no impersonation headers).
pub fn impersonate(
    authorizer: &Authorizer,
    requester: User,
    headers: &HeaderMap,
) -> Result<User, Refusal> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let user = values(USER).into_iter().next();
    let groups = values(GROUP);
    let uid = values(UID).into_iter().next();
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix(EXTRA_PREFIX)?;
            Some((key.to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let Some(name) = user else {
        if groups.is_empty() && uid.is_none() && extras.is_empty() {
            return Ok(requester);
        }
        return Err(Refusal::BadRequest(
            "impersonating groups, a uid or extra values requires impersonating a user (Impersonate-User)"
                .into(),
        ));
    };
    let mut asked = Vec::new();
    let mut acting = User {
        name: name.clone(),
        groups: Vec::new(),
    };
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, account)) => {
            asked.push(Attributes::resource(
                "impersonate",
                "",
                "serviceaccounts",
                namespace,
                account,
            ));
            if groups.is_empty() {
                acting.groups = vec![
                    "system:serviceaccounts".to_owned(),
                    format!("system:serviceaccounts:{namespace}"),
                ];
            }
        }
        None => asked.push(Attributes::resource("impersonate", "", "users", "", &name)),
    }
    for group in &groups {
        asked.push(Attributes::resource("impersonate", "", "groups", "", group));
        acting.groups.push(group.clone());
    }
    if let Some(uid) = &uid {
        asked.push(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "uids",
            "",
            uid,
        ));
    }
    for (key, value) in &extras {
        asked.push(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            &format!("userextras/{key}"),
            "",
            value,
        ));
    }
    for attributes in asked {
        if let Err(reason) = authorizer.authorize(&requester, &attributes) {
            return Err(Refusal::Forbidden {
                attributes: Box::new(attributes),
                reason,
            });
        }
    }
    let everyone = if name == "system:anonymous" {
        "system:unauthenticated"
    } else {
        "system:authenticated"
    };
    if !acting.groups.iter().any(|g| g == everyone) {
        acting.groups.push(everyone.to_owned());
    }
    Ok(acting)
}
