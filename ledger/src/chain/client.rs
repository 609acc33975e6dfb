//! The RPC side: connect (checking the chain and the contract), read the ordered transactions,
//! send the outbox, read anchors, deploy the contract.

use super::contract::AgoraLedger;
use super::outbox::{Outbox, PendingItem, SentMarker, Submission};
use super::{ChainConfig, ChainError};
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, FixedBytes, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{BlockNumberOrTag, Filter};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::time::Duration;

/// A connection to the chain and the contract, optionally able to send. Use it on the tokio
/// runtime it was made on: its HTTP connections belong to that runtime.
#[derive(Debug, Clone)]
pub struct ChainClient {
    config: ChainConfig,
    provider: DynProvider,
    chain_id: u64,
    sender: Option<Address>,
}

/// One `Transaction` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionEvent {
    /// EVM block number.
    pub block: u64,
    /// Position among the block's logs.
    pub log_index: u64,
    /// The transaction's bytes.
    pub bytes: Vec<u8>,
}

/// An anchor found on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnChainAnchor {
    /// Who anchored it.
    pub anchorer: Address,
    /// The EVM block of the `Anchored` event.
    pub block: u64,
    /// The stored record hash.
    pub record_hash: [u8; 32],
    /// The signed record from the event.
    pub record: Vec<u8>,
}

/// What one [`ChainClient::flush`] did.
#[derive(Debug, Clone, Default)]
pub struct FlushReport {
    /// Items sent to the RPC in this call.
    pub sent: usize,
    /// Items found on chain, final, and removed from the outbox.
    pub confirmed: usize,
    /// Items sent earlier and not yet final.
    pub waiting: usize,
    /// Items the chain refused for good, moved aside as `.failed` with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Why the flush stopped early (the RPC is down): the rest stays queued.
    pub interrupted: Option<String>,
}

fn parse_url(url: &str) -> Result<alloy::transports::http::reqwest::Url, ChainError> {
    url.parse().map_err(
        |e: <alloy::transports::http::reqwest::Url as std::str::FromStr>::Err| ChainError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        },
    )
}

/// Whether an RPC error is the node answering "no" (a revert, a refused transaction) rather than
/// the node being unreachable: the first is final for this item, the second means try later.
fn is_refusal(e: &alloy::contract::Error) -> bool {
    match e {
        alloy::contract::Error::TransportError(t) => t.is_error_resp(),
        alloy::contract::Error::AbiError(_)
        | alloy::contract::Error::UnknownFunction(_)
        | alloy::contract::Error::UnknownSelector(_) => true,
        _ => false,
    }
}

impl ChainClient {
    /// Connects to `config.rpc_url`, checks the chain id (when configured) and that the contract
    /// has code. With `key`, the client can send (the outbox, anchors).
    pub async fn connect(
        config: ChainConfig,
        key: Option<PrivateKeySigner>,
    ) -> Result<Self, ChainError> {
        let url = parse_url(&config.rpc_url)?;
        let sender = key.as_ref().map(|k| k.address());
        let provider = match key {
            Some(key) => ProviderBuilder::new()
                .wallet(EthereumWallet::from(key))
                .connect_http(url)
                .erased(),
            None => ProviderBuilder::new().connect_http(url).erased(),
        };
        let mut client = Self {
            config,
            provider,
            chain_id: 0,
            sender,
        };
        let chain_id = client.rpc(client.provider.get_chain_id()).await?;
        if let Some(expected) = client.config.chain_id
            && expected != chain_id
        {
            return Err(ChainError::WrongChain {
                expected,
                got: chain_id,
            });
        }
        client.chain_id = chain_id;
        let code = client
            .rpc(client.provider.get_code_at(client.config.contract))
            .await?;
        if code.is_empty() {
            return Err(ChainError::NoContract(client.config.contract));
        }
        Ok(client)
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// The chain id the RPC reported.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The address transactions are sent from, if the client has a key.
    pub fn sender(&self) -> Option<Address> {
        self.sender
    }

    async fn rpc<T, E: std::fmt::Display>(
        &self,
        call: impl IntoFuture<Output = Result<T, E>>,
    ) -> Result<T, ChainError> {
        match tokio::time::timeout(self.config.rpc_timeout, call.into_future()).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.rpc_error(e)),
            Err(_) => Err(self.rpc_error(format!(
                "no answer in {} ms",
                self.config.rpc_timeout.as_millis()
            ))),
        }
    }

    fn rpc_error(&self, e: impl std::fmt::Display) -> ChainError {
        ChainError::Rpc {
            url: self.config.rpc_url.clone(),
            reason: e.to_string(),
        }
    }

    /// The chain's head block number.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.rpc(self.provider.get_block_number()).await
    }

    /// The hash of block `number`.
    pub async fn block_hash(&self, number: u64) -> Result<B256, ChainError> {
        let block = self
            .rpc(
                self.provider
                    .get_block_by_number(BlockNumberOrTag::Number(number)),
            )
            .await?;
        block
            .map(|b| b.header.hash)
            .ok_or_else(|| self.rpc_error(format!("block {number} is missing")))
    }

    /// The sequence counter of the contract: transactions ordered so far.
    pub async fn sequence(&self) -> Result<u64, ChainError> {
        let contract = AgoraLedger::new(self.config.contract, &self.provider);
        self.rpc(contract.sequence().call()).await
    }

    /// The contract's `Transaction` events in blocks `from..=to`, as the RPC returns them
    /// (events outside the range, from another address or undecodable are dropped).
    pub async fn transaction_events(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<TransactionEvent>, ChainError> {
        let filter = Filter::new()
            .address(self.config.contract)
            .event_signature(AgoraLedger::Transaction::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = self.rpc(self.provider.get_logs(&filter)).await?;
        let mut events = Vec::with_capacity(logs.len());
        for log in logs {
            let (Some(block), Some(log_index)) = (log.block_number, log.log_index) else {
                continue;
            };
            if log.removed || block < from || block > to || log.address() != self.config.contract {
                continue;
            }
            let Ok(decoded) = log.log_decode::<AgoraLedger::Transaction>() else {
                continue;
            };
            events.push(TransactionEvent {
                block,
                log_index,
                bytes: decoded.inner.data.transaction.to_vec(),
            });
        }
        Ok(events)
    }

    /// Where `submission` is on chain (the block of its event), looking from block `from`.
    async fn locate(&self, submission: &Submission, from: u64) -> Result<Option<u64>, ChainError> {
        match submission {
            Submission::Transaction(tx) => {
                let filter = Filter::new()
                    .address(self.config.contract)
                    .event_signature(AgoraLedger::Transaction::SIGNATURE_HASH)
                    .topic2(keccak256(tx))
                    .from_block(from);
                let logs = self.rpc(self.provider.get_logs(&filter)).await?;
                Ok(logs
                    .iter()
                    .filter(|l| !l.removed && l.address() == self.config.contract)
                    .filter_map(|l| {
                        let d = l.log_decode::<AgoraLedger::Transaction>().ok()?;
                        (d.inner.data.transaction.as_ref() == tx.as_slice())
                            .then_some(l.block_number)?
                    })
                    .min())
            }
            Submission::Anchor {
                subnet,
                epoch,
                record_hash,
                ..
            } => {
                let Some(sender) = self.sender else {
                    return Err(ChainError::NoKey);
                };
                if self.anchored(sender, *subnet, *epoch).await? != Some(*record_hash) {
                    return Ok(None);
                }
                Ok(self
                    .anchor_events(Some(sender), *subnet, *epoch, self.config.start_block)
                    .await?
                    .into_iter()
                    .find(|a| a.record_hash == *record_hash)
                    .map(|a| a.block))
            }
        }
    }

    async fn anchor_events(
        &self,
        anchorer: Option<Address>,
        subnet: u16,
        epoch: u64,
        from: u64,
    ) -> Result<Vec<OnChainAnchor>, ChainError> {
        let mut filter = Filter::new()
            .address(self.config.contract)
            .event_signature(AgoraLedger::Anchored::SIGNATURE_HASH)
            .topic2(B256::from(alloy::primitives::U256::from(subnet)))
            .topic3(B256::from(alloy::primitives::U256::from(epoch)))
            .from_block(from);
        if let Some(anchorer) = anchorer {
            filter = filter.topic1(anchorer.into_word());
        }
        let logs = self.rpc(self.provider.get_logs(&filter)).await?;
        Ok(logs
            .iter()
            .filter(|l| !l.removed && l.address() == self.config.contract)
            .filter_map(|l| {
                let d = l.log_decode::<AgoraLedger::Anchored>().ok()?;
                let data = &d.inner.data;
                (data.subnet == subnet && data.epoch == epoch).then(|| OnChainAnchor {
                    anchorer: data.anchorer,
                    block: l.block_number.unwrap_or(0),
                    record_hash: data.recordHash.0,
                    record: data.record.to_vec(),
                })
            })
            .collect())
    }

    /// The record hash `anchorer` stored for (subnet, epoch), read from the contract's storage.
    pub async fn anchored(
        &self,
        anchorer: Address,
        subnet: u16,
        epoch: u64,
    ) -> Result<Option<[u8; 32]>, ChainError> {
        let contract = AgoraLedger::new(self.config.contract, &self.provider);
        let hash: FixedBytes<32> = self
            .rpc(contract.anchors(anchorer, subnet, epoch).call())
            .await?;
        Ok((hash != FixedBytes::ZERO).then_some(hash.0))
    }

    /// Finds an anchor of (subnet, epoch) whose record hashes to `record_hash`, checking the
    /// event against the contract's storage: what a verifier trusts is the chain, not whoever
    /// handed it the proof.
    pub async fn find_anchor(
        &self,
        subnet: u16,
        epoch: u64,
        record_hash: [u8; 32],
    ) -> Result<Option<OnChainAnchor>, ChainError> {
        let events = self
            .anchor_events(None, subnet, epoch, self.config.start_block)
            .await?;
        for event in events.into_iter().filter(|e| e.record_hash == record_hash) {
            if self.anchored(event.anchorer, subnet, epoch).await? == Some(record_hash) {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// Whether the RPC still knows the EVM transaction `hash` as pending or mined: `None` when it
    /// never heard of it (a restarted RPC), `Some(Some(ok))` when mined with that status.
    async fn transaction_status(&self, hash: B256) -> Result<Option<Option<bool>>, ChainError> {
        if let Some(receipt) = self
            .rpc(self.provider.get_transaction_receipt(hash))
            .await?
        {
            return Ok(Some(Some(receipt.status())));
        }
        let tx = self
            .rpc(self.provider.get_transaction_by_hash(hash))
            .await?;
        Ok(tx.map(|_| None))
    }

    async fn send(&self, submission: &Submission) -> Result<B256, alloy::contract::Error> {
        let contract = AgoraLedger::new(self.config.contract, &self.provider);
        let pending = match submission {
            Submission::Transaction(tx) => {
                contract.submit(Bytes::copy_from_slice(tx)).send().await?
            }
            Submission::Anchor {
                subnet,
                epoch,
                record_hash,
                record,
            } => {
                contract
                    .anchor(
                        *subnet,
                        *epoch,
                        FixedBytes(*record_hash),
                        Bytes::copy_from_slice(record),
                    )
                    .send()
                    .await?
            }
        };
        Ok(*pending.tx_hash())
    }

    /// Works through the outbox in order: removes what the chain holds final, leaves what is in
    /// flight, sends what is not on chain (first asking the chain whether an item sent before is
    /// already there, so nothing goes twice). Stops at the first unreachable-RPC error, keeping
    /// order; an item the chain refuses for good is moved aside as `.failed`.
    pub async fn flush(&self, outbox: &Outbox) -> Result<FlushReport, ChainError> {
        let mut report = FlushReport::default();
        if self.sender.is_none() {
            if outbox.is_empty()? {
                return Ok(report);
            }
            return Err(ChainError::NoKey);
        }
        let items = outbox.pending()?;
        if items.is_empty() {
            return Ok(report);
        }
        let head = match self.head().await {
            Ok(head) => head,
            Err(e) => {
                report.interrupted = Some(e.to_string());
                return Ok(report);
            }
        };
        for item in items {
            match self.flush_one(outbox, &item, head, &mut report).await {
                Ok(()) => {}
                Err(ChainError::Rpc { reason, .. }) => {
                    report.interrupted = Some(reason);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    async fn flush_one(
        &self,
        outbox: &Outbox,
        item: &PendingItem,
        head: u64,
        report: &mut FlushReport,
    ) -> Result<(), ChainError> {
        let from = item.sent.as_ref().map_or(head, |m| m.from_block.min(head));
        if let Some(marker) = &item.sent {
            if let Some(block) = self.locate(&item.submission, marker.from_block).await? {
                if block + self.config.depth <= head {
                    outbox.remove(item)?;
                    report.confirmed += 1;
                } else {
                    report.waiting += 1;
                }
                return Ok(());
            }
            if let Some(hash) = marker
                .tx_hash
                .as_deref()
                .and_then(|h| h.parse::<B256>().ok())
            {
                match self.transaction_status(hash).await? {
                    // Pending, or mined just after the lookup above: look again next time.
                    Some(None) | Some(Some(true)) => {
                        report.waiting += 1;
                        return Ok(());
                    }
                    Some(Some(false)) => {
                        self.fail(outbox, item, "the chain reverted it".into(), report)?;
                        return Ok(());
                    }
                    // The RPC forgot it (restarted, or the transaction was dropped): send again.
                    None => {}
                }
            }
        }
        outbox.mark(
            item,
            &SentMarker {
                from_block: from,
                tx_hash: None,
            },
        )?;
        match self.send(&item.submission).await {
            Ok(hash) => {
                outbox.mark(
                    item,
                    &SentMarker {
                        from_block: from,
                        tx_hash: Some(format!("{hash:#x}")),
                    },
                )?;
                report.sent += 1;
                Ok(())
            }
            Err(e) if is_refusal(&e) => {
                // An anchor whose slot already holds this record is done, not failed.
                if let Submission::Anchor {
                    subnet,
                    epoch,
                    record_hash,
                    ..
                } = &item.submission
                    && let Some(sender) = self.sender
                    && self.anchored(sender, *subnet, *epoch).await? == Some(*record_hash)
                {
                    report.waiting += 1;
                    return Ok(());
                }
                self.fail(outbox, item, e.to_string(), report)
            }
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    fn fail(
        &self,
        outbox: &Outbox,
        item: &PendingItem,
        reason: String,
        report: &mut FlushReport,
    ) -> Result<(), ChainError> {
        let failed = item.path.with_extension("failed");
        std::fs::write(
            failed.with_extension("reason"),
            format!("{}: {reason}\n", item.submission.describe()),
        )
        .map_err(|source| ChainError::Io {
            path: failed.clone(),
            source,
        })?;
        std::fs::rename(&item.path, &failed).map_err(|source| ChainError::Io {
            path: item.path.clone(),
            source,
        })?;
        outbox.remove_marker(item)?;
        report.failed.push((failed, reason));
        Ok(())
    }
}

/// Deploys `AgoraLedger` with `key` through `rpc_url`; returns its address and deployment block
/// (ledger height 1).
pub async fn deploy(
    rpc_url: &str,
    key: PrivateKeySigner,
    timeout: Duration,
) -> Result<(Address, u64), ChainError> {
    let url = parse_url(rpc_url)?;
    let rpc_error = |e: String| ChainError::Rpc {
        url: rpc_url.to_string(),
        reason: e,
    };
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(key))
        .connect_http(url);
    let work = async {
        let pending = AgoraLedger::deploy_builder(&provider)
            .send()
            .await
            .map_err(|e| rpc_error(e.to_string()))?;
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|e| rpc_error(e.to_string()))?;
        let address = receipt
            .contract_address
            .ok_or_else(|| rpc_error("the deployment made no contract".into()))?;
        let block = receipt
            .block_number
            .ok_or_else(|| rpc_error("the deployment receipt has no block".into()))?;
        Ok((address, block))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| rpc_error(format!("no answer in {} ms", timeout.as_millis())))?
}
