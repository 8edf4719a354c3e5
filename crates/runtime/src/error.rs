use turbine_protocols::InstanceId;

/// Failures of the runtime's planes. Serializable: a worker sends them to a frontend over the
/// network request plane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum RuntimeError {
    #[error("instance {0} is not reachable")]
    Unreachable(InstanceId),
    #[error("instance {0} is already registered")]
    AlreadyRegistered(InstanceId),
    #[error("instance {0} is not registered")]
    NotRegistered(InstanceId),
    #[error("instance {0} is overloaded")]
    Overloaded(InstanceId),
    #[error("engine failed: {0}")]
    Engine(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The worker went away mid-request (process died, connection broke, worker stopped).
    #[error("lost the worker: {0}")]
    Disconnected(String),
    #[error("invalid address {0}")]
    InvalidAddress(String),
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("NATS: {0}")]
    Nats(String),
}

impl RuntimeError {
    /// Whether the request may be sent again to another worker: the failure was the worker's or
    /// the link's, not the request's.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RuntimeError::Unreachable(_)
                | RuntimeError::Overloaded(_)
                | RuntimeError::Disconnected(_)
        )
    }
}
