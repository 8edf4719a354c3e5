/// Limits and policies of one frontend. Every field has a flag in the `turbine` binary.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest prompt accepted, in tokens; `None` means the model's context length.
    pub max_prompt_tokens: Option<u32>,
    /// Largest `max_tokens` accepted; `None` means whatever fits in the context.
    pub max_tokens_limit: Option<u32>,
    /// Requests served at once; more wait in a queue.
    pub max_concurrent_requests: usize,
    /// Requests allowed to wait; beyond that, 503 with `Retry-After`.
    pub max_queued_requests: usize,
    /// Accepted bearer tokens; empty means no authentication.
    pub api_keys: Vec<String>,
    /// The `Retry-After` seconds sent with 503.
    pub retry_after_secs: u64,
    /// How requests are spread over a model's workers.
    pub router: turbine_router::RouterConfig,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_prompt_tokens: None,
            max_tokens_limit: None,
            max_concurrent_requests: 4096,
            max_queued_requests: 4096,
            api_keys: Vec::new(),
            retry_after_secs: 1,
            router: Default::default(),
        }
    }
}
