//! Parsing `redis://` and `rediss://` URLs into an [`Endpoint`].
//!
//! The URL is the one place a user may type a password on the command line, so every message
//! produced here shows the URL with its password masked.

use std::fmt;

use super::secret::Secret;

/// Which side of the migration an endpoint is; named in every error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The old server keys are read from.
    Source,
    /// The new server keys are written to.
    Target,
}

impl Side {
    /// `source` or `target`, as used in flag and variable names.
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// Where a password came from, for messages: never the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordOrigin {
    /// The `user:password@` part of the URL.
    Url,
    /// An environment variable (its name).
    Env(String),
    /// `--*-password-file`: the flag and the file.
    File(String, std::path::PathBuf),
}

impl fmt::Display for PasswordOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordOrigin::Url => f.write_str("the URL"),
            PasswordOrigin::Env(var) => write!(f, "the environment variable {var}"),
            PasswordOrigin::File(flag, path) => write!(f, "the file {} ({flag})", path.display()),
        }
    }
}

/// Where a server is and how to log in. Displays without the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Source or target.
    pub side: Side,
    /// `rediss://`: connect with TLS.
    pub tls: bool,
    /// Host name or IP as given.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// ACL user name (Redis 6+), if any.
    pub user: Option<String>,
    /// Password or AUTH token, if any.
    pub password: Option<Secret>,
    /// Where the password came from, named in authentication errors (boxed: endpoints are
    /// copied into every connection and router, and this is rarely read).
    pub password_origin: Option<Box<PasswordOrigin>>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self, self.side.name())
    }
}

impl Endpoint {
    /// The same endpoint at another address (a discovered cluster node).
    pub fn with_addr(&self, host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
            ..self.clone()
        }
    }
}

/// Masks the password in a URL-like string so it can be shown in an error.
pub fn redact(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        // Not URL-shaped: it may be anything, a bare password included. Do not echo it.
        return "(value not shown)".to_string();
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        None => raw.to_string(),
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{}{}{}", &raw[..scheme_end + 3], masked, &rest[at..])
        }
    }
}

/// Parses `raw` for `side`. `fallback_password` comes from an environment variable or a file;
/// a password in the URL as well is refused as ambiguous (which one is right is not ferry's
/// guess to make).
pub fn parse(
    raw: &str,
    side: Side,
    fallback_password: Option<(Secret, PasswordOrigin)>,
) -> anyhow::Result<Endpoint> {
    let flag = side.name();
    let shown = redact(raw);
    let url = url::Url::parse(raw).map_err(|e| {
        anyhow::anyhow!(
            "--{flag} {shown:?} is not a valid URL ({e}); expected redis://[user[:password]@]host:port \
             or rediss://… for TLS"
        )
    })?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => anyhow::bail!(
            "--{flag} {shown:?} has scheme {other:?}; use redis:// (plain TCP) or rediss:// (TLS)"
        ),
    };
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => anyhow::bail!("--{flag} {shown:?} has no host; expected redis://host:port"),
    };
    let port = url.port().unwrap_or(6379);
    let decode = |s: &str| -> anyhow::Result<String> {
        percent_decode(s).ok_or_else(|| {
            anyhow::anyhow!(
                "--{flag} {shown:?}: the user or password is not valid percent-encoded UTF-8"
            )
        })
    };
    let user = match url.username() {
        "" => None,
        u => Some(decode(u)?),
    };
    let (password, password_origin) = match (url.password(), fallback_password) {
        (Some(_), Some((_, other))) => anyhow::bail!(
            "the {flag} password is given twice: in the URL --{flag} {shown:?} and in {other}. Give it in one \
             place only (ferry does not guess which one is right)"
        ),
        (Some(p), None) => (
            Some(Secret::new(decode(p)?)),
            Some(Box::new(PasswordOrigin::Url)),
        ),
        (None, Some((p, origin))) => (Some(p), Some(Box::new(origin))),
        (None, None) => (None, None),
    };
    if !matches!(url.path(), "" | "/") {
        anyhow::bail!(
            "--{flag} {shown:?} names a database in its path; ferry copies every database by \
             default: choose them with --db instead"
        );
    }
    Ok(Endpoint {
        side,
        tls,
        host,
        port,
        user,
        password,
        password_origin,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hides_password() {
        let ep = parse("rediss://app:s%40cret@example.com:6380", Side::Target, None).unwrap();
        assert!(ep.tls);
        assert_eq!(ep.port, 6380);
        assert_eq!(ep.user.as_deref(), Some("app"));
        assert_eq!(ep.password.as_ref().map(Secret::expose), Some("s@cret"));
        let shown = format!("{ep} {ep:?}");
        assert!(!shown.contains("cret"), "{shown}");
    }

    #[test]
    fn password_only_and_fallback() {
        let ep = parse("redis://:pw@10.0.0.1", Side::Source, None).unwrap();
        assert_eq!(ep.user, None);
        assert_eq!(ep.port, 6379);
        assert_eq!(ep.password.unwrap().expose(), "pw");
        let env = PasswordOrigin::Env("FERRY_SOURCE_PASSWORD".into());
        let ep = parse(
            "redis://h:1",
            Side::Source,
            Some((Secret::new("env"), env.clone())),
        )
        .unwrap();
        assert_eq!(ep.password.unwrap().expose(), "env");
        assert_eq!(ep.password_origin.as_deref(), Some(&env));
        let err = parse(
            "redis://:pw@h:1",
            Side::Source,
            Some((Secret::new("env"), env)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("twice") && err.contains("FERRY_SOURCE_PASSWORD"),
            "{err}"
        );
        assert!(!err.contains("pw@") && !err.contains("env@"), "{err}");
    }

    #[test]
    fn errors_never_show_password() {
        for bad in [
            "http://u:topsecret@h:1",
            "redis://u:topsecret@h:99999",
            "redis://u:topsecret@h:1/3",
        ] {
            let err = parse(bad, Side::Target, None).unwrap_err().to_string();
            assert!(!err.contains("topsecret"), "{err}");
            assert!(err.contains("--target"), "{err}");
        }
    }

    #[test]
    fn redacts() {
        assert_eq!(redact("redis://u:p@h:1"), "redis://u:***@h:1");
        assert_eq!(redact("redis://p@h:1"), "redis://***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert!(!redact("hunter2 oops").contains("hunter2"));
    }
}
