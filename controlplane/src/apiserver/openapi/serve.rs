//! Serving the documents as kube-openapi's handlers do. A document is built once for each set of
//! kinds and kept (building one walks every kind's schema, and kubectl asks for them on every
//! `apply`), answered with an `ETag` (304 to a matching `If-None-Match`). The v3 index hands out
//! `?hash=` URLs: a request with an outdated hash is redirected (301) to the current one, and a
//! current one is marked immutable so clients cache it for good.

use std::{collections::HashMap, sync::Mutex};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};

use super::{gnostic, v2, v3};
use crate::apiserver::registry::Registry;

/// The built documents, by what was asked for, each with the hash it was built for.
#[derive(Debug, Default)]
pub struct Documents {
    built: Mutex<HashMap<String, (String, Bytes)>>,
}

impl Documents {
    /// `/openapi/v2`, in JSON or gnostic's protobuf as `headers` ask.
    pub fn v2(&self, registry: &Registry, headers: &HeaderMap) -> Response {
        let protobuf = v2::wants_protobuf(header_str(headers, header::ACCEPT));
        let hash = v3::content_hash(registry, "");
        let (key, content_type) = if protobuf {
            ("v2.pb", v2::PROTOBUF_RESPONSE_TYPE)
        } else {
            ("v2.json", "application/json")
        };
        let body = self.cached(key, &hash, || {
            let document = v2::document(registry);
            Some(if protobuf {
                gnostic::encode_document(&document)
            } else {
                to_json(&document)
            })
        });
        let mut response = answer(headers, content_type, &hash, body.unwrap_or_default());
        response
            .headers_mut()
            .insert(header::VARY, header::HeaderValue::from_static("Accept"));
        response
    }

    /// `/openapi/v3`: the index of group-version documents.
    pub fn v3_index(&self, registry: &Registry, headers: &HeaderMap) -> Response {
        let index = v3::index(registry);
        let body = Bytes::from(to_json(&index));
        let etag = v3::etag_of(&body);
        answer(headers, "application/json", &etag, body)
    }

    /// `/openapi/v3/<path>`, or None when no kind is served at `path`.
    pub fn v3(
        &self,
        registry: &Registry,
        path: &str,
        asked_hash: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<Response> {
        let hash = v3::content_hash(registry, path);
        let body = self.cached(&format!("v3/{path}"), &hash, || {
            v3::document(registry, path).map(|document| to_json(&document))
        })?;
        let asked = asked_hash.filter(|asked| !asked.is_empty());
        if let Some(asked) = asked
            && asked != hash
        {
            return Some(
                Response::builder()
                    .status(StatusCode::MOVED_PERMANENTLY)
                    .header(header::LOCATION, v3::server_relative_url(path, &hash))
                    .body(Body::empty())
                    .unwrap_or_default(),
            );
        }
        let mut response = answer(headers, "application/json", &hash, body);
        let set = response.headers_mut();
        set.insert(header::VARY, header::HeaderValue::from_static("Accept"));
        // Only a URL with the current hash is immutable (the index hands those out).
        if asked.is_some() {
            set.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("public, immutable"),
            );
            let in_a_year = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
            if let Ok(value) = header::HeaderValue::from_str(
                &in_a_year.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            ) {
                set.insert(header::EXPIRES, value);
            }
        }
        Some(response)
    }

    /// The document under `key` built for `hash`, building it when the kinds changed.
    fn cached(
        &self,
        key: &str,
        hash: &str,
        build: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<Bytes> {
        if let Ok(built) = self.built.lock()
            && let Some((built_for, body)) = built.get(key)
            && built_for == hash
        {
            return Some(body.clone());
        }
        // Built outside the lock: two requests may both build it, which is harmless.
        let body = Bytes::from(build()?);
        if let Ok(mut built) = self.built.lock() {
            built.insert(key.to_owned(), (hash.to_owned(), body.clone()));
        }
        Some(body)
    }
}

/// 200 with the body, or 304 when the client already holds this version.
fn answer(headers: &HeaderMap, content_type: &str, etag: &str, body: Bytes) -> Response {
    let quoted = format!("\"{etag}\"");
    let held = header_str(headers, header::IF_NONE_MATCH).is_some_and(|values| {
        values
            .split(',')
            .any(|value| value.trim() == quoted || value.trim() == "*")
    });
    let builder = Response::builder().header(header::ETAG, &quoted);
    if held {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default();
    }
    builder
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_default()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn to_json(document: &serde_json::Value) -> Vec<u8> {
    // Cannot fail: a Value has string keys.
    serde_json::to_vec(document).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, header::HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn documents_carry_an_etag_and_a_matching_one_gets_304() {
        let registry = Registry::new();
        let documents = Documents::default();
        let first = documents.v2(&registry, &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        let again = documents.v2(&registry, &with(header::IF_NONE_MATCH, &etag));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        // The protobuf form is its own document.
        let protobuf = documents.v2(
            &registry,
            &with(header::ACCEPT, v2::PROTOBUF_MEDIA_TYPES[1]),
        );
        assert_eq!(
            protobuf.headers()[header::CONTENT_TYPE],
            v2::PROTOBUF_RESPONSE_TYPE
        );
    }

    #[test]
    fn v3_hash_urls_are_immutable_and_outdated_ones_redirect() {
        let registry = Registry::new();
        let documents = Documents::default();
        let hash = v3::content_hash(&registry, "apis/apps/v1");
        let current = documents
            .v3(&registry, "apis/apps/v1", Some(&hash), &HeaderMap::new())
            .unwrap();
        assert_eq!(current.status(), StatusCode::OK);
        assert_eq!(
            current.headers()[header::CACHE_CONTROL],
            "public, immutable"
        );
        assert!(current.headers().contains_key(header::EXPIRES));
        let outdated = documents
            .v3(&registry, "apis/apps/v1", Some("0000"), &HeaderMap::new())
            .unwrap();
        assert_eq!(outdated.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            outdated.headers()[header::LOCATION],
            format!("/openapi/v3/apis/apps/v1?hash={hash}")
        );
        let plain = documents
            .v3(&registry, "apis/apps/v1", None, &HeaderMap::new())
            .unwrap();
        assert!(!plain.headers().contains_key(header::CACHE_CONTROL));
        assert!(
            documents
                .v3(&registry, "apis/nothing/v1", None, &HeaderMap::new())
                .is_none()
        );
    }
}
