//! A one-line progress bar on stderr, redrawn with `\r`; silent when stderr is not a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const WIDTH: usize = 30;

pub struct Progress {
    done: Arc<AtomicUsize>,
    errors: Arc<AtomicUsize>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(total: usize, enabled: bool) -> Self {
        let done = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(AtomicUsize::new(0));
        let ticker = (enabled && std::io::stderr().is_terminal()).then(|| {
            let (done, errors) = (done.clone(), errors.clone());
            tokio::spawn(async move {
                let start = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    let n = done.load(Ordering::Relaxed);
                    let filled = (n * WIDTH).checked_div(total).unwrap_or(WIDTH);
                    let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-3);
                    eprint!(
                        "\r[{}{}] {n}/{total}, {} errors, {rate:.1} req/s ",
                        "#".repeat(filled),
                        ".".repeat(WIDTH - filled),
                        errors.load(Ordering::Relaxed)
                    );
                    let _ = std::io::stderr().flush();
                }
            })
        });
        Self {
            done,
            errors,
            ticker,
        }
    }

    pub fn completed(&self, failed: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops redrawing and clears the line.
    pub fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
            eprint!("\r{}\r", " ".repeat(WIDTH + 50));
        }
    }
}
