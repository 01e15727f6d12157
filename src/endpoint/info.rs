//! What a server tells about itself in `INFO`: version, role, cluster mode, keyspace.

use std::collections::BTreeMap;

use super::{Connection, Reply};

/// Facts about one server, read once at start.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// `redis_version` (Valkey reports 7.2.4 here; see `valkey_version`).
    pub redis_version: String,
    /// `valkey_version`, for Valkey servers.
    pub valkey_version: Option<String>,
    /// `role`: master or slave.
    pub role: String,
    /// `cluster_enabled:1`.
    pub cluster: bool,
    /// Keys per DB, from the keyspace section.
    pub keyspace: BTreeMap<u32, u64>,
    /// `maxmemory` in bytes (0 = unlimited).
    pub maxmemory: u64,
    /// `used_memory` in bytes.
    pub used_memory: u64,
    /// `used_memory_dataset` in bytes (4.0+): the data without the server's own overhead.
    pub used_memory_dataset: Option<u64>,
    /// `maxmemory_policy` (4.0+ in INFO), e.g. `noeviction`.
    pub maxmemory_policy: Option<String>,
    /// `connected_clients`.
    pub connected_clients: u64,
}

impl ServerInfo {
    /// "Redis 6.2.14" or "Valkey 8.0.1".
    pub fn product(&self) -> String {
        match &self.valkey_version {
            Some(v) => format!("Valkey {v}"),
            None => format!("Redis {}", self.redis_version),
        }
    }

    /// (major, minor) of the Redis-compatible version.
    pub fn version(&self) -> (u32, u32) {
        let mut it = self
            .redis_version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }
}

/// Reads `INFO` (all default sections) and parses what ferry needs.
pub async fn read(conn: &mut Connection) -> anyhow::Result<ServerInfo> {
    let reply = conn.cmd(&[b"INFO".as_slice()]).await?;
    if let Reply::Error(e) = &reply {
        anyhow::bail!("the {} {} refused INFO: {e}", conn.side(), conn.endpoint());
    }
    let text = reply.to_text().unwrap_or_default();
    Ok(parse(&text))
}

/// Parses INFO text.
pub fn parse(text: &str) -> ServerInfo {
    let mut info = ServerInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.trim_end().split_once(':') else {
            continue;
        };
        match k {
            "redis_version" => info.redis_version = v.to_string(),
            "valkey_version" => info.valkey_version = Some(v.to_string()),
            "role" => info.role = v.to_string(),
            "cluster_enabled" => info.cluster = v == "1",
            "maxmemory" => info.maxmemory = v.parse().unwrap_or(0),
            "used_memory" => info.used_memory = v.parse().unwrap_or(0),
            "used_memory_dataset" => info.used_memory_dataset = v.parse().ok(),
            "maxmemory_policy" => info.maxmemory_policy = Some(v.to_string()),
            "connected_clients" => info.connected_clients = v.parse().unwrap_or(0),
            _ => {
                if let Some((db, (keys, _))) = keyspace_line(k, v) {
                    info.keyspace.insert(db, keys);
                }
            }
        }
    }
    info
}

/// `INFO keyspace` text: `db0:keys=5,expires=1,avg_ttl=3` lines → db → (keys, keys with a TTL).
pub fn parse_keyspace(text: &str) -> BTreeMap<u32, (u64, u64)> {
    text.lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .filter_map(|(k, v)| keyspace_line(k, v))
        .collect()
}

/// One keyspace line, split at its `:`: `db3`, `keys=5,expires=1,…` → (3, (5, 1)); `None` for
/// any other line.
fn keyspace_line(k: &str, v: &str) -> Option<(u32, (u64, u64))> {
    let db = k.strip_prefix("db")?.parse::<u32>().ok()?;
    let field = |name: &str| {
        v.split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((db, (field("keys="), field("expires="))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keyspace_lines() {
        let k = super::parse_keyspace(
            "# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=3\r\ndb12:keys=2,expires=0\r\n",
        );
        assert_eq!(k.get(&0), Some(&(5, 1)));
        assert_eq!(k.get(&12), Some(&(2, 0)));
    }

    #[test]
    fn parses_info() {
        let i = super::parse("# Server\r\nredis_version:7.2.4\r\nvalkey_version:8.0.1\r\nrole:master\r\ncluster_enabled:0\r\n# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=3\r\ndb3:keys=2,expires=0\r\n");
        assert_eq!(i.product(), "Valkey 8.0.1");
        assert_eq!(i.keyspace.get(&3), Some(&2));
        assert_eq!(i.version(), (7, 2));
    }
}
