//! The runtime every Turbine process stands on: discovery (who serves what, where), the request
//! plane (how a frontend streams a request to a worker), and graceful shutdown. Each has an
//! embedded, in-process implementation; networked ones (etcd, TCP) implement the same traits.

pub mod discovery;
pub mod error;
pub mod event_plane;
pub mod request_plane;
pub mod shutdown;
pub mod tcp_plane;

pub use discovery::{Discovery, EmbeddedDiscovery, Instances};
pub use error::RuntimeError;
pub use event_plane::{EmbeddedEventPlane, EventPlane};
pub use request_plane::{EmbeddedRequestPlane, EngineStream, Generate, RequestPlane};
pub use shutdown::shutdown_signal;
pub use tcp_plane::{TcpRequestPlane, serve_request_plane};
