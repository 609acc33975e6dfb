#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The ledger state machine: transactions, refusals, registration and pruning, commit-reveal,
//! epochs with emission, and determinism over random transaction sequences.

use agora_ledger::balances::{Genesis, UNITS_PER_TOKEN};
use agora_ledger::emission::TOTAL_SUPPLY;
use agora_ledger::state::{
    Call, GenesisSubnet, Hyperparameters, LedgerGenesis, LedgerParams, LedgerState, Role,
    Transaction, TxError, WeightCommit, apply_block, apply_block_bytes, decode_tx,
    hotkey_binding_proof, sign_tx, weights_commit_hash,
};
use agora_protocols::{PublicKey, SecretKey, Signed};
use proptest::prelude::*;
use std::collections::BTreeMap;

const TOKEN: u64 = UNITS_PER_TOKEN;

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i; 32])
}

fn genesis(accounts: &[(u8, u64)], subnets: Vec<GenesisSubnet>) -> LedgerState {
    let map: BTreeMap<PublicKey, u64> = accounts
        .iter()
        .map(|(i, v)| (key(*i).public(), *v))
        .collect();
    LedgerGenesis::new(Genesis::new(map).unwrap(), LedgerParams::default(), subnets)
        .unwrap()
        .to_state()
}

/// A test ledger: the state plus per-signer nonces for several transactions per block.
struct Ledger {
    state: LedgerState,
    nonces: BTreeMap<PublicKey, u64>,
}

impl Ledger {
    fn new(state: LedgerState) -> Self {
        Self {
            state,
            nonces: BTreeMap::new(),
        }
    }

    fn tx(&mut self, signer: &SecretKey, call: Call) -> Signed<Transaction> {
        let n = self.nonces.entry(signer.public()).or_insert(0);
        let tx = sign_tx(signer, *n, call).unwrap();
        *n += 1;
        tx
    }

    /// `hotkey`'s unrevealed weight commits on subnet 1, oldest first.
    fn commits(&self, hotkey: &SecretKey) -> Vec<WeightCommit> {
        self.state
            .subnet(1)
            .map(|s| s.weight_commits(&hotkey.public()).to_vec())
            .unwrap_or_default()
    }

    fn block(&mut self, txs: &[Signed<Transaction>]) -> Vec<Result<(), TxError>> {
        let h = self.state.height() + 1;
        self.state.apply_block(h, txs).unwrap()
    }

    /// One transaction in its own block.
    fn run(&mut self, signer: &SecretKey, call: Call) -> Result<(), TxError> {
        let tx = self.tx(signer, call);
        let r = self.block(&[tx]).remove(0);
        if r.is_err() {
            // A refused transaction does not consume its nonce.
            *self.nonces.get_mut(&signer.public()).unwrap() -= 1;
        }
        r
    }

    fn ok(&mut self, signer: &SecretKey, call: Call) {
        let name = call.name();
        self.run(signer, call)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    fn idle(&mut self, blocks: u64) {
        for _ in 0..blocks {
            self.block(&[]);
        }
    }

    fn associate(&mut self, coldkey: &SecretKey, hotkey: &SecretKey) {
        let proof = hotkey_binding_proof(hotkey, &coldkey.public());
        self.ok(
            coldkey,
            Call::AssociateHotkey {
                hotkey: hotkey.public(),
                proof,
            },
        );
    }

    fn check_supply(&self) {
        assert_eq!(
            self.state.total_held(),
            Some(self.state.total_issuance()),
            "balances + stake + pending must equal issuance"
        );
        assert!(self.state.total_issuance() <= TOTAL_SUPPLY);
    }
}

/// A ledger where key 1 (`owner`) holds `balance` and owns subnet 1 with default hyperparameters.
fn one_default_subnet(owner: &SecretKey, balance: u64) -> Ledger {
    Ledger::new(genesis(
        &[(1, balance)],
        vec![GenesisSubnet {
            owner: owner.public(),
            hyperparameters: Hyperparameters::default(),
        }],
    ))
}

fn fast() -> Hyperparameters {
    Hyperparameters {
        tempo: 20,
        max_allowed_uids: 64,
        immunity_period: 10,
        commit_reveal_enabled: false,
        weights_set_rate_limit: 0,
        ..Hyperparameters::default()
    }
}

#[test]
fn transfers_move_money_and_overdrafts_are_refused() {
    let (a, b, c) = (key(1), key(2), key(3));
    let mut l = Ledger::new(genesis(&[(1, 100 * TOKEN), (2, 5 * TOKEN)], vec![]));
    l.ok(
        &a,
        Call::Transfer {
            to: c.public(),
            amount: 30 * TOKEN,
        },
    );
    assert_eq!(l.state.balance(&a.public()), 70 * TOKEN);
    assert_eq!(l.state.balance(&c.public()), 30 * TOKEN);

    let before = l.state.clone();
    let tx = sign_tx(
        &b,
        0,
        Call::Transfer {
            to: a.public(),
            amount: 6 * TOKEN,
        },
    )
    .unwrap();
    assert_eq!(
        l.state.apply_tx(&tx),
        Err(TxError::InsufficientBalance {
            balance: 5 * TOKEN,
            needed: 6 * TOKEN
        })
    );
    assert_eq!(l.state, before, "a refused transaction changes nothing");
    assert_eq!(l.state.nonce(&b.public()), None);
    assert_eq!(
        l.run(
            &b,
            Call::Transfer {
                to: a.public(),
                amount: 0
            }
        ),
        Err(TxError::ZeroAmount)
    );
    // An account with nothing cannot pay.
    assert!(matches!(
        l.run(
            &key(9),
            Call::Transfer {
                to: a.public(),
                amount: 1
            }
        ),
        Err(TxError::InsufficientBalance { balance: 0, .. })
    ));
    l.check_supply();
    assert_eq!(l.state.total_issuance(), 105 * TOKEN);
}

#[test]
fn roles_are_enforced() {
    let (a, h) = (key(1), key(10));
    let mut l = Ledger::new(genesis(&[(1, 1000 * TOKEN)], vec![]));
    l.associate(&a, &h);
    assert_eq!(l.state.hotkey(&h.public()).unwrap().owner, a.public());

    // A hotkey cannot spend as a coldkey.
    assert_eq!(
        l.run(
            &h,
            Call::Transfer {
                to: a.public(),
                amount: 1
            }
        ),
        Err(TxError::SignerIsHotkey)
    );
    // Declaring the hotkey role for a transfer is refused before anything else.
    let tx = Signed::sign(
        Transaction {
            role: Role::Hotkey,
            nonce: 0,
            call: Call::Transfer {
                to: a.public(),
                amount: 1,
            },
        },
        &h,
    )
    .unwrap();
    assert!(matches!(
        l.block(&[tx]).remove(0),
        Err(TxError::WrongRole {
            needed: Role::Coldkey,
            declared: Role::Hotkey,
            ..
        })
    ));
    // A coldkey cannot sign weights, whichever role it declares.
    let commit = Call::CommitWeights {
        netuid: 1,
        commit_hash: [0; 32],
    };
    let as_coldkey = Signed::sign(
        Transaction {
            role: Role::Coldkey,
            nonce: 5,
            call: commit.clone(),
        },
        &a,
    )
    .unwrap();
    assert!(matches!(
        l.block(&[as_coldkey]).remove(0),
        Err(TxError::WrongRole {
            needed: Role::Hotkey,
            ..
        })
    ));
    assert_eq!(l.run(&a, commit), Err(TxError::SignerNotHotkey));
}

#[test]
fn bad_signatures_are_refused_the_same_way_everywhere() {
    let (a, b) = (key(1), key(2));
    let state = genesis(&[(1, 10 * TOKEN)], vec![]);
    let tx = sign_tx(
        &a,
        0,
        Call::Transfer {
            to: b.public(),
            amount: TOKEN,
        },
    )
    .unwrap();
    let good = tx.to_bytes().unwrap();

    // Flip a bit in the signature (the envelope's last 64 bytes), then in the payload.
    let mut bad_sig = good.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 1;
    let mut bad_payload = good.clone();
    bad_payload[60] ^= 1;
    // Swap in another signer.
    let mut other_signer = good.clone();
    other_signer[2..34].copy_from_slice(&b.public().to_bytes());

    for bytes in [&bad_sig, &bad_payload, &other_signer] {
        let (s1, r1) = apply_block_bytes(&state, 1, &[bytes]).unwrap();
        let (s2, r2) = apply_block_bytes(&state, 1, &[bytes]).unwrap();
        assert!(r1[0].is_err());
        assert_eq!(r1, r2);
        assert_eq!(s1.state_root().unwrap(), s2.state_root().unwrap());
        assert_eq!(s1.balance(&a.public()), 10 * TOKEN);
    }
    assert_eq!(decode_tx(&bad_sig).unwrap_err(), TxError::BadSignature);
    assert_eq!(decode_tx(&other_signer).unwrap_err(), TxError::BadSignature);
    assert!(matches!(
        decode_tx(&good[..good.len() - 3]),
        Err(TxError::Malformed(_))
    ));
    let (s, r) = apply_block_bytes(&state, 1, &[&good]).unwrap();
    assert_eq!(r, vec![Ok(())]);
    assert_eq!(s.balance(&b.public()), TOKEN);
}

#[test]
fn replayed_and_stale_nonces_are_refused() {
    let (a, b) = (key(1), key(2));
    let mut l = Ledger::new(genesis(&[(1, 10 * TOKEN)], vec![]));
    let pay = Call::Transfer {
        to: b.public(),
        amount: TOKEN,
    };
    let tx = sign_tx(&a, 7, pay.clone()).unwrap();
    assert_eq!(
        l.block(&[tx.clone(), tx.clone()]),
        vec![Ok(()), Err(TxError::StaleNonce { got: 7, last: 7 })]
    );
    assert_eq!(
        l.block(&[tx]),
        vec![Err(TxError::StaleNonce { got: 7, last: 7 })]
    );
    let older = sign_tx(&a, 3, pay.clone()).unwrap();
    assert_eq!(
        l.block(&[older]),
        vec![Err(TxError::StaleNonce { got: 3, last: 7 })]
    );
    // Gaps are allowed.
    let later = sign_tx(&a, 100, pay).unwrap();
    assert_eq!(l.block(&[later]), vec![Ok(())]);
    assert_eq!(l.state.balance(&b.public()), 2 * TOKEN);
    assert_eq!(l.state.next_nonce(&a.public()), 101);
}

#[test]
fn hotkey_binding_needs_both_keys() {
    let (a, c, h, rich) = (key(1), key(3), key(10), key(2));
    let mut l = Ledger::new(genesis(&[(1, 10 * TOKEN), (2, TOKEN)], vec![]));
    // A proof made for another coldkey does not bind the hotkey to this one.
    let for_c = hotkey_binding_proof(&h, &c.public());
    assert_eq!(
        l.run(
            &a,
            Call::AssociateHotkey {
                hotkey: h.public(),
                proof: for_c
            }
        ),
        Err(TxError::BadBindingProof)
    );
    // The coldkey cannot forge the hotkey's consent with its own key.
    let forged = hotkey_binding_proof(&a, &a.public());
    assert_eq!(
        l.run(
            &a,
            Call::AssociateHotkey {
                hotkey: h.public(),
                proof: forged
            }
        ),
        Err(TxError::BadBindingProof)
    );
    assert_eq!(
        l.run(
            &a,
            Call::AssociateHotkey {
                hotkey: a.public(),
                proof: forged
            }
        ),
        Err(TxError::SelfAssociation)
    );
    // A key holding money is a coldkey and cannot become a hotkey.
    let proof = hotkey_binding_proof(&rich, &a.public());
    assert!(matches!(
        l.run(
            &a,
            Call::AssociateHotkey {
                hotkey: rich.public(),
                proof
            }
        ),
        Err(TxError::KeyInUseAsColdkey(_))
    ));
    l.associate(&a, &h);
    assert_eq!(l.state.owned_hotkeys(&a.public()), &[h.public()]);
    // Once owned, nobody else may take it, even with its consent.
    l.ok(
        &a,
        Call::Transfer {
            to: c.public(),
            amount: TOKEN,
        },
    );
    let proof = hotkey_binding_proof(&h, &c.public());
    assert!(matches!(
        l.run(
            &c,
            Call::AssociateHotkey {
                hotkey: h.public(),
                proof
            }
        ),
        Err(TxError::HotkeyAlreadyOwned(_))
    ));
    // Transfers to a hotkey would strand the money.
    assert!(matches!(
        l.run(
            &a,
            Call::Transfer {
                to: h.public(),
                amount: 1
            }
        ),
        Err(TxError::RecipientIsHotkey(_))
    ));
}

#[test]
fn staking_delegation_and_take() {
    let (a, b, h) = (key(1), key(2), key(10));
    let mut l = Ledger::new(genesis(&[(1, 100 * TOKEN), (2, 50 * TOKEN)], vec![]));
    l.associate(&a, &h);
    let hk = h.public();
    l.ok(
        &a,
        Call::AddStake {
            hotkey: hk,
            amount: 40 * TOKEN,
        },
    );
    // Delegation: any coldkey may stake to any hotkey.
    l.ok(
        &b,
        Call::AddStake {
            hotkey: hk,
            amount: 20 * TOKEN,
        },
    );
    assert_eq!(l.state.hotkey_stake(&hk), 60 * TOKEN);
    assert_eq!(l.state.stake(&b.public(), &hk), 20 * TOKEN);
    assert_eq!(l.state.balance(&b.public()), 30 * TOKEN);
    assert!(matches!(
        l.run(
            &b,
            Call::AddStake {
                hotkey: hk,
                amount: 1000
            }
        ),
        Err(TxError::BelowMinStake { .. })
    ));
    assert!(matches!(
        l.run(
            &b,
            Call::AddStake {
                hotkey: key(11).public(),
                amount: TOKEN
            }
        ),
        Err(TxError::UnknownHotkey(_))
    ));
    assert_eq!(
        l.run(
            &b,
            Call::RemoveStake {
                hotkey: hk,
                amount: 21 * TOKEN
            }
        ),
        Err(TxError::InsufficientStake {
            stake: 20 * TOKEN,
            needed: 21 * TOKEN
        })
    );
    l.ok(
        &b,
        Call::RemoveStake {
            hotkey: hk,
            amount: 20 * TOKEN,
        },
    );
    assert_eq!(l.state.stake(&b.public(), &hk), 0);
    assert_eq!(l.state.stakers(&hk).count(), 1);
    assert_eq!(l.state.balance(&b.public()), 50 * TOKEN);

    // Take: only the owner, at most the maximum, increases rate-limited.
    let max = l.state.params().max_take_u16;
    assert_eq!(l.state.hotkey(&hk).unwrap().take_u16, max);
    assert!(matches!(
        l.run(
            &b,
            Call::SetTake {
                hotkey: hk,
                take_u16: 0
            }
        ),
        Err(TxError::NotHotkeyOwner(_))
    ));
    assert!(matches!(
        l.run(
            &a,
            Call::SetTake {
                hotkey: hk,
                take_u16: max + 1
            }
        ),
        Err(TxError::TakeTooHigh { .. })
    ));
    l.ok(
        &a,
        Call::SetTake {
            hotkey: hk,
            take_u16: 1000,
        },
    );
    assert!(matches!(
        l.run(
            &a,
            Call::SetTake {
                hotkey: hk,
                take_u16: 2000
            }
        ),
        Err(TxError::TakeRateLimited { .. })
    ));
    l.ok(
        &a,
        Call::SetTake {
            hotkey: hk,
            take_u16: 500,
        },
    );
    l.check_supply();
}

#[test]
fn subnet_creation_burns_the_lock_cost() {
    let a = key(1);
    let mut l = Ledger::new(genesis(&[(1, 150 * TOKEN)], vec![]));
    let bad = Hyperparameters {
        max_allowed_uids: 10,
        ..Hyperparameters::default()
    };
    assert!(matches!(
        l.run(
            &a,
            Call::CreateSubnet {
                hyperparameters: Some(bad),
                owner_hotkey: None
            }
        ),
        Err(TxError::Hyperparameters(_))
    ));
    l.ok(
        &a,
        Call::CreateSubnet {
            hyperparameters: None,
            owner_hotkey: None,
        },
    );
    let s = l.state.subnet(1).unwrap();
    assert_eq!(s.owner, a.public());
    assert_eq!(s.hyperparameters, Hyperparameters::default());
    assert_eq!(s.burn, TOKEN);
    assert_eq!(l.state.balance(&a.public()), 50 * TOKEN);
    assert!(
        l.state.total_issuance() < 150 * TOKEN,
        "the lock is recycled"
    );
    assert!(matches!(
        l.run(
            &a,
            Call::CreateSubnet {
                hyperparameters: None,
                owner_hotkey: None
            }
        ),
        Err(TxError::InsufficientBalance { .. })
    ));
    l.check_supply();
}

#[test]
fn burn_price_rises_with_registrations_and_halves_per_half_life() {
    let a = key(1);
    let mut l = one_default_subnet(&a, 10_000 * TOKEN);
    assert_eq!(l.state.subnet(1).unwrap().burn, TOKEN);
    l.idle(1);
    let decayed = l.state.subnet(1).unwrap().burn;
    assert!(
        decayed < TOKEN && decayed > TOKEN - TOKEN / 200,
        "{decayed}"
    );

    let h = key(10);
    l.associate(&a, &h);
    let price = l.state.subnet(1).unwrap().burn;
    let balance = l.state.balance(&a.public());
    let issuance = l.state.total_issuance();
    let tx = l.tx(
        &a,
        Call::Register {
            netuid: 1,
            hotkey: h.public(),
        },
    );
    // The tx's block decays the price once before the registration pays it.
    l.block(&[tx]);
    let s = l.state.subnet(1).unwrap();
    let paid = balance - l.state.balance(&a.public());
    assert!(paid <= price && paid > price - price / 200);
    assert_eq!(s.burn, paid * 1260 / 1000, "×1.26 per registration");
    assert_eq!(s.neurons.len(), 1);
    assert!(l.state.total_issuance() < issuance + 2 * TOKEN - paid + 1);

    // Registering the same hotkey twice is refused; so is someone else's hotkey.
    assert_eq!(
        l.run(
            &a,
            Call::Register {
                netuid: 1,
                hotkey: h.public()
            }
        ),
        Err(TxError::AlreadyRegistered(1))
    );
    assert_eq!(
        l.run(
            &a,
            Call::Register {
                netuid: 2,
                hotkey: h.public()
            }
        ),
        Err(TxError::UnknownSubnet(2))
    );

    // Half-life 360 blocks: after 360 blocks the price is half (within the Q32 rounding).
    let start = l.state.subnet(1).unwrap().burn;
    l.idle(360);
    let half = l.state.subnet(1).unwrap().burn;
    let want = start / 2;
    assert!(
        half.abs_diff(want) <= want / 10_000 + 400,
        "{half} vs {want}"
    );
    // And it never goes below the minimum.
    l.idle(360 * 12);
    assert_eq!(
        l.state.subnet(1).unwrap().burn,
        Hyperparameters::default().min_burn
    );
    l.check_supply();
}

/// Registers `count` fresh hotkeys (seeds from `first`) owned by `owner` on `netuid`.
fn register_many(
    l: &mut Ledger,
    owner: &SecretKey,
    netuid: u16,
    first: u8,
    count: u8,
) -> Vec<SecretKey> {
    let hotkeys: Vec<SecretKey> = (first..first + count).map(key).collect();
    for chunk in hotkeys.chunks(16) {
        let mut txs = Vec::new();
        for h in chunk {
            let proof = hotkey_binding_proof(h, &owner.public());
            txs.push(l.tx(
                owner,
                Call::AssociateHotkey {
                    hotkey: h.public(),
                    proof,
                },
            ));
            txs.push(l.tx(
                owner,
                Call::Register {
                    netuid,
                    hotkey: h.public(),
                },
            ));
        }
        for r in l.block(&txs) {
            r.unwrap();
        }
    }
    hotkeys
}

#[test]
fn a_full_subnet_replaces_the_lowest_emission_non_immune_neuron() {
    let (a, m) = (key(1), key(2));
    let mut l = Ledger::new(genesis(
        &[(1, 100_000 * TOKEN), (2, 100_000 * TOKEN)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: fast(),
        }],
    ));
    // The owner's first hotkey (the validator, uid 0) is owner-immortal.
    let owned = register_many(&mut l, &a, 1, 100, 1);
    let miners = register_many(&mut l, &m, 1, 101, 63);
    let validator = &owned[0];
    assert_eq!(l.state.subnet(1).unwrap().neurons.len(), 64);
    l.ok(
        &a,
        Call::AddStake {
            hotkey: validator.public(),
            amount: 1000 * TOKEN,
        },
    );
    // Weight every miner but uid 5.
    let uids: Vec<u16> = (1..64).filter(|u| *u != 5).collect();
    let weights = vec![100u16; uids.len()];
    l.ok(
        validator,
        Call::SetWeights {
            netuid: 1,
            uids: uids.clone(),
            weights: weights.clone(),
        },
    );
    // Two epochs: the first grants the permit, the second counts the validator's weights.
    l.idle(50);
    l.ok(
        validator,
        Call::SetWeights {
            netuid: 1,
            uids,
            weights,
        },
    );
    l.idle(21);
    let s = l.state.subnet(1).unwrap();
    assert!(s.epochs >= 3);
    assert_eq!(s.neurons[5].emission, 0);
    assert!(
        s.neurons
            .iter()
            .filter(|n| n.uid != 5)
            .all(|n| n.emission > 0)
    );
    let pruned = miners[4].public();
    assert_eq!(s.neurons[5].hotkey, pruned);

    let newcomer = register_many(&mut l, &m, 1, 200, 1).remove(0);
    let s = l.state.subnet(1).unwrap();
    assert_eq!(s.neurons.len(), 64);
    assert_eq!(s.neurons[5].hotkey, newcomer.public());
    assert_eq!(s.uids.get(&newcomer.public()), Some(&5));
    assert!(s.neuron(&pruned).is_none());
    assert!(s.neurons[5].weights.is_empty() && s.neurons[5].bonds.is_empty());
    assert_eq!(s.neurons[5].registered_at, l.state.height());

    // The newcomer is immune: the next registration prunes someone else.
    let next = register_many(&mut l, &m, 1, 201, 1).remove(0);
    let s = l.state.subnet(1).unwrap();
    assert_eq!(s.neurons[5].hotkey, newcomer.public());
    let uid = s.uids[&next.public()];
    assert_ne!(uid, 5);
    assert_ne!(uid, 0, "the owner's hotkey is never pruned");
    // The validator's weight on the replaced uid is now 0: the newcomer inherits nothing.
    assert!(s.neurons[0].weights.contains(&(uid, 0)));
    l.check_supply();
}

#[test]
fn commit_then_reveal() {
    let (a, v, m) = (key(1), key(10), key(11));
    let hyper = Hyperparameters {
        tempo: 10,
        commit_reveal_enabled: true,
        weights_set_rate_limit: 5,
        ..fast()
    };
    let mut l = Ledger::new(genesis(
        &[(1, 1000 * TOKEN)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: hyper,
        }],
    ));
    let hks = register_many(&mut l, &a, 1, 10, 2);
    assert_eq!(hks[0].public(), v.public());
    let (uids, weights, salt) = (vec![1u16], vec![7u16], b"salt-1".to_vec());
    let hash = weights_commit_hash(&v.public(), 1, &uids, &weights, &salt).unwrap();
    // As on the chain, registering sets `last_update`, and the rate limit counts from it.
    let registered = l.state.subnet(1).unwrap().neurons[0].registered_at;
    assert_eq!(
        l.state.subnet(1).unwrap().neurons[0].last_update,
        registered
    );
    assert_eq!(
        l.run(
            &v,
            Call::CommitWeights {
                netuid: 1,
                commit_hash: hash,
            }
        ),
        Err(TxError::WeightsRateLimited {
            next: registered + 5
        })
    );
    while l.state.height() + 1 < registered + 5 {
        l.idle(1);
    }
    let reveal = |salt: &[u8]| Call::RevealWeights {
        netuid: 1,
        uids: uids.clone(),
        weights: weights.clone(),
        salt: salt.to_vec(),
    };

    assert_eq!(
        l.run(
            &v,
            Call::SetWeights {
                netuid: 1,
                uids: uids.clone(),
                weights: weights.clone()
            }
        ),
        Err(TxError::CommitRevealRequired(1))
    );
    assert_eq!(l.run(&v, reveal(&salt)), Err(TxError::NoCommit(1)));
    l.ok(
        &v,
        Call::CommitWeights {
            netuid: 1,
            commit_hash: hash,
        },
    );
    let commit = l.commits(&v)[0].clone();
    assert!(matches!(
        l.run(
            &v,
            Call::CommitWeights {
                netuid: 1,
                commit_hash: hash
            }
        ),
        Err(TxError::WeightsRateLimited { .. })
    ));
    // Same epoch: too early (unless the commit fell on the epoch's last block).
    let subnet = l.state.subnet(1).unwrap().clone();
    if subnet.weights_epoch(l.state.height() + 1) < commit.reveal_epoch {
        assert!(matches!(
            l.run(&v, reveal(&salt)),
            Err(TxError::RevealTooEarly { .. })
        ));
    }
    // Move to the reveal epoch.
    while subnet.weights_epoch(l.state.height() + 1) < commit.reveal_epoch {
        l.idle(1);
    }
    assert_eq!(l.run(&v, reveal(b"salt-2")), Err(TxError::CommitMismatch));
    assert_eq!(
        l.run(&m, reveal(&salt)),
        Err(TxError::NoCommit(1)),
        "another hotkey cannot reveal it"
    );
    l.ok(&v, reveal(&salt));
    let n = &l.state.subnet(1).unwrap().neurons[0];
    assert_eq!(n.weights, vec![(1, 65535)], "stored max-upscaled");
    // The reveal stores the row; `last_update` stays at the commit's block, as on the chain.
    assert_eq!(n.weights_stored_at, Some(l.state.height()));
    assert_eq!(n.last_update, commit.block);
    assert!(
        l.state
            .subnet(1)
            .unwrap()
            .weight_commits(&v.public())
            .is_empty()
    );
    assert_eq!(l.run(&v, reveal(&salt)), Err(TxError::NoCommit(1)));

    // A commit left past its reveal epoch expires.
    l.idle(5);
    let salt3 = b"salt-3".to_vec();
    let hash3 = weights_commit_hash(&v.public(), 1, &uids, &weights, &salt3).unwrap();
    l.ok(
        &v,
        Call::CommitWeights {
            netuid: 1,
            commit_hash: hash3,
        },
    );
    let reveal_epoch = l.commits(&v)[0].reveal_epoch;
    while subnet.weights_epoch(l.state.height() + 1) <= reveal_epoch {
        l.idle(1);
    }
    assert!(matches!(
        l.run(&v, reveal(&salt3)),
        Err(TxError::RevealTooLate { .. })
    ));

    // Commits on a subnet without commit-reveal are refused.
    let plain = Ledger::new(genesis(
        &[(1, 1000 * TOKEN)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: fast(),
        }],
    ));
    let mut plain = plain;
    register_many(&mut plain, &a, 1, 10, 1);
    assert_eq!(
        plain.run(
            &v,
            Call::CommitWeights {
                netuid: 1,
                commit_hash: hash
            }
        ),
        Err(TxError::CommitRevealDisabled(1))
    );
}

/// A commit-reveal subnet for the queue and mask tests: no rate limit, so commits may follow
/// each other block by block.
fn commit_reveal_subnet(tempo: u16) -> Hyperparameters {
    Hyperparameters {
        tempo,
        commit_reveal_enabled: true,
        weights_set_rate_limit: 0,
        ..fast()
    }
}

/// Idles until the next block to apply is an epoch block of subnet `netuid`, and returns it.
fn idle_until_epoch_block(l: &mut Ledger, netuid: u16) -> u64 {
    let s = l.state.subnet(netuid).unwrap().clone();
    while !s.is_epoch_block(l.state.height() + 1) {
        l.idle(1);
    }
    l.state.height() + 1
}

#[test]
fn commits_queue_up_to_ten_and_a_reveal_drops_the_older_ones() {
    let a = key(1);
    let mut l = Ledger::new(genesis(
        &[(1, 1000 * TOKEN)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: commit_reveal_subnet(100),
        }],
    ));
    let v = register_many(&mut l, &a, 1, 10, 2).remove(0);
    let (uids, weights) = (vec![1u16], vec![9u16]);
    let salt = |i: u8| vec![i; 8];
    let hash = |i: u8| weights_commit_hash(&v.public(), 1, &uids, &weights, &salt(i)).unwrap();
    let commit = |i: u8| Call::CommitWeights {
        netuid: 1,
        commit_hash: hash(i),
    };
    let reveal = |i: u8| Call::RevealWeights {
        netuid: 1,
        uids: uids.clone(),
        weights: weights.clone(),
        salt: salt(i),
    };

    // Ten commits in one epoch, one per block, right after an epoch block.
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    for i in 0..10 {
        l.ok(&v, commit(i));
    }
    let queue = l.commits(&v);
    assert_eq!(queue.len(), 10);
    assert!(queue.windows(2).all(|w| w[0].block < w[1].block));
    let before = l.state.clone();
    let tx = l.tx(&v, commit(10));
    let h = l.state.height() + 1;
    let (after, results) = apply_block(&before, h, &[tx]).unwrap();
    assert_eq!(results, vec![Err(TxError::TooManyUnrevealedCommits(1))]);
    assert_eq!(
        after.subnet(1).unwrap().weight_commits(&v.public()),
        &queue[..],
        "a refused commit changes no queue"
    );
    *l.nonces.get_mut(&v.public()).unwrap() -= 1;

    // Before the reveal epoch every reveal is early.
    assert!(matches!(
        l.run(&v, reveal(2)),
        Err(TxError::RevealTooEarly { .. })
    ));
    // In it, revealing the third commit also discards the two before it.
    idle_until_epoch_block(&mut l, 1);
    l.ok(&v, reveal(2));
    let left = l.commits(&v);
    assert_eq!(left, queue[3..].to_vec());
    assert_eq!(
        l.state.subnet(1).unwrap().neurons[0].weights,
        vec![(1, 65535)]
    );
    assert_eq!(l.run(&v, reveal(0)), Err(TxError::CommitMismatch));
    assert_eq!(l.run(&v, reveal(2)), Err(TxError::CommitMismatch));
    l.ok(&v, reveal(5));
    assert_eq!(l.commits(&v), &queue[6..]);

    // Past the reveal epoch the rest have expired: a reveal is too late, and they no longer count
    // against the limit (the next commit purges them).
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    assert!(matches!(
        l.run(&v, reveal(7)),
        Err(TxError::RevealTooLate { .. })
    ));
    assert_eq!(l.commits(&v).len(), 4, "a refused reveal purges nothing");
    for i in 20..30 {
        l.ok(&v, commit(i));
    }
    let queue = l.commits(&v);
    assert_eq!(queue.len(), 10);
    assert_eq!(queue[0].hash, hash(20));
    assert_eq!(
        l.run(&v, commit(30)),
        Err(TxError::TooManyUnrevealedCommits(1))
    );
    // Once all have expired, a reveal of one is too late, of anything else there is nothing.
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    assert!(matches!(
        l.run(&v, reveal(25)),
        Err(TxError::RevealTooLate { .. })
    ));
    assert_eq!(l.run(&v, reveal(40)), Err(TxError::NoCommit(1)));
    l.check_supply();
}

#[test]
fn a_commit_on_an_epoch_block_belongs_to_the_new_epoch() {
    let a = key(1);
    let tempo = 10u64;
    let mut l = Ledger::new(genesis(
        &[(1, 1000 * TOKEN)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: commit_reveal_subnet(10),
        }],
    ));
    let v = register_many(&mut l, &a, 1, 10, 2).remove(0);
    let (uids, weights) = (vec![1u16], vec![3u16]);
    let hash = |salt: &[u8]| weights_commit_hash(&v.public(), 1, &uids, &weights, salt).unwrap();
    let reveal = |salt: &[u8]| Call::RevealWeights {
        netuid: 1,
        uids: uids.clone(),
        weights: weights.clone(),
        salt: salt.to_vec(),
    };
    // Two commits in the epoch block itself, after that block's epoch ran.
    let b = idle_until_epoch_block(&mut l, 1);
    let txs = [
        l.tx(
            &v,
            Call::CommitWeights {
                netuid: 1,
                commit_hash: hash(b"one"),
            },
        ),
        l.tx(
            &v,
            Call::CommitWeights {
                netuid: 1,
                commit_hash: hash(b"two"),
            },
        ),
    ];
    assert_eq!(l.block(&txs), vec![Ok(()), Ok(())]);
    let s = l.state.subnet(1).unwrap();
    assert_eq!(s.last_epoch_block, b);
    assert_eq!(s.weights_epoch(b), s.epoch_index(b) + 1);
    assert_eq!(
        s.weight_commits(&v.public())[0].reveal_epoch,
        s.weights_epoch(b) + 1
    );
    // The reveal window is the next epoch: blocks b + tempo + 1 ..= b + 2·tempo + 1.
    l.idle(tempo - 1);
    assert_eq!(l.state.height() + 1, b + tempo);
    assert!(matches!(
        l.run(&v, reveal(b"one")),
        Err(TxError::RevealTooEarly { .. })
    ));
    l.idle(tempo);
    assert_eq!(l.state.height() + 1, b + 2 * tempo + 1);
    l.ok(&v, reveal(b"one"));
    assert_eq!(l.state.height() + 1, b + 2 * tempo + 2);
    assert!(matches!(
        l.run(&v, reveal(b"two")),
        Err(TxError::RevealTooLate { .. })
    ));
}

/// The anti-sniping scenario: validator `v` commits weights naming uid 2 before anyone holds it
/// (commit `c0`), optionally commits again (`c1`), then miner `m2` registers as uid 2, `v`
/// commits `c2` and reveals `c0`. `c2` moves `v`'s `last_update` (a commit does, a reveal does
/// not) past m2's registration, so the outdated-weight mask keeps `W[v][m2]`, and only a live
/// commit older than the registration (`c1`) can mask it. Returns the ledger just after the epoch
/// that closes the reveal epoch.
fn sniping_scenario(commit_again: bool) -> (Ledger, SecretKey) {
    let (a, m) = (key(1), key(2));
    let mut l = Ledger::new(genesis(
        &[(1, 10_000 * TOKEN), (2, 1_000 * TOKEN)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: commit_reveal_subnet(20),
        }],
    ));
    let v = register_many(&mut l, &a, 1, 10, 1).remove(0);
    register_many(&mut l, &m, 1, 30, 1);
    l.ok(
        &a,
        Call::AddStake {
            hotkey: v.public(),
            amount: 100 * TOKEN,
        },
    );
    let (uids, weights) = (vec![1u16, 2], vec![1u16, 1]);
    let commit = |salt: &[u8]| Call::CommitWeights {
        netuid: 1,
        commit_hash: weights_commit_hash(&v.public(), 1, &uids, &weights, salt).unwrap(),
    };
    // c0 in epoch k; the epoch closing k grants v its validator permit (it has stake).
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    l.ok(&v, commit(b"c0"));
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    assert!(l.state.subnet(1).unwrap().neurons[0].validator_permit);
    // Epoch k + 1: maybe c1, then m2 registers, then c0 is revealed.
    if commit_again {
        l.ok(&v, commit(b"c1"));
    }
    let m2 = register_many(&mut l, &m, 1, 31, 1).remove(0);
    let s = l.state.subnet(1).unwrap();
    assert_eq!(s.uids[&m2.public()], 2);
    l.ok(&v, commit(b"c2"));
    l.ok(
        &v,
        Call::RevealWeights {
            netuid: 1,
            uids: uids.clone(),
            weights: weights.clone(),
            salt: b"c0".to_vec(),
        },
    );
    let s = l.state.subnet(1).unwrap();
    assert_eq!(s.neurons[0].weights, vec![(1, 65535), (2, 65535)]);
    assert!(s.neurons[0].last_update > s.neurons[2].registered_at);
    assert_eq!(
        s.weight_commits(&v.public()).len(),
        usize::from(commit_again) + 1
    );
    // The epoch closing k + 1.
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    (l, v)
}

#[test]
fn a_live_commit_older_than_a_registration_masks_the_weight_on_it() {
    // Control: with nothing else committed, the revealed row counts in full.
    let (l, _) = sniping_scenario(false);
    let n = &l.state.subnet(1).unwrap().neurons;
    assert!(n[1].incentive_u16 > 0 && n[2].incentive_u16 > 0, "{n:?}");
    assert_eq!(n[1].incentive_u16, n[2].incentive_u16);

    // v still holds c1, made before m2 registered: the epoch drops W[v][m2] (the stored row keeps
    // it), so m2 gets no incentive from v and m1 gets it all.
    let (mut l, v) = sniping_scenario(true);
    let s = l.state.subnet(1).unwrap();
    let n = &s.neurons;
    assert!(n[0].validator_permit && n[0].active);
    assert_eq!(n[2].incentive_u16, 0, "{n:?}");
    assert_eq!(n[1].incentive_u16, u16::MAX);
    assert_eq!(n[0].weights, vec![(1, 65535), (2, 65535)]);
    let c1 = s.weight_commits(&v.public())[0].clone();
    assert!(c1.block < n[2].registered_at);
    // The next epoch, c1 has expired: the mask lifts and the stored row counts again.
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    let s = l.state.subnet(1).unwrap();
    assert!(s.weights_epoch(l.state.height()) > c1.reveal_epoch);
    assert!(s.neurons[2].incentive_u16 > 0, "{:?}", s.neurons);
    l.check_supply();
}

#[test]
fn a_pruned_hotkeys_commits_stay_until_they_expire() {
    let (a, m) = (key(1), key(2));
    let mut l = Ledger::new(genesis(
        &[(1, 100_000 * TOKEN), (2, 100_000 * TOKEN)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: commit_reveal_subnet(20),
        }],
    ));
    register_many(&mut l, &a, 1, 100, 1);
    let miners = register_many(&mut l, &m, 1, 101, 63);
    l.idle(11);
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    let txs: Vec<_> = miners
        .iter()
        .map(|h| {
            let hash = weights_commit_hash(&h.public(), 1, &[0], &[1], b"s").unwrap();
            l.tx(
                h,
                Call::CommitWeights {
                    netuid: 1,
                    commit_hash: hash,
                },
            )
        })
        .collect();
    assert!(l.block(&txs).iter().all(Result::is_ok));
    register_many(&mut l, &m, 1, 200, 1);
    let s = l.state.subnet(1).unwrap();
    let pruned: Vec<&SecretKey> = miners
        .iter()
        .filter(|h| s.neuron(&h.public()).is_none())
        .collect();
    assert_eq!(pruned.len(), 1);
    let gone = pruned[0].public();
    let reveal_epoch = s.weight_commits(&gone)[0].reveal_epoch;
    assert_eq!(
        s.weight_commits.len(),
        63,
        "kept by hotkey, as on the chain"
    );
    // The epoch closing the commit's epoch keeps it (still live); the one after, when it has
    // expired, drops the pruned hotkey's queue, while registered hotkeys keep theirs until their
    // next commit or reveal.
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    let s = l.state.subnet(1).unwrap();
    assert_eq!(s.weights_epoch(l.state.height()), reveal_epoch);
    assert_eq!(s.weight_commits(&gone).len(), 1);
    idle_until_epoch_block(&mut l, 1);
    l.idle(1);
    let s = l.state.subnet(1).unwrap();
    assert!(s.weights_epoch(l.state.height()) > reveal_epoch);
    assert!(s.weight_commits(&gone).is_empty());
    assert_eq!(s.weight_commits.len(), 62);
    l.check_supply();
}

#[test]
fn several_registrations_in_one_block_each_pay_the_bumped_price() {
    // The chain has no per-block or per-interval registration cap on subnets since 89aedf6df
    // (March 2026); each registration raises the burn at once for the next.
    let a = key(1);
    let mut l = one_default_subnet(&a, 1000 * TOKEN);
    let hotkeys: Vec<SecretKey> = (10..14).map(key).collect();
    for h in &hotkeys {
        l.associate(&a, h);
    }
    let balance = l.state.balance(&a.public());
    let txs: Vec<_> = hotkeys
        .iter()
        .map(|h| {
            l.tx(
                &a,
                Call::Register {
                    netuid: 1,
                    hotkey: h.public(),
                },
            )
        })
        .collect();
    // The price this block charges first: the current one after this block's decay.
    let mut probe = l.state.clone();
    probe.apply_block(l.state.height() + 1, &[]).unwrap();
    let mut price = probe.subnet(1).unwrap().burn;
    assert!(l.block(&txs).iter().all(Result::is_ok));
    let mut paid = 0;
    for _ in &hotkeys {
        paid += price;
        price = price * 1260 / 1000;
    }
    assert_eq!(balance - l.state.balance(&a.public()), paid);
    assert_eq!(l.state.subnet(1).unwrap().burn, price);
    assert_eq!(l.state.subnet(1).unwrap().neurons.len(), 4);
    l.check_supply();
}

#[test]
fn bad_weights_are_refused() {
    let a = key(1);
    let mut l = Ledger::new(genesis(
        &[(1, 1000 * TOKEN)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: fast(),
        }],
    ));
    let hks = register_many(&mut l, &a, 1, 10, 3);
    let v = &hks[0];
    for (uids, weights) in [
        (vec![], vec![]),
        (vec![1, 2], vec![1]),
        (vec![1, 1], vec![1, 2]),
        (vec![3], vec![1]),
    ] {
        assert!(matches!(
            l.run(
                v,
                Call::SetWeights {
                    netuid: 1,
                    uids,
                    weights
                }
            ),
            Err(TxError::BadWeights(_))
        ));
    }
    assert_eq!(
        l.run(
            &key(50),
            Call::SetWeights {
                netuid: 1,
                uids: vec![1],
                weights: vec![1]
            }
        ),
        Err(TxError::SignerNotHotkey)
    );
    l.ok(
        v,
        Call::SetWeights {
            netuid: 1,
            uids: vec![2, 1],
            weights: vec![1, 2],
        },
    );
    assert_eq!(
        l.state.subnet(1).unwrap().neurons[0].weights,
        vec![(1, 65535), (2, 32768)]
    );
}

#[test]
fn epochs_run_consensus_and_pay_emission() {
    let (a, d) = (key(1), key(2));
    let mut l = Ledger::new(genesis(
        &[(1, 10_000 * TOKEN), (2, 1_000 * TOKEN)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: fast(),
        }],
    ));
    let hks = register_many(&mut l, &a, 1, 10, 3);
    let v = &hks[0];
    l.ok(
        &a,
        Call::AddStake {
            hotkey: v.public(),
            amount: 100 * TOKEN,
        },
    );
    // A delegator with a third of the validator's stake.
    l.ok(
        &d,
        Call::AddStake {
            hotkey: v.public(),
            amount: 50 * TOKEN,
        },
    );
    l.ok(
        v,
        Call::SetWeights {
            netuid: 1,
            uids: vec![1, 2],
            weights: vec![3, 1],
        },
    );
    let issuance0 = l.state.total_issuance();
    let owner0 = l.state.balance(&a.public());
    let delegated0 = l.state.stake(&d.public(), &v.public());
    let miner0 = l.state.stake(&a.public(), &hks[1].public());
    for _ in 0..6 {
        l.idle(21);
        l.check_supply();
    }
    let s = l.state.subnet(1).unwrap();
    let n = &s.neurons;
    assert!(n[0].validator_permit);
    assert!(n[0].dividends_u16 > 0, "{:?}", n[0]);
    assert!(n[1].incentive_u16 > n[2].incentive_u16 && n[2].incentive_u16 > 0);
    assert!(n[1].consensus_u16 > 0);
    assert!(n[0].active);
    assert!(n.iter().all(|n| n.emission > 0));
    let meta = l.state.metagraph(1).unwrap();
    assert_eq!(meta.len(), 3);
    assert_eq!(meta[0].hotkey, v.public().to_hex());
    assert_eq!(meta[0].coldkey, a.public().to_hex());
    assert_eq!(meta[0].stake, l.state.hotkey_stake(&v.public()));
    assert_eq!(meta[1].incentive_u16, n[1].incentive_u16);
    assert!(
        serde_json::to_string(&meta)
            .unwrap()
            .contains("dividends_u16")
    );
    // Money: the owner cut went to the owner's balance, miners' and validators' emission to stake.
    assert!(l.state.balance(&a.public()) > owner0);
    assert!(l.state.stake(&a.public(), &hks[1].public()) > miner0);
    assert!(l.state.stake(&d.public(), &v.public()) > delegated0);
    assert!(l.state.total_issuance() > issuance0);
    // 126 blocks at 1 token, all minted (less per-block rounding of at most 3 units).
    let minted = l.state.total_issuance() - issuance0;
    assert!(
        minted <= 126 * TOKEN && minted + 126 * 3 >= 126 * TOKEN,
        "{minted}"
    );
}

#[test]
fn issuance_never_passes_the_cap() {
    let a = key(1);
    let mut l = Ledger::new(genesis(
        &[(1, TOTAL_SUPPLY - 5)],
        vec![GenesisSubnet {
            owner: a.public(),
            hyperparameters: fast(),
        }],
    ));
    let hks = register_many(&mut l, &a, 1, 10, 2);
    l.ok(
        &a,
        Call::AddStake {
            hotkey: hks[0].public(),
            amount: TOKEN,
        },
    );
    for _ in 0..200 {
        l.idle(1);
        l.check_supply();
    }
    // Registrations recycled their burn, so emission may mint it again, but never past the cap.
    assert!(l.state.total_issuance() <= TOTAL_SUPPLY);
}

#[test]
fn genesis_json_round_trips_and_is_checked() {
    let a = key(1);
    let text = format!(
        r#"{{"accounts": {{"{}": 5000000000}}, "subnets": [{{"owner": "{}", "hyperparameters": {{"tempo": 99}}}}]}}"#,
        a.public().to_hex(),
        a.public().to_hex()
    );
    let g = LedgerGenesis::from_json(&text).unwrap();
    assert_eq!(g.subnets[0].hyperparameters.tempo, 99);
    assert_eq!(g.subnets[0].hyperparameters.max_allowed_uids, 256);
    let again = LedgerGenesis::from_json(&g.to_json().unwrap()).unwrap();
    assert_eq!(g, again);
    let s = g.to_state();
    assert_eq!(s.balance(&a.public()), 5 * TOKEN);
    assert_eq!(s.subnet(1).unwrap().owner, a.public());
    assert_eq!(
        s.state_root().unwrap(),
        again.to_state().state_root().unwrap()
    );
    // The balances genesis format alone is a ledger genesis.
    let plain = Genesis::new([(a.public(), 7)].into_iter().collect()).unwrap();
    assert!(LedgerGenesis::from_json(&plain.to_json()).is_ok());
    // Over the cap, bad hyperparameters and unknown fields are refused.
    let over = format!(
        r#"{{"accounts": {{"{}": {}}}}}"#,
        a.public().to_hex(),
        TOTAL_SUPPLY + 1
    );
    assert!(LedgerGenesis::from_json(&over).is_err());
    let bad = text.replace("\"tempo\": 99", "\"tempo\": 0");
    assert!(LedgerGenesis::from_json(&bad).is_err());
    assert!(LedgerGenesis::from_json(&text.replace("subnets", "subnetz")).is_err());
}

// ---- random transaction sequences ----

#[derive(Debug, Clone)]
enum Op {
    Transfer(u8, u8, u64),
    Associate(u8, u8),
    AddStake(u8, u8, u64),
    RemoveStake(u8, u8, u64),
    SetTake(u8, u8, u16),
    CreateSubnet(u8),
    Register(u8, u16, u8),
    SetWeights(u8, u16, Vec<(u16, u16)>),
    Commit(u8, u16, u8),
    Reveal(u8, u16, u8),
    Idle(u8),
}

const COLD: u8 = 4;
const HOT: u8 = 6;

fn cold(i: u8) -> SecretKey {
    key(1 + i % COLD)
}
fn hot(i: u8) -> SecretKey {
    key(20 + i % HOT)
}

fn op() -> impl Strategy<Value = Op> {
    let amount = prop_oneof![0..10u64, (0..500u64).prop_map(|t| t * TOKEN / 4)];
    prop_oneof![
        (any::<u8>(), any::<u8>(), amount.clone()).prop_map(|(a, b, v)| Op::Transfer(a, b, v)),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Associate(a, b)),
        (any::<u8>(), any::<u8>(), amount.clone()).prop_map(|(a, b, v)| Op::AddStake(a, b, v)),
        (any::<u8>(), any::<u8>(), amount).prop_map(|(a, b, v)| Op::RemoveStake(a, b, v)),
        (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(a, b, t)| Op::SetTake(a, b, t)),
        any::<u8>().prop_map(Op::CreateSubnet),
        (any::<u8>(), 1..4u16, any::<u8>()).prop_map(|(a, n, h)| Op::Register(a, n, h)),
        (
            any::<u8>(),
            1..4u16,
            proptest::collection::vec((0..8u16, any::<u16>()), 0..6)
        )
            .prop_map(|(h, n, w)| Op::SetWeights(h, n, w)),
        (any::<u8>(), 1..4u16, any::<u8>()).prop_map(|(h, n, s)| Op::Commit(h, n, s)),
        (any::<u8>(), 1..4u16, any::<u8>()).prop_map(|(h, n, s)| Op::Reveal(h, n, s)),
        (1..30u8).prop_map(Op::Idle),
    ]
}

fn weights_of(salt: u8) -> (Vec<u16>, Vec<u16>) {
    (vec![0, 1], vec![u16::from(salt), 7])
}

fn call_of(op: &Op) -> Option<(SecretKey, Call)> {
    let tiny = Hyperparameters {
        tempo: 7,
        commit_reveal_enabled: false,
        weights_set_rate_limit: 2,
        immunity_period: 5,
        ..fast()
    };
    Some(match op {
        Op::Transfer(a, b, v) => (
            cold(*a),
            Call::Transfer {
                to: cold(*b).public(),
                amount: *v,
            },
        ),
        Op::Associate(a, b) => {
            let (c, h) = (cold(*a), hot(*b));
            let proof = hotkey_binding_proof(&h, &c.public());
            (
                c,
                Call::AssociateHotkey {
                    hotkey: h.public(),
                    proof,
                },
            )
        }
        Op::AddStake(a, b, v) => (
            cold(*a),
            Call::AddStake {
                hotkey: hot(*b).public(),
                amount: *v,
            },
        ),
        Op::RemoveStake(a, b, v) => (
            cold(*a),
            Call::RemoveStake {
                hotkey: hot(*b).public(),
                amount: *v,
            },
        ),
        Op::SetTake(a, b, t) => (
            cold(*a),
            Call::SetTake {
                hotkey: hot(*b).public(),
                take_u16: *t,
            },
        ),
        Op::CreateSubnet(a) => {
            let mut h = tiny;
            h.commit_reveal_enabled = a % 2 == 0;
            (
                cold(*a),
                Call::CreateSubnet {
                    hyperparameters: Some(h),
                    owner_hotkey: None,
                },
            )
        }
        Op::Register(a, n, h) => (
            cold(*a),
            Call::Register {
                netuid: *n,
                hotkey: hot(*h).public(),
            },
        ),
        Op::SetWeights(h, n, w) => (
            hot(*h),
            Call::SetWeights {
                netuid: *n,
                uids: w.iter().map(|p| p.0).collect(),
                weights: w.iter().map(|p| p.1).collect(),
            },
        ),
        Op::Commit(h, n, s) => {
            let k = hot(*h);
            let (uids, weights) = weights_of(*s);
            let hash = weights_commit_hash(&k.public(), *n, &uids, &weights, &[*s]).ok()?;
            (
                k,
                Call::CommitWeights {
                    netuid: *n,
                    commit_hash: hash,
                },
            )
        }
        Op::Reveal(h, n, s) => {
            let (uids, weights) = weights_of(*s);
            (
                hot(*h),
                Call::RevealWeights {
                    netuid: *n,
                    uids,
                    weights,
                    salt: vec![*s],
                },
            )
        }
        Op::Idle(_) => return None,
    })
}

fn random_genesis() -> LedgerState {
    let accounts: Vec<(u8, u64)> = (0..COLD).map(|i| (1 + i, 400 * TOKEN)).collect();
    genesis(
        &accounts,
        vec![GenesisSubnet {
            owner: cold(0).public(),
            hyperparameters: Hyperparameters {
                tempo: 5,
                commit_reveal_enabled: false,
                weights_set_rate_limit: 0,
                immunity_period: 3,
                ..fast()
            },
        }],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_are_deterministic_and_conserve_supply(ops in proptest::collection::vec(op(), 1..60)) {
        let genesis = random_genesis();
        let mut state = genesis.clone();
        let mut blocks: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut pending: Vec<Signed<Transaction>> = Vec::new();
        let mut nonces: BTreeMap<PublicKey, u64> = BTreeMap::new();
        let flush = |state: &mut LedgerState, pending: &mut Vec<Signed<Transaction>>, blocks: &mut Vec<Vec<Vec<u8>>>| {
            let h = state.height() + 1;
            let before = state.total_issuance();
            let results = state.apply_block(h, pending).unwrap();
            assert_eq!(results.len(), pending.len());
            blocks.push(pending.iter().map(|t| t.to_bytes().unwrap()).collect());
            pending.clear();
            assert_eq!(state.total_held(), Some(state.total_issuance()));
            assert!(state.total_issuance() <= TOTAL_SUPPLY);
            // Issuance rises by at most one block's emission (burns only lower it).
            assert!(state.total_issuance() <= before + TOKEN);
        };
        for op in &ops {
            match call_of(op) {
                None => {
                    let Op::Idle(n) = op else { unreachable!() };
                    flush(&mut state, &mut pending, &mut blocks);
                    for _ in 1..*n {
                        flush(&mut state, &mut pending, &mut blocks);
                    }
                }
                Some((signer, call)) => {
                    let nonce = nonces.entry(signer.public()).or_insert(0);
                    pending.push(sign_tx(&signer, *nonce, call).unwrap());
                    *nonce += 1;
                    if pending.len() >= 3 {
                        flush(&mut state, &mut pending, &mut blocks);
                    }
                }
            }
        }
        flush(&mut state, &mut pending, &mut blocks);
        let root = state.state_root().unwrap();

        // Two replays of the same bytes from genesis give the same root as the live run.
        for _ in 0..2 {
            let mut replayed = genesis.clone();
            for (i, txs) in blocks.iter().enumerate() {
                let (next, _) = apply_block_bytes(&replayed, i as u64 + 1, txs).unwrap();
                replayed = next;
            }
            prop_assert_eq!(replayed.state_root().unwrap(), root);
            prop_assert_eq!(&replayed, &state);
        }
        // Signed and byte forms agree.
        let (a, ra) = apply_block(&genesis, 1, &[]).unwrap();
        let (b, rb) = apply_block_bytes::<Vec<u8>>(&genesis, 1, &[]).unwrap();
        prop_assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
        prop_assert_eq!(ra, rb);
    }
}

#[test]
fn blocks_must_follow_in_order() {
    let state = genesis(&[(1, TOKEN)], vec![]);
    assert!(apply_block(&state, 2, &[]).is_err());
    assert!(apply_block(&state, 0, &[]).is_err());
    let (next, _) = apply_block(&state, 1, &[]).unwrap();
    assert_eq!(next.height(), 1);
    assert_ne!(next.state_root().unwrap(), state.state_root().unwrap());
}
