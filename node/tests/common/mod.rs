//! Helpers for the node crate's process tests: the bootstrap binary, child processes killed on drop,
//! their output lines as channels, and the venv python for the gateway's Python tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod netns;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One generous deadline for each wait: a loaded 2-core machine builds other things meanwhile.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// A child process whose stdout lines arrive on a channel; killed on drop, pass or fail.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts `program args` with stderr echoed, prefixed, to the test's stderr.
    pub fn start(name: &str, program: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        let lines = lines(child.stdout.take().unwrap(), None);
        let errors = lines_of(child.stderr.take().unwrap(), Some(name.to_string()));
        drop(errors);
        Proc {
            name: name.to_string(),
            child,
            lines,
        }
    }

    /// The next stdout line for which `pick` gives something.
    pub fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{} never printed {what}", self.name));
            if let Some(found) = pick(&line) {
                return found;
            }
        }
    }

    /// Sends a signal by name (`STOP`, `KILL`, `TERM`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// Stops it with SIGTERM and waits for it to exit (so its files are released).
    pub fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal("TERM");
        let end = Instant::now() + Duration::from_secs(30);
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards a child's output lines to a channel, echoing them (prefixed) when named.
pub fn lines(stream: impl Read + Send + 'static, echo: Option<String>) -> mpsc::Receiver<String> {
    lines_of(stream, echo)
}

fn lines_of(stream: impl Read + Send + 'static, echo: Option<String>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(name) = &echo {
                eprintln!("[{name}] {line}");
            }
            // Keep draining after the receiver is gone so the child never blocks on a full pipe.
            let _ = tx.send(line);
        }
    });
    rx
}

/// The bootstrap binary sits next to the agora binary in the same target directory. It is built
/// here (a no-op when up to date) so that `cargo test -p agora` alone is enough.
pub fn bootstrap_binary() -> PathBuf {
    let agora = PathBuf::from(env!("CARGO_BIN_EXE_agora"));
    let dir = agora.parent().unwrap().to_path_buf();
    let path = dir.join("agora-bootstrap");
    if !path.exists() {
        let target_dir = dir.parent().unwrap();
        let profile = dir.file_name().unwrap().to_string_lossy().to_string();
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args(["build", "-p", "agora-bootstrap"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile == "release" {
            cmd.arg("--release");
        }
        // `cargo test --workspace` builds it before any test runs; `cargo test -p agora` does not.
        // A nested cargo may wait on the outer one's lock, so give it a bounded time.
        let mut child = cmd.spawn().expect("cargo runs");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(900) {
                let _ = child.kill();
                panic!(
                    "building agora-bootstrap took too long: run `cargo build -p agora-bootstrap` first"
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        assert!(status.success(), "building agora-bootstrap failed");
    }
    assert!(path.exists(), "no agora-bootstrap at {}", path.display());
    path
}

/// Starts a loopback bootstrap node; returns it and its full address.
pub fn start_bootstrap(dir: &Path) -> (Proc, String) {
    let key = dir.join("bootstrap.key");
    let boot = Proc::start(
        "bootstrap",
        &bootstrap_binary(),
        &[
            "--key-file",
            key.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
            "--loopback",
        ],
    );
    let addr = boot.wait_for("its address", |l| {
        l.contains("/p2p/").then(|| l.trim().to_string())
    });
    (boot, addr)
}

/// The venv python with the pinned `openai` client (scripts/setup-python makes it when missing and
/// prints its path).
pub fn venv_python() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-python");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/setup-python runs");
    assert!(out.status.success(), "scripts/setup-python failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// ---- helpers of the reliability tests (crash, churn, flood) --------------------------------------

/// A loopback TCP port that was free a moment ago (bound, then released), so a miner can be
/// restarted on the same address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The coldkey password of every test wallet.
pub const COLD_PW: &str = "cold password for tests";

/// Creates wallet `name` under `wallets` with a hotkey stored in plaintext (and a fast KDF for the
/// coldkey), so `agora serve --wallet-path wallets --wallet name` starts with no prompt and keeps
/// its peer id across restarts. Returns the coldkey's and the hotkey's public keys in hex.
pub fn new_wallet(wallets: &Path, name: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "wallet",
            "new",
            "--name",
            name,
            "--password-env",
            "COLD_PW",
            "--no-hotkey-password",
            "--insecure-fast-kdf",
            "--json",
        ])
        .env("AGORA_WALLET_PATH", wallets)
        .env("COLD_PW", COLD_PW)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agora wallet new {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cold = v["coldkey"]["public_key"]
        .as_str()
        .or_else(|| v["coldkey"]["public"].as_str())
        .unwrap_or_else(|| panic!("no coldkey in {v}"))
        .to_string();
    let hot = v["hotkeys"][0]["public_key"]
        .as_str()
        .or_else(|| v["hotkey"]["public_key"].as_str())
        .or_else(|| v["hotkey"]["public"].as_str())
        .unwrap_or_else(|| panic!("no hotkey in {v}"))
        .to_string();
    (cold, hot)
}

/// Runs `agora ARGS` with the wallets (`DIR/wallets`), the ledger log and genesis
/// (`DIR/ledger.log`, `DIR/genesis.json`) under `dir`, and the coldkey password in `COLD_PW`.
pub fn agora_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(args)
        .env("AGORA_WALLET_PATH", dir.join("wallets"))
        .env("AGORA_LEDGER_LOG", dir.join("ledger.log"))
        .env("AGORA_LEDGER_GENESIS", dir.join("genesis.json"))
        .env("COLD_PW", COLD_PW)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// [`agora_in`] that must succeed; returns its stdout.
pub fn agora_ok(dir: &Path, args: &[&str]) -> String {
    let out = agora_in(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "agora {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A running `agora serve`: its process, peer id and full listen address.
pub struct Served {
    pub proc: Proc,
    pub peer: agora_overlay::PeerId,
    pub listen: agora_overlay::Multiaddr,
    /// The `--http` address it printed, when started with one.
    pub http: Option<String>,
}

/// Starts `agora serve --loopback` for wallet `name` (made by [`new_wallet`]) on `port`, storing
/// receipts in `receipts`, with `extra` flags (models, prices, bootstrap); waits for `ready`.
pub fn start_serve(
    name: &str,
    wallets: &Path,
    receipts: &Path,
    port: u16,
    extra: &[&str],
) -> Served {
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut args = vec![
        "serve",
        "--wallet-path",
        wallets.to_str().unwrap(),
        "--wallet",
        name,
        "--loopback",
        "--listen",
        &listen,
        "--receipts",
        receipts.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let proc = Proc::start(name, Path::new(env!("CARGO_BIN_EXE_agora")), &args);
    let mut peer = None;
    let mut addr = None;
    let mut http = None;
    proc.wait_for("ready", |l| {
        let l = l.trim();
        if let Some(h) = l.strip_prefix("http ") {
            http = Some(h.to_string());
        } else if let Some(p) = l.strip_prefix("peer ") {
            peer = Some(p.parse().unwrap());
        } else if let Some(a) = l.strip_prefix("listen ") {
            addr.get_or_insert_with(|| a.parse().unwrap());
        }
        (l == "ready").then_some(())
    });
    Served {
        proc,
        peer: peer.expect("a peer line"),
        listen: addr.expect("a listen line"),
        http,
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` in /proc/PID/status); `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A small deterministic generator (xorshift64*) for random delays and choices that a failing run
/// can repeat: the tests print their seed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `AGORA_TEST_SEED` if set, else from the clock.
    pub fn from_env() -> Rng {
        let seed = std::env::var("AGORA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("random seed {seed} (AGORA_TEST_SEED={seed} repeats this run)");
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A duration uniform in `lo..hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo).max(1)))
    }
}

/// Dials `addr` until the overlay reports a connection to `peer` (one generous deadline).
pub async fn connect_to(
    client: &agora_overlay::Client,
    peer: agora_overlay::PeerId,
    addr: &agora_overlay::Multiaddr,
) {
    let end = Instant::now() + DEADLINE;
    loop {
        let peers = client.peers().await.unwrap();
        if peers
            .iter()
            .any(|p| p.peer == peer.to_string() && p.connected)
        {
            return;
        }
        assert!(Instant::now() < end, "never connected to the provider");
        let _ = client.dial(addr.clone()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- helpers of the operators' kit tests (metrics, status page) ----------------------------------

/// Starts a loopback bootstrap node serving `/metrics` on `127.0.0.1:metrics_port`; returns it
/// and its full address.
pub fn start_bootstrap_with_metrics(dir: &Path, metrics_port: u16) -> (Proc, String) {
    let key = dir.join("bootstrap.key");
    let metrics = format!("127.0.0.1:{metrics_port}");
    let boot = Proc::start(
        "bootstrap",
        &bootstrap_binary(),
        &[
            "--key-file",
            key.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            &metrics,
            "--loopback",
        ],
    );
    let addr = boot.wait_for("its address", |l| {
        l.contains("/p2p/").then(|| l.trim().to_string())
    });
    (boot, addr)
}

/// A plain HTTP/1.1 GET of `http://addr/path` with an `Accept` header: (status, content type,
/// body). Enough for our own servers (no TLS, no chunked bodies: axum sends a length).
pub fn http_get(addr: &str, path: &str, accept: &str) -> (u16, String, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// An outside program the tests drive (promtool, chromium): `$ENV` if set, else `name` on the
/// PATH; a missing one fails the test with the way to install it.
pub fn outside_tool(name: &str, env: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} is not installed: run `scripts/setup-tools` (it installs it from Debian), \
             or set {env} to its path"
        )
    })
}

/// A real receipt signed by `provider` for `client` on `subnet`: query `n` at `price`, the
/// provider's half (countersign it with the client's key for the full receipt).
pub fn signed_half(
    client: &agora_protocols::SecretKey,
    provider: &agora_protocols::SecretKey,
    subnet: u16,
    n: u64,
    price: u64,
) -> agora_protocols::ProviderReceipt {
    use agora_protocols::{ContentId, ReceiptBody, Task};
    let body = ReceiptBody {
        version: agora_protocols::receipt::RECEIPT_VERSION,
        query_id: ContentId::of_payload(&n.to_le_bytes()),
        subnet,
        task: Task::Embed,
        model: "all-minilm-l6-v2".to_string(),
        input_hash: ContentId::of_payload(b"input"),
        output_hash: ContentId::of_payload(b"output"),
        price,
        client: client.public(),
        provider: provider.public(),
        nonce: n,
        requested_at_ms: 1_700_000_000_000,
        answered_at_ms: 1_700_000_000_040,
    };
    agora_protocols::ProviderReceipt::sign(body, provider).unwrap()
}

/// A local ledger under `dir` (`DIR/genesis.json`, `DIR/ledger.log`, as [`agora_in`] uses them):
/// every coldkey of `wallets` (name, coldkey hex) funded, subnet 1 owned by the first, and each
/// wallet's hotkey registered on it by a signed transaction (`agora register`), in order, so the
/// i-th wallet has uid i.
pub fn ledger_with_registered_subnet(dir: &Path, wallets: &[(&str, &str)]) {
    let accounts: serde_json::Map<String, serde_json::Value> = wallets
        .iter()
        .map(|(_, cold)| (cold.to_string(), serde_json::json!(1_000_000_000_000u64)))
        .collect();
    let genesis = serde_json::json!({
        "accounts": accounts,
        "subnets": [{ "owner": wallets[0].1, "hyperparameters": { "tempo": 10 } }]
    });
    std::fs::write(dir.join("genesis.json"), genesis.to_string()).unwrap();
    for (name, _) in wallets {
        agora_ok(
            dir,
            &[
                "register",
                "--wallet",
                name,
                "--subnet",
                "1",
                "--password-env",
                "COLD_PW",
            ],
        );
    }
}

/// Runs `program args`, killing it if it outlives [`DEADLINE`]; returns its output.
pub fn run_bounded(program: &Path, args: &[String]) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()));
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        BufReader::new(stdout).read_to_end(&mut v).unwrap();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        BufReader::new(stderr).read_to_end(&mut v).unwrap();
        v
    });
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{} did not finish", program.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// `agora query --task embed` from the wallet `client` of `dir` on a loopback mesh joined through
/// `bootstrap`, keeping its receipts in `receipts`; `extra` flags follow. Must succeed; returns
/// stdout.
#[allow(dead_code)]
pub fn embed_query(
    dir: &Path,
    bootstrap: &str,
    receipts: &Path,
    input: &str,
    extra: &[&str],
) -> String {
    let out = try_embed_query(dir, bootstrap, receipts, input, extra);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "agora query {input:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// [`embed_query`] that may fail: its whole output.
#[allow(dead_code)]
pub fn try_embed_query(
    dir: &Path,
    bootstrap: &str,
    receipts: &Path,
    input: &str,
    extra: &[&str],
) -> std::process::Output {
    let receipts = receipts.to_str().unwrap();
    let mut args = vec![
        "query",
        "--wallet",
        "client",
        "--loopback",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bootstrap",
        bootstrap,
        "--receipts",
        receipts,
        "--task",
        "embed",
        "--input",
        input,
    ];
    args.extend_from_slice(extra);
    agora_in(dir, &args)
}
