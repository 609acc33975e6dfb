#!/bin/sh
# One-shot setup of the local mesh in deploy/compose.yaml (the `init` service), into $MESH_DIR
# (default /mesh, the shared volume):
#   - wallets miner1..3, validator, client (hotkeys unencrypted: nodes start unattended; coldkeys
#     encrypted with $COLD_PW);
#   - the bootstrap node's identity (bootstrap.key) and its address for the others (bootstrap.addr);
#   - the ledger: a genesis funding every coldkey with subnet 1 (owned by the validator's coldkey;
#     10-block epochs, commit-reveal), every hotkey registered by a signed transaction, and the
#     validator's stake, as node/src/cli/demo/ledger.rs does in-process.
# Idempotent: a finished setup (MESH_DIR/.ready) is left as it is, so restarts keep identities.
set -eu

MESH_DIR=${MESH_DIR:-/mesh}
BOOTSTRAP_HOST=${BOOTSTRAP_HOST:-bootstrap}
BOOTSTRAP_PORT=${BOOTSTRAP_PORT:-4001}
: "${COLD_PW:?set COLD_PW, the coldkey password of the mesh wallets}"
export COLD_PW
export AGORA_WALLET_PATH="$MESH_DIR/wallets"
export AGORA_LEDGER_LOG="$MESH_DIR/ledger/log"
export AGORA_LEDGER_GENESIS="$MESH_DIR/ledger/genesis.json"

if [ -f "$MESH_DIR/.ready" ]; then
    echo "init-mesh: $MESH_DIR is already set up"
    exit 0
fi
mkdir -p "$MESH_DIR/wallets" "$MESH_DIR/ledger" "$MESH_DIR/validator"

# The public key of the `what` key (coldkey or hotkey) in `agora wallet new --json` output.
key_of() { # file what
    tr -d ' \n' <"$1" | sed -n "s/.*\"$2\":{[^}]*\"public_key\":\"\([0-9a-f]*\)\".*/\1/p"
}

NAMES="validator miner1 miner2 miner3 client"
accounts=""
for name in $NAMES; do
    out="$MESH_DIR/wallets/$name.json"
    if [ ! -s "$out" ]; then
        agora wallet new --name "$name" --password-env COLD_PW --no-hotkey-password --json >"$out.tmp"
        mv "$out.tmp" "$out"
        chmod 600 "$out"
    fi
    cold=$(key_of "$out" coldkey)
    [ -n "$cold" ] || { echo "init-mesh: no coldkey in $out" >&2; exit 1; }
    # 1000 tokens each, in units of 1e-9.
    accounts="$accounts${accounts:+,}\"$cold\":1000000000000"
    [ "$name" = validator ] && owner=$cold
done

cat >"$AGORA_LEDGER_GENESIS" <<JSON
{"accounts":{$accounts},"subnets":[{"owner":"$owner","hyperparameters":{"tempo":10,"commit_reveal_enabled":true,"reveal_period_epochs":1,"weights_set_rate_limit":5}}]}
JSON
rm -f "$AGORA_LEDGER_LOG"
for name in $NAMES; do
    agora register --wallet "$name" --subnet 1 --password-env COLD_PW
done
agora stake add --wallet validator --amount 100 --password-env COLD_PW

# The bootstrap node's identity: started once on loopback to create its key and learn its peer id.
boot_out="$MESH_DIR/bootstrap.out"
agora-bootstrap --key-file "$MESH_DIR/bootstrap.key" --listen /ip4/127.0.0.1/tcp/0 \
    --metrics off >"$boot_out" 2>/dev/null &
boot_pid=$!
tries=0
until grep -q '/p2p/' "$boot_out" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ]; then
        kill "$boot_pid" 2>/dev/null || true
        echo "init-mesh: agora-bootstrap printed no address" >&2
        exit 1
    fi
    sleep 0.1
done
kill "$boot_pid" 2>/dev/null || true
wait "$boot_pid" 2>/dev/null || true
peer=$(grep -o '/p2p/[A-Za-z0-9]*' "$boot_out" | head -n 1)
rm -f "$boot_out"
echo "/dns4/$BOOTSTRAP_HOST/tcp/$BOOTSTRAP_PORT$peer" >"$MESH_DIR/bootstrap.addr"

agora metagraph --subnet 1
touch "$MESH_DIR/.ready"
echo "init-mesh: ready; bootstrap $(cat "$MESH_DIR/bootstrap.addr")"
