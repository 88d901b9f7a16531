//! TLS for the client and peer ports (rustls, ring): certificates and keys from PEM files,
//! mutual TLS against a trusted CA, and reload without restart when the files change (operators
//! rotate certificates in place; etcd picks them up at the next handshake, and so does ballot).
//!
//! A member checks its files' modification times at most once a second, on a handshake. A
//! change that does not load (a half-written file in the middle of a rotation) is logged and
//! the previous configuration stays in use until the files are whole again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A certificate, its key, and the CA that peers' or clients' certificates must chain to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain of this member.
    pub cert: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
    /// PEM CA bundle: clients' (or peers') certificates are verified against it, and this
    /// member verifies the servers it connects to with it.
    pub trusted_ca: Option<PathBuf>,
    /// Require and verify a certificate from whoever connects.
    pub client_cert_auth: bool,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("reading a PEM private key from {}", path.display()))
}

fn roots(path: &Path) -> anyhow::Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(path)? {
        roots.add(cert).with_context(|| format!("adding a CA certificate from {}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

impl TlsFiles {
    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cert.as_path(), self.key.as_path()];
        paths.extend(self.trusted_ca.as_deref());
        paths
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.paths().iter().map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok()).collect()
    }

    /// The server side: this certificate, and client certificates required if asked.
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
        let builder = if self.client_cert_auth {
            let ca = self.trusted_ca.as_deref().context("client certificate auth needs a trusted CA file")?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config =
            builder.with_single_cert(certs(&self.cert)?, key(&self.key)?).context("certificate and key")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client side: servers verified against the trusted CA, and this certificate offered
    /// as the client's.
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let ca = self.trusted_ca.as_deref().context("connecting over TLS needs a trusted CA file")?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(ca)?)
            .with_client_auth_cert(certs(&self.cert)?, key(&self.key)?)
            .context("certificate and key")?;
        Ok(Arc::new(config))
    }
}

/// A configuration rebuilt when its files change.
pub struct Reloading<C> {
    files: TlsFiles,
    build: fn(&TlsFiles) -> anyhow::Result<Arc<C>>,
    state: Mutex<State<C>>,
}

struct State<C> {
    config: Arc<C>,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

/// How often the files' modification times are looked at, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

impl<C> Reloading<C> {
    fn new(files: TlsFiles, build: fn(&TlsFiles) -> anyhow::Result<Arc<C>>) -> anyhow::Result<Self> {
        let stamps = files.stamps();
        let config = build(&files)?;
        Ok(Reloading { files, build, state: Mutex::new(State { config, stamps, checked: Instant::now() }) })
    }

    /// The current configuration, reloaded first if the files changed.
    pub fn current(&self) -> Arc<C> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let stamps = self.files.stamps();
            if stamps != state.stamps {
                match (self.build)(&self.files) {
                    Ok(config) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate files changed: reloaded");
                        state.config = config;
                        state.stamps = stamps;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "TLS certificate files changed but do not load; keeping the previous ones")
                    }
                }
            }
        }
        state.config.clone()
    }
}

/// A server configuration that follows its files.
pub type ServerTls = Reloading<rustls::ServerConfig>;
/// A client configuration that follows its files.
pub type ClientTls = Reloading<rustls::ClientConfig>;

impl ServerTls {
    /// Loads the files (an error names the file at fault).
    pub fn server(files: TlsFiles) -> anyhow::Result<ServerTls> {
        Reloading::new(files, TlsFiles::server_config)
    }

    /// Accepts a TLS connection on `stream` (bounded in time: a client that never finishes its
    /// handshake does not hold a task forever).
    pub async fn accept<S>(&self, stream: S) -> std::io::Result<tokio_rustls::server::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current());
        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }
}

impl ClientTls {
    /// Loads the files (an error names the file at fault).
    pub fn client(files: TlsFiles) -> anyhow::Result<ClientTls> {
        Reloading::new(files, TlsFiles::client_config)
    }

    /// Opens TLS over `stream` to the server at `address` (`host:port`; the host names the
    /// certificate expected).
    pub async fn connect<S>(&self, stream: S, address: &str) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
        let connector = tokio_rustls::TlsConnector::from(self.current());
        tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }
}

/// Longest TLS handshake allowed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS connection (a handshake record).
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// What a plain-text client that reached a TLS port is told (as a gRPC status, or as an
/// HTTP/1 body).
pub const PLAINTEXT_REFUSED: &str =
    "ballot: this endpoint requires TLS: connect with https:// and the cluster's CA certificate";

/// The subject common name of a DER certificate (already verified by the handshake), or
/// `None` if it has none. A small DER walk: Certificate → tbsCertificate → subject → the
/// attribute 2.5.4.3.
pub fn common_name(der: &[u8]) -> Option<String> {
    /// One DER element: (tag, contents, rest).
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count].iter().fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
            (len, &rest[count..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    let (SEQUENCE, certificate, _) = element(der)? else { return None };
    let (SEQUENCE, mut tbs, _) = element(certificate)? else { return None };
    // version [0] (optional), serial, signature algorithm, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (SEQUENCE, mut subject, _) = element(tbs)? else { return None };
    while !subject.is_empty() {
        let (SET, mut set, rest) = element(subject)? else { return None };
        subject = rest;
        while !set.is_empty() {
            let (SEQUENCE, attribute, rest) = element(set)? else { return None };
            set = rest;
            let (0x06, oid, value) = element(attribute)? else { return None };
            if oid == COMMON_NAME {
                let (_, name, _) = element(value)?;
                return String::from_utf8(name.to_vec()).ok();
            }
        }
    }
    None
}
