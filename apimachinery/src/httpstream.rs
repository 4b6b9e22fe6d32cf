//! What a streaming request (exec, attach, port-forward) asks for in its upgrade headers, read
//! the same way by the API server, which translates WebSocket streams, and by the agent, which
//! hands them to the container runtime (k8s.io/apimachinery/pkg/util/httpstream/wsstream).

use http::{HeaderMap, header};

/// Whether `headers` ask for a WebSocket upgrade.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
}

/// The subprotocols a WebSocket request offers, in its order.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}
