//! What a request asks, in authorization's terms (upstream's `RequestInfoFactory`): the verb
//! from the method (a GET without a name is a list, or a watch with `watch=true`; a DELETE
//! without one a deletecollection), and the group, resource, subresource, namespace and name
//! from the path. Paths outside `/api/v1/...` and `/apis/<group>/<version>/...` are
//! non-resource requests, judged by path.

use http::Method;

use super::query::Query;
use crate::auth::rbac::Attributes;

/// The namespace subresources, which `/namespaces/<name>/<x>` addresses instead of a resource.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// The authorization attributes of `method` on `path` with `query`.
pub fn attributes(method: &Method, path: &str, query: &Query) -> Attributes {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let rest = match parts.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => Some(("", rest)),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => Some((*group, rest)),
        _ => None,
    };
    let Some((group, mut rest)) = rest else {
        return Attributes::path(&method.as_str().to_ascii_lowercase(), path);
    };
    let mut verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let mut namespace = "";
    if rest.first() == Some(&"namespaces")
        && let Some(name) = rest.get(1)
    {
        namespace = name;
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    let resource = rest.first().copied().unwrap_or_default();
    let mut name = rest.get(1).copied().unwrap_or_default().to_owned();
    let subresource = rest.get(2).copied().unwrap_or_default();
    if name.is_empty() {
        // A list or watch of one object by field selector is authorized by that name.
        if let Some(selected) = query
            .get("fieldSelector")
            .and_then(|s| s.strip_prefix("metadata.name="))
            .filter(|n| !n.contains([',', '=', '!', '/']))
        {
            name = selected.to_owned();
        }
        verb = match verb {
            "get" if query.flag("watch") => "watch",
            "get" => "list",
            "delete" => "deletecollection",
            other => other,
        };
    }
    // Exec, attach and port-forward over WebSocket start with a GET, and upstream asks for
    // `create` on them whatever the method.
    if matches!(subresource, "exec" | "attach" | "portforward") && resource == "pods" {
        verb = "create";
    }
    let mut attributes = Attributes::resource(verb, group, resource, namespace, &name);
    attributes.subresource = subresource.to_owned();
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, uri: &str) -> Attributes {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        attributes(&method, path, &Query::parse(Some(query)))
    }

    #[test]
    fn verbs_and_targets_follow_upstream() {
        let list = of(Method::GET, "/api/v1/namespaces/default/pods");
        assert_eq!(
            (
                list.verb.as_str(),
                list.resource.as_str(),
                list.namespace.as_str()
            ),
            ("list", "pods", "default")
        );
        assert_eq!(of(Method::GET, "/api/v1/pods?watch=1").verb, "watch");
        assert_eq!(of(Method::GET, "/api/v1/pods?watch=false").verb, "list");
        let log = of(Method::GET, "/api/v1/namespaces/dev/pods/web/log");
        assert_eq!(
            (
                log.verb.as_str(),
                log.name.as_str(),
                log.subresource.as_str()
            ),
            ("get", "web", "log")
        );
        let exec = of(
            Method::GET,
            "/api/v1/namespaces/dev/pods/web/exec?command=sh",
        );
        assert_eq!(exec.verb, "create");
        let deployments = of(Method::DELETE, "/apis/apps/v1/namespaces/dev/deployments");
        assert_eq!(
            (deployments.verb.as_str(), deployments.api_group.as_str()),
            ("deletecollection", "apps")
        );
        let namespace = of(Method::GET, "/api/v1/namespaces/dev");
        assert_eq!(
            (
                namespace.resource.as_str(),
                namespace.name.as_str(),
                namespace.namespace.as_str()
            ),
            ("namespaces", "dev", "dev")
        );
        let finalize = of(Method::PUT, "/api/v1/namespaces/dev/finalize");
        assert_eq!(
            (finalize.resource.as_str(), finalize.subresource.as_str()),
            ("namespaces", "finalize")
        );
        let one = of(
            Method::GET,
            "/api/v1/namespaces/dev/pods?fieldSelector=metadata.name%3Dweb&watch=true",
        );
        assert_eq!((one.verb.as_str(), one.name.as_str()), ("watch", "web"));
        let nodes = of(Method::PATCH, "/api/v1/nodes/n1/status");
        assert_eq!(
            (
                nodes.verb.as_str(),
                nodes.namespace.as_str(),
                nodes.subresource.as_str()
            ),
            ("patch", "", "status")
        );
        for path in [
            "/healthz",
            "/apis",
            "/api",
            "/api/v1",
            "/apis/apps/v1",
            "/openapi/v2",
        ] {
            let attributes = of(Method::GET, path);
            assert!(!attributes.resource_request, "{path}");
            assert_eq!(
                (attributes.verb.as_str(), attributes.path.as_str()),
                ("get", path)
            );
        }
    }
}
