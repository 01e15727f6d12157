//! Setting the follow up, before the copy: what the source's notifications allow (on every
//! master), the subscriptions (before the first SCAN, so no write of the copy goes unseen), the
//! keyspace watchers, and the heartbeat file `ferry cutover` looks for.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::Subscription;
use super::state::Shared;
use super::{cutover, watch};
use crate::check::notify::{self as notifications, Notify};
use crate::check::{Layout, SideInfo};
use crate::endpoint::Server;
use crate::partition::KeyShare;
use crate::plan::MigratePlan;
use crate::read::clock::now_ms;
use crate::stop::Stop;

/// The subscription and shared state, set up before the copy.
pub struct Setup {
    pub(crate) shared: Arc<Shared>,
    pub(crate) subs: Vec<Arc<Subscription>>,
    pub(crate) reliable: bool,
    pub(crate) notify: Notify,
    pub(crate) cp_path: PathBuf,
    pub(crate) stop_tasks: Stop,
    pub(crate) started: Instant,
    pub(crate) started_ms: i64,
}

/// Checks what `--follow` needs, reads the source's notification settings, and subscribes —
/// before the copy's first SCAN. Never changes the source's configuration unless
/// `--enable-notifications` asks. `layout` is the source as this worker reads it (with
/// `--partition`, its share's masters) and `share` the keys it follows (`None`: every key of
/// `dbs`).
pub async fn prepare(
    plan: &MigratePlan,
    source: &Server,
    sinfo: &SideInfo,
    layout: &Layout,
    dbs: &[u32],
    share: Option<Arc<KeyShare>>,
    cp_path: &std::path::Path,
) -> anyhow::Result<Setup> {
    if plan.on_conflict == crate::policy::OnConflict::Skip {
        anyhow::bail!(
            "--follow keeps the target equal to the source, which --on-conflict skip contradicts; use fail or replace"
        );
    }
    let masters = source_masters(source, layout);
    let (major, minor) = sinfo.info.version();
    let streams = (major, minor) >= (5, 0);
    // Every master must publish events: keyspace events are local to the node that ran the write.
    let mut notify = Notify::On;
    for m in &masters {
        let mut conn = m.connect().await?;
        let mut n = notifications::probe(&mut conn, streams).await;
        if let (Notify::Off(flags), true) = (&n, plan.follow.enable_notifications) {
            n = enable(&mut conn, m, flags).await?;
        }
        if notify == Notify::On {
            notify = n;
        }
    }
    let how = notifications::how_to_enable();
    let reliable = match &notify {
        Notify::On => true,
        Notify::Off(flags) => {
            eprintln!(
                "ferry: the source's keyspace notifications are off or incomplete (notify-keyspace-events={flags:?}): \
                 following by reconciliation passes alone (each reads both sides). To follow by events, {how}"
            );
            false
        }
        Notify::Unknown(why) => {
            eprintln!(
                "ferry: cannot read the source's notify-keyspace-events ({why}): following by reconciliation passes \
                 alone (each reads both sides). To follow by events, {how}"
            );
            false
        }
    };
    let shared = Arc::new(Shared::new(dbs.to_vec(), share, plan.follow.dirty_budget));
    let stop_tasks = Stop::new();
    let mut subs = Vec::new();
    for m in &masters {
        match Subscription::start(m.clone(), shared.clone(), stop_tasks.clone()).await {
            Ok(s) => subs.push(Arc::new(s)),
            Err(e) if !reliable => tracing::debug!("follow: no subscription: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    if reliable {
        for (m, sub) in masters.iter().zip(&subs) {
            tokio::spawn(watch::run(
                m.clone(),
                shared.clone(),
                sub.clone(),
                stop_tasks.clone(),
            ));
        }
        eprintln!(
            "ferry: --follow: subscribed to the keyspace events of {} before the copy",
            if masters.len() == 1 {
                "the source".to_string()
            } else {
                format!("the source's {} masters", masters.len())
            }
        );
    }
    let setup = Setup {
        shared,
        subs,
        reliable,
        notify,
        cp_path: cp_path.to_path_buf(),
        stop_tasks,
        started: Instant::now(),
        started_ms: now_ms(),
    };
    tokio::spawn(heartbeat(
        setup.shared.clone(),
        setup.cp_path.clone(),
        setup.stop_tasks.clone(),
    ));
    Ok(setup)
}

/// The servers that take the source's writes: the server, or every master of a cluster.
pub(crate) fn source_masters(source: &Server, layout: &Layout) -> Vec<Server> {
    match layout {
        Layout::Standalone(_) => vec![source.clone()],
        cluster => cluster.servers(),
    }
}

/// `--enable-notifications`: adds the classes needed to `notify-keyspace-events` on `server`.
async fn enable(
    conn: &mut crate::endpoint::Connection,
    server: &Server,
    flags: &str,
) -> anyhow::Result<Notify> {
    let mut wanted: String = flags.chars().filter(|c| !"EA".contains(*c)).collect();
    wanted.push_str("EA");
    let reply = conn
        .cmd(&[
            b"CONFIG".as_slice(),
            b"SET",
            b"notify-keyspace-events",
            wanted.as_bytes(),
        ])
        .await?;
    Ok(match reply.error() {
        Some(e) => {
            eprintln!(
                "ferry: --enable-notifications: the source {} refused CONFIG SET: {e}",
                server.endpoint
            );
            Notify::Off(flags.to_string())
        }
        None => {
            eprintln!(
                "ferry: --enable-notifications: set notify-keyspace-events to {wanted} on the source {}",
                server.endpoint
            );
            Notify::On
        }
    })
}

/// Rewrites the heartbeat file every second (see `cutover.rs`).
async fn heartbeat(shared: Arc<Shared>, cp: PathBuf, stop: Stop) {
    let path = cutover::heartbeat_path(&cp);
    while !stop.is_raised() {
        let (dirty, oldest) = {
            let m = shared.marks();
            (m.dirty.len(), m.dirty.oldest_age_ms(now_ms()))
        };
        let beat = serde_json::json!({
            "pid": std::process::id(),
            "updated_ms": now_ms(),
            "dirty_keys": dirty,
            "oldest_dirty_ms": oldest,
            "events": shared.events.load(Ordering::Relaxed),
            "gaps": shared.gap_count(),
        });
        if let Err(e) = crate::checkpoint::write_atomic(&path, beat.to_string().as_bytes()) {
            tracing::warn!("follow: cannot write the heartbeat {}: {e}", path.display());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop_tasks.raise();
        let _ = std::fs::remove_file(cutover::heartbeat_path(&self.cp_path));
    }
}
