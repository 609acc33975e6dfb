//! The Agora bootstrap node. The overlay issue gives it its DHT server, relay and metrics.

fn main() {
    eprintln!("agora-bootstrap: not built yet; the overlay issue adds it");
    std::process::exit(1);
}
