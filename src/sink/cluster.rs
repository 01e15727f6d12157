//! The cluster writer: `RESTORE`s of a batch, split by slot into one pipeline per target master.
//!
//! It writes exactly what the standalone writer (`restore.rs`) writes, with the same expiry and
//! size rules; the only difference is the routing, which [`Router`] does (MOVED/ASK, refreshes,
//! retries). A payload a node refuses as too new for it is re-encoded and written again, as
//! the standalone writer does. A cluster has only DB 0, so no `SELECT` is ever sent: the DB map was checked
//! before the first write to send every source DB to 0.

use crate::counts::Counts;
use crate::endpoint::{ErrorKind, Pipeline, Reply};
use crate::policy::OnConflict;
use crate::record::Record;
use crate::source::Batch;

use super::key_error::{Cause, Quarantine};
use super::options::WriterOptions;
use super::resent;
use super::restore::{
    judge, over_limit, push_restore, reencode_refused, restore_ttl, too_large_reason,
};
use crate::endpoint::bulk_limit;
use crate::endpoint::route::{KeyedCommands, Router};

/// One writer task's view of a target cluster.
pub struct ClusterWriter {
    router: Router,
    opts: WriterOptions,
}

/// The RESTOREs of one batch, as routable commands.
struct Restores<'a> {
    records: Vec<&'a Record>,
    /// `ABSTTL` argument of each record (0: no expiry).
    ttls: Vec<i64>,
    replace: bool,
    /// The target's `proto-max-bulk-len` is unknown: payloads may be refused unnoticed.
    limit_unknown: bool,
}

impl KeyedCommands for Restores<'_> {
    fn count(&self) -> usize {
        self.records.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.records[i].key
    }

    fn encode(&self, i: usize, p: &mut Pipeline) {
        let mut buf = itoa::Buffer::new();
        let ttl = buf.format(self.ttls[i]);
        push_restore(p, self.records[i], ttl.as_bytes(), self.replace);
    }

    fn unchecked_bulk(&self, i: usize) -> usize {
        if self.limit_unknown {
            self.records[i].payload.len()
        } else {
            0
        }
    }
}

impl<'a> Restores<'a> {
    /// Queues the RESTOREs of `records`: a value over the target's known limit is refused
    /// (dead-lettered or fatal, see `key_error.rs`) and an expired one counted, neither sent.
    fn admit(
        &mut self,
        records: &'a [Record],
        opts: &WriterOptions,
        seed: &str,
        q: &mut Quarantine,
        counts: &mut Counts,
    ) -> anyhow::Result<()> {
        for rec in records {
            if let Some(e) = over_limit(opts, rec, seed) {
                let reason = too_large_reason(opts, rec);
                q.refuse(rec, 0, Cause::TooLarge, &reason, e)?;
                continue;
            }
            match restore_ttl(opts, rec, seed)? {
                None => counts.expired_skipped += 1,
                Some(ttl) => {
                    self.records.push(rec);
                    self.ttls.push(ttl);
                }
            }
        }
        Ok(())
    }
}

impl ClusterWriter {
    /// A writer routing through `router`.
    pub fn new(router: Router, opts: WriterOptions) -> ClusterWriter {
        ClusterWriter { router, opts }
    }

    /// The router and the options, to copy big keys (`sink/chunked.rs`).
    pub fn parts(&mut self) -> (&mut Router, &WriterOptions) {
        (&mut self.router, &self.opts)
    }

    /// Writes every record of `batch` to the master owning its slot; returns what was done.
    /// Keys dead-lettered (`--on-key-error skip`) are on disk before this returns.
    pub async fn write(&mut self, batch: &Batch) -> anyhow::Result<Counts> {
        let mut q = Quarantine::new(self.opts.key_errors.clone());
        let mut counts = Counts {
            scanned: batch.scanned,
            vanished: batch.vanished,
            ..Counts::default()
        };
        let seed = self.router.cluster().seed().endpoint.to_string();
        let mut cmds = Restores {
            records: Vec::with_capacity(batch.records.len()),
            ttls: Vec::with_capacity(batch.records.len()),
            replace: self.opts.on_conflict != OnConflict::Skip,
            limit_unknown: self.opts.max_bulk.is_none(),
        };
        cmds.admit(&batch.records, &self.opts, &seed, &mut q, &mut counts)?;
        let again = self.restore(&mut cmds, &mut q, &mut counts, true).await?;
        if !again.is_empty() {
            let mut cmds = Restores {
                records: Vec::with_capacity(again.len()),
                ttls: Vec::with_capacity(again.len()),
                ..cmds
            };
            cmds.admit(&again, &self.opts, &seed, &mut q, &mut counts)?;
            self.restore(&mut cmds, &mut q, &mut counts, false).await?;
        }
        q.flush(&mut counts)?;
        Ok(counts)
    }

    /// Runs `cmds` through the router and counts the replies. On the first pass (`reencode`), a
    /// payload the target refuses as too new for it is re-encoded and returned, to be written
    /// again, as the standalone writer does (`restore::reencode_refused`); any other refusal is
    /// judged (`restore::judge`).
    async fn restore(
        &mut self,
        cmds: &mut Restores<'_>,
        q: &mut Quarantine,
        counts: &mut Counts,
        reencode: bool,
    ) -> anyhow::Result<Vec<Record>> {
        let replies = loop {
            if cmds.records.is_empty() {
                return Ok(Vec::new());
            }
            match self.router.run(&*cmds).await {
                Ok(r) => break r,
                Err(e) => {
                    // A value over the node's unknown limit: that key's own fault.
                    let Some(big) = e.downcast_ref::<bulk_limit::TooLarge>() else {
                        return Err(e);
                    };
                    let Some(i) = cmds
                        .records
                        .iter()
                        .position(|r| r.key.as_ref() == big.key.as_slice())
                    else {
                        return Err(e);
                    };
                    let reason = "Protocol error: invalid bulk length (over proto-max-bulk-len)";
                    q.refuse(cmds.records[i], 0, Cause::TooLarge, reason, e)?;
                    cmds.records.remove(i);
                    cmds.ttls.remove(i);
                }
            }
        };
        let mut again = Vec::new();
        let mut busy: Vec<&Record> = Vec::new();
        for (rec, reply) in cmds.records.iter().zip(replies) {
            let Reply::Error(err) = reply else {
                counts.written += 1;
                counts.bytes += rec.size() as u64;
                counts.reencoded += u64::from(!reencode);
                continue;
            };
            if ErrorKind::of(&err) == ErrorKind::BusyKey {
                busy.push(rec);
                continue;
            }
            match reencode
                .then(|| reencode_refused(&self.opts, rec, &err))
                .flatten()
            {
                Some(Ok(r)) => again.push(r),
                Some(Err(e)) => {
                    let reason = format!("{err}; {e:#}");
                    q.refuse(rec, 0, Cause::NotRepresentable, &reason, e)?
                }
                None => judge(q, &self.router.node_of(&rec.key), 0, rec, &err)?,
            }
        }
        if !busy.is_empty() {
            // Ferry's own copy (re-sent after a retry or a resume) or a conflict: `resent.rs`.
            let own = resent::own_copies(&mut self.router, &busy, &self.opts.clocks).await?;
            resent::count(&busy, &own, counts);
        }
        Ok(again)
    }
}
