//! Real etcd and nats-server processes on free loopback ports, each in its own temporary
//! directory, killed when dropped. The binaries come from `scripts/infra.sh install`.

#![allow(dead_code)] // each test file uses a different part of this module

use std::collections::BTreeSet;
use std::fs::File;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a server may take to listen, and how many times one is started before giving up.
const LISTEN: Duration = Duration::from_secs(30);
const STARTS: usize = 3;

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

/// Ports this process has handed out: the kernel may give a released port again, and two
/// servers of one test binary must never be told the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port nothing listens on now and this process has not handed out before (the servers
/// cannot take port 0 and report theirs).
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local address").port();
        if HANDED_OUT.lock().expect("ports").insert(port) {
            return port;
        }
    }
    panic!("no free loopback port in 1000 tries");
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

    /// Starts a server on fresh ports; when it exits before listening (a port taken meanwhile
    /// by another process), tries again on other ports in a fresh directory (etcd keeps its
    /// peer address in its data).
    fn start(command: fn(&Service) -> Command) -> Service {
        let mut service = Service {
            command,
            child: None,
            dir: temp_dir("service"),
            port: free_port(),
            peer_port: free_port(),
        };
        service.listen_within_tries("start", |s| {
            let _ = std::fs::remove_dir_all(&s.dir);
            s.dir = temp_dir("service");
            s.port = free_port();
            s.peer_port = free_port();
        });
        service
    }

    /// Starts the process again on the same ports and directory, once it listens; a port can be
    /// briefly held by someone else, so it tries a few times before panicking with the log.
    pub fn restart(&mut self) {
        self.listen_within_tries("restart", |_| {
            std::thread::sleep(Duration::from_millis(500))
        });
    }

    /// Up to [`STARTS`] tries of [`Service::spawn_and_listen`], `after_failure` between them;
    /// panics with every try's failure.
    fn listen_within_tries(&mut self, what: &str, after_failure: impl Fn(&mut Service)) {
        let mut failures = Vec::new();
        for _ in 0..STARTS {
            match self.spawn_and_listen() {
                Ok(()) => return,
                Err(why) => failures.push(why),
            }
            after_failure(self);
        }
        panic!("the server did not {what}: {}", failures.join("\n"));
    }

    /// Spawns the process, its output appended to `DIR/log`, and waits until its port accepts
    /// connections; on failure the process is gone and the error carries the log's end.
    fn spawn_and_listen(&mut self) -> Result<(), String> {
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
        let outcome = self.wait_listening();
        if outcome.is_err() {
            self.kill();
        }
        outcome.map_err(|why| format!("{why}; its log ends:\n{}", self.log_tail()))
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let start = Instant::now();
        while start.elapsed() < LISTEN {
            let child = self.child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().expect("poll the server") {
                return Err(format!("port {}: it exited ({status})", self.port));
            }
            if let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
                // With nothing listening, a connection from the same ephemeral port meets itself.
                if stream.local_addr().map(|own| own.port()).ok() != Some(self.port) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "port {}: not listening within {LISTEN:?}",
            self.port
        ))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
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
