//! Revisions applied as a pipeline of transactions that etcd itself keeps in order.
//!
//! etcd applies proposals in the order they reach raft, but two unary gRPC calls in flight on
//! one HTTP/2 connection are served by one goroutine each, and either can reach raft first. So
//! the order is not left to the transport: a transaction carries a compare that holds only once
//! the revision before it is applied: a key that revision put has exactly that mod revision
//! (etcd gives mod revision R only when it applies revision R; before, every mod revision is
//! below it). A transaction that overtakes its predecessor fails its compare, writes nothing
//! and adds no revision; so does every one sent after it (each needs its own predecessor). They
//! are sent again, the first alone, once everything before them is applied. A revision after
//! one that only deleted has no such proof ("the key is gone" also held before the key was
//! created): it is sent alone, once everything before it is applied. Whatever the path, a
//! transaction must answer with the recorded revision.

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_client::{Compare, CompareOp, KvClient, PutOptions, Txn, TxnOp, TxnResponse};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::{ReplicationError, RevisionEvents};

/// Transactions in flight at most. The window starts at one (each transaction sent once its
/// predecessor answered), grows by one after [`GROW_AFTER`] transactions landed in order, and
/// halves when one overtook its predecessor (all sent after it are then sent again).
///
/// Measured (bench/RESULTS.md): etcd 3.5 and 3.6 on two cores let a transaction overtake the
/// one sent just before it about one time in three, and each overtaking costs the whole window
/// again plus a drain, so one at a time replays fastest there; the window only grows where etcd
/// keeps order, and probing costs about one resent transaction per [`GROW_AFTER`].
pub(crate) const MAX_TXNS_IN_FLIGHT: usize = 128;
/// The window at the start.
const FIRST_WINDOW: usize = 1;
/// Transactions landed in order before the window grows by one.
const GROW_AFTER: usize = 256;
/// Bytes of keys and values in flight at most (one larger revision still goes, alone).
pub(crate) const MAX_BYTES_IN_FLIGHT: usize = 64 << 20;

/// One recorded revision as the transaction that replays it.
pub(crate) struct ReplayTxn {
    /// The recorded revision: the transaction must land on it.
    pub revision: i64,
    /// The segment holding it (for errors).
    pub segment: Arc<str>,
    txn: Txn,
    bytes: usize,
    guarded: bool,
}

/// What the next revision's transaction compares: proof that this revision is applied.
#[derive(Clone)]
pub(crate) struct ApplyGuard(Compare);

/// Builds the transaction of `revision` (its events moved into it), guarded by `previous` (the
/// guard of the revision before; `None` for the first after the base or after a revision that
/// only deleted: then it waits for everything before it), and the guard for the revision after
/// it (`None` when this one puts nothing).
pub(crate) fn revision_txn(
    segment: &Arc<str>,
    revision: RevisionEvents,
    previous: Option<ApplyGuard>,
) -> Result<(ReplayTxn, Option<ApplyGuard>), ReplicationError> {
    let number = revision.revision;
    let bad = |detail: String| ReplicationError::BadEvent {
        segment: segment.to_string(),
        revision: number,
        detail,
    };
    let mut ops = Vec::with_capacity(revision.events.len());
    let mut bytes = 0;
    let mut put_guard = None;
    for event in revision.events {
        let Some(kv) = event.kv else {
            return Err(bad("an event without a key".into()));
        };
        bytes += kv.key.len() + kv.value.len();
        match event.r#type {
            0 => {
                if put_guard.is_none() {
                    put_guard = Some(Compare::mod_revision(
                        kv.key.clone(),
                        CompareOp::Equal,
                        number,
                    ));
                }
                let options = (kv.lease != 0).then(|| PutOptions::new().with_lease(kv.lease));
                ops.push(TxnOp::put(kv.key, kv.value, options));
            }
            1 => ops.push(TxnOp::delete(kv.key, None)),
            other => return Err(bad(format!("unknown event type {other}"))),
        }
    }
    if ops.is_empty() {
        return Err(bad("a revision without events".into()));
    }
    let guarded = previous.is_some();
    let txn = match previous {
        Some(ApplyGuard(compare)) => Txn::new().when([compare]).and_then(ops),
        None => Txn::new().and_then(ops),
    };
    Ok((
        ReplayTxn {
            revision: number,
            segment: segment.clone(),
            txn,
            bytes,
            guarded,
        },
        put_guard.map(ApplyGuard),
    ))
}

type Answer = (ReplayTxn, Result<TxnResponse, etcd_client::Error>);

/// Sends transactions without waiting for each answer, and checks the answers in order.
pub(crate) struct TxnPipeline {
    kv: KvClient,
    in_flight: FuturesOrdered<BoxFuture<'static, Answer>>,
    bytes_in_flight: usize,
    /// Built, not yet sent (bounded by the window: [`Self::push`] returns once it is empty).
    queue: VecDeque<ReplayTxn>,
    window: usize,
    in_order_streak: usize,
    /// The newest revision confirmed applied.
    pub applied: i64,
    /// Transactions that overtook their predecessor and were sent again.
    pub resent: u64,
}

impl TxnPipeline {
    pub(crate) fn new(kv: KvClient, applied: i64) -> Self {
        Self {
            kv,
            in_flight: FuturesOrdered::new(),
            bytes_in_flight: 0,
            queue: VecDeque::new(),
            window: FIRST_WINDOW,
            in_order_streak: 0,
            applied,
            resent: 0,
        }
    }

    /// Sends `txn` once there is room; an unguarded one only once everything before it is
    /// applied.
    pub(crate) async fn push(
        &mut self,
        txn: ReplayTxn,
        cancel: &CancellationToken,
    ) -> Result<(), ReplicationError> {
        self.queue.push_back(txn);
        self.pump(false, cancel).await
    }

    /// Waits for every transaction to be applied.
    pub(crate) async fn finish(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<(), ReplicationError> {
        self.pump(true, cancel).await
    }

    /// Sends what the window allows and settles answers until the queue is empty (and, with
    /// `drain`, nothing is in flight).
    async fn pump(
        &mut self,
        drain: bool,
        cancel: &CancellationToken,
    ) -> Result<(), ReplicationError> {
        loop {
            while let Some(next) = self.queue.front() {
                let room = self.in_flight.is_empty()
                    || (next.guarded
                        && self.in_flight.len() < self.window
                        && self.bytes_in_flight + next.bytes <= MAX_BYTES_IN_FLIGHT);
                if !room {
                    break;
                }
                if let Some(next) = self.queue.pop_front() {
                    self.send(next);
                }
            }
            if self.queue.is_empty() && (!drain || self.in_flight.is_empty()) {
                return Ok(());
            }
            self.settle_next(cancel).await?;
        }
    }

    fn send(&mut self, txn: ReplayTxn) {
        self.bytes_in_flight += txn.bytes;
        let mut kv = self.kv.clone();
        self.in_flight.push_back(Box::pin(async move {
            let result = kv.txn(txn.txn.clone()).await;
            (txn, result)
        }));
    }

    async fn next_answer(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<Answer>, ReplicationError> {
        let answer = tokio::select! {
            answer = self.in_flight.next() => answer,
            () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
        };
        if let Some((txn, _)) = &answer {
            self.bytes_in_flight -= txn.bytes;
        }
        Ok(answer)
    }

    /// Checks the oldest answer; on an overtaken transaction, sends it and the rest again.
    async fn settle_next(&mut self, cancel: &CancellationToken) -> Result<(), ReplicationError> {
        let Some((txn, result)) = self.next_answer(cancel).await? else {
            return Ok(());
        };
        let response = result.map_err(|e| refused(&txn, e))?;
        if response.succeeded() {
            return self.confirm(&txn, &response);
        }
        // Overtaken: it reached etcd before its predecessor. Every transaction sent after it
        // needs it applied first, so they failed their compare too; collect them.
        let mut again = Vec::with_capacity(self.in_flight.len());
        while let Some((later, result)) = self.next_answer(cancel).await? {
            let response = result.map_err(|e| refused(&later, e))?;
            if response.succeeded() {
                // Applied although its predecessor was not: the order proof failed.
                return Err(ReplicationError::ReplayDiverged {
                    segment: later.segment.to_string(),
                    recorded: later.revision,
                    got: revision_of(&response),
                });
            }
            again.push(later);
        }
        // Everything before `txn` is applied now: its compare must hold.
        let response = tokio::select! {
            response = self.kv.txn(txn.txn.clone()) => response.map_err(|e| refused(&txn, e))?,
            () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
        };
        if !response.succeeded() {
            // The revision before it did not leave what the source recorded.
            return Err(ReplicationError::ReplayDiverged {
                segment: txn.segment.to_string(),
                recorded: txn.revision,
                got: revision_of(&response),
            });
        }
        self.confirm(&txn, &response)?;
        self.resent += 1 + again.len() as u64;
        self.window = (self.window / 2).max(1);
        self.in_order_streak = 0;
        for later in again.into_iter().rev() {
            self.queue.push_front(later);
        }
        Ok(())
    }

    fn confirm(&mut self, txn: &ReplayTxn, response: &TxnResponse) -> Result<(), ReplicationError> {
        let got = revision_of(response);
        if got != txn.revision {
            return Err(ReplicationError::ReplayDiverged {
                segment: txn.segment.to_string(),
                recorded: txn.revision,
                got,
            });
        }
        self.applied = got;
        self.in_order_streak += 1;
        if self.in_order_streak >= GROW_AFTER {
            self.window = (self.window + 1).min(MAX_TXNS_IN_FLIGHT);
            self.in_order_streak = 0;
        }
        Ok(())
    }
}

fn revision_of(response: &TxnResponse) -> i64 {
    response.header().map(|h| h.revision()).unwrap_or(0)
}

fn refused(txn: &ReplayTxn, error: etcd_client::Error) -> ReplicationError {
    ReplicationError::BadEvent {
        segment: txn.segment.to_string(),
        revision: txn.revision,
        detail: format!("the throw-away etcd refused its transaction: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{delete, put};

    fn revision(number: i64, events: Vec<etcd_client::proto::PbEvent>) -> RevisionEvents {
        RevisionEvents {
            revision: number,
            observed_unix_ms: 0,
            events,
        }
    }

    #[test]
    fn a_put_proves_its_revision_and_a_delete_only_revision_cannot() {
        let segment: Arc<str> = Arc::from("seg");
        let (first, guard) =
            revision_txn(&segment, revision(5, vec![put(5, "a", b"1", 0)]), None).unwrap();
        assert!(
            !first.guarded,
            "the first after the base waits for nothing before it"
        );
        let guard = guard.expect("a put proves its revision");
        let (second, after_delete) = revision_txn(
            &segment,
            revision(6, vec![delete(6, "a"), delete(6, "b")]),
            Some(guard),
        )
        .unwrap();
        assert!(second.guarded);
        assert_eq!(second.bytes, 2);
        assert!(
            after_delete.is_none(),
            "a delete-only revision proves nothing"
        );
        let (third, _) =
            revision_txn(&segment, revision(7, vec![put(7, "c", b"22", 0)]), None).unwrap();
        assert!(!third.guarded, "after a delete-only revision: sent alone");
        let error = revision_txn(&segment, revision(8, Vec::new()), None)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("without events"), "{error}");
    }
}
