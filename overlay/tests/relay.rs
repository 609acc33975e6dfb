//! A provider with no listener of its own, reachable only through a relay, answers a query.
//! Real TCP sockets on 127.0.0.1, three in-process nodes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use agora_overlay::{Config, RelayMode, RelayServerLimits};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_provider_answers_a_query() {
    // The relay: a bootstrap-style node.
    let relay = start(Config {
        relay_server: Some(RelayServerLimits::default()),
        ..Config::loopback()
    });
    let relay_addr = full_addr(&relay).await;

    // The provider: listens nowhere, reserves a slot on the relay from the start.
    let provider = start(Config {
        listen: vec![],
        bootstrap: vec![relay_addr.clone()],
        relay: RelayMode::Always,
        offers: vec![offer(5)],
        ..Config::loopback()
    });
    let circuit = wait_for("a relay reservation", || async {
        let s = provider.client.status().await.ok()?;
        s.external_addrs
            .into_iter()
            .find(|a| a.contains("p2p-circuit"))
    })
    .await;
    let status = provider.client.status().await.unwrap();
    assert!(
        status
            .listen_addrs
            .iter()
            .all(|a| a.contains("p2p-circuit")),
        "the provider must have no direct listener: {:?}",
        status.listen_addrs
    );
    assert_eq!(status.relays, vec![relay.client.peer_id().to_string()]);

    // The client learns of the provider from its advert (relay-only, with the circuit address).
    let client = start(Config {
        bootstrap: vec![relay_addr],
        ..Config::loopback()
    });
    let row = wait_for("the provider's advert", || async {
        let rows = client
            .client
            .providers(Some(agora_protocols::Task::Embed), None)
            .await
            .ok()?;
        rows.into_iter()
            .find(|r| r.peer == provider.client.peer_id().to_string())
    })
    .await;
    assert_eq!(row.reachability, "relay");
    assert!(
        row.addrs
            .iter()
            .any(|a| a.contains(&circuit) || a.contains("p2p-circuit"))
    );

    let input = b"reach me through the relay".to_vec();
    let answer = client
        .client
        .query(provider.client.peer_id(), request(&client.key, &input, 10))
        .await
        .expect("the relayed provider answers");
    assert_eq!(answer.output, blake3::hash(&input).as_bytes().to_vec());
    assert_eq!(answer.receipt.body().price, 5);
    assert_eq!(answer.receipt.body().provider, provider.key.public());
}

/// `RelayMode::Auto`: a node that AutoNAT finds unreachable (it listens nowhere) takes a
/// reservation by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_node_reserves_by_itself() {
    let relay = start(Config {
        relay_server: Some(RelayServerLimits::default()),
        ..Config::loopback()
    });
    let relay_addr = full_addr(&relay).await;
    let private = start(Config {
        listen: vec![],
        bootstrap: vec![relay_addr],
        relay: RelayMode::Auto,
        ..Config::loopback()
    });
    wait_for(
        "AutoNAT to say private and a reservation to follow",
        || async {
            let s = private.client.status().await.ok()?;
            (s.nat == "private" && !s.relays.is_empty()).then_some(())
        },
    )
    .await;
}
