//! Prometheus metrics of the node's datapath, read from the pinned maps at scrape time (the
//! kernel keeps the counts; nothing is copied in between): drops per reason, endpoints, tunnels.

use std::sync::{Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use super::network::NetworkMaps;

/// Reads the maps on every scrape.
#[derive(Debug)]
pub struct DatapathCollector {
    maps: Arc<Mutex<NetworkMaps>>,
}

impl DatapathCollector {
    /// A collector over the node's maps.
    pub fn new(maps: Arc<Mutex<NetworkMaps>>) -> Self {
        Self { maps }
    }
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let maps = self
            .maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match maps.drops() {
            Ok(drops) => {
                let counter = ConstCounter::new(0u64);
                let mut family = encoder.encode_descriptor(
                    "flotilla_datapath_drops",
                    "Packets the eBPF datapath dropped, by reason",
                    None,
                    counter.metric_type(),
                )?;
                for (reason, count) in drops {
                    let labels = [("reason", reason.name())];
                    ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
                }
            }
            Err(err) => tracing::warn!("reading the drop counters: {err}"),
        }
        for (name, help, count) in [
            (
                "flotilla_datapath_endpoints",
                "Pods of this node in the endpoint map",
                maps.endpoint_entries().map(|entries| entries.len()),
            ),
            (
                "flotilla_datapath_tunnels",
                "Prefixes (other nodes' podCIDRs and node IPs) in the tunnel map",
                maps.tunnels().map(|rows| rows.len()),
            ),
        ] {
            match count {
                Ok(count) => {
                    let gauge = ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX));
                    let metric =
                        encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                    gauge.encode(metric)?;
                }
                Err(err) => tracing::warn!("reading {name}: {err}"),
            }
        }
        Ok(())
    }
}

/// Serves `registry` as Prometheus text on `GET /metrics` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<prometheus_client::registry::Registry>,
) -> std::io::Result<()> {
    use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};

    async fn metrics(
        State(registry): State<Arc<prometheus_client::registry::Registry>>,
    ) -> impl IntoResponse {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, &registry) {
            Ok(()) => (
                axum::http::StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                text,
            ),
            Err(err) => (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("encoding metrics: {err}\n"),
            ),
        }
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry);
    axum::serve(listener, app).await
}
