//! The HTTP server: shared state, the route table, body limits, and serving until shutdown.

use crate::admission::Admission;
use crate::auth::{ApiKeys, require_api_key};
use crate::config::FrontendConfig;
use crate::error::ApiError;
use crate::kv_events;
use crate::metrics::FrontendMetrics;
use crate::registry::ModelRegistry;
use crate::response::Endpoint;
use crate::routes;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use turbine_router::RouterMetrics;
use turbine_runtime::{Discovery, EventPlane, RequestPlane};

/// Request bodies up to this size are parsed, templated and tokenized in place: that takes tens of
/// microseconds, less than a hand-off to the blocking pool. Larger ones go to the blocking pool so
/// a huge prompt never stalls the I/O threads.
pub const INLINE_PREPROCESS_BYTES: usize = 8 << 10;

pub struct AppState {
    pub config: FrontendConfig,
    pub registry: Arc<ModelRegistry>,
    pub plane: Arc<dyn RequestPlane>,
    pub metrics: Arc<FrontendMetrics>,
    pub admission: Admission,
    pub prometheus: prometheus::Registry,
}

impl AppState {
    /// Builds the state and starts following discovery's model list.
    pub fn new(
        config: FrontendConfig,
        discovery: &dyn Discovery,
        plane: Arc<dyn RequestPlane>,
        events: Arc<dyn EventPlane>,
        prometheus: prometheus::Registry,
    ) -> prometheus::Result<Arc<Self>> {
        let metrics = Arc::new(FrontendMetrics::register(&prometheus)?);
        let router_metrics = RouterMetrics::register(&prometheus)?;
        let registry = Arc::new(ModelRegistry::new(
            config.router.clone(),
            router_metrics,
            plane.clone(),
        ));
        tokio::spawn(registry.clone().follow(discovery.watch()));
        tokio::spawn(kv_events::follow(registry.clone(), events, plane.clone()));
        Ok(Arc::new(Self {
            admission: Admission::new(
                config.max_concurrent_requests,
                config.max_queued_requests,
                config.retry_after_secs,
                metrics.clone(),
            ),
            config,
            registry,
            plane,
            metrics,
            prometheus,
        }))
    }

    /// Parses a request body; a malformed one is a 400. Bodies over
    /// [`INLINE_PREPROCESS_BYTES`] are parsed on the blocking pool, like their tokenization.
    pub async fn parse<T: DeserializeOwned + Send + 'static>(body: Bytes) -> Result<T, ApiError> {
        let small = body.len() <= INLINE_PREPROCESS_BYTES;
        let parse = move || {
            turbine_protocols::openai::parse_request(&body).map_err(|message| {
                ApiError::bad_request(format!("Invalid request body: {message}"))
            })
        };
        if small {
            return parse();
        }
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|e| ApiError::internal(format!("parsing panicked: {e}")))?
    }

    /// Counts a request that ended before generation, and turns its error into a response.
    pub fn finish(
        &self,
        result: Result<Response, ApiError>,
        model: &str,
        endpoint: Endpoint,
    ) -> Response {
        match result {
            Ok(response) => response,
            Err(error) => {
                let label = if self.registry.get(model).is_some() {
                    model
                } else {
                    ""
                };
                self.metrics
                    .rejected(label, endpoint.label(), error.status.as_u16());
                error.into_response()
            }
        }
    }
}

/// A request body read up to the configured limit (413 beyond it).
pub struct RequestBody(pub Bytes);

impl FromRequest<Arc<AppState>> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(ApiError::payload_too_large(limit));
        }
        match axum::body::to_bytes(request.into_body(), limit).await {
            Ok(bytes) => Ok(RequestBody(bytes)),
            Err(err) if is_length_limit(&err) => Err(ApiError::payload_too_large(limit)),
            Err(err) => Err(ApiError::bad_request(format!(
                "Cannot read the request body: {err}"
            ))),
        }
    }
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The route table. `/health`, `/live` and `/metrics` stay open when API keys are set.
pub fn router(state: Arc<AppState>) -> Router {
    let mut api = Router::new()
        .route("/v1/chat/completions", post(routes::chat::chat_completions))
        .route("/v1/completions", post(routes::completions::completions))
        .route("/v1/models", get(routes::models::list))
        .route("/v1/models/{model}", get(routes::models::retrieve));
    let keys = Arc::new(ApiKeys::new(state.config.api_keys.clone()));
    if keys.is_enabled() {
        api = api.route_layer(axum::middleware::from_fn_with_state(keys, require_api_key));
    }
    Router::new()
        .route("/health", get(routes::health::health))
        .route("/live", get(routes::health::live))
        .route("/metrics", get(routes::health::metrics))
        .merge(api)
        .fallback(|| async { ApiError::not_found("Unknown route.") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and waits for open requests to end.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // SSE frames are small; do not let Nagle's algorithm hold them back.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
