use turbine_protocols::InstanceId;

#[derive(Debug, Clone, thiserror::Error)]
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
    #[error("invalid address {0}")]
    InvalidAddress(String),
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("NATS: {0}")]
    Nats(String),
}
