//! The query protocol over real TCP sockets on 127.0.0.1: provider discovery by gossip and by DHT,
//! direct queries, the open call (announce, offers, award, payload), and refusals that say why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use agora_overlay::{Config, OverlayError};
use agora_protocols::{QueryErrorKind, SecretKey, Signed, Task};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_open_queries() {
    let boot = start(Config::loopback());
    let boot_addr = full_addr(&boot).await;
    let joined = |offers| Config {
        bootstrap: vec![boot_addr.clone()],
        offers,
        ..Config::loopback()
    };
    let dear = start(joined(vec![offer(7)]));
    let cheap = start(joined(vec![offer(3)]));
    let client = start(joined(vec![]));

    // Both providers appear in the client's table from gossip, and in the DHT.
    wait_for("both adverts", || async {
        let rows = client
            .client
            .providers(Some(Task::Embed), None)
            .await
            .ok()?;
        (rows.len() == 2).then_some(())
    })
    .await;
    wait_for("both provider records", || async {
        let peers = client
            .client
            .dht_providers(1, Task::Embed, MODEL.to_string())
            .await
            .ok()?;
        (peers.contains(&dear.client.peer_id()) && peers.contains(&cheap.client.peer_id()))
            .then_some(())
    })
    .await;

    // Direct mode.
    let input = b"direct".to_vec();
    let answer = client
        .client
        .query(dear.client.peer_id(), request(&client.key, &input, 10))
        .await
        .unwrap();
    assert_eq!(answer.output, blake3::hash(&input).as_bytes().to_vec());
    assert_eq!(answer.receipt.body().price, 7);

    // Settlement: the countersigned receipt goes back to its provider, once new, then known.
    let receipt = answer.receipt.clone().countersign(&client.key).unwrap();
    assert!(
        client
            .client
            .settle(dear.client.peer_id(), receipt.clone())
            .await
            .unwrap()
    );
    assert!(
        !client
            .client
            .settle(dear.client.peer_id(), receipt.clone())
            .await
            .unwrap()
    );
    // Sent to a peer that is not its provider, it is refused before the application sees it.
    let err = client
        .client
        .settle(cheap.client.peer_id(), receipt)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OverlayError::Refused(e) if e.kind == QueryErrorKind::BadInput),
        "{err}"
    );

    // Open mode: the cheaper offer wins.
    let input = b"open call".to_vec();
    let req = request(&client.key, &input, 10);
    let ann = announcement(&client.key, &req);
    let (winner, answer) = client.client.open_query(ann, req).await.unwrap();
    assert_eq!(winner, cheap.client.peer_id());
    assert_eq!(answer.output, blake3::hash(&input).as_bytes().to_vec());

    // Over budget: nobody offers below 2.
    let req = request(&client.key, b"too cheap", 2);
    let ann = announcement(&client.key, &req);
    assert!(matches!(
        client.client.open_query(ann, req).await,
        Err(OverlayError::NoOffers(_))
    ));

    // A request signed by a key other than the sending peer's is refused as a bad signature.
    let stranger = SecretKey::generate();
    let err = client
        .client
        .query(dear.client.peer_id(), request(&stranger, b"x", 10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OverlayError::Refused(e) if e.kind == QueryErrorKind::BadSignature),
        "{err}"
    );

    // An expired request says so.
    let mut value = request(&client.key, b"late", 10).into_value();
    value.deadline_ms = value.sent_at_ms;
    value.sent_at_ms -= 1000;
    value.deadline_ms -= 500;
    let late = Signed::sign(value, &client.key).unwrap();
    let err = client
        .client
        .query(dear.client.peer_id(), late)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OverlayError::Refused(e) if e.kind == QueryErrorKind::Expired),
        "{err}"
    );

    // A peer that serves nothing refuses with a reason.
    let err = client
        .client
        .query(boot.client.peer_id(), request(&client.key, b"x", 10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OverlayError::Refused(e) if e.kind == QueryErrorKind::UnknownModel),
        "{err}"
    );
}
