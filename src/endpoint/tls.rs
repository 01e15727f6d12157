//! TLS client configuration: which certificates to trust, which name to check, mutual TLS.
//!
//! Certificates are verified by default against the CA file given, or else the system's trust
//! store (ElastiCache uses public Amazon roots). Skipping verification is an explicit opt-in and
//! is logged as a warning at start, because a migration is exactly when credentials cross the
//! network.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// TLS settings of one side, as the user gave them.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file with the CA certificates to trust instead of the system store.
    pub cacert: Option<PathBuf>,
    /// PEM client certificate chain, for servers that require mutual TLS.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Server name to send (SNI) and check the certificate against, instead of the URL's host.
    pub sni: Option<String>,
    /// Accept any certificate. Dangerous; warned about.
    pub insecure: bool,
}

/// A ready TLS connector plus the server name to present.
#[derive(Clone)]
pub struct TlsSetup {
    /// The rustls client configuration (shared by every connection of this side).
    pub config: Arc<rustls::ClientConfig>,
    /// `--*-sni` override, if any.
    pub sni: Option<String>,
}

impl TlsSetup {
    /// The server name to present for `host`.
    pub fn server_name(&self, host: &str) -> anyhow::Result<ServerName<'static>> {
        let name = self.sni.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_string())
            .with_context(|| format!("{name:?} is not a valid TLS server name"))
    }
}

/// Builds the TLS configuration for one side; `flag` is the flag prefix (`source`/`target`).
pub fn build(opts: &TlsOptions, flag: &str) -> anyhow::Result<TlsSetup> {
    // Installing twice is harmless: the second call reports that a provider exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = rustls::ClientConfig::builder();
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &opts.cacert {
            Some(path) => {
                let certs = read_certs(path, &format!("--{flag}-cacert"))?;
                for cert in certs {
                    roots.add(cert).with_context(|| {
                        format!(
                            "--{flag}-cacert {}: a certificate could not be used as a trust anchor",
                            path.display()
                        )
                    })?;
                }
            }
            None => {
                let loaded = rustls_native_certs::load_native_certs();
                for cert in loaded.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    anyhow::bail!(
                        "no system CA certificates found to verify the {flag}'s TLS certificate; \
                         pass --{flag}-cacert FILE (the CA that signed the server's certificate)"
                    );
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, &format!("--{flag}-cert"))?;
            let key = read_key(key, &format!("--{flag}-key"))?;
            builder
                .with_client_auth_cert(chain, key)
                .with_context(|| format!("--{flag}-cert/--{flag}-key: the client certificate and key do not fit together"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => anyhow::bail!("mutual TLS needs both --{flag}-cert and --{flag}-key"),
    };
    Ok(TlsSetup {
        config: Arc::new(config),
        sni: opts.sni.clone(),
    })
}

fn read_certs(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path)
        .with_context(|| format!("{flag} {}: cannot read the file", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{flag} {}: not a valid PEM file", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{flag} {}: no PEM certificate found in the file",
            path.display()
        );
    }
    Ok(certs)
}

fn read_key(path: &Path, flag: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path)
        .with_context(|| format!("{flag} {}: cannot read the file", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .with_context(|| format!("{flag} {}: not a valid PEM file", path.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} {}: no private key found in the file",
                path.display()
            )
        })
}

/// Writes the verifier's handshake-signature checks, one per TLS version: the trait has a method
/// for each, with the same arguments, and `--*-insecure` accepts in both.
macro_rules! accept_signatures {
    ($($method:ident),+) => {$(
        fn $method(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
    )+};
}

/// The verifier behind `--*-insecure`: accepts every certificate and signature.
#[derive(Debug)]
struct AcceptAnyCert;

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    accept_signatures!(verify_tls12_signature, verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
