//! JSON against protobuf on the same API server in the same run: create, get, a full paginated
//! list and create-to-watch-event latency, each request and answer in one encoding, the client
//! decoding every answer (JSON into a value tree; protobuf with the same codec the server uses).

use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes};
use flotilla_apimachinery::protobuf;
use http::{Method, Request, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use super::{Sample, ms, timed};

/// One encoding of requests and answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Json,
    Protobuf,
}

impl Wire {
    fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Protobuf => protobuf::MEDIA_TYPE,
        }
    }

    fn encode(self, object: &Value) -> Vec<u8> {
        match self {
            Self::Json => serde_json::to_vec(object).unwrap(),
            Self::Protobuf => protobuf::encode_object(object).unwrap(),
        }
    }

    fn decode(self, body: &[u8]) -> anyhow::Result<Value> {
        Ok(match self {
            Self::Json => serde_json::from_slice(body)?,
            Self::Protobuf => protobuf::decode_object(body)?,
        })
    }
}

/// Sends one request in `wire` and decodes the answer.
async fn call(
    client: &kube::Client,
    wire: Wire,
    method: Method,
    uri: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::ACCEPT, wire.media_type());
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, wire.media_type());
    }
    let request = request.body(kube::client::Body::from(
        body.map(|b| wire.encode(b)).unwrap_or_default(),
    ))?;
    let response = client.send(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "{uri}: {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    wire.decode(&bytes)
}

fn configmap(namespace: &str, i: usize, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("wire-{i:05}"), "namespace": namespace, "labels": labels},
        "data": {"payload": "x".repeat(256)},
    })
}

/// The samples of one encoding.
struct Run {
    create: Sample,
    get: Sample,
    list: Sample,
    watch: Sample,
}

async fn run(client: &kube::Client, wire: Wire, objects: usize) -> anyhow::Result<Run> {
    let namespace = match wire {
        Wire::Json => "wire-json",
        Wire::Protobuf => "wire-protobuf",
    };
    call(
        client,
        Wire::Json,
        Method::POST,
        "/api/v1/namespaces",
        Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})),
    )
    .await?;
    let collection = format!("/api/v1/namespaces/{namespace}/configmaps");
    let create = timed("create", objects, |i| {
        let collection = collection.clone();
        async move {
            let object = configmap(namespace, i, json!({"bench": "wire"}));
            call(client, wire, Method::POST, &collection, Some(&object)).await?;
            Ok(())
        }
    })
    .await?;
    let get = timed("get", objects.min(2000), |i| {
        let uri = format!("{collection}/wire-{:05}", (i * 7919) % objects);
        async move {
            call(client, wire, Method::GET, &uri, None).await?;
            Ok(())
        }
    })
    .await?;
    let list = timed("list (500/page)", 5, |_| {
        let collection = collection.clone();
        async move {
            let mut token = String::new();
            let mut seen = 0;
            loop {
                let uri = format!("{collection}?limit=500&continue={token}");
                let page = call(client, wire, Method::GET, &uri, None).await?;
                // The namespace also holds the kube-root-ca.crt ConfigMap every namespace gets.
                seen += page["items"].as_array().map_or(0, |items| {
                    items
                        .iter()
                        .filter(|item| {
                            item["metadata"]["name"]
                                .as_str()
                                .is_some_and(|name| name.starts_with("wire-"))
                        })
                        .count()
                });
                token = page["metadata"]["continue"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if token.is_empty() {
                    anyhow::ensure!(seen == objects, "listed {seen} of {objects}");
                    return Ok(());
                }
            }
        }
    })
    .await?;
    let watch = watch_latency(client, wire, namespace, objects, 200.min(objects)).await?;
    Ok(Run {
        create,
        get,
        list,
        watch,
    })
}

/// From a create returning to its ADDED event arriving on a watch in `wire`.
async fn watch_latency(
    client: &kube::Client,
    wire: Wire,
    namespace: &str,
    first: usize,
    count: usize,
) -> anyhow::Result<Sample> {
    let collection = format!("/api/v1/namespaces/{namespace}/configmaps");
    let version = call(
        client,
        wire,
        Method::GET,
        &format!("{collection}?limit=1"),
        None,
    )
    .await?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let request = Request::builder()
        .uri(format!(
            "{collection}?watch=1&labelSelector=bench%3Dwatch&resourceVersion={version}&timeoutSeconds=120"
        ))
        .header(header::ACCEPT, wire.media_type())
        .body(kube::client::Body::from(Vec::new()))?;
    let mut body = client.send(request).await?.into_body();
    let mut buffer = bytes::BytesMut::new();
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let object = configmap(namespace, first + i, json!({"bench": "watch"}));
        let t = Instant::now();
        call(client, wire, Method::POST, &collection, Some(&object)).await?;
        loop {
            if let Some(event) = next_event(wire, &mut buffer)? {
                anyhow::ensure!(
                    event["type"] == "ADDED",
                    "unexpected event {}",
                    event["type"]
                );
                break;
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the watch ended early"))??;
            if let Ok(data) = frame.into_data() {
                buffer.extend_from_slice(&data);
            }
        }
        latencies.push(t.elapsed());
    }
    Ok(Sample {
        name: "create -> watch event",
        requested: count,
        latencies,
        wall: started.elapsed(),
    })
}

/// The next complete event in `buffer` (a JSON line or a length-prefixed protobuf frame).
fn next_event(wire: Wire, buffer: &mut bytes::BytesMut) -> anyhow::Result<Option<Value>> {
    match wire {
        Wire::Json => {
            let Some(end) = buffer.iter().position(|b| *b == b'\n') else {
                return Ok(None);
            };
            let line: Bytes = buffer.split_to(end + 1).freeze();
            Ok(Some(serde_json::from_slice(&line)?))
        }
        Wire::Protobuf => {
            if buffer.len() < 4 {
                return Ok(None);
            }
            let length = u32::from_be_bytes(buffer[..4].try_into()?) as usize;
            if buffer.len() < 4 + length {
                return Ok(None);
            }
            let (event, _) = protobuf::decode_watch_event(&buffer[..4 + length])?;
            buffer.advance(4 + length);
            Ok(Some(event))
        }
    }
}

/// Runs both encodings and prints them side by side; returns the list-time ratio.
pub(super) async fn compare(client: &kube::Client, objects: usize) -> anyhow::Result<f64> {
    let json = run(client, Wire::Json, objects).await?;
    let protobuf = run(client, Wire::Protobuf, objects).await?;
    println!();
    println!(
        "{:<24} {:>10} {:>10} | {:>10} {:>10} | {:>10}",
        "JSON vs protobuf", "JSON p50", "JSON p99", "pb p50", "pb p99", "p50 ratio"
    );
    for (json, protobuf) in [
        (&json.create, &protobuf.create),
        (&json.get, &protobuf.get),
        (&json.list, &protobuf.list),
        (&json.watch, &protobuf.watch),
    ] {
        println!(
            "{:<24} {:>10} {:>10} | {:>10} {:>10} | {:>9.2}x",
            json.name,
            ms(json.percentile(0.5)),
            ms(json.percentile(0.99)),
            ms(protobuf.percentile(0.5)),
            ms(protobuf.percentile(0.99)),
            protobuf.percentile(0.5).as_secs_f64() / json.percentile(0.5).as_secs_f64().max(1e-9),
        );
    }
    let ratio = protobuf.list.percentile(0.5).as_secs_f64()
        / json.list.percentile(0.5).as_secs_f64().max(1e-9);
    Ok(ratio)
}
