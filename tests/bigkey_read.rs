//! The big-key reader (#14): every type read from a live 6.2 and 3.2 source in byte-bounded
//! chunks rebuilds exactly what the independent `redis` client reads, each chunk within about the
//! budget, and a key that vanishes, changes type or is written to mid-read is reported as such.

mod support;

use std::time::Duration;

use bytes::Bytes;
use ferry::bigkey::read::{ChunkReader, ReadError};
use ferry::bigkey::{Chunk, Kind, StreamId};
use ferry::endpoint::{url, Connection, Side};
use support::bigkey_data::{seed_big, BigSizes, BIG_KEYS};
use support::data::{self, Canon, GroupCanon, StreamCanon, StreamEntry};
use support::servers::{Server, Version};

const BUDGET: usize = 16 * 1024;

const SIZES: BigSizes = BigSizes {
    hash: 20_000,
    list: 20_000,
    zset: 20_000,
    set: 20_000,
    string: 1 << 20,
    stream: 3_000,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connect(s: &Server) -> Connection {
    let endpoint = url::parse(&s.url(), Side::Source, None).expect("source URL");
    let server = ferry::endpoint::Server {
        endpoint,
        tls: None,
        answer_timeout: Duration::from_secs(30),
    };
    server.connect().await.expect("connect")
}

fn id_text(id: StreamId) -> String {
    format!("{}-{}", id.ms, id.seq)
}

fn v(b: &Bytes) -> Vec<u8> {
    b.to_vec()
}

/// Reads `key` in chunks, checking each against the budget, and rebuilds it as the oracle's
/// canonical form. Returns it and the number of chunks.
async fn read_all(conn: &mut Connection, key: &str) -> (Canon, usize) {
    let mut reader = ChunkReader::open(conn, Bytes::copy_from_slice(key.as_bytes()), BUDGET)
        .await
        .expect("open")
        .expect("key exists");
    let mut chunks = 0;
    let mut string = Vec::new();
    let mut list = Vec::new();
    let mut hash = Vec::new();
    let mut set = Vec::new();
    let mut zset = Vec::new();
    let mut entries = Vec::new();
    let mut meta = None;
    let mut groups: Vec<GroupCanon> = Vec::new();
    let mut largest_element = 0usize;
    while let Some(chunk) = reader
        .next(conn)
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"))
    {
        chunks += 1;
        // About a chunk's worth: the window is sized from the elements seen, so one round trip
        // may overshoot by the variation of element sizes; SCAN's COUNT is a hint.
        assert!(
            chunk.size() <= 2 * BUDGET + largest_element,
            "{key}: a chunk of {} bytes for a budget of {BUDGET}",
            chunk.size()
        );
        match chunk {
            Chunk::String(b) => string.extend_from_slice(&b),
            Chunk::List(items) => {
                largest_element =
                    largest_element.max(items.iter().map(|i| i.len()).max().unwrap_or(0));
                list.extend(items.iter().map(v))
            }
            Chunk::Set(items) => set.extend(items.iter().map(v)),
            Chunk::Hash(items) => hash.extend(items.iter().map(|(f, x)| (v(f), v(x)))),
            Chunk::ZSet(items) => zset.extend(items.iter().map(|(m, s)| (v(m), *s))),
            Chunk::StreamEntries(e) => entries.extend(e.into_iter().map(|e| StreamEntry {
                id: id_text(e.id),
                fields: e.fields.iter().map(|(f, x)| (v(f), v(x))).collect(),
            })),
            Chunk::StreamMeta(m) => meta = Some(m),
            Chunk::StreamGroup(g) => groups.push(GroupCanon {
                name: v(&g.name),
                last_delivered_id: Some(id_text(g.last_delivered)),
                entries_read: g.entries_read,
                pending: 0,
                consumers: g.consumers.iter().map(|c| (v(c), 0)).collect(),
                pel: Vec::new(),
            }),
            Chunk::StreamPending { group, entries } => {
                let g = groups.last_mut().expect("pending after its group");
                assert_eq!(g.name, v(&group));
                for e in entries {
                    g.pel
                        .push((id_text(e.id), v(&e.consumer), e.delivery_count));
                    g.pending += 1;
                    let c = g.consumers.iter_mut().find(|(n, _)| *n == v(&e.consumer));
                    c.expect("pending entry of a listed consumer").1 += 1;
                }
            }
        }
    }
    let canon = match reader.kind() {
        Kind::String => Canon::String(string),
        Kind::List => Canon::List(list),
        Kind::Set => {
            set.sort();
            Canon::Set(set)
        }
        Kind::Hash => {
            hash.sort();
            Canon::Hash(hash)
        }
        Kind::ZSet => {
            zset.sort_by(|a, b| a.0.cmp(&b.0));
            Canon::ZSet(zset)
        }
        Kind::Stream => {
            let meta = meta.expect("stream metadata");
            for g in &mut groups {
                g.consumers.sort();
            }
            groups.sort_by(|a, b| a.name.cmp(&b.name));
            Canon::Stream(StreamCanon {
                length: entries.len() as u64,
                entries,
                last_id: id_text(meta.last_id),
                max_deleted_id: meta.max_deleted_id.map(id_text),
                entries_added: meta.entries_added,
                groups,
            })
        }
    };
    (canon, chunks)
}

fn reads_every_type_exactly(version: Version) {
    let src = Server::plain(version);
    let mut oracle = src.conn();
    seed_big(&mut oracle, SIZES, version.has_streams());
    let rt = runtime();
    let mut conn = rt.block_on(connect(&src));
    let keys: Vec<&str> = BIG_KEYS
        .iter()
        .copied()
        .filter(|k| version.has_streams() || *k != "big:stream")
        .collect();
    for key in keys {
        let (got, chunks) = rt.block_on(read_all(&mut conn, key));
        let want = data::read_key(&mut oracle, key.as_bytes()).expect("seeded key");
        assert!(
            got.matches(&want.value),
            "{key} on {}: chunks rebuild another value ({} vs {} elements)",
            version.label(),
            got.len(),
            want.value.len()
        );
        if let Canon::Stream(s) = &got {
            assert_eq!(s.groups.len(), 2, "both groups read");
            assert!(s.groups.iter().any(|g| g.pel.iter().any(|p| p.2 > 1)));
            assert!(s
                .groups
                .iter()
                .any(|g| g.consumers.iter().any(|c| c.1 == 0)));
        }
        assert!(chunks > 4, "{key}: read in {chunks} chunks, expected many");
    }
}

#[test]
fn reads_big_keys_of_every_type_from_6_2() {
    reads_every_type_exactly(Version::V6_2);
}

/// 5.0: the first streams (no extended XINFO); 7.0: entries-added, max-deleted-entry-id,
/// entries-read.
#[test]
fn reads_big_keys_from_5_0_and_7_0() {
    reads_every_type_exactly(Version::V5_0);
    reads_every_type_exactly(Version::V7_0);
}

#[test]
fn reads_big_keys_from_3_2() {
    reads_every_type_exactly(Version::V3_2);
}

/// Reads `key` to its end or first error, running `meddle` after the first chunk.
fn read_meddled(
    src: &Server,
    key: &str,
    meddle: impl FnOnce(&mut redis::Connection, &Chunk),
) -> ReadError {
    let rt = runtime();
    let mut conn = rt.block_on(connect(src));
    let mut oracle = src.conn();
    rt.block_on(async {
        let mut reader = ChunkReader::open(&mut conn, Bytes::copy_from_slice(key.as_bytes()), 1024)
            .await
            .expect("open")
            .expect("exists");
        let first = reader
            .next(&mut conn)
            .await
            .expect("first chunk")
            .expect("some");
        meddle(&mut oracle, &first);
        loop {
            match reader.next(&mut conn).await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("{key}: read to the end although it was changed"),
                Err(e) => return e,
            }
        }
    })
}

#[test]
fn vanished_retyped_and_changed_keys_are_reported() {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    let small = BigSizes {
        hash: 3_000,
        list: 3_000,
        zset: 3_000,
        set: 3_000,
        string: 100_000,
        stream: 500,
    };
    seed_big(&mut c, small, true);
    let del = |key: &'static str| {
        move |c: &mut redis::Connection, _: &Chunk| {
            redis::cmd("DEL").arg(key).query::<()>(c).expect("DEL")
        }
    };
    assert!(matches!(
        read_meddled(&src, "big:hash", del("big:hash")),
        ReadError::Vanished
    ));
    assert!(matches!(
        read_meddled(&src, "big:stream", del("big:stream")),
        ReadError::Vanished
    ));
    let e = read_meddled(&src, "big:list", |c, _| {
        redis::cmd("DEL")
            .arg("big:list")
            .query::<()>(c)
            .expect("DEL");
        redis::cmd("SET")
            .arg("big:list")
            .arg("x")
            .query::<()>(c)
            .expect("SET");
    });
    assert!(
        matches!(e, ReadError::TypeChanged(Some(Kind::String))),
        "{e:?}"
    );
    // A member already read is removed: the read no longer matches the set.
    let e = read_meddled(&src, "big:set", |c, first| {
        let Chunk::Set(members) = first else {
            panic!("a set chunk")
        };
        redis::cmd("SREM")
            .arg("big:set")
            .arg(members[0].as_ref())
            .query::<()>(c)
            .expect("SREM");
    });
    assert!(matches!(e, ReadError::Changed { .. }), "{e:?}");
    let e = read_meddled(&src, "big:string", |c, _| {
        redis::cmd("SET")
            .arg("big:string")
            .arg("short")
            .query::<()>(c)
            .expect("SET");
    });
    assert!(matches!(e, ReadError::Changed { .. }), "{e:?}");
    let e = read_meddled(&src, "big:zset", |c, _| {
        redis::cmd("EXPIRE")
            .arg("big:zset")
            .arg(0)
            .query::<()>(c)
            .expect("EXPIRE");
    });
    assert!(matches!(e, ReadError::Vanished), "{e:?}");
}
