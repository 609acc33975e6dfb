//! Network namespaces for the tests that need more than one host: made with iproute2 (and
//! iptables for NAT), each command checked, every namespace deleted when the test ends, pass or
//! fail. Needs root (CI runs as root).

use super::DEADLINE;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `program args`, returning its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip ARGS` (iproute2).
pub fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// Runs `ARGS` inside namespace `ns`.
pub fn exec(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    ip(&all)
}

/// Whether the test runs as root; the namespace tests say why they skip when not.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The test's namespaces; deleted on drop (which also deletes their veth pairs and bridges).
pub struct Namespaces(pub Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

impl Namespaces {
    /// Makes one namespace per name, `agora-<test>-<pid>-<name>`, each with its loopback up.
    pub fn make(test: &str, names: &[&str]) -> Result<Self, String> {
        let pid = std::process::id();
        let mut made = Namespaces(Vec::new());
        for name in names {
            let ns = format!("agora-{test}-{pid}-{name}");
            ip(&["netns", "add", &ns])?;
            made.0.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(made)
    }

    /// The full name of the `index`-th namespace.
    pub fn name(&self, index: usize) -> &str {
        &self.0[index]
    }
}

/// `ip netns exec NS PROGRAM ARGS`, as arguments for `ip`.
pub fn in_ns(ns: &str, program: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "netns".to_string(),
        "exec".to_string(),
        ns.to_string(),
        program.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

/// An HTTP/1.0 request from inside namespace `ns` to `addr` (a server bound to the namespace's
/// own loopback), through bash's `/dev/tcp`: the whole response (head and body), or None when
/// nothing answered.
pub fn http(ns: &str, addr: &str, request: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let script =
        format!("exec 3<>/dev/tcp/{host}/{port} && printf '%s' \"$REQUEST\" >&3 && cat <&3");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "bash", "-c", &script])
        .env("REQUEST", request)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// Polls `check` (None: done; Some: what is still missing) until done or the deadline; returns how
/// long it took.
pub fn wait_until(what: &str, mut check: impl FnMut() -> Option<String>) -> Duration {
    let start = Instant::now();
    loop {
        match check() {
            None => {
                let took = start.elapsed();
                eprintln!("{what}: after {:.1} s", took.as_secs_f64());
                return took;
            }
            Some(missing) => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "timed out waiting for {what}: {missing}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
