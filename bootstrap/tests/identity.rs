//! The bootstrap node's promises to operators: a stable identity from a 0600 key file created on
//! first start, its full address (with /p2p/<peer id>) on stdout, metrics over HTTP, and no crash
//! when a peer sends garbage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the bootstrap node; returns it, its first address line, and its metrics address.
fn start(key: &Path) -> (Killed, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora-bootstrap"))
        .arg("--key-file")
        .arg(key)
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = Killed(child);
    let addr = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("metrics on http://") {
                let _ = tx.send(rest.trim_end_matches("/metrics").to_string());
            }
        }
    });
    let metrics = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    (child, addr, metrics)
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn stable_identity_address_metrics_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");

    let (first, addr1, metrics) = start(&key);
    assert!(addr1.starts_with("/ip4/127.0.0.1/tcp/"), "{addr1}");
    let peer1 = addr1.rsplit_once("/p2p/").unwrap().1.to_string();
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // Garbage on the libp2p port: the connection fails the handshake, the node goes on.
    let tcp = addr1.split('/').nth(4).unwrap().parse::<u16>().unwrap();
    for _ in 0..5 {
        let mut s = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
        let _ = s.write_all(&[0xff; 4096]);
    }
    let text = http_get(&metrics, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("libp2p"), "libp2p metrics missing");
    let status = http_get(&metrics, "/api/status");
    assert!(status.contains(&peer1), "{status}");
    drop(first);

    // Restarted on the same key file: the same peer id.
    let (_second, addr2, _) = start(&key);
    let peer2 = addr2.rsplit_once("/p2p/").unwrap().1.to_string();
    assert_eq!(peer1, peer2);

    // A key file of the wrong size is refused, not replaced.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, b"short").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agora-bootstrap"))
        .arg("--key-file")
        .arg(&bad)
        .args(["--metrics", "off", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("32 bytes"));
    assert_eq!(std::fs::read(&bad).unwrap(), b"short");
}
