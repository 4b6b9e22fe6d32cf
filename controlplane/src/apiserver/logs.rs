//! `pods/log`: the API server finds the pod's node and proxies to the node agent's kubelet-style
//! endpoint `https://<node InternalIP>:<kubeletEndpoint port>/containerLogs/<ns>/<pod>/<container>`
//! (see [`super::node_proxy`]) and streams the answer back (so `kubectl logs -f` follows).

use axum::{body::Body, response::Response};
use http::{Request, StatusCode, header};

use super::{
    ApiServer,
    handlers::Scope,
    node_proxy::{self, percent_encode, pick_container},
    query::Query,
    status::ApiError,
};

/// Query parameters of kubectl logs that the node agent understands, with their types.
const PASSED_THROUGH: &[(&str, bool)] = &[
    ("follow", false),
    ("previous", false),
    ("timestamps", false),
    ("sinceSeconds", true),
    ("tailLines", true),
    ("limitBytes", true),
    ("sinceTime", false),
];

impl ApiServer {
    /// Streams a container's log from the node agent of the pod's node.
    pub async fn pod_logs(
        &self,
        scope: &Scope,
        name: &str,
        query: &Query,
    ) -> Result<Response, ApiError> {
        let target = self.pod_node(scope, name).await?;
        let container = pick_container(&target.pod, name, query.get("container"))?;

        let mut path = format!("/containerLogs/{}/{name}/{container}", target.namespace);
        let mut separator = '?';
        for (parameter, integer) in PASSED_THROUGH {
            if let Some(value) = query.get(parameter) {
                if *integer {
                    query.integer(parameter)?;
                }
                path.push(separator);
                path.push_str(parameter);
                path.push('=');
                path.push_str(&percent_encode(value));
                separator = '&';
            }
        }
        let tls = self.kubelet_client()?;
        let request = Request::get(path)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|err| ApiError::internal(format!("building the log request: {err}")))?;
        let response = node_proxy::send(tls, target.address, target.port, request)
            .await
            .map_err(|err| target.unreachable(name, "the logs", &err))?;
        if response.status() != StatusCode::OK {
            return Err(node_proxy::agent_error_from(response).await);
        }
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::new(response.into_body()))
            .unwrap_or_else(|_| {
                axum::response::IntoResponse::into_response(ApiError::internal(
                    "building the log response",
                ))
            }))
    }
}
