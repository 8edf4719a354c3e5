//! Picks the discovery and event-plane implementations from the addresses a process is given:
//! none means the embedded, in-process ones; `etcd://HOST:PORT[,HOST:PORT…]` and
//! `nats://HOST:PORT[,HOST:PORT…]` the networked ones.

use crate::{
    Discovery, EmbeddedDiscovery, EmbeddedEventPlane, EtcdDiscovery, EventPlane, NatsEventPlane,
    RuntimeError,
};
use std::sync::Arc;

pub async fn connect_discovery(url: Option<&str>) -> Result<Arc<dyn Discovery>, RuntimeError> {
    Ok(match url {
        None => Arc::new(EmbeddedDiscovery::default()),
        Some(url) => Arc::new(EtcdDiscovery::connect(url).await?),
    })
}

pub async fn connect_events(url: Option<&str>) -> Result<Arc<dyn EventPlane>, RuntimeError> {
    Ok(match url {
        None => Arc::new(EmbeddedEventPlane::default()),
        Some(url) => Arc::new(NatsEventPlane::connect(url).await?),
    })
}

/// The `HOST:PORT` parts of `SCHEME://HOST:PORT[,HOST:PORT…]`.
pub(crate) fn host_ports<'a>(url: &'a str, scheme: &str) -> Result<Vec<&'a str>, RuntimeError> {
    let invalid =
        || RuntimeError::InvalidAddress(format!("{url:?}: expected {scheme}://HOST:PORT"));
    let rest = url
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        .ok_or_else(invalid)?;
    let hosts: Vec<&str> = rest.split(',').collect();
    let well_formed = |host: &&str| {
        host.rsplit_once(':')
            .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok())
    };
    if hosts.iter().all(well_formed) {
        Ok(hosts)
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_ports() {
        assert_eq!(
            host_ports("etcd://10.0.0.1:2379", "etcd").expect("valid"),
            ["10.0.0.1:2379"]
        );
        assert_eq!(
            host_ports("nats://a:4222,b:4223", "nats").expect("valid"),
            ["a:4222", "b:4223"]
        );
        for bad in [
            "http://a:2379",
            "etcd://a",
            "etcd://:2379",
            "etcd://a:port",
            "etcd://a:2379,",
            "etcd:/a:2379",
        ] {
            assert!(
                matches!(
                    host_ports(bad, "etcd"),
                    Err(RuntimeError::InvalidAddress(_))
                ),
                "{bad}"
            );
        }
    }
}
