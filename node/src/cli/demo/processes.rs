//! The demo's child processes: started with piped output, their lines relayed with a name so the
//! user sees models load, and every one stopped (SIGTERM, then kill) when the demo ends, however it
//! ends.

use anyhow::{Context, anyhow};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One child and the lines it prints on stdout.
#[derive(Debug)]
pub struct Proc {
    /// Its name in the demo's output.
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts `program args` with `env` added to the environment, relaying stderr lines
    /// (prefixed) when `show_stderr`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        show_stderr: bool,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let (tx, lines) = mpsc::channel();
        relay(stdout, None, Some(tx.clone()));
        relay(stderr, show_stderr.then(|| name.to_string()), Some(tx));
        Ok(Self {
            name: name.to_string(),
            child,
            lines,
        })
    }

    /// Waits for a line for which `pick` returns something; `show` prints each line seen meanwhile.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        deadline: Duration,
        show: bool,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => {
                    if show {
                        println!("   [{}] {line}", self.name);
                    }
                    if let Some(found) = pick(&line) {
                        return Ok(found);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(anyhow!(
                        "{} did not report {what} within {deadline:?}",
                        self.name
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    return Err(anyhow!(
                        "{} exited before reporting {what} ({})",
                        self.name,
                        status.map(|s| s.to_string()).unwrap_or_default()
                    ));
                }
            }
        }
    }

    /// Asks the child to stop (SIGTERM) and waits up to `grace`, then kills it.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Forwards a stream's lines to `tx`, printing them prefixed when named. Keeps draining after the
/// receiver is gone so the child never blocks on a full pipe.
fn relay(
    stream: impl Read + Send + 'static,
    echo: Option<String>,
    tx: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut tx = tx;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(name) = &echo {
                eprintln!("   [{name}] {line}");
            }
            if let Some(sender) = &tx
                && sender.send(line).is_err()
            {
                tx = None;
            }
        }
    });
}
