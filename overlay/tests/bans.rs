//! How a node treats peers by their conduct, over real sockets: a peer that keeps sending forged
//! queries (signed by a key that is not its own) is banned after the configured number of strikes,
//! cannot reach the node while the ban lasts, and is let in again when it expires, while an honest
//! peer is served throughout; and a peer's consensus reputation becomes its gossipsub application
//! score.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use agora_overlay::{BanConfig, Config, OverlayError};
use agora_protocols::{QueryErrorKind, SecretKey};
use common::{DEADLINE, full_addr, offer, request, start, wait_for};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forging_peer_is_banned_until_its_ban_expires() {
    let mut provider_config = Config::loopback();
    provider_config.offers = vec![offer(5)];
    provider_config.bans = BanConfig {
        strikes: 3,
        first: Duration::from_secs(3),
        ..BanConfig::default()
    };
    let provider = start(provider_config);
    let forger = start(Config::loopback());
    let honest = start(Config::loopback());
    let addr = full_addr(&provider).await;
    let provider_peer = provider.client.peer_id();
    forger.client.dial(addr.clone()).await.unwrap();
    honest.client.dial(addr.clone()).await.unwrap();

    // Forged: signed by a key that is not the sending peer's. Each is refused as a bad signature
    // (a strike); the third earns the ban, which closes the connection before its refusal leaves.
    let stranger = SecretKey::generate();
    for n in 0..3 {
        let forged = request(&stranger, format!("forged {n}").as_bytes(), 10);
        match forger.client.query(provider_peer, forged).await {
            Err(OverlayError::Refused(e)) if n < 2 => {
                assert_eq!(e.kind, QueryErrorKind::BadSignature)
            }
            Err(e) if n == 2 => assert!(!matches!(e, OverlayError::Refused(_)), "{e:?}"),
            other => panic!("forged query {n}: {other:?}"),
        }
    }
    let status = provider.client.status().await.unwrap();
    assert_eq!(status.banned, vec![forger.client.peer_id().to_string()]);

    // Banned: not even a refusal comes back, the connection is refused.
    let forged = request(&stranger, b"while banned", 10);
    match forger.client.query(provider_peer, forged).await {
        Err(OverlayError::Refused(e)) => panic!("a banned peer was answered: {e:?}"),
        Err(_) => {}
        Ok(_) => panic!("a banned peer was served"),
    }
    // The honest peer is served meanwhile.
    let asked = request(&honest.key, b"honest", 10);
    honest
        .client
        .query(provider_peer, asked)
        .await
        .expect("the honest peer is answered");

    // The ban expires: the forger reaches the node again (and is refused for its forgery, not
    // shut out).
    let banned_at = Instant::now();
    wait_for("the ban to expire", || async {
        let status = provider.client.status().await.ok()?;
        status.banned.is_empty().then_some(())
    })
    .await;
    assert!(banned_at.elapsed() < DEADLINE);
    let end = Instant::now() + DEADLINE;
    loop {
        let _ = forger.client.dial(addr.clone()).await;
        let forged = request(&stranger, b"after the ban", 10);
        match forger.client.query(provider_peer, forged).await {
            Err(OverlayError::Refused(e)) => {
                assert_eq!(e.kind, QueryErrorKind::BadSignature);
                break;
            }
            other => assert!(Instant::now() < end, "still shut out: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Consensus reputation reaches gossip: a peer given reputation 1 gets gossipsub's application
/// score (weight 10) on top of what it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reputation_becomes_the_gossip_application_score() {
    let node = start(Config::loopback());
    let reputable = start(Config::loopback());
    let other = start(Config::loopback());
    let addr = full_addr(&node).await;
    reputable.client.dial(addr.clone()).await.unwrap();
    other.client.dial(addr).await.unwrap();
    let score_of = |peer: agora_overlay::PeerId| {
        let client = node.client.clone();
        async move {
            let rows = client.peers().await.ok()?;
            rows.into_iter()
                .find(|r| r.peer == peer.to_string() && r.connected)?
                .gossip_score
        }
    };
    let before = wait_for("a gossip score for the peer", || {
        score_of(reputable.client.peer_id())
    })
    .await;
    assert!(before < 5.0, "{before}");
    node.client
        .set_reputation(vec![(reputable.client.peer_id(), 1.0)])
        .await
        .unwrap();
    let after = wait_for("the application score", || async {
        let score = score_of(reputable.client.peer_id()).await?;
        (score >= 5.0).then_some(score)
    })
    .await;
    let unrated = score_of(other.client.peer_id()).await.unwrap_or(0.0);
    assert!(
        after > unrated + 5.0,
        "reputable {after}, unrated {unrated}"
    );
}
