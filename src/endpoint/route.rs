//! Routing single-key commands through a Redis Cluster, one pipeline per master.
//!
//! A batch of commands is grouped by the master that owns each key's slot (our own
//! [`SlotMap`]), and the per-master pipelines run concurrently. A cluster can change under a
//! running job — slots resharded, a master failed over or restarted — so every reply is checked:
//!
//! - `MOVED slot addr`: the slot has a new owner. The map is corrected at once, then refreshed
//!   from `CLUSTER SLOTS` (a resharding moves many slots), and the command is re-sent.
//! - `ASK slot addr`: the slot is being migrated and this key is already (or goes) on the
//!   importing node. The command is re-sent there after `ASKING`; the map is not changed.
//! - `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, or a lost connection: transient. The commands are
//!   re-sent after a backoff (`--retry-for` bounds it), with the topology refreshed.
//!
//! Only the commands that need it are re-sent, so the caller gets exactly one final reply per
//! command. Re-sending is safe for what ferry routes: `RESTORE … REPLACE` of the same value, a
//! `RESTORE` whose `BUSYKEY` is counted as a conflict, and reads.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use super::bulk_limit;
use super::retry::Backoff;
use crate::endpoint::cluster::{Addr, Cluster, Topology};
use crate::endpoint::{ConnError, Connection, ErrorKind, Pipeline, Reply};

use super::slot::key_slot;
use super::slot_map::SlotMap;

/// A list of commands that each touch one key.
pub trait KeyedCommands {
    /// How many commands there are.
    fn count(&self) -> usize;
    /// The key of command `i` (decides its slot).
    fn key(&self, i: usize) -> &[u8];
    /// Appends command `i` to `p`.
    fn encode(&self, i: usize, p: &mut Pipeline);
    /// The length of command `i`'s value when the node may refuse it as over its
    /// `proto-max-bulk-len` without ferry knowing that limit (a RESTORE's payload), else 0.
    /// A lost connection with such a value in flight is checked (`bulk_limit`).
    fn unchecked_bulk(&self, _i: usize) -> usize {
        0
    }
}

/// Rounds of pure redirections before the router slows down with backoff.
const FREE_REDIRECT_ROUNDS: u32 = 5;

/// A cluster's slot map plus one connection per master; see the module docs.
pub struct Router {
    cluster: Cluster,
    map: SlotMap,
    conns: HashMap<Addr, Connection>,
    backoff: Backoff,
    /// The largest [`KeyedCommands::unchecked_bulk`] written: the nodes take values that large.
    largest_written: usize,
}

/// Where one pending command goes next.
#[derive(Clone)]
struct Pending {
    index: usize,
    /// `Some(node)` after `ASK`: send `ASKING` first, to this node.
    ask: Option<Addr>,
}

impl Router {
    /// A router over `topology`; connects lazily.
    pub fn new(cluster: Cluster, topology: &Topology, retry_for: Duration) -> Router {
        Router {
            cluster,
            map: SlotMap::new(topology),
            conns: HashMap::new(),
            backoff: Backoff::new(retry_for),
            largest_written: 0,
        }
    }

    /// The cluster this router writes to.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The node that serves `key` now, for messages (`rediss://host:port`, no password).
    pub fn node_of(&self, key: &[u8]) -> String {
        match self.map.owner(key_slot(key)) {
            Some(a) => self.cluster.server(a).endpoint.to_string(),
            None => format!("(no node serves slot {})", key_slot(key)),
        }
    }

    /// The master that serves `key` now (for a connection of its own: a big key's copy).
    pub fn server_for(&self, key: &[u8]) -> Option<crate::endpoint::Server> {
        self.map
            .owner(key_slot(key))
            .map(|a| self.cluster.server(a))
    }

    /// Re-reads the topology from any node we know.
    pub async fn refresh(&mut self) -> anyhow::Result<()> {
        let known = self.map.masters();
        let topology = self.cluster.discover(&known).await?;
        let before = self.map.masters();
        self.map = SlotMap::new(&topology);
        let after = self.map.masters();
        if before != after {
            tracing::info!(
                "the {} cluster's masters are now {}",
                self.cluster.side(),
                after
                    .iter()
                    .map(Addr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // Connections to nodes that no longer serve slots are closed.
        self.conns.retain(|a, _| after.contains(a));
        Ok(())
    }

    async fn conn(&mut self, addr: &Addr) -> Result<Connection, ConnError> {
        match self.conns.remove(addr) {
            Some(c) => Ok(c),
            None => self.cluster.server(addr).connect().await,
        }
    }

    /// Runs every command of `cmds` on the master owning its key and returns one reply per
    /// command, in order. Redirections and transient failures are handled here (see the module
    /// docs); other error replies are returned for the caller to judge.
    pub async fn run<C: KeyedCommands + ?Sized>(&mut self, cmds: &C) -> anyhow::Result<Vec<Reply>> {
        let n = cmds.count();
        let mut replies: Vec<Option<Reply>> = vec![None; n];
        let mut pending: Vec<Pending> = (0..n).map(|index| Pending { index, ask: None }).collect();
        let mut redirect_rounds = 0u32;
        while !pending.is_empty() {
            let mut round = Round::default();
            let groups = self.group(cmds, pending, &mut round);
            let mut work = self.prepare(cmds, groups, &mut round).await?;
            let results = join_all(work.iter_mut().map(|w| w.conn.run(&w.pipeline))).await;
            for (w, result) in work.into_iter().zip(results) {
                self.take_replies(cmds, w, result, &mut replies, &mut round)
                    .await?;
            }
            self.end_round(&mut round, &mut redirect_rounds).await?;
            pending = round.retry;
        }
        self.backoff.reset();
        replies
            .into_iter()
            .map(|r| r.ok_or_else(|| anyhow::anyhow!("internal error: a command got no reply")))
            .collect()
    }

    /// Groups `pending` by the node each command goes to; commands of slots no master serves
    /// are kept in `round` for the next round.
    fn group<C: KeyedCommands + ?Sized>(
        &self,
        cmds: &C,
        pending: Vec<Pending>,
        round: &mut Round,
    ) -> BTreeMap<Addr, Vec<Pending>> {
        let mut groups: BTreeMap<Addr, Vec<Pending>> = BTreeMap::new();
        let mut unowned: Vec<Pending> = Vec::new();
        for p in pending {
            let dest = match &p.ask {
                Some(a) => Some(a.clone()),
                None => self.map.owner(key_slot(cmds.key(p.index))).cloned(),
            };
            match dest {
                Some(d) => groups.entry(d).or_default().push(p),
                None => unowned.push(p),
            }
        }
        if let Some(first) = unowned.first() {
            let slot = key_slot(cmds.key(first.index));
            let e = anyhow::anyhow!(
                "no master of the {} cluster serves slot {slot} (CLUSTERDOWN?)",
                self.cluster.side()
            );
            round.again(e, unowned);
        }
        groups
    }

    /// One pipeline per node, on its connection (connecting first, sequentially: only on first
    /// use). A node that cannot be reached now has its commands kept for the next round.
    async fn prepare<C: KeyedCommands + ?Sized>(
        &mut self,
        cmds: &C,
        groups: BTreeMap<Addr, Vec<Pending>>,
        round: &mut Round,
    ) -> anyhow::Result<Vec<NodeWork>> {
        let mut work = Vec::with_capacity(groups.len());
        for (addr, group) in groups {
            let conn = match self.conn(&addr).await {
                Ok(c) => c,
                Err(e) if e.is_transient() => {
                    round.again(e.into(), group);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut pipeline = Pipeline::new();
            for g in &group {
                if g.ask.is_some() {
                    pipeline.cmd(&[b"ASKING"]);
                }
                cmds.encode(g.index, &mut pipeline);
            }
            work.push(NodeWork {
                addr,
                conn,
                pipeline,
                group,
            });
        }
        Ok(work)
    }

    /// Files the replies of one node's pipeline: final ones into `replies`, redirected and
    /// transient ones into `round` for the next round. A lost connection is transient, unless
    /// the node refuses a value as too large (`bulk_limit`).
    async fn take_replies<C: KeyedCommands + ?Sized>(
        &mut self,
        cmds: &C,
        w: NodeWork,
        result: Result<Vec<Reply>, ConnError>,
        replies: &mut [Option<Reply>],
        round: &mut Round,
    ) -> anyhow::Result<()> {
        let NodeWork {
            addr, conn, group, ..
        } = w;
        let biggest = group.iter().map(|g| cmds.unchecked_bulk(g.index)).max();
        let biggest = biggest.unwrap_or(0);
        let node_replies = match result {
            Ok(r) => {
                self.largest_written = self.largest_written.max(biggest);
                r
            }
            Err(e) if e.is_transient() => {
                self.refuse_too_large(cmds, &addr, &group, biggest).await?;
                // The connection is dropped; the node may be restarting or failing over.
                round.again(e.into(), group);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let mut it = node_replies.into_iter();
        for g in group {
            if g.ask.is_some() {
                let _asking = it.next();
            }
            let Some(reply) = it.next() else {
                anyhow::bail!(
                    "the {} node {} sent fewer replies than commands",
                    self.cluster.side(),
                    self.endpoint_of(&addr)
                );
            };
            match classify(&reply) {
                Class::Done => replies[g.index] = Some(reply),
                Class::Moved(slot, to) => {
                    self.map.set(slot, &to);
                    round.refresh = true;
                    round.moved += 1;
                    round.retry.push(Pending {
                        index: g.index,
                        ask: None,
                    });
                }
                Class::Ask(to) => {
                    round.asked += 1;
                    round.retry.push(Pending {
                        index: g.index,
                        ask: Some(to),
                    });
                }
                Class::Transient(why) => {
                    let side = self.cluster.side();
                    round.transient = Some(anyhow::anyhow!("the {side} cluster answered {why}"));
                    round.retry.push(g);
                }
            }
        }
        self.conns.insert(addr, conn);
        Ok(())
    }

    /// After a lost connection with a value larger than any written so far in flight (`biggest`
    /// bytes): the refusal when the node refuses that size, which no retry fixes.
    // `&mut self`: a reader's future holding `&Router` across the await would need `Sync`.
    async fn refuse_too_large<C: KeyedCommands + ?Sized>(
        &mut self,
        cmds: &C,
        addr: &Addr,
        group: &[Pending],
        biggest: usize,
    ) -> anyhow::Result<()> {
        if biggest <= self.largest_written.max(bulk_limit::PROBE_FLOOR) {
            return Ok(());
        }
        let Some(g) = group
            .iter()
            .find(|g| cmds.unchecked_bulk(g.index) == biggest)
        else {
            return Ok(());
        };
        let node = self.cluster.server(addr);
        match bulk_limit::check_loss(&node, 0, cmds.key(g.index), biggest).await {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// The end of a round: the topology re-read when it moved or a node was lost, and a wait
    /// before the next round when something was transient or slots keep moving.
    async fn end_round(
        &mut self,
        round: &mut Round,
        redirect_rounds: &mut u32,
    ) -> anyhow::Result<()> {
        let redirected = round.moved + round.asked;
        if redirected > 0 {
            tracing::debug!(
                "the {} cluster redirected {} command(s) with MOVED and {} with ASK; re-sending them",
                self.cluster.side(),
                round.moved,
                round.asked
            );
        }
        if round.refresh {
            if let Err(e) = self.refresh().await {
                // Keep the map (already corrected by MOVED); the backoff below retries.
                tracing::warn!("{e:#}");
                round.transient.get_or_insert(e);
            }
        }
        if let Some(e) = round.transient.take() {
            self.backoff.wait(e).await?;
        } else if redirected > 0 {
            *redirect_rounds += 1;
            if *redirect_rounds > FREE_REDIRECT_ROUNDS {
                let side = self.cluster.side();
                let e =
                    anyhow::anyhow!("the {side} cluster keeps redirecting keys (slots are moving)");
                self.backoff.wait(e).await?;
            }
        }
        Ok(())
    }

    /// Runs `args` once on every master; returns each master's address and reply.
    pub async fn on_each_master<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
    ) -> anyhow::Result<Vec<(Addr, Reply)>> {
        'attempt: loop {
            let mut out = Vec::new();
            for addr in self.map.masters() {
                let result = match self.conn(&addr).await {
                    Ok(mut c) => {
                        let r = c.cmd(args).await;
                        if r.is_ok() {
                            self.conns.insert(addr.clone(), c);
                        }
                        r
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(reply) => out.push((addr, reply)),
                    Err(e) if e.is_transient() => {
                        if let Err(re) = self.refresh().await {
                            tracing::warn!("{re:#}");
                        }
                        self.backoff.wait(e).await?;
                        continue 'attempt;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            self.backoff.reset();
            return Ok(out);
        }
    }

    /// Settings of the master at `addr`, for messages and for callers that need their own
    /// connection.
    pub fn endpoint_of(&self, addr: &Addr) -> String {
        self.cluster.server(addr).endpoint.to_string()
    }
}

/// One node's share of a round: its connection, the pipeline to send, the commands in it.
struct NodeWork {
    addr: Addr,
    conn: Connection,
    pipeline: Pipeline,
    group: Vec<Pending>,
}

/// What one round of [`Router::run`] leaves for the next.
#[derive(Default)]
struct Round {
    /// Commands to send again.
    retry: Vec<Pending>,
    /// The last transient failure: the next round waits (backoff) first.
    transient: Option<anyhow::Error>,
    /// The slot map is to be re-read.
    refresh: bool,
    /// Commands redirected by `MOVED`, and by `ASK`.
    moved: usize,
    asked: usize,
}

impl Round {
    /// `group` failed for a transient reason (`e`): sent again after a backoff, with the
    /// topology re-read.
    fn again(&mut self, e: anyhow::Error, group: Vec<Pending>) {
        self.transient = Some(e);
        self.refresh = true;
        self.retry.extend(group);
    }
}

/// What a reply means for routing.
enum Class {
    Done,
    Moved(u16, Addr),
    Ask(Addr),
    Transient(String),
}

fn classify(reply: &Reply) -> Class {
    let Some(err) = reply.error() else {
        return Class::Done;
    };
    let redirect = |rest: &str| -> Option<(u16, Addr)> {
        let mut parts = rest.split_whitespace();
        let slot = parts.next()?.parse().ok()?;
        let addr = Addr::parse(parts.next()?)?;
        Some((slot, addr))
    };
    // What follows the code: `slot host:port` for a redirection.
    let rest = err.split_once(' ').map_or("", |(_, rest)| rest);
    match ErrorKind::of(err) {
        ErrorKind::Moved => {
            if let Some((slot, addr)) = redirect(rest) {
                return Class::Moved(slot, addr);
            }
        }
        ErrorKind::Ask => {
            if let Some((_, addr)) = redirect(rest) {
                return Class::Ask(addr);
            }
        }
        ErrorKind::TryAgain | ErrorKind::ClusterDown | ErrorKind::Loading => {
            return Class::Transient(err.to_string());
        }
        _ => {}
    }
    Class::Done
}

/// Polls every future until all are done; outputs in input order. (A tiny `join_all`, so the
/// per-master pipelines of one batch run concurrently without spawning tasks.)
async fn join_all<F: Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_redirections() {
        let e = |s: &str| Reply::Error(s.to_string());
        assert!(matches!(
            classify(&e("MOVED 3999 127.0.0.1:6381")),
            Class::Moved(3999, a) if a == Addr::new("127.0.0.1", 6381)
        ));
        assert!(matches!(
            classify(&e("ASK 3999 ::1:6381")),
            Class::Ask(a) if a == Addr::new("::1", 6381)
        ));
        assert!(matches!(
            classify(&e("CLUSTERDOWN The cluster is down")),
            Class::Transient(_)
        ));
        assert!(matches!(
            classify(&e("TRYAGAIN Multiple keys")),
            Class::Transient(_)
        ));
        assert!(matches!(classify(&e("BUSYKEY Target key")), Class::Done));
        assert!(matches!(classify(&Reply::Status("OK".into())), Class::Done));
    }

    #[tokio::test]
    async fn join_all_keeps_order() {
        let futs = (0..3u64).map(|i| async move {
            tokio::time::sleep(Duration::from_millis(30 - i * 10)).await;
            i
        });
        assert_eq!(join_all(futs).await, vec![0, 1, 2]);
    }
}
