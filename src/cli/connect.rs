//! How the client commands reach a cluster, as etcdctl does: `--endpoints`, TLS from
//! `--cacert`, `--cert` and `--key`, and a user from `--user` (`name` or `name:password`) with
//! `--password` or a prompt. Every command that talks to a cluster dials through a [`Dialer`],
//! so `get`, `bench` and `torture` all work against a secured cluster.
//!
//! A login gives a token that every call then carries (the [`Token`] interceptor, shared by all
//! the connections of one client). With a client certificate and no user, no token is sent:
//! the member takes the user from the certificate's common name, as etcd does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::auth_client::AuthClient;
use clap::Args;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Where to connect, and as whom.
#[derive(Args, Debug, Clone, Default)]
pub struct Endpoints {
    /// Comma-separated host:port list (or URLs); the first that answers is used.
    #[arg(long, env = "BALLOT_ENDPOINTS", default_value = "127.0.0.1:2379", global = true)]
    pub endpoints: String,
    /// CA bundle that the members' certificates chain to; turns TLS on (https).
    #[arg(long, env = "BALLOT_CACERT", global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for members that require one (--client-cert-auth).
    #[arg(long, env = "BALLOT_CERT", global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long = "key", id = "client_key", env = "BALLOT_KEY", global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// User to log in as: `name` or `name:password` (without a password: --password, or a prompt).
    #[arg(long, env = "BALLOT_USER", global = true)]
    pub user: Option<String>,
    /// The user's password (instead of `name:password` or the prompt).
    #[arg(long, env = "BALLOT_PASSWORD", global = true, hide_env_values = true)]
    pub password: Option<String>,
    /// Read consistency: `linearizable` (through the leader's ReadIndex), `causal` (any member,
    /// once it has applied everything this session has seen) or `serializable` (any member, as
    /// stale as it is).
    /// (linearizable unless given; the causal torture workload's default is causal).
    #[arg(long, env = "BALLOT_CONSISTENCY", value_enum, global = true)]
    pub consistency: Option<Consistency>,
    /// A causal session to continue, as `--print-token` printed it: reads see at least what
    /// that session saw (with `--consistency causal`; linearizable reads always do).
    #[arg(long, env = "BALLOT_CAUSAL_TOKEN", global = true)]
    pub causal_token: Option<String>,
    /// Print the session's causal token as the last line (pass it on in BALLOT_CAUSAL_TOKEN).
    #[arg(long, global = true)]
    pub print_token: bool,
}

/// What a read may return (see the README's "Choosing a consistency level").
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The latest committed state, confirmed by the leader (ReadIndex).
    #[default]
    #[value(alias = "l")]
    Linearizable,
    /// At least everything this session has seen or written, from whichever member answers.
    #[value(alias = "c")]
    Causal,
    /// Whatever the answering member has applied.
    #[value(alias = "s")]
    Serializable,
}

/// A causal session: the highest revision one client has seen, and the cluster it saw it in.
/// Shared by every connection of the client; with `--consistency causal` every request carries
/// the revision (`ballot-min-revision`), and a member serves a read only once it has applied it.
#[derive(Clone, Default, Debug)]
pub struct Session(Arc<SessionState>);

#[derive(Default, Debug)]
struct SessionState {
    revision: AtomicI64,
    cluster: AtomicU64,
}

impl Session {
    /// A session continuing the one a token names (`<cluster id hex>:<revision>`).
    pub fn from_token(token: &str) -> anyhow::Result<Session> {
        let parsed = token
            .trim()
            .split_once(':')
            .and_then(|(cluster, revision)| Some((u64::from_str_radix(cluster, 16).ok()?, revision.parse().ok()?)));
        let Some((cluster, revision)) = parsed else {
            bail!("{token:?} is not a causal token (<cluster id hex>:<revision>, as --print-token prints it)");
        };
        Ok(Session(Arc::new(SessionState { revision: AtomicI64::new(revision), cluster: AtomicU64::new(cluster) })))
    }

    /// Takes in an answer's header: the session has now seen its revision. Refuses an answer
    /// from another cluster than the session's (a token carried to the wrong cluster).
    pub fn saw(&self, header: Option<&pb::ResponseHeader>) -> anyhow::Result<()> {
        let Some(header) = header else { return Ok(()) };
        match self.0.cluster.compare_exchange(0, header.cluster_id, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {}
            Err(cluster) if cluster == header.cluster_id || header.cluster_id == 0 => {}
            Err(cluster) => {
                bail!("the causal token is from cluster {cluster:x}, but this is cluster {:x}", header.cluster_id)
            }
        }
        self.see(header.revision);
        Ok(())
    }

    /// The session has seen `revision` (from a header, an event or a key's mod revision).
    pub fn see(&self, revision: i64) {
        self.0.revision.fetch_max(revision, Ordering::Relaxed);
    }

    /// The highest revision seen.
    pub fn revision(&self) -> i64 {
        self.0.revision.load(Ordering::Relaxed)
    }

    /// The token that carries this session to another process.
    pub fn token(&self) -> String {
        format!("{:x}:{}", self.0.cluster.load(Ordering::Relaxed), self.revision())
    }
}

/// The token every call of one client carries once it has logged in (none before, or
/// without a user), and for a causal client the session's revision. Cloned into each
/// connection's interceptor; a new login replaces the token for all.
#[derive(Clone, Default)]
pub struct Token(Arc<Mutex<Option<MetadataValue<Ascii>>>>, Option<Session>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = self.0.lock().expect("token").clone() {
            request.metadata_mut().insert(ballot_server::auth::TOKEN_METADATA, token);
        }
        if let Some(revision) = self.1.as_ref().map(Session::revision).filter(|&revision| revision > 0) {
            let value = revision.to_string().parse().expect("digits are valid metadata");
            request.metadata_mut().insert(ballot_server::api::MIN_REVISION, value);
        }
        Ok(request)
    }
}

impl Token {
    /// A fresh token for a client whose reads are `consistency`: a causal client's calls also
    /// carry `session`'s highest revision.
    fn for_reads(consistency: Consistency, session: &Session) -> Token {
        Token(Arc::default(), (consistency == Consistency::Causal).then(|| session.clone()))
    }
}

/// A connection that carries the client's token: what every client command's stubs wrap.
pub type Conn = InterceptedService<Channel, Token>;

/// A user and password to log in with.
#[derive(Clone)]
struct Login {
    user: String,
    password: String,
}

/// Dials members with the command's TLS settings and logs in as its user.
#[derive(Clone)]
pub struct Dialer {
    tls: Option<ClientTlsConfig>,
    login: Option<Login>,
    /// The token of this dialer's client (shared by every connection it makes).
    pub token: Token,
    /// What this client's reads ask for.
    pub consistency: Consistency,
    /// The client's causal session (tracked whatever the consistency; sent only if causal).
    pub session: Session,
}

/// A call to the control plane or a login never waits longer than this to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Dialer {
    /// Reads the certificate files and settles the password (prompting for it on the
    /// terminal if `--user` has none and `--password` is not given).
    pub fn new(endpoints: &Endpoints) -> anyhow::Result<Dialer> {
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        let tls = match (&endpoints.cacert, &endpoints.cert, &endpoints.key) {
            (None, None, None) => None,
            (cacert, cert, key) => {
                let mut tls = ClientTlsConfig::new();
                if let Some(cacert) = cacert {
                    tls = tls.ca_certificate(Certificate::from_pem(read(cacert)?));
                }
                match (cert, key) {
                    (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?)),
                    (None, None) => {}
                    _ => bail!("--cert and --key go together (a client certificate and its private key)"),
                }
                if cacert.is_none() {
                    bail!("TLS needs --cacert: the CA that the members' certificates chain to");
                }
                Some(tls)
            }
        };
        let login = match &endpoints.user {
            None => None,
            Some(user) => Some(match (user.split_once(':'), &endpoints.password) {
                (Some((name, password)), _) => Login { user: name.to_string(), password: password.to_string() },
                (None, Some(password)) => Login { user: user.clone(), password: password.clone() },
                (None, None) => Login { user: user.clone(), password: prompt_password()? },
            }),
        };
        let session = match &endpoints.causal_token {
            Some(token) => Session::from_token(token)?,
            None => Session::default(),
        };
        let consistency = endpoints.consistency.unwrap_or_default();
        Ok(Dialer { tls, login, token: Token::for_reads(consistency, &session), consistency, session })
    }

    /// The same settings, with reads of another consistency (a fresh token and session).
    pub fn with_consistency(&self, consistency: Consistency) -> Dialer {
        Dialer { consistency, ..self.clone() }.fresh()
    }

    /// Whether reads go to the member contacted (causal and serializable) rather than through
    /// the leader's ReadIndex.
    pub fn serializable(&self) -> bool {
        self.consistency != Consistency::Linearizable
    }

    /// A dialer for a user of the caller's choosing, with the same TLS settings and a token of
    /// its own (torture's clients log in as the workload's user, its control plane as root).
    pub fn as_user(&self, user: &str, password: &str) -> Dialer {
        let login = Some(Login { user: user.to_string(), password: password.to_string() });
        Dialer { login, ..self.fresh() }
    }

    /// The user and password this dialer logs in with.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.login.as_ref().map(|login| (login.user.as_str(), login.password.as_str()))
    }

    /// The same TLS settings, logging in as nobody.
    pub fn anonymous(&self) -> Dialer {
        Dialer { login: None, ..self.fresh() }
    }

    /// The same settings with a token and a causal session of its own (a client that logs in
    /// by itself and tracks what it has seen by itself).
    pub fn fresh(&self) -> Dialer {
        let session = Session::default();
        Dialer { token: Token::for_reads(self.consistency, &session), session, ..self.clone() }
    }

    /// True if this dialer logs in (and so must again when the cluster forgets its token).
    pub fn logs_in(&self) -> bool {
        self.login.is_some()
    }

    /// The URL of `endpoint` (`host:port` gets https with TLS, http without).
    pub fn url(&self, endpoint: &str) -> String {
        if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
            endpoint.to_string()
        } else if self.tls.is_some() {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        }
    }

    /// tonic's endpoint for `address`, with TLS if configured.
    pub fn endpoint(&self, address: &str) -> anyhow::Result<Endpoint> {
        let url = self.url(address);
        let mut endpoint = Endpoint::from_shared(url.clone()).with_context(|| format!("{url} is not a URL"))?;
        if url.starts_with("https://") {
            let tls = self.tls.clone().context("an https endpoint needs --cacert (the cluster's CA)")?;
            endpoint = endpoint.tls_config(tls).with_context(|| format!("TLS settings for {url}"))?;
        }
        Ok(endpoint.tcp_nodelay(true).connect_timeout(CONNECT_TIMEOUT))
    }

    /// Wraps a channel so its calls carry this dialer's token.
    pub fn wrap(&self, channel: Channel) -> Conn {
        InterceptedService::new(channel, self.token.clone())
    }

    /// Logs in through `channel` (if there is a user) and keeps the token.
    pub async fn login(&self, channel: &Channel) -> anyhow::Result<()> {
        let Some(login) = &self.login else { return Ok(()) };
        let request = pb::AuthenticateRequest { name: login.user.clone(), password: login.password.clone() };
        let mut client = AuthClient::new(channel.clone());
        let answer = tokio::time::timeout(CONNECT_TIMEOUT * 2, client.authenticate(request))
            .await
            .map_err(|_| anyhow::anyhow!("logging in as {}: timed out", login.user))?
            .map_err(|status| anyhow::anyhow!("logging in as {}: {}", login.user, status.message()))?;
        let token = answer.into_inner().token.parse().context("the token is not ASCII")?;
        *self.token.0.lock().expect("token") = Some(token);
        Ok(())
    }

    /// Connects to `address` and logs in.
    pub async fn dial(&self, address: &str) -> anyhow::Result<Conn> {
        let url = self.url(address);
        let channel = self.endpoint(address)?.connect().await.map_err(|error| anyhow::anyhow!("{url}: {error}"))?;
        self.login(&channel).await?;
        Ok(self.wrap(channel))
    }

    /// Connects to the first of a comma-separated list that answers, and logs in.
    pub async fn connect(&self, endpoints: &str) -> anyhow::Result<Conn> {
        let mut last_error = None;
        for endpoint in endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match self.dial(endpoint).await {
                Ok(conn) => return Ok(conn),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no endpoint given")))
    }
}

/// Asks for the password on the terminal, echo off (as etcdctl's `--user name` does). Not on
/// a terminal, the first line of standard input is the password.
fn prompt_password() -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let terminal = std::io::IsTerminal::is_terminal(&stdin);
    let saved = if terminal {
        eprint!("Password: ");
        std::io::stderr().flush()?;
        let saved = rustix::termios::tcgetattr(&stdin).context("reading the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
            .context("turning the terminal's echo off")?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
        eprintln!();
    }
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(user: Option<&str>, password: Option<&str>) -> Endpoints {
        Endpoints {
            endpoints: "127.0.0.1:2379".into(),
            user: user.map(str::to_string),
            password: password.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn a_user_takes_the_password_after_the_colon_or_from_the_flag() {
        let dialer = Dialer::new(&endpoints(Some("root:secret:with:colons"), None)).unwrap();
        let login = dialer.login.unwrap();
        assert_eq!((login.user.as_str(), login.password.as_str()), ("root", "secret:with:colons"));
        let dialer = Dialer::new(&endpoints(Some("app"), Some("pw"))).unwrap();
        let login = dialer.login.unwrap();
        assert_eq!((login.user.as_str(), login.password.as_str()), ("app", "pw"));
        assert!(!Dialer::new(&endpoints(None, None)).unwrap().logs_in());
    }

    #[test]
    fn urls_follow_the_tls_settings_unless_a_scheme_is_given() {
        let plain = Dialer::new(&endpoints(None, None)).unwrap();
        assert_eq!(plain.url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(plain.url("https://127.0.0.1:2379"), "https://127.0.0.1:2379");
        let error = plain.endpoint("https://127.0.0.1:2379").unwrap_err();
        assert!(error.to_string().contains("--cacert"), "{error}");
    }

    #[test]
    fn tls_without_a_ca_or_with_half_a_certificate_is_refused() {
        let mut half = endpoints(None, None);
        half.cert = Some("client.pem".into());
        let error = Dialer::new(&half).err().expect("refused");
        assert!(error.to_string().contains("--cert and --key go together"), "{error}");
    }
}
