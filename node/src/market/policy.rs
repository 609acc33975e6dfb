//! Which provider a client asks first.
//!
//! A provider's advert says what it charges and how busy it is; consensus says how the network rates
//! it; the client's own recent experience says how fast and reliable it has been for *this* client.
//! The policy folds the four into one score, and bans a provider that fails, with a ban that doubles on
//! each consecutive failure (capped) and ends on the first success after it lapses, so a peer that
//! restarts is tried again without being hammered while it is down.
//!
//! It is plain data and arithmetic, tested without sockets; the client holds it behind a lock.

use agora_overlay::PeerId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Weights and limits of the policy, with their defaults written once.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Weight of consensus reputation (0 to 1 per provider). Twice the others: the network's
    /// judgment, backed by stake, outweighs one price difference.
    pub weight_reputation: f64,
    /// Weight of price (cheapest of the candidates scores 1).
    pub weight_price: f64,
    /// Weight of observed latency (fastest scores 1; unknown scores 1 too, until measured).
    pub weight_latency: f64,
    /// Weight of load (advertised queue plus our own requests in flight there).
    pub weight_load: f64,
    /// Weight of the observed success rate.
    pub weight_reliability: f64,
    /// Bonus of a provider this client has never tried: without it the first provider that answers
    /// well keeps every query, and the client never learns whether another is faster or better.
    pub weight_exploration: f64,
    /// Reputation assumed for a provider consensus has not rated yet.
    pub default_reputation: f64,
    /// First ban after a failure.
    pub ban_base: Duration,
    /// Longest ban.
    pub ban_max: Duration,
    /// Weight of the newest latency sample in the moving average.
    pub latency_alpha: f64,
    /// Most providers remembered; the least recently used are forgotten first.
    pub max_tracked: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            weight_reputation: 2.0,
            weight_price: 1.0,
            weight_latency: 1.0,
            weight_load: 1.0,
            weight_reliability: 1.0,
            weight_exploration: 0.5,
            default_reputation: 0.5,
            ban_base: Duration::from_secs(2),
            ban_max: Duration::from_secs(300),
            latency_alpha: 0.3,
            max_tracked: 4096,
        }
    }
}

/// A provider that could take the query, as its advert describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The provider.
    pub peer: PeerId,
    /// Its advertised price, in units of 1e-9.
    pub price: u64,
    /// Its advertised queue depth.
    pub queue_depth: u32,
}

/// What went wrong with a provider, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It said it was busy or rate-limited us: skip it for a moment, no ban.
    Busy,
    /// No answer in time, a broken connection, a bad answer or an internal error: ban with backoff.
    Fault,
}

/// What this client has seen of one provider.
#[derive(Debug, Clone)]
struct Experience {
    latency_ms: Option<f64>,
    successes: u64,
    failures: u64,
    consecutive_faults: u32,
    banned_until: Option<Instant>,
    in_flight: u32,
    last_used: Instant,
}

impl Experience {
    fn new(now: Instant) -> Self {
        Self {
            latency_ms: None,
            successes: 0,
            failures: 0,
            consecutive_faults: 0,
            banned_until: None,
            in_flight: 0,
            last_used: now,
        }
    }

    /// Laplace-smoothed success rate: a provider never tried scores 0.5.
    fn reliability(&self) -> f64 {
        (self.successes as f64 + 1.0) / ((self.successes + self.failures) as f64 + 2.0)
    }
}

/// A provider's standing, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// The provider.
    pub peer: PeerId,
    /// Moving average of answered latency.
    pub latency_ms: Option<f64>,
    /// Answers accepted.
    pub successes: u64,
    /// Failures.
    pub failures: u64,
    /// Time left on its ban.
    pub banned_for: Option<Duration>,
    /// Our requests to it that have not ended yet.
    pub in_flight: u32,
}

/// The client's provider choice.
#[derive(Debug)]
pub struct ProviderPolicy {
    config: PolicyConfig,
    reputation: HashMap<PeerId, f64>,
    seen: HashMap<PeerId, Experience>,
}

impl ProviderPolicy {
    /// A policy that has seen nothing yet.
    pub fn new(config: PolicyConfig) -> Self {
        Self {
            config,
            reputation: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    /// Replaces the consensus reputation table (values clamped to 0..=1), e.g. each provider's
    /// normalised incentive from the last epoch.
    pub fn set_reputation(&mut self, reputation: impl IntoIterator<Item = (PeerId, f64)>) {
        self.reputation = reputation
            .into_iter()
            .map(|(peer, r)| {
                (
                    peer,
                    if r.is_finite() {
                        r.clamp(0.0, 1.0)
                    } else {
                        0.0
                    },
                )
            })
            .collect();
    }

    /// Orders candidates best first, leaving out banned ones.
    pub fn rank(&self, candidates: &[Candidate], now: Instant) -> Vec<Candidate> {
        let usable: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| !self.is_banned(&c.peer, now))
            .collect();
        let max_price = usable.iter().map(|c| c.price).max().unwrap_or(0).max(1) as f64;
        let min_price = usable.iter().map(|c| c.price).min().unwrap_or(0) as f64;
        let latencies: Vec<f64> = usable
            .iter()
            .filter_map(|c| self.seen.get(&c.peer).and_then(|e| e.latency_ms))
            .collect();
        let fastest = latencies.iter().copied().fold(f64::INFINITY, f64::min);
        let load = |c: &Candidate| {
            let ours = self.seen.get(&c.peer).map(|e| e.in_flight).unwrap_or(0);
            f64::from(c.queue_depth.saturating_add(ours))
        };
        let max_load = usable.iter().map(|c| load(c)).fold(0.0, f64::max);

        let mut scored: Vec<(f64, &Candidate)> = usable
            .into_iter()
            .map(|c| {
                let seen = self.seen.get(&c.peer);
                let reputation = self
                    .reputation
                    .get(&c.peer)
                    .copied()
                    .unwrap_or(self.config.default_reputation);
                let price = if max_price > min_price {
                    1.0 - (c.price as f64 - min_price) / (max_price - min_price)
                } else {
                    1.0
                };
                let latency = match seen.and_then(|e| e.latency_ms) {
                    Some(ms) if fastest.is_finite() && ms > 0.0 => fastest / ms,
                    Some(_) => 1.0,
                    // Optimistic until measured, like the exploration bonus.
                    None => 1.0,
                };
                let load = if max_load > 0.0 {
                    1.0 - load(c) / max_load
                } else {
                    1.0
                };
                let reliability = seen.map(Experience::reliability).unwrap_or(0.5);
                let untried = seen.is_none_or(|e| e.successes + e.failures == 0);
                let exploration = if untried { 1.0 } else { 0.0 };
                let score = self.config.weight_reputation * reputation
                    + self.config.weight_price * price
                    + self.config.weight_latency * latency
                    + self.config.weight_load * load
                    + self.config.weight_reliability * reliability
                    + self.config.weight_exploration * exploration;
                (score, c)
            })
            .collect();
        // Best score first; ties go to the cheaper, then to a stable order by peer id.
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.1.price.cmp(&b.1.price))
                .then(a.1.peer.to_bytes().cmp(&b.1.peer.to_bytes()))
        });
        scored.into_iter().map(|(_, c)| c.clone()).collect()
    }

    /// Whether the provider is banned now.
    pub fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.seen
            .get(peer)
            .and_then(|e| e.banned_until)
            .is_some_and(|until| until > now)
    }

    /// Notes that a request to `peer` is starting (counts toward its load in [`Self::rank`]).
    pub fn started(&mut self, peer: PeerId, now: Instant) {
        self.entry(peer, now).in_flight += 1;
    }

    /// Notes an accepted answer and its latency; lifts any ban.
    pub fn succeeded(&mut self, peer: PeerId, latency: Duration, now: Instant) {
        let alpha = self.config.latency_alpha;
        let e = self.entry(peer, now);
        e.in_flight = e.in_flight.saturating_sub(1);
        e.successes += 1;
        e.consecutive_faults = 0;
        e.banned_until = None;
        let ms = latency.as_secs_f64() * 1000.0;
        e.latency_ms = Some(match e.latency_ms {
            Some(old) => old + alpha * (ms - old),
            None => ms,
        });
    }

    /// Notes a failure; a [`Failure::Fault`] bans the provider for `ban_base * 2^(n-1)` (capped) after
    /// its n-th consecutive fault, a [`Failure::Busy`] for `ban_base` only.
    pub fn failed(&mut self, peer: PeerId, failure: Failure, now: Instant) {
        let (base, max) = (self.config.ban_base, self.config.ban_max);
        let e = self.entry(peer, now);
        e.in_flight = e.in_flight.saturating_sub(1);
        e.failures += 1;
        let ban = match failure {
            Failure::Busy => base,
            Failure::Fault => {
                e.consecutive_faults = e.consecutive_faults.saturating_add(1);
                let doublings = e.consecutive_faults.saturating_sub(1).min(20);
                base.saturating_mul(1u32 << doublings).min(max)
            }
        };
        e.banned_until = Some(now + ban);
    }

    /// Notes that a request ended without telling anything about the provider (we gave up first).
    pub fn abandoned(&mut self, peer: PeerId, now: Instant) {
        let e = self.entry(peer, now);
        e.in_flight = e.in_flight.saturating_sub(1);
    }

    /// What the client has seen of each provider, best known first.
    pub fn standings(&self, now: Instant) -> Vec<Standing> {
        let mut rows: Vec<Standing> = self
            .seen
            .iter()
            .map(|(peer, e)| Standing {
                peer: *peer,
                latency_ms: e.latency_ms,
                successes: e.successes,
                failures: e.failures,
                banned_for: e
                    .banned_until
                    .and_then(|until| until.checked_duration_since(now))
                    .filter(|d| !d.is_zero()),
                in_flight: e.in_flight,
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.successes));
        rows
    }

    fn entry(&mut self, peer: PeerId, now: Instant) -> &mut Experience {
        if !self.seen.contains_key(&peer) && self.seen.len() >= self.config.max_tracked.max(1) {
            let stalest = self
                .seen
                .iter()
                .filter(|(_, e)| e.in_flight == 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(p, _)| *p);
            if let Some(stalest) = stalest {
                self.seen.remove(&stalest);
            }
        }
        let e = self
            .seen
            .entry(peer)
            .or_insert_with(|| Experience::new(now));
        e.last_used = now;
        e
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn candidate(price: u64, queue_depth: u32) -> Candidate {
        Candidate {
            peer: PeerId::random(),
            price,
            queue_depth,
        }
    }

    #[test]
    fn cheaper_idle_and_reputable_win() {
        let policy = ProviderPolicy::new(PolicyConfig::default());
        let now = Instant::now();
        let cheap = candidate(10, 0);
        let dear = candidate(100, 0);
        let ranked = policy.rank(&[dear.clone(), cheap.clone()], now);
        assert_eq!(ranked[0], cheap);

        let busy = candidate(10, 50);
        let idle = candidate(10, 0);
        let ranked = policy.rank(&[busy.clone(), idle.clone()], now);
        assert_eq!(ranked[0], idle);

        let mut policy = ProviderPolicy::new(PolicyConfig::default());
        let trusted = candidate(100, 0);
        policy.set_reputation([(trusted.peer, 1.0), (cheap.peer, 0.0)]);
        // Full reputation against none outweighs the price difference between two candidates.
        let ranked = policy.rank(&[cheap.clone(), trusted.clone()], now);
        assert_eq!(ranked[0], trusted);
    }

    #[test]
    fn experience_counts_and_faults_ban_with_backoff() {
        let config = PolicyConfig::default();
        let mut policy = ProviderPolicy::new(config.clone());
        let now = Instant::now();
        let slow = candidate(10, 0);
        let fast = candidate(10, 0);
        for _ in 0..3 {
            policy.started(slow.peer, now);
            policy.succeeded(slow.peer, Duration::from_millis(400), now);
            policy.started(fast.peer, now);
            policy.succeeded(fast.peer, Duration::from_millis(40), now);
        }
        assert_eq!(policy.rank(&[slow.clone(), fast.clone()], now)[0], fast);

        // A fault bans for the base time, the next for twice as long.
        policy.started(fast.peer, now);
        policy.failed(fast.peer, Failure::Fault, now);
        assert!(policy.is_banned(&fast.peer, now));
        assert_eq!(
            policy.rank(&[slow.clone(), fast.clone()], now),
            vec![slow.clone()]
        );
        let after_first = now + config.ban_base;
        assert!(!policy.is_banned(&fast.peer, after_first));
        policy.failed(fast.peer, Failure::Fault, after_first);
        assert!(policy.is_banned(&fast.peer, after_first + config.ban_base));
        assert!(!policy.is_banned(&fast.peer, after_first + config.ban_base * 2));

        // Bans stop growing at the cap, and a success lifts them.
        let mut t = after_first;
        for _ in 0..40 {
            policy.failed(fast.peer, Failure::Fault, t);
            t += config.ban_max;
        }
        assert!(policy.is_banned(&fast.peer, t - config.ban_max));
        policy.succeeded(fast.peer, Duration::from_millis(40), t);
        assert!(!policy.is_banned(&fast.peer, t));
    }

    #[test]
    fn an_untried_provider_is_tried_before_a_known_good_one_is_reused() {
        let mut policy = ProviderPolicy::new(PolicyConfig::default());
        let now = Instant::now();
        let known = candidate(10, 0);
        let fresh = candidate(10, 0);
        policy.started(known.peer, now);
        policy.succeeded(known.peer, Duration::from_millis(50), now);
        assert_eq!(policy.rank(&[known.clone(), fresh.clone()], now)[0], fresh);
    }

    #[test]
    fn requests_in_flight_spread_the_load() {
        let mut policy = ProviderPolicy::new(PolicyConfig::default());
        let now = Instant::now();
        let a = candidate(10, 0);
        let b = candidate(10, 0);
        let first = policy.rank(&[a.clone(), b.clone()], now)[0].clone();
        policy.started(first.peer, now);
        let second = policy.rank(&[a.clone(), b.clone()], now)[0].clone();
        assert_ne!(first, second);
    }

    #[test]
    fn tracking_is_bounded() {
        let mut policy = ProviderPolicy::new(PolicyConfig {
            max_tracked: 8,
            ..PolicyConfig::default()
        });
        let now = Instant::now();
        for _ in 0..100 {
            policy.failed(PeerId::random(), Failure::Busy, now);
        }
        assert!(policy.standings(now).len() <= 8);
    }
}
