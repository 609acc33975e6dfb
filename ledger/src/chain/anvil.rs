//! A local anvil (Foundry's development chain, from the npm registry via `scripts/setup-tools`)
//! on a loopback port: the chain `agora demo` and the tests run the ledger on.
//!
//! Its chain is kept in a state file, so a stop (SIGTERM: anvil writes the file on the way out)
//! and a start on the same port bring the same chain back: how the tests take the RPC away and
//! return it.

use super::ChainError;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// anvil's well-known development keys, its ten funded accounts (public knowledge: never for real
/// funds).
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// anvil's chain id.
pub const ANVIL_CHAIN_ID: u64 = 31337;

/// Where `scripts/setup-tools` puts anvil: `$AGORA_ANVIL`, else under the Agora cache.
pub fn default_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AGORA_ANVIL") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var_os("AGORA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/agora")))?;
    Some(cache.join("tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"))
}

/// How long anvil gets to answer its first call.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads anvil's standard output on a thread of its own: the port from its `Listening on
/// 127.0.0.1:PORT` line goes to the returned channel, and the rest (a line per RPC call) is read
/// to the end and dropped, so anvil never blocks on a full pipe or writes into a closed one.
fn read_port(stdout: std::process::ChildStdout) -> std::io::Result<std::sync::mpsc::Receiver<u16>> {
    use std::io::{BufRead, Read};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("anvil-stdout".into())
        .spawn(move || {
            let mut out = std::io::BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                // Lines are short; a longer one is read in pieces, which no port line is.
                match (&mut out).take(4096).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line);
                if let Some(port) = text
                    .trim()
                    .strip_prefix("Listening on 127.0.0.1:")
                    .and_then(|p| p.parse().ok())
                {
                    let _ = tx.send(port);
                }
            }
        })?;
    Ok(rx)
}

/// Whether something on `port` answers `eth_chainId` with anvil's chain id: one blocking HTTP/1.1
/// exchange, so the check needs no runtime and works before any client is built.
fn answers_chain_id(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    // Bounded: an answer to eth_chainId is a few hundred bytes.
    if (&mut stream)
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .is_err()
    {
        return false;
    }
    let answer = String::from_utf8_lossy(&answer);
    answer.starts_with("HTTP/1.1 200") && answer.contains(&format!("{ANVIL_CHAIN_ID:#x}"))
}

/// A running anvil.
#[derive(Debug)]
pub struct Anvil {
    binary: PathBuf,
    port: u16,
    state: PathBuf,
    block_time: Option<Duration>,
    child: Option<Child>,
}

impl Anvil {
    /// Starts anvil on a free loopback port, keeping its chain in `dir/anvil-state.json`, mining
    /// a block every `block_time` (fractions of a second allowed), or only on transactions with
    /// `None`.
    pub fn start(
        binary: &Path,
        dir: &Path,
        block_time: Option<Duration>,
    ) -> Result<Self, ChainError> {
        if !binary.exists() {
            return Err(ChainError::Io {
                path: binary.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "anvil is not installed: run scripts/setup-tools",
                ),
            });
        }
        let mut anvil = Self {
            binary: binary.to_path_buf(),
            // Port 0: anvil binds a port the OS picks and says which, so no other process can
            // take it between our choice and anvil's bind.
            port: 0,
            state: dir.join("anvil-state.json"),
            block_time,
            child: None,
        };
        anvil.resume()?;
        Ok(anvil)
    }

    /// Its RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it again (after [`Anvil::stop`]) on the same port with the same chain.
    pub fn resume(&mut self) -> Result<(), ChainError> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--state")
            .arg(&self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(interval) = self.block_time {
            cmd.args(["--block-time", &interval.as_secs_f64().to_string()]);
        }
        let mut child = cmd.spawn().map_err(|source| ChainError::Io {
            path: self.binary.clone(),
            source,
        })?;
        let port = match child.stdout.take().map(read_port).transpose() {
            Ok(port) => port,
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ChainError::Io {
                    path: self.binary.clone(),
                    source,
                });
            }
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut port_known = false;
        // Ready means anvil has said where it listens and answers a JSON-RPC call there: it
        // listens a moment before it serves.
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(ChainError::Rpc {
                    url: self.url(),
                    reason: format!("anvil exited before it answered ({status})"),
                });
            }
            if !port_known && let Some(Ok(p)) = port.as_ref().map(|rx| rx.try_recv()) {
                self.port = p;
                port_known = true;
            }
            if port_known && answers_chain_id(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(ChainError::Rpc {
                    url: self.url(),
                    reason: format!(
                        "anvil did not answer eth_chainId in {} s",
                        START_TIMEOUT.as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it as an operator would (SIGTERM, so it saves its chain) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Mines `blocks` empty blocks at once (`anvil_mine`).
    pub async fn mine(&self, blocks: u64) -> Result<(), ChainError> {
        self.request("anvil_mine", serde_json::json!([format!("{blocks:#x}")]))
            .await
            .map(|_| ())
    }

    /// Any JSON-RPC request (anvil's `anvil_*` methods among them).
    pub async fn request(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, ChainError> {
        use alloy::providers::{Provider, ProviderBuilder};
        let url = self.url();
        let parsed = url.parse().map_err(|e| ChainError::BadUrl {
            url: url.clone(),
            reason: format!("{e}"),
        })?;
        let provider = ProviderBuilder::new().connect_http(parsed);
        provider
            .raw_request::<_, serde_json::Value>(method.to_string().into(), params)
            .await
            .map_err(|e| ChainError::Rpc {
                url,
                reason: e.to_string(),
            })
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
