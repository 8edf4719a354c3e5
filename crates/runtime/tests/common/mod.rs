//! Real etcd and nats-server processes on free loopback ports, each in its own temporary
//! directory, killed when dropped. The binaries come from `scripts/infra.sh install`.

#![allow(dead_code)] // each test file uses a different part of this module

use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A binary named by `env`, else `$TURBINE_CACHE/bin/NAME`; panics with the fix when missing.
fn binary(env: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("TURBINE_CACHE").map_or_else(
            || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/turbine"),
            PathBuf::from,
        );
        cache.join("bin").join(name)
    });
    assert!(
        path.is_file(),
        "{name} not found at {}: run scripts/infra.sh install (or set {env})",
        path.display()
    );
    path
}

/// A port nothing listens on now (the servers cannot take port 0 and report theirs).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A fresh directory under the system's temp dir, removed by [`Service`]'s drop.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "turbine-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A server process that can be killed and started again with the same ports and directory.
pub struct Service {
    command: fn(&Service) -> Command,
    child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
    peer_port: u16,
}

impl Service {
    /// etcd with its data in a temp dir; wait for it with [`eventually`].
    pub fn etcd() -> Service {
        Service::start(|service| {
            let client = format!("http://127.0.0.1:{}", service.port);
            let peer = format!("http://127.0.0.1:{}", service.peer_port);
            let mut command = Command::new(binary("TURBINE_ETCD_BIN", "etcd"));
            command
                .args(["--name", "test", "--data-dir"])
                .arg(service.dir.join("data"))
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                ])
                .args(["--initial-cluster", &format!("test={peer}")])
                // These disks can take a second per sync; a test cluster needs no durability.
                .arg("--unsafe-no-fsync");
            command
        })
    }

    pub fn nats() -> Service {
        Service::start(|service| {
            let mut command = Command::new(binary("TURBINE_NATS_BIN", "nats-server"));
            command.args(["-a", "127.0.0.1", "-p", &service.port.to_string()]);
            command
        })
    }

    fn start(command: fn(&Service) -> Command) -> Service {
        let mut service = Service {
            command,
            child: None,
            dir: temp_dir("service"),
            port: free_port(),
            peer_port: free_port(),
        };
        service.restart();
        service
    }

    /// Starts the process (again), its output appended to `DIR/log`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .expect("open the log");
        let child = (self.command)(self)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn the server");
        self.child = Some(child);
    }

    /// `kill -9` and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `attempt` every 50 ms until it gives `Some`, panicking with `what` after `deadline`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    deadline: Duration,
    mut attempt: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
