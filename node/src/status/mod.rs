//! The web status page every node serves on its `--http` address, and the JSON and metrics
//! endpoints behind it.
//!
//! - `GET /`: one page (HTML, CSS and a little vanilla JS, embedded in the binary: no CDN, no build
//!   step) showing the node, its peers, the providers it knows, the subnet's metagraph, recent
//!   queries, receipts and anchors, with charts of latency and earnings over time. It reads:
//! - `GET /api/node`, `/api/metagraph`, `/api/recent`, `/api/series`, `/api/receipts`,
//!   `/api/anchors` (here) and `/api/status`, `/api/peers`, `/api/providers` (`agora node`'s API);
//! - `GET /metrics`: the process's one Prometheus registry (overlay, libp2p, marketplace), in the
//!   OpenMetrics text format, or the classic text format for clients that ask only for
//!   `text/plain` (see [`agora_overlay::metrics::encode_for`]).
//!
//! Like the rest of the local API it is for the operator: bind it to loopback. Every list it
//! returns is bounded.

use crate::metrics::{Metrics, SERIES_INTERVAL};
use agora_ledger::state::MetagraphRow;
use agora_ledger::store::{ListFilter, ReceiptStore};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The page: markup, style and script in one file.
const PAGE: &str = include_str!("page.html");
/// Receipts listed on the page.
const RECEIPTS_SHOWN: usize = 20;
/// Anchors listed on the page.
const ANCHORS_SHOWN: usize = 20;
/// How long a ledger replay is reused before the next request replays again.
const LEDGER_CACHE: Duration = Duration::from_secs(2);

/// The ledger as a node sees it: the subnet's metagraph at some height.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerView {
    /// The subnet shown.
    pub subnet: u16,
    /// Height of the last block applied.
    pub height: u64,
    /// The subnet's epoch at that height.
    pub epoch: u64,
    /// One row per registered neuron.
    pub rows: Vec<MetagraphRow>,
}

/// Reads the ledger (replays the local log, or asks the chain); `Ok(None)` when the node has no
/// ledger. Called on a blocking thread.
pub type LedgerSource = Arc<dyn Fn() -> Result<Option<LedgerView>, String> + Send + Sync>;

/// A ledger read and when it was made.
type CachedLedger = (Instant, Result<Option<LedgerView>, String>);

/// One anchor record as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AnchorRow {
    /// The epoch anchored.
    pub epoch: u64,
    /// The Merkle root of its receipts, hex.
    pub receipts_root: String,
    /// Receipts under that root.
    pub receipts: u64,
    /// Where it is anchored: a chain (with its transaction) or the local journal.
    pub location: String,
}

/// Where anchors come from: the extension point for the chain/anchor code. Until one is given,
/// the page says "none yet".
pub trait AnchorSource: Send + Sync {
    /// The newest anchors, newest first, at most `limit`.
    fn anchors(&self, limit: usize) -> Result<Vec<AnchorRow>, String>;
}

/// Everything the page and the metrics endpoint read.
#[derive(Clone)]
pub struct StatusContext {
    /// The overlay (peers, providers, addresses).
    pub client: agora_overlay::Client,
    /// The marketplace's metrics and recent history.
    pub metrics: Metrics,
    /// The one registry exposed at `/metrics`.
    pub registry: Arc<Mutex<Registry>>,
    /// The command: node, serve, validate.
    pub role: &'static str,
    /// The local receipt store, if this node keeps one.
    pub receipts: Option<ReceiptStore>,
    /// The ledger, if this node was given one.
    pub ledger: Option<LedgerSource>,
    /// Anchors, once the anchor code provides them.
    pub anchors: Option<Arc<dyn AnchorSource>>,
    started: Instant,
    started_ms: u64,
    ledger_cache: Arc<Mutex<Option<CachedLedger>>>,
}

impl std::fmt::Debug for StatusContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusContext")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl StatusContext {
    /// A context with no receipt store, ledger or anchors (add them with the fields).
    pub fn new(
        client: agora_overlay::Client,
        metrics: Metrics,
        registry: Registry,
        role: &'static str,
    ) -> Self {
        Self {
            client,
            metrics,
            registry: Arc::new(Mutex::new(registry)),
            role,
            receipts: None,
            ledger: None,
            anchors: None,
            started: Instant::now(),
            started_ms: agora_overlay::now_ms(),
            ledger_cache: Arc::new(Mutex::new(None)),
        }
    }

    /// Lists this receipt store on the page.
    pub fn with_receipts(mut self, store: ReceiptStore) -> Self {
        self.receipts = Some(store);
        self
    }

    /// Shows this ledger's metagraph (none: the page says the node has no ledger).
    pub fn with_ledger(mut self, ledger: Option<LedgerSource>) -> Self {
        self.ledger = ledger;
        self
    }

    /// Lists anchors from `source`: the hook for the chain/anchor code.
    pub fn with_anchors(mut self, source: Arc<dyn AnchorSource>) -> Self {
        self.anchors = Some(source);
        self
    }

    /// The ledger view, replayed at most every [`LEDGER_CACHE`]; also sets the ledger gauges.
    async fn ledger_view(&self) -> Result<Option<LedgerView>, String> {
        let Some(source) = self.ledger.clone() else {
            return Ok(None);
        };
        if let Some((at, view)) = lock(&self.ledger_cache).as_ref()
            && at.elapsed() < LEDGER_CACHE
        {
            return view.clone();
        }
        let view = tokio::task::spawn_blocking(move || source())
            .await
            .unwrap_or_else(|e| Err(format!("the ledger reader failed: {e}")));
        if let Ok(Some(v)) = &view {
            self.metrics.set_ledger(v.height, v.epoch);
        }
        *lock(&self.ledger_cache) = Some((Instant::now(), view.clone()));
        view
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The page, `/metrics` and the page's JSON endpoints; merge it with `agora node`'s API. Starts
/// the sampler of the earnings series (and of the ledger gauges) on the current runtime.
pub fn router(ctx: StatusContext) -> axum::Router {
    let sampler = ctx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SERIES_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sampler.metrics.activity().sample();
            let _ = sampler.ledger_view().await;
        }
    });
    axum::Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/api/node", get(node))
        .route("/api/metagraph", get(metagraph))
        .route("/api/recent", get(recent))
        .route("/api/series", get(series))
        .route("/api/receipts", get(receipts))
        .route("/api/anchors", get(anchors))
        .with_state(ctx)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn metrics(State(ctx): State<StatusContext>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let encoded = {
        let registry = lock(&ctx.registry);
        agora_overlay::metrics::encode_for(&registry, accept.as_deref())
    };
    match encoded {
        Ok((content_type, body)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response(),
    }
}

/// `/api/node`.
#[derive(Debug, Serialize)]
struct NodeJson {
    peer_id: String,
    role: &'static str,
    version: &'static str,
    started_ms: u64,
    uptime_s: u64,
    listen_addrs: Vec<String>,
    external_addrs: Vec<String>,
    nat: String,
    kad_mode: String,
    connected_peers: usize,
    routing_table_peers: usize,
    providers: usize,
    earned_units: u64,
    spent_units: u64,
}

async fn node(State(ctx): State<StatusContext>) -> Response {
    let status = match ctx.client.status().await {
        Ok(s) => s,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let (earned, spent) = ctx.metrics.activity().totals();
    axum::Json(NodeJson {
        peer_id: status.peer_id,
        role: ctx.role,
        version: env!("CARGO_PKG_VERSION"),
        started_ms: ctx.started_ms,
        uptime_s: ctx.started.elapsed().as_secs(),
        listen_addrs: status.listen_addrs,
        external_addrs: status.external_addrs,
        nat: status.nat,
        kad_mode: status.kad_mode,
        connected_peers: status.connected_peers,
        routing_table_peers: status.routing_table_peers,
        providers: status.providers,
        earned_units: earned,
        spent_units: spent,
    })
    .into_response()
}

async fn metagraph(State(ctx): State<StatusContext>) -> Response {
    match ctx.ledger_view().await {
        Ok(view) => axum::Json(serde_json::json!({ "ledger": view })).into_response(),
        Err(e) => axum::Json(serde_json::json!({ "ledger": null, "error": e })).into_response(),
    }
}

async fn recent(State(ctx): State<StatusContext>) -> Response {
    axum::Json(ctx.metrics.activity().recent()).into_response()
}

async fn series(State(ctx): State<StatusContext>) -> Response {
    axum::Json(ctx.metrics.activity().series()).into_response()
}

/// One receipt as the page lists it.
#[derive(Debug, Serialize)]
struct ReceiptJson {
    id: String,
    task: String,
    model: String,
    price: u64,
    client: String,
    provider: String,
    countersigned: bool,
    settled: bool,
    answered_at_ms: u64,
}

async fn receipts(State(ctx): State<StatusContext>) -> Response {
    let Some(store) = ctx.receipts.clone() else {
        return axum::Json(serde_json::json!({ "store": null })).into_response();
    };
    let listed = tokio::task::spawn_blocking(move || {
        let count = store.count()?;
        let rows = store.list_rows(&ListFilter {
            limit: RECEIPTS_SHOWN,
            ..ListFilter::default()
        })?;
        Ok::<_, agora_ledger::store::StoreError>((count, rows))
    })
    .await;
    match listed {
        Ok(Ok((count, rows))) => {
            let rows: Vec<ReceiptJson> = rows
                .into_iter()
                .map(|row| {
                    let body = row.receipt.body();
                    ReceiptJson {
                        id: row.receipt.id().to_string(),
                        task: body.task.as_str().to_string(),
                        model: body.model.clone(),
                        price: body.price,
                        client: body.client.to_hex(),
                        provider: body.provider.to_hex(),
                        countersigned: row.receipt.is_countersigned(),
                        settled: row.settled,
                        answered_at_ms: body.answered_at_ms,
                    }
                })
                .collect();
            axum::Json(serde_json::json!({ "store": { "count": count, "rows": rows } }))
                .into_response()
        }
        Ok(Err(e)) => {
            axum::Json(serde_json::json!({ "store": null, "error": e.to_string() })).into_response()
        }
        Err(e) => {
            axum::Json(serde_json::json!({ "store": null, "error": e.to_string() })).into_response()
        }
    }
}

async fn anchors(State(ctx): State<StatusContext>) -> Response {
    let Some(source) = ctx.anchors.clone() else {
        return axum::Json(serde_json::json!({ "anchors": [], "note": "none yet" }))
            .into_response();
    };
    match tokio::task::spawn_blocking(move || source.anchors(ANCHORS_SHOWN)).await {
        Ok(Ok(rows)) => axum::Json(serde_json::json!({ "anchors": rows })).into_response(),
        Ok(Err(e)) => axum::Json(serde_json::json!({ "anchors": [], "error": e })).into_response(),
        Err(e) => {
            axum::Json(serde_json::json!({ "anchors": [], "error": e.to_string() })).into_response()
        }
    }
}
