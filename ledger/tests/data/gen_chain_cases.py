#!/usr/bin/env python3
"""Generates ledger/tests/data/chain_cases.json: more cases transcribed from subtensor's
pallets/subtensor/src/tests/{epoch,epoch_logs,mechanism}.rs (commit
14bc6f9f964b9cc362e9635dd110a487fa5d15a0).

Each case replays the chain test's storage state epoch by epoch (schema yuma-vectors/1, the
carry rules of yuma_samples.json) and carries exactly the assertions of the Rust test.
The chain tests' setups (registrations, set_weights, neuron replacement) are replayed by hand into
the storage each epoch reads; every choice is explained in the case's notes. No chain code is
used: set_weights' max-upscale is re-derived from its documented I32F32 rule.

Run from the repository root: python3 ledger/tests/data/gen_chain_cases.py > ledger/tests/data/chain_cases.json
"""
import json
import sys

COMMIT = "14bc6f9f964b9cc362e9635dd110a487fa5d15a0"
REPO = "opentensor/subtensor"
PATH = "pallets/subtensor/src/tests/epoch.rs"
FRAC = 1 << 32
U16 = 65535


def cutoff(tempo):
    # get_activity_cutoff_blocks: max(ActivityCutoffFactorMilli * tempo / 1000, 1), factor 13889.
    return max(13889 * tempo // 1000, 1)


def fx_round(bits):
    # I32F32::round(): half away from zero (values here are non-negative).
    return (bits + (1 << 31)) >> 32


def max_upscale(values):
    """set_weights step 14: vec_u16_max_upscale_to_u16 in I32F32, bit for bit (math.rs)."""
    m = max(values)
    if m == 0:
        return [0 for _ in values]
    if m > 32768:
        q = (U16 * FRAC * FRAC) // (m * FRAC)  # u16_max.safe_div(val): (a << 32) / b
        return [min(fx_round(e * q), U16) for e in values]
    return [min(fx_round((e * U16 * FRAC * FRAC) // (m * FRAC)), U16) for e in values]


def row(uids, values):
    return [[u, w] for u, w in zip(uids, max_upscale(values))]


def src(test, path=PATH):
    return {"repo": REPO, "commit": COMMIT, "path": path, "test": test}


def params(n, tempo, **kw):
    p = {
        "n": n,
        "tempo": tempo,
        "activity_cutoff_blocks": cutoff(tempo),
        "kappa_u16": 32767,
        "bonds_penalty_u16": 65535,
        "bonds_moving_average": 900000,
        "max_allowed_validators": 64,
        "stake_threshold": 0,
        "rao_emission": 1000000000,
        "yuma3": False,
        "liquid_alpha": False,
    }
    p.update(kw)
    return p


def state(stake, reg, lu, permits=None, weights=None):
    n = len(stake)
    return {
        "stake": stake,
        "block_at_registration": reg,
        "last_update": lu,
        "validator_permit": permits or [False] * n,
        "bonds": [[] for _ in range(n)],
        "weights": weights or [[] for _ in range(n)],
    }


def per_uid(uids, value):
    return {str(u): value for u in uids}


cases = []

# ---------------------------------------------------------------- test_10_graph
cases.append({
    "id": "test_10_graph",
    "source": src("test_10_graph"),
    "kind": "epoch_sequence",
    "description": "10 uids with stake 1 each that only self-weight. No permits yet (no prior epoch), so "
                   "every weight is masked: consensus/incentive/dividends 0 and the emission falls back "
                   "to (unmasked) stake: 1e9 / 10, floored in I32F32.",
    "params": params(10, 65534),
    "initial_state": state([1] * 10, [0] * 10, [0] * 10),
    "notes": "append_neuron(netuid, hotkey, 0): registered and last updated at block 0; "
             "run_to_block(1) then self-weights at block 1. Rank/Trust asserts dropped (deprecated getters, always 0).",
    "epochs": [{
        "current_block": 1,
        "weights": [[[i, U16]] for i in range(10)],
        "last_update": [1] * 10,
        "expect": {
            "consensus_u16": per_uid(range(10), 0),
            "incentive_u16": per_uid(range(10), 0),
            "dividends_u16": per_uid(range(10), 0),
            "emission": per_uid(range(10), 99999999),
        },
    }],
})


# ---------------------------------------------------------------- test_512_graph
def distribute(v, n, interleave):
    if interleave == 0:
        return list(range(v)), list(range(v, n))
    assert interleave == 1
    vals = [i for i in range(n) if i % (n // v) == 0]
    return vals, [i for i in range(n) if i % (n // v) != 0]


def graph_512(interleave, server_self):
    n, v = 512, 64
    stake_v = 328_125_000_000_000
    validators, servers = distribute(v, n, interleave)
    stake = [stake_v if u in validators else 0 for u in range(n)]
    weights = [[] for _ in range(n)]
    for u in validators:
        weights[u] = row(servers, [U16 // n] * len(servers))
    if server_self:
        for u in servers:
            weights[u] = [[u, U16]]
    lu = [1 if (u in validators or server_self) else 0 for u in range(n)]
    val0, srv0 = validators[0], servers[0]
    expect = {
        "consensus_u16": {}, "incentive_u16": {}, "dividends_u16": {}, "emission": {}, "bonds_u16": {},
    }
    for u in validators:
        expect["consensus_u16"][str(u)] = 0
        expect["incentive_u16"][str(u)] = 0
        expect["dividends_u16"][str(u)] = 1023
        expect["emission"][str(u)] = 7812500
        expect["bonds_u16"][f"{u},{val0}"] = 0
        expect["bonds_u16"][f"{u},{srv0}"] = 65535
    for u in servers:
        expect["consensus_u16"][str(u)] = 146
        expect["incentive_u16"][str(u)] = 146
        expect["dividends_u16"][str(u)] = 0
        expect["emission"][str(u)] = 1116071
        expect["bonds_u16"][f"{u},{val0}"] = 0
        expect["bonds_u16"][f"{u},{srv0}"] = 0
    return {
        "id": f"test_512_graph[interleave={interleave},server_self={str(server_self).lower()}]",
        "source": src("test_512_graph"),
        "kind": "epoch_sequence",
        "description": "512 uids, 64 validators (stake 21e15/64 each) weighting all 448 servers equally"
                       + (", servers self-weighting" if server_self else "")
                       + "; three epochs, legacy bonds. Every epoch runs at block 1 with tempo 65534, so "
                       "last_tempo = 0 <= registration block 0 masks all previous bonds each epoch.",
        "params": params(n, 65534),
        "initial_state": state(stake, [0] * n, [0] * n),
        "notes": "init_run_epochs(..., sparse=false): the chain test runs epoch_dense for these three epochs "
                 "(the permit epoch is the sparse epoch()). Uids appended at block 0; run_to_block(1) is a "
                 "no-op (new_test_ext(1) already sits at block 1), so weights are set at block 1. "
                 "interleave=2 (random shuffle) is not transcribed.",
        "epochs": [
            {"current_block": 1, "_comment": "permit-setting epoch, no weights"},
            {"current_block": 1, "weights": weights, "last_update": lu},
            {"current_block": 1},
            {"current_block": 1, "expect": expect},
        ],
    }


# One layout only: each 512-uid case is ~0.5 MB of weights. interleave=1 with server self-weights
# covers more (interleaved uids, masked diagonal) than the plain block layout.
cases.append(graph_512(1, True))

# ---------------------------------------------------------------- test_active_stake
w_half = row([2, 3], [U16 // 2, U16 // 2])
cases.append({
    "id": "test_active_stake",
    "source": src("test_active_stake"),
    "kind": "epoch_sequence",
    "description": "Legacy Yuma, 2 validators and 2 servers with stake 1 each. Validator stake whose weights "
                   "are older than the activity cutoff (13 blocks at tempo 1) is masked out of the active stake.",
    "params": params(4, 1, max_allowed_validators=4),
    "initial_state": state([1, 1, 1, 1], [0] * 4, [0] * 4),
    "notes": "System::set_block_number(0): registration at block 0. The test jumps to "
             "get_activity_cutoff() + 2 = 5002 (the legacy ActivityCutoff storage, 5000) with epochs "
             "suppressed; the epoch itself uses the 13-block cutoff.",
    "epochs": [
        {"current_block": 0, "_comment": "permit-setting epoch"},
        {
            "current_block": 1,
            "weights": [w_half, w_half, [], []],
            "last_update": [1, 1, 0, 0],
            "expect": {
                "dividends_u16": {"0": 32767, "1": 32767},
                "emission": per_uid(range(4), 250000000),
                "bonds_u16": {"0,0": 0, "0,1": 0, "0,2": 65535, "0,3": 65535,
                              "1,0": 0, "1,1": 0, "1,2": 65535, "1,3": 65535},
            },
        },
        {
            "current_block": 5002,
            "_comment": "uid 0 sets the same weights again at block 5002; uid 1 is now inactive",
            "last_update": [5002, 1, 0, 0],
            "expect": {
                "dividends_u16": {"0": 36044, "1": 29490},
                "emission": {"0": 274999999, "1": 224999999},
                "bonds_u16": {"0,2": 65535, "0,3": 65535, "1,2": 53619, "1,3": 53619},
            },
        },
        {
            "current_block": 5003,
            "_comment": "uid 1 set its weights again at block 5002",
            "last_update": [5002, 5002, 0, 0],
            "expect": {
                "dividends_u16": {"0": 35716, "1": 29818},
                "emission": {"0": 272501132, "1": 227498866},
                "bonds_u16": {"0,2": 65535, "0,3": 65535, "1,2": 54712, "1,3": 54712},
            },
        },
    ],
})

# ---------------------------------------------------------------- test_outdated_weights
w_23 = row([2, 3], [2 * (U16 // 3), U16 // 3])
cases.append({
    "id": "test_outdated_weights",
    "source": src("test_outdated_weights"),
    "kind": "epoch_sequence",
    "description": "Legacy Yuma, tempo 0 (activity cutoff 1 block). Validators weight servers 2/3 and 1/3; "
                   "server uid 3 is then replaced by a new hotkey (no stake) at block 2 and only uid 0 "
                   "refreshes its weights, so uid 1's weight on the new uid 3 is outdated and masked.",
    "params": params(4, 0, max_allowed_validators=4),
    "initial_state": state([1, 1, 1, 1], [1] * 4, [1] * 4),
    "notes": "Replacement (replace_neuron at block 2): BlockAtRegistration[3] = LastUpdate[3] = 2, uid 3's "
             "weights and bonds removed, its permit cleared, other rows' weights on uid 3 set to 0, new "
             "hotkey has no stake. The test asserts uid 3 is the one replaced.",
    "epochs": [
        {"current_block": 1, "_comment": "permit-setting epoch"},
        {
            "current_block": 2,
            "weights": [w_23, w_23, [[2, U16]], [[3, U16]]],
            "last_update": [2, 2, 2, 2],
        },
        {
            "current_block": 3,
            "_comment": "uid 3 replaced at block 2; uid 0 re-sets its weights at block 3",
            "stake": [1, 1, 1, 0],
            "block_at_registration": [1, 1, 1, 2],
            "weights": [w_23, [w_23[0], [3, 0]], [[2, U16]], []],
            "last_update": [3, 2, 2, 2],
            "bonds_override_rows": {"3": []},
            "validator_permit_override": {"3": False},
            "expect": {
                "dividends_u16": {"0": 32767},
                "emission": {"0": 250000000},
                "bonds_u16": {"0,2": 65535, "0,3": 65535},
            },
        },
    ],
})

# ---------------------------------------------------------------- test_zero_weights
cases.append({
    "id": "test_zero_weights",
    "source": src("test_zero_weights"),
    "kind": "epoch_sequence",
    "description": "Legacy Yuma, one validator (stake 1) and one server (stake 0). With no usable weights "
                   "(none, self-weights only, or weights on a uid re-registered since) the whole emission "
                   "goes to stake; once the validator weights the server again they split 50/50.",
    "params": params(2, 65534),
    "initial_state": state([1, 0], [1, 1], [1, 1]),
    "notes": "run_to_block(1) is a no-op (already at block 1). At block 2 uid 0 sets weights, then a new "
             "hotkey (no stake) replaces uid 1 (the lowest emission; every uid is immune so the immune "
             "candidate is taken): uid 0's weight on uid 1 is set to 0 by clear_neuron.",
    "epochs": [
        {"current_block": 1, "expect": {"emission": {"0": 1000000000, "1": 0}}},
        {
            "current_block": 1,
            "weights": [[], [[1, U16]]],
            "last_update": [1, 1],
            "expect": {"emission": {"0": 1000000000, "1": 0}},
        },
        {
            "current_block": 2,
            "weights": [[[1, 0]], []],
            "last_update": [2, 2],
            "block_at_registration": [1, 2],
            "bonds_override_rows": {"1": []},
            "validator_permit_override": {"1": False},
            "expect": {"emission": {"0": 1000000000, "1": 0}},
        },
        {
            "current_block": 3,
            "weights": [[[1, U16]], []],
            "last_update": [3, 2],
            "expect": {"emission": {"0": 500000000, "1": 500000000}},
        },
    ],
})

# ---------------------------------------------------------------- test_deregistered_miner_bonds
cases.append({
    "id": "test_deregistered_miner_bonds",
    "source": src("test_deregistered_miner_bonds"),
    "kind": "epoch_sequence",
    "description": "Legacy Yuma, epochs at tempo 2. After bonds form on both servers, server uid 3 is "
                   "replaced at block 5; the next epoch (block 6, last_tempo 4 <= 5) drops the old bonds on "
                   "uid 3 and the validators' refreshed weights on it are outdated (set in the registration "
                   "block), so bond[0][3] cannot grow while bond[0][2] cannot shrink.",
    "params": params(4, 2, max_allowed_validators=4),
    "initial_state": state([1, 1, 1, 1], [1] * 4, [1] * 4),
    "notes": "The permit epoch runs with tempo 65534 (cutoff 910201), the asserted ones with tempo 2 "
             "(cutoff 27); the case uses tempo 2 throughout, which gives the permit epoch the same output "
             "(every uid active, no bonds to mask). The test only asserts orderings, expressed as relations.",
    "epochs": [
        {"current_block": 1, "_comment": "permit-setting epoch"},
        {
            "current_block": 4,
            "weights": [w_23, w_23, [], []],
            "last_update": [2, 2, 1, 1],
            "expect": {"relations": [
                {"lhs": "bonds_u16[0,2]", "op": ">", "rhs": 0},
                {"lhs": "bonds_u16[0,3]", "op": ">", "rhs": 0},
            ]},
        },
        {
            "current_block": 6,
            "_comment": "uid 3 replaced at block 5, then uids 0 and 1 set the same weights at block 5",
            "stake": [1, 1, 1, 0],
            "block_at_registration": [1, 1, 1, 5],
            "last_update": [5, 5, 1, 5],
            "bonds_override_rows": {"3": []},
            "validator_permit_override": {"3": False},
            "expect": {"relations": [
                {"lhs": "bonds_u16[0,2]", "op": ">=", "rhs": "bonds_u16[0,2]@1"},
                {"lhs": "bonds_u16[0,3]", "op": "<=", "rhs": "bonds_u16[0,3]@1"},
            ]},
        },
    ],
})


# ---------------------------------------------------------------- test_validator_permits (more combos)
def permits_case(interleave, n, v, assignment):
    validators, servers = distribute(v, n, interleave)
    min_stake = v
    stake = [0] * n
    for u in validators:
        stake[u] = u + n if assignment == 1 else 1
    for u in servers:
        stake[u] = u if assignment == 1 else 0
    stake2 = [s + (2 * n if u in servers else 0) for u, s in enumerate(stake)]
    e0 = {str(u): stake[u] >= min_stake for u in validators}
    e0.update({str(u): False for u in servers})
    e1 = {str(u): False for u in validators}
    e1.update({str(u): stake[u] + 2 * n >= min_stake for u in servers})
    e0 = dict(sorted(e0.items(), key=lambda kv: int(kv[0])))
    e1 = dict(sorted(e1.items(), key=lambda kv: int(kv[0])))
    return {
        "id": f"test_validator_permits[interleave={interleave},n={n},v={v},assignment={assignment}]",
        "source": src("test_validator_permits"),
        "kind": "epoch_sequence",
        "description": "Validator permits = top-k (k = max_allowed_validators) of stake among uids whose "
                       "stake >= StakeThreshold (= k here); recomputed every epoch after servers gain 2n stake.",
        "params": params(n, 65534, max_allowed_validators=v, stake_threshold=min_stake, yuma3=True),
        "initial_state": state(stake, [1] * n, [1] * n),
        "notes": "add_network (Yuma3 on, commit-reveal on but no commits). run_to_block(1) is a no-op, so both "
                 "epochs run at block 1.",
        "epochs": [
            {"current_block": 1, "expect": {"validator_permit": e0}},
            {"current_block": 1, "stake": stake2, "expect": {"validator_permit": e1}},
        ],
    }


for interleave in (0, 1):
    for (n, v) in ((2, 1), (4, 2), (8, 4)):
        for assignment in (0, 1):
            if (interleave, n, assignment) == (0, 4, 0):
                continue  # already in yuma_samples.json
            if interleave == 1 and n == 2:
                continue  # interleave 1 gives the same layout as 0 for n=2
            cases.append(permits_case(interleave, n, v, assignment))

# ---------------------------------------------------------------- subnet owner self-weight
cases.append({
    "id": "test_can_set_self_weight_as_subnet_owner",
    "source": src("test_can_set_self_weight_as_subnet_owner"),
    "kind": "epoch_sequence",
    "description": "The subnet owner (uid 0, the only permitted validator) weights itself and uid 1 "
                   "50/50; its self-weight is kept, so both earn equal, non-zero incentive emission.",
    "params": params(2, 360, yuma3=True, owner_uid=0),
    "initial_state": state(
        [5000000000000, 0], [1, 1], [2, 0], [True, False],
        [[[0, U16 // 2], [1, U16 // 2]], []],
    ),
    "notes": "add_dynamic_network (tempo 360, Yuma3 on) registers the owner hotkey as uid 0 at block 1; "
             "weights and permits are inserted into storage directly (not upscaled), LastUpdate = [2, 0], "
             "epoch at block 2 with 1e9. The owner's exact alpha may include pool effects of "
             "register_network; only its share (uid 1 has none) matters. The test compares the "
             "incentive (server) emissions returned by epoch().",
    "epochs": [{
        "current_block": 2,
        "expect": {"relations": [
            {"lhs": "server_emission[0]", "op": ">", "rhs": 0},
            {"lhs": "server_emission[1]", "op": ">", "rhs": 0},
            {"lhs": "server_emission[0]", "op": "==", "rhs": "server_emission[1]"},
        ]},
    }],
})

cases.append({
    "id": "test_epoch_outputs_single_staker_registered_no_weights",
    "source": src("test_epoch_outputs_single_staker_registered_no_weights"),
    "kind": "epoch_sequence",
    "description": "One registered uid with stake 1 and no weights: the whole pending emission is still "
                   "paid out (incentive + dividend emission = 1e9 within 1000 rao).",
    "params": params(1, 65534, yuma3=True),
    "initial_state": state([1], [1], [1]),
    "epochs": [{
        "current_block": 1,
        "expect": {"relations": [
            {"lhs": ["server_emission[0]", "validator_emission[0]"], "op": "==",
             "rhs": 1000000000, "abs_tol": 1000},
        ]},
    }],
})

# ---------------------------------------------------------------- commit-reveal anti-sniping mask
# run_epoch.rs (epoch_mechanism): with commit-reveal on, W[i][j] is dropped when i's earliest unexpired
# commit (WeightCommits, first live one in queue order) was made at a block earlier than
# BlockAtRegistration[j]. The interface takes that block per uid as state.live_commit_block (null: none).
# Expiry: is_commit_expired(commit_epoch) = current epoch (SubnetEpochIndex, +1 on a block whose
# epoch is due) > commit_epoch + reveal_period. Automatic epochs fire when block - LastEpochBlock >= tempo,
# LastEpochBlock starting at the creation block less netuid % tempo (saturating).
cases.append({
    "id": "test_epoch_masks_incoming_to_sniped_uid_prevents_inheritance",
    "source": src("test_epoch_masks_incoming_to_sniped_uid_prevents_inheritance"),
    "kind": "epoch_sequence",
    "description": "Yuma3, commit-reveal on. Validator uid 0 commits at block 21; at block 22 a new hotkey "
                   "takes uid 2 and the validator then weights it (and itself). Its live commit predates "
                   "the registration, so the weight on the newcomer is dropped: no incentive for uid 2.",
    "params": params(3, 10, yuma3=True, max_allowed_validators=3, rao_emission=1000),
    "initial_state": state([10000, 100, 5000], [1, 1, 1], [1, 1, 1], [True, False, False]),
    "notes": "add_network(netuid 40, tempo 10): Yuma3 on, LastEpochBlock 1 (40 % 10 = 0), so automatic "
             "epochs run at blocks 11 and 21 with no weights and no commits (modelled by the block-21 one, "
             "which sets every permit: max 3 validators, StakeThreshold 0; its emission is the coinbase's, "
             "not asserted, 1000 here). Three uids registered at block 1 (burn 0, LastUpdate = registration "
             "block), alpha stake 10000/100/5000. commit_dummy at block 21 after that block's epoch: commit "
             "epoch 2, reveal period 2, so still live at blocks 22 and 23. Weights are set with commit-reveal "
             "briefly off. After the manual epoch at 22 (uid 0 validator emission, uid 1 incentive, uid 2 "
             "nothing) the 4th registration (MaxAllowedUids 3, all immune for 5000 blocks) prunes the "
             "lowest emission, uid 2; the test reads the uid back, so which uid does not change its "
             "assertion. Rank assert dropped (deprecated getter, always 0). Without live_commit_block "
             "uid 2 would take all the incentive (uid 0 holds ~99% of the permitted stake).",
    "epochs": [
        {"current_block": 21, "live_commit_block": [None, None, None],
         "_comment": "automatic epoch at block 21 (permit-setting; no weights, no commits yet)"},
        {
            "current_block": 22,
            "_comment": "uid 0 committed at block 21 and set weights [uid 1] at block 22; manual epoch",
            "weights": [row([1], [U16]), [], []],
            "last_update": [22, 1, 1],
            "live_commit_block": [21, None, None],
        },
        {
            "current_block": 23,
            "_comment": "uid 2 replaced at block 22 (stake 10000); uid 0 weights [0, 2] 50/50 at block 23",
            "stake": [10000, 100, 10000],
            "block_at_registration": [1, 1, 22],
            "weights": [row([0, 2], [U16 // 2, U16 // 2]), [], []],
            "last_update": [23, 1, 22],
            "bonds_override_rows": {"2": []},
            "validator_permit_override": {"2": False},
            "live_commit_block": [21, None, None],
            "expect": {"incentive_u16": {"2": 0}},
        },
    ],
})

cases.append({
    "id": "test_epoch_does_not_mask_outside_window_but_masks_inside",
    "source": src("test_epoch_does_not_mask_outside_window_but_masks_inside"),
    "kind": "epoch_sequence",
    "description": "Yuma3, commit-reveal on. Validator uid 0's first commit (block 8) expires; its second "
                   "(block 32) predates the registrations of uids 2 and 3 (block 33) but not uid 1's "
                   "(block 8). Of its equal weights on uids 1, 2, 3 only uid 1's counts.",
    "params": params(4, 8, yuma3=True, max_allowed_validators=1, rao_emission=1000),
    "initial_state": state([10000, 1000, 1000, 1000], [1, 8, 33, 33], [1, 8, 33, 33],
                           [True, False, False, False]),
    "notes": "add_network(netuid 50, tempo 8): Yuma3 on, LastEpochBlock 0 (1 - 50 % 8, saturating), so "
             "automatic epochs run at blocks 8, 16, 24, 32 (epoch index 1..4), none with weights: bonds stay "
             "empty and the last one leaves the one permit (max 1 validator) with uid 0, the initial "
             "permits here. uid 0 registered at block 1 (stake 10000), commit_dummy at block 8 after that "
             "block's epoch (commit epoch 1), uid 1 registered at block 8 (stake 1000); three tempos later, at "
             "block 32, the first commit has expired (4 > 1 + 2) and the second is made (epoch 4, live at "
             "34); uids 2 and 3 registered at block 33 (stake 1000 each, no permit). uid 0 sets weights "
             "[1, 2, 3] equally at block 34 (commit-reveal briefly off), then the manual epoch at 34. "
             "Only that epoch is replayed: uids 2 and 3 do not exist before block 33.",
    "epochs": [{
        "current_block": 34,
        "weights": [row([1, 2, 3], [U16 // 3] * 3), [], [], []],
        "last_update": [34, 8, 33, 33],
        "live_commit_block": [32, None, None, None],
        "expect": {
            "incentive_u16": {"2": 0, "3": 0},
            "relations": [{"lhs": "incentive_u16[1]", "op": ">", "rhs": 0}],
        },
    }],
})

# ---------------------------------------------------------------- Yuma 3 scenarios
Y3 = dict(bonds_penalty_u16=0, bonds_moving_average=975000, max_allowed_validators=3,
          yuma3=True, liquid_alpha=True, alpha_low_u16=6553, alpha_high_u16=19660,
          alpha_sigmoid_steepness=1000)
WHY = ("Rust zips bond row with target.iter().skip(3) on a 2-3 element target, so these are never compared")


def y3_case(test, description, stakes, schedule, dividends, bonds, liquid=True, checked=None,
            extra=None, notes=None):
    """schedule[k] = (weights per validator, miner uids) set before epoch k, or None."""
    n = len(stakes)
    p = params(n, 1, **Y3)
    if not liquid:
        p["liquid_alpha"] = False
        for k in ("alpha_low_u16", "alpha_high_u16", "alpha_sigmoid_steepness"):
            del p[k]
    epochs = [{"current_block": 2, "_comment": "setup run_epoch: permit-setting epoch, no weights"}]
    lu = [1] * n
    for k, sched in enumerate(schedule):
        e = {"current_block": 3 + k}
        if sched is not None:
            wrows, miners = sched
            weights = [[] for _ in range(n)]
            for u, vals in enumerate(wrows):
                weights[u] = row(miners, vals)
                lu[u] = 2 + k
            e["weights"] = weights
            e["last_update"] = list(lu)
        if extra and k in extra:
            e.update(extra[k])
        if checked is None or k in checked:
            j = k if checked is None else checked.index(k)
            exp = {"dividends_approx": {"values": dividends[j], "abs_tol": 0.001,
                                        "compare": "Dividends u16 / 65535 vs f32 target"}}
            target = bonds[j]
            if all(len(r) == n - 3 for r in target):
                vals = {f"{i},{3 + c}": target[i][c] for i in range(3) for c in range(n - 3)}
                exp["_info_bonds_listed_not_asserted"] = {"values": vals, "abs_tol": 0.001, "why": WHY}
            else:
                exp["_info_bonds_listed_not_asserted"] = {"rows": target, "why": WHY}
            e["expect"] = exp
        epochs.append(e)
    case = {
        "id": test,
        "source": src(test),
        "kind": "epoch_sequence",
        "description": description,
        "params": p,
        "initial_state": state(stakes, [1] * n, [1] * n),
        "notes": "setup_yuma_3_scenario: tempo 1, bonds penalty 0, BMA 975000, kappa 32767, liquid alpha "
                 "(0.1, 0.3) -> u16 (6553, 19660), steepness 1000, max 3 validators; registered at block 1, "
                 "each run_epoch steps one block first. The Rust test runs sparse and dense epochs; "
                 "only dividends are effectively asserted (abs tol 1e-3)."
                 + ((" " + notes) if notes else ""),
        "epochs": epochs,
    }
    return case


M = U16
S1, S2 = [M, 0], [0, M]
cases.append(y3_case(
    "test_yuma_3_kappa_moves_second",
    "Yuma3 + liquid alpha. Big validator A (0.8 stake) switches server second, small B first, small C last.",
    [8, 1, 1, 0, 0],
    [([S1] * 3, [3, 4]), ([S1, S2, S1], [3, 4]), ([S2, S2, S1], [3, 4]), ([S2] * 3, [3, 4]), None, None],
    [[0.8000, 0.1000, 0.1000, 0.0000, 0.0000],
     [0.8446, 0.0498, 0.1056, 0.0000, 0.0000],
     [0.6868, 0.3132, 0.0000, 0.0000, 0.0000],
     [0.7421, 0.2090, 0.0489, 0.0000, 0.0000],
     [0.7625, 0.1706, 0.0669, 0.0000, 0.0000],
     [0.7730, 0.1508, 0.0762, 0.0000, 0.0000]],
    [[[0.1013, 0.0000], [0.1013, 0.0000], [0.1013, 0.0000]],
     [[0.1924, 0.0000], [0.0908, 0.2987], [0.1924, 0.0000]],
     [[0.1715, 0.1013], [0.0815, 0.3697], [0.4336, 0.0000]],
     [[0.1531, 0.1924], [0.0731, 0.4336], [0.3608, 0.1013]],
     [[0.1369, 0.2742], [0.0656, 0.4910], [0.3103, 0.1924]],
     [[0.1225, 0.3478], [0.0588, 0.5426], [0.2712, 0.2742]]],
))
cases.append(y3_case(
    "test_yuma_3_kappa_moves_last",
    "Yuma3 + liquid alpha. Big validator A (0.8 stake) switches server last, small B first, small C second.",
    [8, 1, 1, 0, 0],
    [([S1] * 3, [3, 4]), ([S1, S2, S1], [3, 4]), ([S1, S2, S2], [3, 4]), ([S2] * 3, [3, 4]), None, None],
    [[0.8000, 0.1000, 0.1000, 0.0000, 0.0000],
     [0.8446, 0.0498, 0.1056, 0.0000, 0.0000],
     [0.8966, 0.0333, 0.0701, 0.0000, 0.0000],
     [0.4663, 0.3210, 0.2127, 0.0000, 0.0000],
     [0.5976, 0.2340, 0.1683, 0.0000, 0.0000],
     [0.6592, 0.1932, 0.1475, 0.0000, 0.0000]],
    [[[0.1013, 0.0000], [0.1013, 0.0000], [0.1013, 0.0000]],
     [[0.1924, 0.0000], [0.0908, 0.2987], [0.1924, 0.0000]],
     [[0.2742, 0.0000], [0.0815, 0.5081], [0.1715, 0.2987]],
     [[0.2416, 0.1013], [0.0731, 0.5580], [0.1531, 0.3697]],
     [[0.2141, 0.1924], [0.0656, 0.6028], [0.1369, 0.4336]],
     [[0.1903, 0.2742], [0.0588, 0.6430], [0.1225, 0.4910]]],
))
switch = [([S1] * 3, [3, 4]), ([S1] * 3, [3, 4]), ([S1, S1, S2], [3, 4]),
          ([S1] * 3, [3, 4]), ([S1] * 3, [3, 4]), ([S1] * 3, [3, 4])]
cases.append(y3_case(
    "test_yuma_3_one_epoch_switch",
    "Yuma3 + liquid alpha, near-equal validators (33/33/34). Validator C votes for server 2 for one "
    "epoch only; everybody else keeps server 1.",
    [33, 33, 34, 0, 0],
    switch,
    [[0.3300, 0.3300, 0.3400, 0.0000, 0.0000],
     [0.3300, 0.3300, 0.3400, 0.0000, 0.0000],
     [0.3782, 0.3782, 0.2436, 0.0000, 0.0000],
     [0.3628, 0.3628, 0.2745, 0.0000, 0.0000],
     [0.3541, 0.3541, 0.2917, 0.0000, 0.0000],
     [0.3487, 0.3487, 0.3026, 0.0000, 0.0000]],
    [[[0.1013, 0.0000], [0.1013, 0.0000], [0.1013, 0.0000]],
     [[0.1924, 0.0000], [0.1924, 0.0000], [0.1924, 0.0000]],
     [[0.2742, 0.0000], [0.2742, 0.0000], [0.1715, 0.2987]],
     [[0.3478, 0.0000], [0.3478, 0.0000], [0.2554, 0.2618]],
     [[0.4139, 0.0000], [0.4139, 0.0000], [0.3309, 0.2312]],
     [[0.4733, 0.0000], [0.4733, 0.0000], [0.3987, 0.2051]]],
))
cases.append(y3_case(
    "test_yuma_3_liquid_alpha_disabled",
    "As test_yuma_3_one_epoch_switch but with liquid alpha off: constant bond EMA alpha 1 - 0.975 = 0.025.",
    [33, 33, 34, 0, 0],
    switch,
    [[0.3300, 0.3300, 0.3400, 0.0000, 0.0000],
     [0.3300, 0.3300, 0.3400, 0.0000, 0.0000],
     [0.3734, 0.3734, 0.2532, 0.0000, 0.0000],
     [0.3611, 0.3611, 0.2779, 0.0000, 0.0000],
     [0.3541, 0.3541, 0.2919, 0.0000, 0.0000],
     [0.3495, 0.3495, 0.3009, 0.0000, 0.0000]],
    [[[0.0000, 0.0250, 0.0000], [0.0000, 0.0250, 0.0000], [0.0000, 0.0250, 0.0000]],
     [[0.0000, 0.0494, 0.0000], [0.0000, 0.0494, 0.0000], [0.0000, 0.0494, 0.0000]],
     [[0.0000, 0.0731, 0.0000], [0.0000, 0.0731, 0.0000], [0.0000, 0.0481, 0.0250]],
     [[0.0000, 0.0963, 0.0000], [0.0000, 0.0963, 0.0000], [0.0000, 0.0719, 0.0244]],
     [[0.0000, 0.1189, 0.0000], [0.0000, 0.1189, 0.0000], [0.0000, 0.0951, 0.0238]],
     [[0.0000, 0.1409, 0.0000], [0.0000, 0.1409, 0.0000], [0.0000, 0.1178, 0.0232]]],
    liquid=False,
    notes="Liquid alpha is switched off after setup, so alpha values/steepness are left out of params.",
))
H = M // 2
cases.append(y3_case(
    "test_yuma_3_stable_miner",
    "Yuma3 + liquid alpha, 3 servers. All validators split 50/50 between servers 1 and 3; small B moves "
    "its half from server 1 to server 2, big A follows, small C last. Server 3 keeps half of every vote.",
    [8, 1, 1, 0, 0, 0],
    [([[H, 0, H]] * 3, [3, 4, 5]), ([[H, 0, H], [0, H, H], [H, 0, H]], [3, 4, 5]),
     ([[0, H, H], [0, H, H], [H, 0, H]], [3, 4, 5]), ([[0, H, H]] * 3, [3, 4, 5]), None, None],
    [[0.8000, 0.1000, 0.1000, 0.0000, 0.0000, 0.0000],
     [0.8226, 0.0745, 0.1028, 0.0000, 0.0000, 0.0000],
     [0.7750, 0.1685, 0.0565, 0.0000, 0.0000, 0.0000],
     [0.7864, 0.1372, 0.0764, 0.0000, 0.0000, 0.0000],
     [0.7912, 0.1241, 0.0847, 0.0000, 0.0000, 0.0000],
     [0.7937, 0.1173, 0.0890, 0.0000, 0.0000, 0.0000]],
    [[[0.0507, 0.0000, 0.0507], [0.0507, 0.0000, 0.0507], [0.0507, 0.0000, 0.0507]],
     [[0.0962, 0.0000, 0.0962], [0.0455, 0.1000, 0.0962], [0.0962, 0.0000, 0.0962]],
     [[0.0863, 0.0507, 0.1371], [0.0408, 0.1405, 0.1371], [0.1770, 0.0000, 0.1371]],
     [[0.0774, 0.0962, 0.1739], [0.0367, 0.1770, 0.1739], [0.1579, 0.0507, 0.1739]],
     [[0.0694, 0.1371, 0.2069], [0.0329, 0.2097, 0.2069], [0.1411, 0.0962, 0.2069]],
     [[0.0623, 0.1739, 0.2366], [0.0296, 0.2391, 0.2366], [0.1263, 0.1371, 0.2366]]],
))
reset_sched = []
for k in range(41):
    if k == 0:
        reset_sched.append(([S1] * 3, [3, 4]))
    elif k == 1:
        reset_sched.append(([S1, S2, S2], [3, 4]))
    elif 2 <= k <= 20:
        reset_sched.append(([S2] * 3, [3, 4]))
    elif k == 21:
        reset_sched.append(([S2, S1, S1], [3, 4]))
    else:
        reset_sched.append(([S1] * 3, [3, 4]))
reset_checked = [0, 1, 2, 19, 20, 21, 40]
cases.append(y3_case(
    "test_yuma_3_bonds_reset",
    "Yuma3 + liquid alpha with bonds reset on: B and C switch to server 2, big A follows a step later; at "
    "epoch 20 do_reset_bonds on uid 3 removes every bond on server 1; at 21 B and C switch back.",
    [8, 1, 1, 0, 0],
    reset_sched,
    [[0.8000, 0.1000, 0.1000, 0.0000, 0.0000],
     [0.8944, 0.0528, 0.0528, 0.0000, 0.0000],
     [0.5230, 0.2385, 0.2385, 0.0000, 0.0000],
     [0.7919, 0.1040, 0.1040, 0.0000, 0.0000],
     [0.7928, 0.1036, 0.1036, 0.0000, 0.0000],
     [0.8467, 0.0766, 0.0766, 0.0000, 0.0000],
     [0.7928, 0.1036, 0.1036, 0.0000, 0.0000]],
    [[[0.1013, 0.0000], [0.1013, 0.0000], [0.1013, 0.0000]],
     [[0.1924, 0.0000], [0.0908, 0.2987], [0.0908, 0.2987]],
     [[0.1715, 0.1013], [0.0815, 0.3697], [0.0815, 0.3697]],
     [[0.0269, 0.8539], [0.0131, 0.8975], [0.0131, 0.8975]],
     [[0.0000, 0.8687], [0.0000, 0.9079], [0.0000, 0.9079]],
     [[0.0000, 0.8820], [0.2987, 0.6386], [0.2987, 0.6386]],
     [[0.8687, 0.0578], [0.9079, 0.0523], [0.9079, 0.0523]]],
    checked=reset_checked,
    extra={20: {"bonds_remove_columns": [3],
                "_comment": "do_reset_bonds(uid 3) after the weights are set, before the epoch"}},
    notes="Only epochs 0, 1, 2, 19, 20, 21 and 40 are checked; the others run without expectations.",
))

# ---------------------------------------------------------------- tests/epoch_logs.rs
# These tests build storage by hand (setup_epoch: no init_new_network, so storage defaults: tempo 10,
# cutoff 13889*10/1000 = 138, max 100 validators, Yuma3 off, kappa 32767, penalty 1, BMA 0.9) and
# assert on the epoch's trace log. Only log lines that are epoch outputs are transcribed: a value the
# fixed crate prints as "0.25" is exactly that I32F32 (Display prints the shortest round-trip
# decimal), so it maps to floor(x * 65535) for u16 outputs and floor(x * emission) for rao.
LOGS = "pallets/subtensor/src/tests/epoch_logs.rs"
LOG_NOTE = ("setup_epoch writes Keys/BlockAtRegistration/LastUpdate/ValidatorPermit/stake directly; "
            "params are the storage defaults (tempo 10, ActivityCutoffFactorMilli 13889 -> 138 blocks, "
            "MaxAllowedValidators 100, Yuma3 off). Log lines that are not epoch outputs (inputs echoed, "
            "active stake, weights after masking, delta bonds) are not transcribed.")


def log_case(test, description, neurons, block, rao, expect, weights=None, permits=None,
             max_validators=100, suffix="", extra_notes=""):
    n = len(neurons)
    st = state([s for (_, s, _, _) in neurons], [r for (_, _, r, _) in neurons],
               [u for (_, _, _, u) in neurons], permits or [v for (v, _, _, _) in neurons], weights)
    return {
        "id": test + suffix,
        "source": src(test, LOGS),
        "kind": "epoch_sequence",
        "description": description,
        "params": params(n, 10, max_allowed_validators=max_validators, rao_emission=rao),
        "initial_state": st,
        "notes": LOG_NOTE + ((" " + extra_notes) if extra_notes else ""),
        "epochs": [{"current_block": block, "expect": expect}],
    }


G = 1_000_000_000
two_vals = [(True, G, 0, 1), (True, G, 0, 1)]
cases.append(log_case(
    "test_simple",
    "Two permitted validators with equal stake and no weights: emission falls back to active stake, 50/50.",
    two_vals, 1, G,
    {"stake_weight_u16": {"0": 32767, "1": 32767},
     "validator_permit": {"0": True, "1": True},
     "active": {"0": True, "1": True},
     "consensus_u16": {"0": 0, "1": 0},
     "validator_emission": {"0": 500000000, "1": 500000000},
     "emission": {"0": 500000000, "1": 500000000}},
    extra_notes="Logged: Normalised Stake [0.5, 0.5], new_validator_permits [true, true], Inactive [false, false], "
                "Consensus [0, 0], Normalized Validator Emission [0.5, 0.5], Combined Emission [500000000, 500000000].",
))
cases.append(log_case(
    "test_inactive_mask_zeroes_active_stake",
    "At block 1,000,000 both validators (last update 0) are past the activity cutoff.",
    [(True, G, 0, 0), (True, G, 0, 0)], 1_000_000, G,
    {"active": {"0": False, "1": False}},
    extra_notes="Logged: Inactive [true, true] (Active Stake [0, 0] is internal).",
))
cases.append(log_case(
    "yuma_emergency_mode",
    "Everybody inactive and no weights: emission falls back to plain normalised stake.",
    [(True, G, 0, 0), (True, G, 0, 0)], 1_000_000, G,
    {"active": {"0": False, "1": False}, "emission": {"0": 500000000, "1": 500000000}},
    extra_notes="Logged: Inactive [true, true], Normalized Combined Emission [0.5, 0.5].",
))
cases.append(log_case(
    "epoch_uses_active_stake_when_nonzero_active",
    "One active and one inactive validator, no weights: the emission fallback follows active stake [1, 0].",
    [(True, G, 0, 999), (True, G, 0, 1)], 1000, G,
    {"active": {"0": True, "1": False}, "emission": {"0": 1000000000, "1": 0}},
    extra_notes="Logged: Inactive [false, true], Normalized Combined Emission [1, 0].",
))
cases.append(log_case(
    "epoch_topk_validator_permits",
    "Stake 2:1 with MaxAllowedValidators 1: only the larger stake keeps a permit.",
    [(True, 2 * G, 0, 1), (True, G, 0, 1)], 1, G,
    {"validator_permit": {"0": True, "1": False},
     "relations": [
         {"lhs": "stake_weight_u16[0]", "op": ">=", "rhs": 43646,
          "_why": "logged Normalised Stake starts with 0.666: 0.666 <= S0 < 0.667 implies floor(S0*65535) in [43646, 43711]"},
         {"lhs": "stake_weight_u16[0]", "op": "<=", "rhs": 43711},
     ]},
    max_validators=1,
    extra_notes="Logged: new_validator_permits [true, false], Normalised Stake prefix \"[0.666\".",
))
five = [(True, G, 0, 1)] * 3 + [(False, 0, 0, 1)] * 2
cases.append(log_case(
    "test_validators_weight_two_distinct_servers",
    "Three equal validators: V0 and V2 vote server 3, V1 votes server 4. Consensus picks server 3; V1's "
    "vote is clipped away (trust 0, no dividends).",
    five, 1, G,
    {"consensus_u16": {"0": 0, "1": 0, "2": 0, "3": 65535, "4": 0},
     "validator_trust_u16": {"0": 65535, "1": 0, "2": 65535, "3": 0, "4": 0},
     "dividends_u16": {"0": 32767, "1": 0, "2": 32767, "3": 0, "4": 0},
     "emission": {"0": 250000000, "1": 0, "2": 250000000, "3": 500000000, "4": 0}},
    weights=[row([3, 4], [M, 0]), row([3, 4], [0, M]), row([3, 4], [M, 0]), [], []],
    extra_notes="Weights set through set_weights at block 1 (commit-reveal off). Logged: Consensus [0, 0, 0, 1, 0], "
                "Validator Trust [1, 0, 1, 0, 0], Dividends [0.5, 0, 0.5, 0, 0], Normalized Combined Emission "
                "[0.25, 0, 0.25, 0.5, 0].",
))
cases.append(log_case(
    "test_validator_splits_weight_across_two_servers",
    "As test_validators_weight_two_distinct_servers but V2 splits its vote over both servers.",
    five, 1, G,
    {"dividends_u16": {"0": 16383, "1": 16383, "2": 32767, "3": 0, "4": 0},
     "emission": {"0": 125000000, "1": 125000000, "2": 250000000, "3": 250000000, "4": 250000000}},
    weights=[row([3, 4], [M, 0]), row([3, 4], [0, M]), row([3, 4], [M, M]), [], []],
    extra_notes="Logged: Dividends [0.25, 0.25, 0.5, 0, 0], Normalized Combined Emission "
                "[0.125, 0.125, 0.25, 0.25, 0.25].",
))
for mech, w, em in [
    (0, [[[3, M]], [[4, M]], [[3, M]], [], []], {"0": 250, "1": 0, "2": 250, "3": 500, "4": 0}),
    (1, [[[4, M]], [[3, M]], [[4, M]], [], []], {"0": 250, "1": 0, "2": 250, "3": 0, "4": 500}),
]:
    cases.append(log_case(
        "epoch_mechanism_reads_weights_per_mechanism",
        f"Mechanism {mech} of a 2-mechanism subnet: each mechanism's epoch reads its own weight rows "
        "(same stake, permits and last updates).",
        five, 1, 1000, {"emission": em}, weights=w, suffix=f"[mechanism={mech}]",
        extra_notes="Weights inserted into storage per mechanism. Logged: Normalized Combined Emission "
                    + str([int(em[str(i)]) / 1000 for i in range(5)]) + ".",
    ))
four = [(True, G, 0, 1)] * 2 + [(False, 0, 0, 1)] * 2
for mech, w, em in [
    (0, [[[2, M]], [[2, M]], [], []], {"0": 250, "1": 250, "2": 500, "3": 0}),
    (1, [[[2, M], [3, M]], [[2, M], [3, M]], [], []], {"0": 250, "1": 250, "2": 250, "3": 250}),
    (2, [[[3, M]], [[3, M]], [], []], {"0": 250, "1": 250, "2": 0, "3": 500}),
]:
    cases.append(log_case(
        "epoch_mechanism_three_mechanisms_separate_state",
        f"Mechanism {mech} of a 3-mechanism subnet (2 validators, 2 servers).",
        four, 1, 1000, {"emission": em}, weights=w, suffix=f"[mechanism={mech}]",
        extra_notes="Weights inserted into storage per mechanism. Logged: Normalized Combined Emission "
                    + str([int(em[str(i)]) / 1000 for i in range(4)]) + ".",
    ))

# ---------------------------------------------------------------- tests/mechanism.rs
MECH = "pallets/subtensor/src/tests/mechanism.rs"
MOCK_NOTE = ("mock_epoch_state writes storage directly (no init_new_network): tempo 1 -> cutoff 13 blocks, "
             "MaxAllowedValidators 100 (storage default), Yuma3 off, commit-reveal off, stake 1e9 alpha each, "
             "LastUpdate [2, 2] and BlockAtRegistration [1, 1] while the block is 1. epoch_with_mechanisms "
             "runs epoch_mechanism per mechanism with an even split of 1e9 (500000000 each); each mechanism "
             "is a case of its own (same stake and permits, its own weights and bonds).")


def mech_case(test, mech, description, n, stake, permits, weights, expect, rao=500_000_000, notes=""):
    return {
        "id": f"{test}[mechanism={mech}]",
        "source": src(test, MECH),
        "kind": "epoch_sequence",
        "description": description,
        "params": params(n, 1, max_allowed_validators=100, rao_emission=rao),
        "initial_state": state(stake, [1] * n, [2] * n, permits, weights),
        "notes": MOCK_NOTE + ((" " + notes) if notes else ""),
        "epochs": [{"current_block": 1, "expect": expect}],
    }


both = [[[0, M], [1, M]], [[0, M], [1, M]]]
for mech in (0, 1):
    cases.append(mech_case(
        "epoch_with_mechanisms_produces_per_mechanism_incentive", mech,
        "Two permitted validators weighting each other and themselves (self-weights masked): each gets half "
        "the incentive.",
        2, [G, G], [True, True], both,
        {"incentive_u16": {"0": 32767, "1": 32767}},
        notes="Both mechanisms have the same weights.",
    ))
for mech, w, rows in [
    (0, both, {"0": [[1, 65535]], "1": [[0, 65535]]}),
    (1, [[[0, M], [1, 0]], [[0, M], [1, M]]], {"0": [], "1": [[0, 65535]]}),
]:
    cases.append(mech_case(
        "epoch_with_mechanisms_updates_bonds", mech,
        "Stored bond rows per mechanism: on mechanism 1 validator 0's only non-self weight is an explicit 0, "
        "so it stores no bond at all (an empty row, not a zero entry).",
        2, [G, G], [True, True], w,
        {"bonds_rows": rows},
        notes="The test compares whole Bonds rows (assert_eq on the Vec), hence bonds_rows.",
    ))
for mech, w0, hi, lo in [
    (0, [[1, 52428], [2, 13107]], "1", "2"),
    (1, [[1, 13107], [2, 52428]], "2", "1"),
]:
    cases.append(mech_case(
        "epoch_with_mechanisms_incentives_proportional_to_weights", mech,
        "One permitted validator splits 4:1 between two miners (the other way round on mechanism 1): "
        "incentive follows the weights within 1 (u16).",
        3, [G, G, 0], [True, False, False], [w0, [[0, M], [1, M]], []],
        {"relations": [
            {"lhs": f"incentive_u16[{hi}]", "op": "==", "rhs": 52428, "abs_tol": 1},
            {"lhs": f"incentive_u16[{lo}]", "op": "==", "rhs": 13107, "abs_tol": 1},
        ]},
        notes="mock_3_neurons adds uid 2 (no stake, registered at block 1, LastUpdate 2). Row 1 keeps "
              "mock_epoch_state's weights but uid 1 has no permit. 0xFFFF/5*4 = 52428, 0xFFFF/5 = 13107.",
    ))
cases.append({
    "id": "epoch_mechanism_emergency_mode_distributes_by_stake",
    "source": src("epoch_mechanism_emergency_mode_distributes_by_stake", MECH),
    "kind": "epoch_sequence",
    "description": "Mechanism 1 with no weights: no incentive, the validator emission follows active stake "
                   "10:30:60 (within 2 rao) and sums to the emission.",
    "params": params(4, 5, yuma3=True, rao_emission=1_000_000),
    "initial_state": state([10, 30, 60, 0], [1] * 4, [1] * 4, [True, True, True, False]),
    "notes": "add_network(tempo 5): Yuma3 on, 64 validators, cutoff 13889*5/1000 = 69 blocks; four "
             "register_ok_neuron at block 1; LastUpdate of mechanism 1 = [1, 1, 1, 1]; permits inserted.",
    "epochs": [{
        "current_block": 1,
        "expect": {
            "server_emission": {"0": 0, "1": 0, "2": 0, "3": 0},
            "validator_emission": {"3": 0},
            "relations": [
                {"lhs": "validator_emission[0]", "op": "==", "rhs": 100000, "abs_tol": 2},
                {"lhs": "validator_emission[1]", "op": "==", "rhs": 300000, "abs_tol": 2},
                {"lhs": "validator_emission[2]", "op": "==", "rhs": 600000, "abs_tol": 2},
                {"lhs": ["validator_emission[0]", "validator_emission[1]", "validator_emission[2]"],
                 "op": "==", "rhs": 1000000, "abs_tol": 2},
            ],
        },
    }],
})

doc = {
    "schema": "yuma-vectors/1",
    "generated": "2026-11-25",
    "source": {
        "repo": REPO,
        "commit": COMMIT,
        "commit_date": "2026-06-30",
        "paths": [PATH, "pallets/subtensor/src/tests/epoch_logs.rs", "pallets/subtensor/src/tests/mechanism.rs", "pallets/subtensor/src/tests/mock.rs", "pallets/subtensor/src/epoch/run_epoch.rs",
                  "pallets/subtensor/src/epoch/math.rs", "pallets/subtensor/src/subnets/uids.rs"],
        "generator": "ledger/tests/data/gen_chain_cases.py (weights max-upscaled as set_weights stores them)",
    },
    "representation": "as in yuma_samples.json; in addition an expectation `relations` lists orderings the "
                      "Rust test asserts without fixing values: {lhs, op, rhs[, abs_tol]} where lhs/rhs are a "
                      "number, a reference `field[uid]` / `bonds_u16[i,j]` (optionally `@epoch` for an earlier "
                      "epoch's output of the same case), or a list of references that is summed.",
    "state_rules": {
        "carry": "as in yuma_samples.json: bonds and validator_permit carry from one epoch's output to the "
                 "next; stake/weights/last_update/block_at_registration carry unless restated. "
                 "live_commit_block (per uid, the block of its oldest unexpired weight commit, or null; "
                 "absent = commit-reveal off) is an input too, never taken from an output; the cases "
                 "that use it restate it in every epoch, since commits expire.",
        "replacement": "a neuron replaced between epochs (replace_neuron) is written as: its stake restated, "
                       "block_at_registration and last_update set to the registration block, its weight row "
                       "emptied, other rows' weights on it set to 0 unless they were set again, "
                       "bonds_override_rows {uid: []} and validator_permit_override {uid: false}.",
    },
    "skipped": {
        "test_512_graph_random_weights": "asserts only that dense and sparse epochs agree; no fixed values",
        "test_set_alpha_disabled / test_get_set_alpha / test_liquid_alpha_equal_values_against_itself": "not epoch runs (parameter setters, compute_bonds on a hand-built matrix)",
        "test_blocks_since_last_step": "block bookkeeping, no epoch output",
        "test_epoch_no_mask_when_commit_reveal_disabled": "asserts only that the stored weight rows stay non-empty (storage the epoch does not write), no epoch output; commit-reveal off is an input without live_commit_block",
        "test_last_update_size_mismatch": "a LastUpdate vector of the wrong length; the interface rejects it by design (exit 2)",
        "test_yuma_3_kappa_moves_first / test_bonds / test_1_graph / test_validator_permits[interleave=0,n=4,v=2,assignment=0]": "already in yuma_samples.json",
        "test_validator_permits interleave=2 / test_512_graph interleave=2": "random shuffle per run",
        "test_512_graph other layouts": "interleave 0 and server_self=false left out for size (0.5 MB each); same assertions",
        "epoch_logs.rs test_bad_permit_vector": "a ValidatorPermit vector of the wrong length; the interface rejects it by design",
        "epoch_logs.rs test_validator_permit_masks_active_stake": "asserts only the permit input and the internal active stake, no epoch output",
        "epoch_logs.rs epoch_yuma3_bonds_pipeline / epoch_original_yuma_bonds_pipeline": "assert only which log lines appear (which bond branch ran)",
        "children.rs epoch tests": "child-key stake inheritance happens before the epoch (the interface takes the inherited stake); the assertions are then plain stake proportions",
        "mechanism.rs epoch_with_mechanisms_persists_and_aggregates_all_terms": "checks the cross-mechanism aggregation against the per-mechanism outputs (no single-epoch values)",
        "coinbase.rs epoch tests": "run through run_coinbase/distribute_emission with accrued stake; assert only that incentive/dividend sums are positive",
    },
    "cases": cases,
}

def scalar(v):
    return not isinstance(v, (list, dict))


def flat(v):
    """Scalars, lists/dicts of scalars, and lists of such lists go on one line."""
    if scalar(v):
        return True
    items = v.values() if isinstance(v, dict) else v
    return all(scalar(x) or (isinstance(x, list) and all(scalar(y) for y in x)) for x in items)


def emit(v, ind=0):
    pad = "  " * (ind + 1)
    if flat(v):
        return json.dumps(v, separators=(", ", ": "))
    if isinstance(v, dict):
        body = ",\n".join(f"{pad}{json.dumps(k)}: {emit(x, ind + 1)}" for k, x in v.items())
        return "{\n" + body + "\n" + "  " * ind + "}"
    body = ",\n".join(pad + emit(x, ind + 1) for x in v)
    return "[\n" + body + "\n" + "  " * ind + "]"


sys.stdout.write(emit(doc) + "\n")
