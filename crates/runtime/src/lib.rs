//! The runtime every Turbine process stands on: discovery (who serves what, where), the event
//! plane (KV events and load reports), the request plane (how a frontend streams a request to a
//! worker), and graceful shutdown. Each has an embedded, in-process implementation; networked
//! ones (etcd discovery, NATS events, TCP requests) implement the same traits.

mod connect;
pub mod discovery;
pub mod error;
pub mod etcd;
pub mod event_plane;
pub mod nats;
pub mod request_plane;
pub mod shutdown;
pub mod tcp_plane;

pub use connect::{connect_discovery, connect_events};
pub use discovery::{Discovery, EmbeddedDiscovery, Instances};
pub use error::RuntimeError;
pub use etcd::EtcdDiscovery;
pub use event_plane::{EmbeddedEventPlane, EventPlane};
pub use nats::NatsEventPlane;
pub use request_plane::{EmbeddedRequestPlane, EngineStream, Generate, RequestPlane};
pub use shutdown::shutdown_signal;
pub use tcp_plane::{TcpRequestPlane, serve_request_plane};
