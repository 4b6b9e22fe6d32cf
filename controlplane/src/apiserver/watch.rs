//! `?watch=true`: a chunked stream of `{"type": ..., "object": ...}` lines, resumable from a
//! resourceVersion, filtered by selectors (an object leaving the selection is seen as DELETED,
//! one entering it as ADDED, as upstream), with optional bookmarks and a 410 ERROR event once the
//! requested revision has been compacted.

use std::time::Duration;

use bytes::Bytes;
use flotilla_apimachinery::json;
use futures::{Stream, StreamExt as _, stream};
use serde_json::{Value, json};

use super::{
    ApiServer,
    handlers::{Scope, parse_resource_version, selected, table},
    negotiation::{Encoding, watch_event},
    query::{Query, Rendering, partial_metadata},
    status::ApiError,
};
use crate::storage::{StorageError, WatchEvent};

/// Upstream's default upper bound of a watch request (min-request-timeout is 1800 s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

impl ApiServer {
    /// Starts a watch; the stream yields newline-terminated JSON events or framed protobuf ones.
    pub async fn watch_objects(
        &self,
        scope: &Scope,
        query: &Query,
        rendering: Rendering,
        encoding: Encoding,
    ) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, ApiError> {
        let labels = query.label_selector()?;
        let fields = query.field_selector(scope.resource.field_labels)?;
        let bookmarks = query.flag("allowWatchBookmarks");
        let timeout = query
            .integer("timeoutSeconds")?
            .map_or(DEFAULT_TIMEOUT, |seconds| {
                Duration::from_secs(seconds.unsigned_abs())
            });
        let prefix = scope.resource.prefix(scope.namespace.as_deref());
        let qualified = scope.resource.qualified_name();

        // No resourceVersion (or "0"): the current state first, as synthetic ADDED events.
        let (initial, after) = match query.get("resourceVersion") {
            None | Some("0") => {
                let page = self
                    .store
                    .list(&prefix, 0, None)
                    .await
                    .map_err(|err| ApiError::from_storage(err, &qualified, ""))?;
                let initial: Vec<Value> = page
                    .items
                    .into_iter()
                    .map(|stored| stored.object)
                    .filter(|object| selected(object, &labels, &fields))
                    .collect();
                (initial, page.revision)
            }
            Some(rv) => (Vec::new(), parse_resource_version(rv)?),
        };
        let events = self
            .store
            .watch(&prefix, after)
            .await
            .map_err(|err| ApiError::from_storage(err, &qualified, ""))?;

        let resource = scope.resource;
        let render = move |kind: &str, mut object: Value| -> Bytes {
            resource.strategy.present(&mut object);
            let object = match rendering {
                Rendering::Object => object,
                Rendering::Metadata => partial_metadata(&object),
                Rendering::Table => table(resource, &[object], json!({}), &Query::default()),
            };
            watch_event(encoding, kind, &object)
        };
        let render_initial = render;
        let initial = stream::iter(
            initial
                .into_iter()
                .map(move |object| Ok(render_initial("ADDED", object))),
        );
        let api_version = resource.api_version();
        let kind = resource.kind;
        let changes = events
            .filter_map(move |event| {
                let line = match event {
                    Ok(WatchEvent::Added(stored)) => selected(&stored.object, &labels, &fields)
                        .then(|| (render("ADDED", stored.object), false)),
                    Ok(WatchEvent::Modified { current, previous }) => {
                        let now = selected(&current.object, &labels, &fields);
                        let before = previous
                            .as_ref()
                            .is_some_and(|previous| selected(&previous.object, &labels, &fields));
                        let kind = match (before, now) {
                            (true, true) => Some("MODIFIED"),
                            (false, true) => Some("ADDED"),
                            (true, false) => Some("DELETED"),
                            (false, false) => None,
                        };
                        kind.map(|kind| (render(kind, current.object), false))
                    }
                    Ok(WatchEvent::Deleted(stored)) => selected(&stored.object, &labels, &fields)
                        .then(|| (render("DELETED", stored.object), false)),
                    Ok(WatchEvent::Progress(revision)) => bookmarks.then(|| {
                        let bookmark = json!({
                            "kind": kind,
                            "apiVersion": api_version,
                            "metadata": {"resourceVersion": revision.to_string()},
                        });
                        (watch_event(encoding, "BOOKMARK", &bookmark), false)
                    }),
                    Err(err) => {
                        let error = match err {
                            StorageError::Expired { .. } => ApiError::from_storage(err, "", ""),
                            other => ApiError::internal(format!("watch failed: {other}")),
                        };
                        let status = error.to_status();
                        Some((watch_event(encoding, "ERROR", &status), true))
                    }
                };
                futures::future::ready(line)
            })
            // An ERROR event ends the watch, as upstream.
            .scan(false, |ended, (bytes, is_error)| {
                if *ended {
                    return futures::future::ready(None);
                }
                *ended = is_error;
                futures::future::ready(Some(Ok(bytes)))
            });
        let deadline = tokio::time::sleep(timeout);
        Ok(initial.chain(changes).take_until(deadline))
    }
}

/// One event of a watch stream as kube-apiserver writes it: a `metav1.WatchEvent` (`type`
/// first, as the Go struct declares it), one line each.
pub(super) fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"{\"type\":");
    json::write(&Value::from(kind), &mut line);
    line.extend_from_slice(b",\"object\":");
    json::write(object, &mut line);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_lines_with_the_type_first() {
        let line = event_line("ADDED", &json!({"kind": "Pod"}));
        assert_eq!(
            &line[..],
            b"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\"}}\n"
        );
    }
}
