//! Admission: the provider's checks between a verified request and the model.
//!
//! The overlay has already checked the signature, that the signer is the sending peer, the request's
//! bounds and its deadline. What is left needs the provider's own state, and is decided here, in this
//! order, cheapest and least informative first:
//!
//! 1. **Replay window**: `sent_at_ms` within [`AdmissionConfig::replay_window_ms`] of our clock, in
//!    either direction (clocks drift). A request outside it is refused, so nonces only have to be
//!    remembered for the length of the window.
//! 2. **Nonce**: per client, the last [`NONCE_WINDOW`] nonces admitted and the highest one forgotten
//!    to make room; a nonce seen, or at or below the forgotten one, is a replay. Clients send
//!    concurrently and share one counter across providers, so nonces arrive out of order and with
//!    gaps; the window counts this provider's admissions, not nonce distance ([`NonceWindow`]).
//! 3. **Rate**: a token bucket per client (burst, refill per second).
//! 4. **Price**: the provider's price against the request's `max_price`.
//! 5. **Credit**: the client's unpaid receipts plus this price against the provider's credit limit,
//!    and against the client's genesis balance when the provider knows one. Receipt halves the
//!    client never countersigned stop counting once their query's deadline has passed (the answer
//!    was most likely never delivered: the provider died or the connection broke between storing
//!    and sending it), up to one credit limit's worth per client ([`UnsignedHalves`]).
//!
//! A nonce is recorded only when the query is admitted: a refused request can be fixed and sent again
//! with the same nonce. Per-client state lives in a bounded map; when it is full the stalest client
//! is forgotten. A forgotten client's nonces could be replayed inside the time window, but a replay
//! of a query that was answered is still refused by the receipt store's query index (checked before
//! admission), so what leaks is at most a second run of a refused or unfinished query.
//!
//! Pure logic, no clock and no I/O: the caller passes `now_ms` and the unpaid total, so every rule is
//! unit-tested without sockets.

use agora_protocols::{ContentId, PublicKey, QueryError, QueryErrorKind, QueryRequest};
use std::collections::{HashMap, VecDeque};

/// Clients whose unsigned halves are tracked at once; halves of others count in full.
pub const MAX_HALF_CLIENTS: usize = 4096;
/// Unsigned halves tracked per client; past it, new ones count in full.
pub const MAX_HALVES_PER_CLIENT: usize = 1024;

/// Receipt halves a provider stored whose client has not countersigned them, per client, each with
/// the time from which it no longer counts toward the client's credit ("stale"): its query's
/// deadline (for halves stored before a restart, whose deadline was not kept: their answer time
/// plus the replay window).
///
/// Why: a provider stores its half before it answers, and counts it as owed. If the answer never
/// reaches the client (the provider is killed between storing and sending, the connection breaks),
/// the client can never countersign it, yet it would count against the client's credit here until
/// the epoch's settlement: enough of them block an honest client. An answer that did arrive is
/// countersigned at once (and the client's outbox retries until the provider has it), so a half
/// still unsigned after its deadline is most likely an answer never delivered.
///
/// The provider cannot tell an undelivered answer from a client that received it and refuses to
/// countersign, so what is forgiven is capped: stale halves lower a client's owed total by at most
/// the credit limit. A client that never countersigns gets at most twice the credit limit of
/// answers for free, not an unbounded amount. Tracking is bounded ([`MAX_HALF_CLIENTS`],
/// [`MAX_HALVES_PER_CLIENT`]); a half not tracked simply counts, which errs on the provider's side.
#[derive(Debug, Default)]
pub struct UnsignedHalves {
    clients: HashMap<PublicKey, HashMap<ContentId, (u64, u64)>>,
}

impl UnsignedHalves {
    /// Nothing tracked.
    pub fn new() -> Self {
        Self::default()
    }

    /// A half of `price` for `client` was stored; it goes stale at `stale_at_ms`.
    pub fn stored(&mut self, client: PublicKey, id: ContentId, price: u64, stale_at_ms: u64) {
        if !self.clients.contains_key(&client) && self.clients.len() >= MAX_HALF_CLIENTS {
            return;
        }
        let halves = self.clients.entry(client).or_default();
        if halves.len() < MAX_HALVES_PER_CLIENT {
            halves.insert(id, (price, stale_at_ms));
        }
    }

    /// The client countersigned the half `id`: it counts again, as a receipt owed.
    pub fn countersigned(&mut self, client: &PublicKey, id: &ContentId) {
        if let Some(halves) = self.clients.get_mut(client) {
            halves.remove(id);
            if halves.is_empty() {
                self.clients.remove(client);
            }
        }
    }

    /// The prices of `client`'s stale halves at `now_ms`.
    pub fn stale(&self, client: &PublicKey, now_ms: u64) -> u64 {
        self.clients.get(client).map_or(0, |halves| {
            halves
                .values()
                .filter(|(_, stale_at)| *stale_at <= now_ms)
                .fold(0u64, |sum, (price, _)| sum.saturating_add(*price))
        })
    }

    /// What `client` owes for credit: `unpaid` (stored unsettled receipts and queries in flight)
    /// less its stale halves, at most `cap` of them.
    pub fn owed(&self, client: &PublicKey, unpaid: u64, now_ms: u64, cap: u64) -> u64 {
        unpaid.saturating_sub(self.stale(client, now_ms).min(cap))
    }

    /// Halves tracked, over all clients.
    pub fn len(&self) -> usize {
        self.clients.values().map(HashMap::len).sum()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// Nonces remembered per client: its last admitted ones (8 KiB for a client that has sent this
/// many; [`AdmissionConfig::max_peers`] clients at most).
pub const NONCE_WINDOW: usize = 1024;
/// One request's cost in the token bucket, in thousandths of a token (integer arithmetic, exact).
const TOKEN: u64 = 1000;

/// Limits of admission. The defaults are written here once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// How far `sent_at_ms` may be from our clock, either way.
    pub replay_window_ms: u64,
    /// Requests a client may send at once before the rate applies.
    pub burst: u32,
    /// Requests per second a client may sustain.
    pub refill_per_second: u32,
    /// Clients whose nonces and buckets are remembered; beyond it, the stalest is forgotten.
    pub max_peers: usize,
    /// Most a client may owe this provider (unpaid receipts), in units of 1e-9.
    pub credit_limit: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            replay_window_ms: 120_000,
            burst: 100,
            refill_per_second: 50,
            max_peers: 4096,
            // One token (1e9 units): a thousand embeddings at the default price.
            credit_limit: 1_000_000_000,
        }
    }
}

impl AdmissionConfig {
    /// A rate of `qps` sustained, with a burst of twice that (at least 1).
    pub fn with_rate_limit(mut self, qps: u32) -> Self {
        self.refill_per_second = qps;
        self.burst = qps.saturating_mul(2).max(1);
        self
    }

    /// Sets [`AdmissionConfig::credit_limit`].
    pub fn with_credit_limit(mut self, units: u64) -> Self {
        self.credit_limit = units;
        self
    }
}

/// The anti-replay memory of one client: the last [`NONCE_WINDOW`] nonces admitted from it, and
/// the highest nonce forgotten to make room, at or below which every nonce is refused.
///
/// Counted in admissions, not in nonce distance: a client keeps one counter for all its
/// providers, so each provider sees a sparse part of it (a client spreading queries over 100
/// providers moves its counter about 100 per query here). A window of nonce distance would refuse
/// an honest query that arrives after a few of that client's later ones as a replay; this one
/// refuses a late query only once this provider has admitted [`NONCE_WINDOW`] of the client's
/// queries with higher nonces.
#[derive(Debug, Clone, Default)]
struct NonceWindow {
    /// Admitted nonces above `floor`, ascending, at most [`NONCE_WINDOW`].
    recent: VecDeque<u64>,
    /// The highest nonce forgotten, if any.
    floor: Option<u64>,
}

impl NonceWindow {
    /// Whether `nonce` may be admitted (not seen, not at or below the floor).
    fn check(&self, nonce: u64) -> Result<(), String> {
        if let Some(floor) = self.floor
            && nonce <= floor
        {
            return Err(format!(
                "nonce {nonce} is below the replay window (the last {NONCE_WINDOW} admitted from \
                 this client are above {floor})"
            ));
        }
        if self.recent.binary_search(&nonce).is_ok() {
            return Err(format!("nonce {nonce} was already used"));
        }
        Ok(())
    }

    /// Records `nonce` (already checked), forgetting the lowest when the window is full.
    fn record(&mut self, nonce: u64) {
        if let Err(at) = self.recent.binary_search(&nonce) {
            // Nonces mostly arrive in order: the insert is at the end.
            self.recent.insert(at, nonce);
        }
        if self.recent.len() > NONCE_WINDOW
            && let Some(lowest) = self.recent.pop_front()
        {
            self.floor = Some(lowest);
        }
    }
}

/// A token bucket, in thousandths of a token.
#[derive(Debug, Clone)]
struct Bucket {
    milli_tokens: u64,
    refilled_at_ms: u64,
}

/// What is remembered about one client.
#[derive(Debug, Clone)]
struct Peer {
    nonces: NonceWindow,
    bucket: Bucket,
    last_seen_ms: u64,
}

/// The admission state of one provider. Not thread-safe by itself: one task owns it (the provider's
/// event loop), which also keeps the order of decisions the order of arrival.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    peers: HashMap<PublicKey, Peer>,
}

fn refuse(kind: QueryErrorKind, message: String) -> QueryError {
    QueryError { kind, message }
}

/// Whole seconds, rounded down, for messages.
fn secs(ms: u64) -> u64 {
    ms / 1000
}

impl Admission {
    /// Starts with no client known.
    pub fn new(config: AdmissionConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Clients remembered now.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// Decides whether `client`'s `request` may run at `price`, given what it owes this provider
    /// (`unpaid`: stored unsettled receipts plus queries in flight) and, when known, its balance.
    /// On success the nonce is recorded and a token taken.
    pub fn admit(
        &mut self,
        client: &PublicKey,
        request: &QueryRequest,
        price: u64,
        now_ms: u64,
        unpaid: u64,
        genesis_balance: Option<u64>,
    ) -> Result<(), QueryError> {
        let window = self.config.replay_window_ms;
        let sent = request.sent_at_ms;
        if sent.saturating_add(window) < now_ms {
            return Err(refuse(
                QueryErrorKind::Replay,
                format!(
                    "sent {} s ago; the replay window is {} s",
                    secs(now_ms - sent),
                    secs(window)
                ),
            ));
        }
        if sent > now_ms.saturating_add(window) {
            return Err(refuse(
                QueryErrorKind::Replay,
                format!(
                    "sent {} s in the future by our clock; the replay window is {} s (check the clock)",
                    secs(sent - now_ms),
                    secs(window)
                ),
            ));
        }

        if !self.peers.contains_key(client) && self.peers.len() >= self.config.max_peers.max(1) {
            self.evict_stalest();
        }
        let config = &self.config;
        let peer = self.peers.entry(*client).or_insert_with(|| Peer {
            nonces: NonceWindow::default(),
            bucket: Bucket {
                milli_tokens: u64::from(config.burst).saturating_mul(TOKEN),
                refilled_at_ms: now_ms,
            },
            last_seen_ms: now_ms,
        });
        peer.last_seen_ms = peer.last_seen_ms.max(now_ms);

        peer.nonces
            .check(request.nonce)
            .map_err(|m| refuse(QueryErrorKind::Replay, m))?;

        // Refill, then take one token. A request refused later (price, credit) still costs its
        // token: those checks read the store, and a client must not probe them for free.
        let capacity = u64::from(config.burst).saturating_mul(TOKEN);
        let elapsed = now_ms.saturating_sub(peer.bucket.refilled_at_ms);
        peer.bucket.milli_tokens = peer
            .bucket
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(config.refill_per_second)))
            .min(capacity);
        peer.bucket.refilled_at_ms = peer.bucket.refilled_at_ms.max(now_ms);
        if peer.bucket.milli_tokens < TOKEN {
            return Err(refuse(
                QueryErrorKind::RateLimited,
                format!(
                    "over this provider's rate limit of {} queries per second (burst {}): back off",
                    config.refill_per_second, config.burst
                ),
            ));
        }
        peer.bucket.milli_tokens -= TOKEN;

        if price > request.max_price {
            return Err(refuse(
                QueryErrorKind::OverBudget,
                format!(
                    "the price is {price} units, over the query's maximum of {}",
                    request.max_price
                ),
            ));
        }
        let owed = unpaid.saturating_add(price);
        if owed > config.credit_limit {
            return Err(refuse(
                QueryErrorKind::OverBudget,
                format!(
                    "unpaid receipts of {unpaid} units: over this provider's credit limit of {} \
                     with this query's {price} (settle first)",
                    config.credit_limit
                ),
            ));
        }
        if let Some(balance) = genesis_balance
            && owed > balance
        {
            return Err(refuse(
                QueryErrorKind::OverBudget,
                format!(
                    "balance of {balance} units in the genesis allocation: unpaid receipts of \
                     {unpaid} units plus this query's {price} exceed it"
                ),
            ));
        }

        peer.nonces.record(request.nonce);
        Ok(())
    }

    /// Forgets the client seen longest ago. Linear in the clients remembered, and only run when a new
    /// client arrives at a full map.
    fn evict_stalest(&mut self) {
        let stalest = self
            .peers
            .iter()
            .min_by_key(|(_, p)| p.last_seen_ms)
            .map(|(k, _)| *k);
        if let Some(key) = stalest {
            self.peers.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use agora_protocols::{ContentId, SecretKey, Task};

    const NOW: u64 = 1_800_000_000_000;

    fn request(nonce: u64, sent_at_ms: u64, max_price: u64) -> QueryRequest {
        QueryRequest {
            query_id: ContentId::of_payload(&nonce.to_le_bytes()),
            subnet: 1,
            task: Task::Embed,
            model: "m".into(),
            input: Vec::new(),
            max_price,
            nonce,
            sent_at_ms,
            deadline_ms: sent_at_ms + 60_000,
        }
    }

    fn open() -> AdmissionConfig {
        AdmissionConfig {
            burst: 1_000_000,
            refill_per_second: 1_000_000,
            credit_limit: u64::MAX,
            ..AdmissionConfig::default()
        }
    }

    fn kind(r: Result<(), QueryError>) -> QueryErrorKind {
        r.unwrap_err().kind
    }

    #[test]
    fn sent_at_outside_the_window_is_a_replay_either_way() {
        let mut a = Admission::new(open());
        let c = SecretKey::generate().public();
        let old = a.admit(&c, &request(1, NOW - 121_000, 10), 1, NOW, 0, None);
        let err = old.unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::Replay);
        assert_eq!(err.message, "sent 121 s ago; the replay window is 120 s");
        let future = a.admit(&c, &request(2, NOW + 121_000, 10), 1, NOW, 0, None);
        assert_eq!(kind(future), QueryErrorKind::Replay);
        // Skew inside the window, both ways, is fine.
        a.admit(&c, &request(3, NOW - 119_000, 10), 1, NOW, 0, None)
            .unwrap();
        a.admit(&c, &request(4, NOW + 119_000, 10), 1, NOW, 0, None)
            .unwrap();
    }

    #[test]
    fn nonces_out_of_order_within_the_window_but_never_twice() {
        let mut a = Admission::new(open());
        let c = SecretKey::generate().public();
        let other = SecretKey::generate().public();
        for n in [5000, 4990, 5001, 4000, 4999] {
            a.admit(&c, &request(n, NOW, 10), 1, NOW, 0, None).unwrap();
        }
        for n in [5000, 4990, 5001, 4000, 4999] {
            let r = a.admit(&c, &request(n, NOW, 10), 1, NOW, 0, None);
            assert_eq!(kind(r), QueryErrorKind::Replay, "nonce {n}");
        }
        // Nonces are per client.
        a.admit(&other, &request(5000, NOW, 10), 1, NOW, 0, None)
            .unwrap();
        // Far below the others, but never admitted: nothing was forgotten yet.
        a.admit(&c, &request(7, NOW, 10), 1, NOW, 0, None).unwrap();
        // The window holds the last NONCE_WINDOW admitted: 6 so far, then 1019 more pushes
        // out the lowest (7), and everything at or below it is refused from then on.
        for n in 6000..6000 + NONCE_WINDOW as u64 - 5 {
            a.admit(&c, &request(n, NOW, 10), 1, NOW, 0, None).unwrap();
        }
        let err = a
            .admit(&c, &request(6, NOW, 10), 1, NOW, 0, None)
            .unwrap_err();
        assert!(err.message.contains("below the replay window"), "{err:?}");
        assert_eq!(
            kind(a.admit(&c, &request(7, NOW, 10), 1, NOW, 0, None)),
            QueryErrorKind::Replay
        );
        // Above the floor and never admitted: still fine; admitted ones still refused.
        a.admit(&c, &request(8, NOW, 10), 1, NOW, 0, None).unwrap();
        let r = a.admit(&c, &request(4000, NOW, 10), 1, NOW, 0, None);
        assert_eq!(kind(r), QueryErrorKind::Replay);
    }

    #[test]
    fn a_counter_shared_across_providers_is_not_a_replay() {
        // A client spreading its queries over 100 providers: this one sees every 100th nonce,
        // and one query that was sent early arrives after 500 later ones (50,000 nonces on).
        let mut a = Admission::new(open());
        let c = SecretKey::generate().public();
        for k in 0..500u64 {
            a.admit(&c, &request(1_000 + 100 * k, NOW, 10), 1, NOW, 0, None)
                .unwrap();
        }
        a.admit(&c, &request(1_050, NOW, 10), 1, NOW, 0, None)
            .unwrap();
        let r = a.admit(&c, &request(1_050, NOW, 10), 1, NOW, 0, None);
        assert_eq!(kind(r), QueryErrorKind::Replay);
    }

    #[test]
    fn the_window_matches_a_plain_set_with_a_floor() {
        // Random nonces against the rule stated plainly: refused when admitted before or at or
        // below the highest forgotten one; the lowest is forgotten past NONCE_WINDOW.
        let mut w = NonceWindow::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut floor: Option<u64> = None;
        let mut x: u64 = 12345;
        for step in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Mostly rising, as a client's counter, with stragglers behind it.
            let n = (step / 2 + (x >> 33) % 3000).saturating_sub(1500);
            let expect_ok = !seen.contains(&n) && floor.is_none_or(|f| n > f);
            assert_eq!(w.check(n).is_ok(), expect_ok, "nonce {n}, floor {floor:?}");
            if expect_ok {
                w.record(n);
                seen.insert(n);
                if seen.len() > NONCE_WINDOW {
                    floor = seen.pop_first();
                }
            }
            assert!(w.recent.len() <= NONCE_WINDOW);
        }
        assert!(floor.is_some(), "the run never filled the window");
    }

    #[test]
    fn a_refused_query_leaves_its_nonce_free() {
        let mut a = Admission::new(open());
        let c = SecretKey::generate().public();
        let r = a.admit(&c, &request(7, NOW, 10), 11, NOW, 0, None);
        assert_eq!(kind(r), QueryErrorKind::OverBudget);
        a.admit(&c, &request(7, NOW, 11), 11, NOW, 0, None).unwrap();
    }

    #[test]
    fn the_token_bucket_allows_a_burst_then_the_rate() {
        let config = AdmissionConfig {
            credit_limit: u64::MAX,
            ..AdmissionConfig::default().with_rate_limit(2)
        };
        let mut a = Admission::new(config);
        let c = SecretKey::generate().public();
        for n in 0..4 {
            a.admit(&c, &request(n, NOW, 10), 1, NOW, 0, None).unwrap();
        }
        let r = a.admit(&c, &request(4, NOW, 10), 1, NOW, 0, None);
        assert_eq!(kind(r), QueryErrorKind::RateLimited);
        // Half a second later, one more token.
        a.admit(&c, &request(5, NOW, 10), 1, NOW + 500, 0, None)
            .unwrap();
        let r = a.admit(&c, &request(6, NOW, 10), 1, NOW + 500, 0, None);
        assert_eq!(kind(r), QueryErrorKind::RateLimited);
        // Another client has its own bucket.
        let d = SecretKey::generate().public();
        a.admit(&d, &request(0, NOW, 10), 1, NOW + 500, 0, None)
            .unwrap();
    }

    #[test]
    fn credit_limit_and_genesis_balance() {
        let mut a = Admission::new(AdmissionConfig {
            credit_limit: 5000,
            ..open()
        });
        let c = SecretKey::generate().public();
        a.admit(&c, &request(1, NOW, 1000), 1000, NOW, 4000, None)
            .unwrap();
        let err = a
            .admit(&c, &request(2, NOW, 1000), 1000, NOW, 4001, None)
            .unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::OverBudget);
        assert!(
            err.message.starts_with(
                "unpaid receipts of 4001 units: over this provider's credit limit of 5000"
            ),
            "{}",
            err.message
        );
        let err = a
            .admit(&c, &request(3, NOW, 1000), 1000, NOW, 0, Some(999))
            .unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::OverBudget);
        assert!(
            err.message.starts_with("balance of 999 units"),
            "{}",
            err.message
        );
        a.admit(&c, &request(4, NOW, 1000), 1000, NOW, 0, Some(1000))
            .unwrap();
    }

    #[test]
    fn the_peer_map_is_bounded_and_forgets_the_stalest() {
        let mut a = Admission::new(AdmissionConfig {
            max_peers: 3,
            ..open()
        });
        let keys: Vec<PublicKey> = (0..4).map(|_| SecretKey::generate().public()).collect();
        for (i, k) in keys.iter().take(3).enumerate() {
            a.admit(k, &request(1, NOW, 10), 1, NOW + i as u64, 0, None)
                .unwrap();
        }
        // Touch the first again so the second is the stalest.
        a.admit(&keys[0], &request(2, NOW, 10), 1, NOW + 10, 0, None)
            .unwrap();
        a.admit(&keys[3], &request(1, NOW, 10), 1, NOW + 11, 0, None)
            .unwrap();
        assert_eq!(a.peers(), 3);
        // keys[1] was forgotten: its old nonce is new again; keys[0]'s is not.
        a.admit(&keys[1], &request(1, NOW, 10), 1, NOW + 12, 0, None)
            .unwrap();
        let r = a.admit(&keys[0], &request(2, NOW, 10), 1, NOW + 12, 0, None);
        assert_eq!(kind(r), QueryErrorKind::Replay);
    }

    #[test]
    fn unsigned_halves_stop_counting_after_their_deadline_up_to_the_credit_limit() {
        let mut halves = UnsignedHalves::new();
        let (c, other) = (
            SecretKey::generate().public(),
            SecretKey::generate().public(),
        );
        let id = |n: u8| ContentId::of_payload(&[n]);
        for n in 0..4 {
            halves.stored(c, id(n), 1000, NOW + u64::from(n) * 1000);
        }
        halves.stored(other, id(9), 1000, NOW);
        // Before any deadline everything counts; then each half as its deadline passes.
        assert_eq!(halves.owed(&c, 4000, NOW - 1, 10_000), 4000);
        assert_eq!(halves.owed(&c, 4000, NOW, 10_000), 3000);
        assert_eq!(halves.owed(&c, 4000, NOW + 3000, 10_000), 0);
        // Never more than the cap is forgiven.
        assert_eq!(halves.owed(&c, 4000, NOW + 3000, 2500), 1500);
        // A countersigned half counts again; another client's halves are its own.
        halves.countersigned(&c, &id(0));
        assert_eq!(halves.owed(&c, 4000, NOW + 3000, 10_000), 1000);
        assert_eq!(halves.stale(&other, NOW), 1000);
        assert_eq!(halves.len(), 4);
        // Tracking is bounded per client: the rest counts in full.
        let mut many = UnsignedHalves::new();
        for n in 0..MAX_HALVES_PER_CLIENT + 10 {
            let id = ContentId::of_payload(&n.to_le_bytes());
            many.stored(c, id, 1, NOW);
        }
        assert_eq!(many.stale(&c, NOW), MAX_HALVES_PER_CLIENT as u64);
    }
}
