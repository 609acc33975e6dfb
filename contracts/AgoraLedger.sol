// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title AgoraLedger: the chain as Agora's ordered log, and a place for epoch anchors.
/// @notice The contract does not interpret ledger transactions: it gives each one a sequence number
/// and emits it, so every node that reads the events sees the same transactions in the same order
/// and computes the same ledger state from them (the chain is the log; Agora is the state machine).
/// Signatures, nonces and key roles are checked by that state machine, the same way on every node,
/// so a transaction emitted twice is applied once and a forged one is refused by everyone.
///
/// Anchors: at each epoch's end a node records the 32-byte hash of its signed anchor record (Merkle
/// roots over its receipts, the weight reveals and the consensus result) under its own address, the
/// subnet and the epoch. Anyone holding a receipt proof checks it against that stored hash without
/// trusting the node that made the proof.
contract AgoraLedger {
    /// Largest transaction accepted, in bytes: the ledger's own limit on a signed transaction
    /// envelope (agora_ledger::state::tx::MAX_TX_LEN + TX_ENVELOPE_OVERHEAD), so that no
    /// transaction the ledger would refuse to read can take a sequence number.
    uint256 public constant MAX_TRANSACTION_BYTES = 8298;
    /// Largest signed anchor record accepted, in bytes.
    uint256 public constant MAX_ANCHOR_BYTES = 4096;

    /// Transactions ordered so far; the next one gets this number.
    uint64 public sequence;

    /// Anchor record hashes by anchoring address, subnet and epoch.
    mapping(address => mapping(uint16 => mapping(uint64 => bytes32))) public anchors;

    /// One ordered transaction. `txHash` is keccak256(transaction): submitters look it up to
    /// learn whether a transaction is already on chain before they send it again.
    event Transaction(uint64 indexed seq, bytes32 indexed txHash, bytes transaction);

    /// One epoch anchor. `record` is the signed anchor record whose blake3 hash is `recordHash`.
    event Anchored(
        address indexed anchorer, uint16 indexed subnet, uint64 indexed epoch, bytes32 recordHash, bytes record
    );

    /// The transaction is empty or longer than MAX_TRANSACTION_BYTES.
    error BadTransactionSize(uint256 size);
    /// The anchor record is empty, longer than MAX_ANCHOR_BYTES, or its hash is zero.
    error BadAnchor(uint256 size);
    /// This address already anchored a different record for the subnet and epoch.
    error AnchorConflict(address anchorer, uint16 subnet, uint64 epoch, bytes32 existing);

    /// Orders one signed ledger transaction.
    function submit(bytes calldata transaction) external returns (uint64 seq) {
        if (transaction.length == 0 || transaction.length > MAX_TRANSACTION_BYTES) {
            revert BadTransactionSize(transaction.length);
        }
        seq = sequence;
        sequence = seq + 1;
        emit Transaction(seq, keccak256(transaction), transaction);
    }

    /// Stores the hash of the sender's anchor record for (subnet, epoch). Sending the same record
    /// again changes nothing and does not revert, so a retry after an unknown outcome is safe; a
    /// different record for the same slot reverts.
    function anchor(uint16 subnet, uint64 epoch, bytes32 recordHash, bytes calldata record) external {
        if (record.length == 0 || record.length > MAX_ANCHOR_BYTES || recordHash == bytes32(0)) {
            revert BadAnchor(record.length);
        }
        bytes32 existing = anchors[msg.sender][subnet][epoch];
        if (existing == recordHash) {
            return;
        }
        if (existing != bytes32(0)) {
            revert AnchorConflict(msg.sender, subnet, epoch, existing);
        }
        anchors[msg.sender][subnet][epoch] = recordHash;
        emit Anchored(msg.sender, subnet, epoch, recordHash, record);
    }
}
