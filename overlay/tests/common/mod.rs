//! Helpers shared by the overlay's socket tests: start nodes on 127.0.0.1, poll with one generous
//! deadline, answer queries with a handler that computes something real (blake3 of the input).

#![allow(dead_code)]

use agora_overlay::{Client, Config, Event, Multiaddr, NodeStatus, SubnetOffer};
use agora_protocols::{
    ContentId, ModelOffer, QueryAnnouncement, QueryRequest, SecretKey, Signed, Task,
};
use std::time::{Duration, Instant};

/// The model name the test handler answers for.
pub const MODEL: &str = "blake3-test";
/// Overall deadline of any one wait: generous, because the machine is shared.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub struct TestNode {
    pub key: SecretKey,
    pub client: Client,
}

/// Starts a node; if it serves, it answers every query with blake3(input) at `price`.
pub fn start(config: Config) -> TestNode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let key = SecretKey::generate();
    let serves = !config.offers.is_empty();
    let price = config.offers.first().map(|o| o.offer.price).unwrap_or(0);
    let (client, mut events) = agora_overlay::spawn(&key, config, None).expect("node starts");
    let answer_key = key.clone();
    let answer_client = client.clone();
    tokio::spawn(async move {
        let mut settled = std::collections::HashSet::new();
        while let Some(event) = events.recv().await {
            let (reply, response) = match event {
                Event::InboundQuery { request, reply, .. } => {
                    let response = if serves {
                        let output = blake3::hash(&request.value().input).as_bytes().to_vec();
                        agora_overlay::answer(&answer_key, &request, output, price)
                    } else {
                        agora_overlay::error_response(
                            agora_protocols::QueryErrorKind::UnknownModel,
                            "not a provider",
                        )
                    };
                    (reply, response)
                }
                Event::InboundSettle { receipt, reply, .. } => {
                    let new = settled.insert(receipt.id());
                    (reply, agora_protocols::QueryWireResponse::Settled { new })
                }
            };
            let _ = answer_client.respond(reply, response).await;
        }
    });
    TestNode { key, client }
}

pub fn offer(price: u64) -> SubnetOffer {
    SubnetOffer {
        subnet: 1,
        offer: ModelOffer {
            task: Task::Embed,
            model: MODEL.to_string(),
            price,
            queue_depth: 0,
            throughput_milli: 1000,
        },
    }
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The node's first listen address with /p2p/<peer id>.
pub async fn full_addr(node: &TestNode) -> Multiaddr {
    let status: NodeStatus = wait_for("a listen address", || async {
        let s = node.client.status().await.ok()?;
        (!s.listen_addrs.is_empty()).then_some(s)
    })
    .await;
    format!("{}/p2p/{}", status.listen_addrs[0], status.peer_id)
        .parse()
        .unwrap()
}

pub fn request(client: &SecretKey, input: &[u8], max_price: u64) -> Signed<QueryRequest> {
    let now = agora_overlay::now_ms();
    let mut id_bytes = client.public().to_bytes().to_vec();
    id_bytes.extend_from_slice(&now.to_le_bytes());
    id_bytes.extend_from_slice(input);
    Signed::sign(
        QueryRequest {
            query_id: ContentId::of_payload(&id_bytes),
            subnet: 1,
            task: Task::Embed,
            model: MODEL.to_string(),
            input: input.to_vec(),
            max_price,
            nonce: now,
            sent_at_ms: now,
            deadline_ms: now + 60_000,
        },
        client,
    )
    .unwrap()
}

pub fn announcement(
    client: &SecretKey,
    request: &Signed<QueryRequest>,
) -> Signed<QueryAnnouncement> {
    let q = request.value();
    Signed::sign(
        QueryAnnouncement {
            query_id: q.query_id,
            subnet: q.subnet,
            task: q.task,
            model: q.model.clone(),
            input_hash: ContentId::of_payload(&q.input),
            input_len: q.input.len() as u32,
            max_price: q.max_price,
            deadline_ms: q.deadline_ms,
        },
        client,
    )
    .unwrap()
}
