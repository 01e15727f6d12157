//! The servers' TLS certificates: how long until they expire.
//!
//! The handshake already verified chain and host name (a failure is the connection row's); an
//! expired certificate fails it too. What it does not tell is a certificate about to expire:
//! a migration, its verification and the cutover can span days, and a certificate that
//! expires in the middle stops every connection. So ferry warns under 30 days, naming the date.

use super::connect::Probed;
use super::Check;

/// Warn when a certificate expires in fewer days than this.
const WARN_DAYS: i64 = 30;

/// The earliest expiry among the side's servers' certificates (nothing for plain TCP).
pub(crate) fn expiry(side: &Probed, out: &mut Vec<Check>) {
    let name = format!("{}: TLS certificate", side.name());
    let now = crate::read::clock::now_ms() / 1000;
    let mut earliest: Option<(i64, String, String)> = None;
    for node in &side.nodes {
        let Some(der) = node.conn.peer_certificate() else {
            continue;
        };
        let (stamp, date) = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => {
                let t = cert.validity().not_after;
                (t.timestamp(), t.to_datetime().date().to_string())
            }
            Err(e) => {
                out.push(Check::warn(
                    &name,
                    format!(
                        "the certificate of {} could not be read: {e}",
                        node.server.endpoint
                    ),
                    "check the certificate's expiry date yourself",
                ));
                return;
            }
        };
        if earliest.as_ref().is_none_or(|e| stamp < e.0) {
            earliest = Some((stamp, date, node.label()));
        }
    }
    let Some((stamp, date, label)) = earliest else {
        return;
    };
    let days = (stamp - now).div_euclid(86_400);
    let detail = format!("expires on {date}{label} (in {days} days)");
    out.push(if days < WARN_DAYS {
        Check::warn(
            name,
            detail,
            "renew the server's certificate before the migration window: connections fail once it expires",
        )
    } else {
        Check::ok(name, detail)
    });
}
