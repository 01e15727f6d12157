//! Proves the test-server harness works: every version starts, answers SET/GET through
//! `Server::conn`, TLS targets verify against the test CA, clusters form and route.
mod support;

use redis::Commands;
use support::servers::{Cluster, Server, ServerOpts, Version};

fn set_get(conn: &mut impl redis::ConnectionLike, what: &str) {
    let key = format!("smoke:{what}");
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(what)
        .query(conn)
        .unwrap_or_else(|e| panic!("SET on {what}: {e}"));
    let got: String = redis::cmd("GET")
        .arg(&key)
        .query(conn)
        .unwrap_or_else(|e| panic!("GET on {what}: {e}"));
    assert_eq!(got, what);
}

#[test]
fn every_version_starts_plain() {
    for v in Version::all() {
        let s = Server::plain(v);
        set_get(&mut s.conn(), &s.to_string());
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut s.conn())
            .expect("INFO server");
        let name = if v.is_valkey() {
            "valkey_version:"
        } else {
            "redis_version:"
        };
        let ver = info
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .expect("version in INFO");
        let want = if v.is_valkey() { "8.0" } else { v.name() };
        assert!(ver.starts_with(want), "{v}: INFO says {ver}");
    }
}

#[test]
fn tls_targets_start_with_password() {
    for v in Version::all_targets() {
        let s = Server::tls_target(v);
        assert!(s.url().starts_with("rediss://:ferry-test-pass@127.0.0.1:"));
        set_get(&mut s.conn(), &s.to_string());
        assert!(s.cli(&["ping"]).contains("PONG"));
    }
}

#[test]
fn mtls_target_accepts_the_client_certificate() {
    let s = Server::start(Version::V7_0, ServerOpts::mtls());
    set_get(&mut s.conn(), "mtls");
    // Without a client certificate the handshake is refused.
    let bare = redis::Client::build_with_tls(s.url(), support::servers::tls_certificates(false))
        .expect("client");
    assert!(bare
        .get_connection_with_timeout(std::time::Duration::from_secs(2))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_err());
}

#[test]
fn sni_certificate_server_answers_redis_cli() {
    let s = Server::start(
        Version::V7_0,
        ServerOpts {
            cert: support::servers::CertKind::Sni,
            ..ServerOpts::tls()
        },
    );
    assert!(s.cli(&["ping"]).contains("PONG"));
}

#[test]
fn restart_keeps_port_and_saved_data() {
    let mut s = Server::plain(Version::V3_2);
    let mut c = s.conn();
    let () = c.set("k", "v").expect("SET");
    let () = redis::cmd("SAVE").query(&mut c).expect("SAVE");
    assert!(s.dir().join("dump.rdb").exists());
    let port = s.port;
    s.restart();
    assert_eq!(s.port, port);
    let got: String = s.conn().get("k").expect("GET after restart");
    assert_eq!(got, "v");
    s.stop();
    assert!(s
        .client()
        .get_connection_with_timeout(std::time::Duration::from_millis(500))
        .is_err());
}

fn cluster_smoke(version: Version, tls: bool) {
    let cluster = Cluster::start(version, tls);
    let mut c = cluster.conn();
    for i in 0..50 {
        let () = c.set(format!("key:{i}"), i).expect("cluster SET");
    }
    for i in 0..50 {
        let got: i64 = c.get(format!("key:{i}")).expect("cluster GET");
        assert_eq!(got, i);
    }
    // The keys really are spread over all three masters.
    for node in &cluster.nodes {
        let n: i64 = redis::cmd("DBSIZE")
            .query(&mut node.conn())
            .expect("DBSIZE");
        assert!(n > 0, "node {node} holds no keys");
    }
    let owner = cluster.node_for_key(b"key:7");
    let got: i64 = owner.conn().get("key:7").expect("GET on the owner");
    assert_eq!(got, 7);
}

#[test]
fn cluster_6_2_plain() {
    cluster_smoke(Version::V6_2, false);
}

#[test]
fn cluster_7_0_tls() {
    cluster_smoke(Version::V7_0, true);
}

#[test]
fn clusters_of_the_other_versions() {
    std::thread::scope(|s| {
        for (v, tls) in [
            (Version::V3_2, false),
            (Version::V5_0, false),
            (Version::V6_0, false),
            (Version::Valkey8, true),
        ] {
            s.spawn(move || cluster_smoke(v, tls));
        }
    });
}
