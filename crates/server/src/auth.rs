//! Who a request comes from: auth tokens (etcd's simple tokens and signed JWTs), passwords,
//! and the brute-force limit on logins.
//!
//! **Simple tokens** are random. The token never enters the log: a login proposes its SHA-256
//! ([`AuthCommand::Authenticate`]), and every member, applying it, keeps the hash with a
//! time-to-live on its own clock ([`Tokens::register`]). The TTL restarts at each use on that
//! member, as etcd's simple tokens do, so a client that keeps working keeps its token. A token
//! a member has not applied yet (the login was served by another member a moment ago) is looked
//! up again after a ReadIndex barrier, which waits until the member has applied the login.
//!
//! **JWT tokens** (`--auth-token jwt,pub-key=…,priv-key=…,sign-method=RS256,ttl=5m`) carry the
//! user and auth revision, signed; any member verifies them without the log. They expire at a
//! fixed time.
//!
//! Either way a token names the auth revision it was issued at; after any change to users or
//! roles, a request with an older token is refused with etcd's `revision of auth store is old`
//! and clients log in again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ballot_mvcc::auth::{AuthCommand, Login};
use sha2::Digest as _;

/// A request's identity: the user and the auth revision its token was issued at. The empty
/// user with revision 0 is "nobody" (no token), which authentication refuses once it is on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user name (empty: none).
    pub user: String,
    /// Auth revision of the token.
    pub revision: u64,
}

/// Metadata key etcd clients put their token under.
pub const TOKEN_METADATA: &str = "token";
/// The grpc-gateway's header for the same token.
pub const AUTHORIZATION_METADATA: &str = "authorization";

/// How tokens are made, from `--auth-token`.
#[derive(Clone)]
pub enum TokenKind {
    /// Random tokens known to every member through the log.
    Simple,
    /// Signed tokens.
    Jwt(Box<JwtKeys>),
}

/// JWT signing and checking keys.
#[derive(Clone)]
pub struct JwtKeys {
    algorithm: jsonwebtoken::Algorithm,
    encoding: Option<jsonwebtoken::EncodingKey>,
    decoding: jsonwebtoken::DecodingKey,
    ttl: Duration,
}

impl TokenKind {
    /// Parses `--auth-token`: `simple`, or `jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256,ttl=5m`
    /// (etcd's syntax; HS* methods take `priv-key` as the shared secret file).
    pub fn parse(flag: &str) -> anyhow::Result<TokenKind> {
        let mut parts = flag.split(',');
        match parts.next().map(str::trim) {
            Some("simple") | Some("") | None => Ok(TokenKind::Simple),
            Some("jwt") => {
                let mut options = HashMap::new();
                for part in parts {
                    let (key, value) = part
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--auth-token: {part:?} is not key=value"))?;
                    options.insert(key.trim().to_string(), value.trim().to_string());
                }
                Ok(TokenKind::Jwt(Box::new(JwtKeys::from_options(&options)?)))
            }
            Some(other) => anyhow::bail!("--auth-token {other:?}: expected simple or jwt,…"),
        }
    }
}

impl JwtKeys {
    fn from_options(options: &HashMap<String, String>) -> anyhow::Result<JwtKeys> {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
        let method = options.get("sign-method").map(String::as_str).unwrap_or("RS256");
        let algorithm: Algorithm =
            method.parse().map_err(|_| anyhow::anyhow!("--auth-token: unknown sign-method {method}"))?;
        let ttl = match options.get("ttl") {
            Some(ttl) => crate::compactor::parse_period(ttl)
                .ok_or_else(|| anyhow::anyhow!("--auth-token: ttl {ttl:?} is not a duration such as 5m"))?,
            None => Duration::from_secs(300),
        };
        let read = |key: &str| -> anyhow::Result<Option<Vec<u8>>> {
            match options.get(key) {
                Some(path) => {
                    Ok(Some(std::fs::read(path).map_err(|e| anyhow::anyhow!("--auth-token {key} {path}: {e}"))?))
                }
                None => Ok(None),
            }
        };
        let (private, public) = (read("priv-key")?, read("pub-key")?);
        let bad = |e: jsonwebtoken::errors::Error| anyhow::anyhow!("--auth-token: {method} key: {e}");
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private.ok_or_else(|| anyhow::anyhow!("--auth-token: {method} needs priv-key"))?;
                (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let public = public.ok_or_else(|| anyhow::anyhow!("--auth-token: {method} needs pub-key"))?;
                let encoding = private.map(|key| EncodingKey::from_ec_pem(&key)).transpose().map_err(bad)?;
                (encoding, DecodingKey::from_ec_pem(&public).map_err(bad)?)
            }
            Algorithm::EdDSA => {
                let public = public.ok_or_else(|| anyhow::anyhow!("--auth-token: {method} needs pub-key"))?;
                let encoding = private.map(|key| EncodingKey::from_ed_pem(&key)).transpose().map_err(bad)?;
                (encoding, DecodingKey::from_ed_pem(&public).map_err(bad)?)
            }
            _ => {
                let public = public.ok_or_else(|| anyhow::anyhow!("--auth-token: {method} needs pub-key"))?;
                let encoding = private.map(|key| EncodingKey::from_rsa_pem(&key)).transpose().map_err(bad)?;
                (encoding, DecodingKey::from_rsa_pem(&public).map_err(bad)?)
            }
        };
        Ok(JwtKeys { algorithm, encoding, decoding, ttl })
    }
}

/// The claims of a ballot JWT (etcd's names).
#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

struct Entry {
    user: String,
    revision: u64,
    expires: Instant,
}

/// This member's tokens.
pub struct Tokens {
    kind: TokenKind,
    ttl: Duration,
    simple: Mutex<HashMap<[u8; 32], Entry>>,
    failures: Mutex<HashMap<String, Failures>>,
}

/// Why a token is not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Unknown here (perhaps not applied yet: look again after a barrier).
    Unknown,
    /// Expired, forged or malformed.
    Invalid,
}

/// Failed logins of one user from one address.
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed logins allowed before the next is delayed; each failure beyond doubles the wait, up
/// to [`LOGIN_WAIT_MAX`].
const LOGIN_FAILURES_FREE: u32 = 3;
/// Longest wait imposed on a login after failures.
const LOGIN_WAIT_MAX: Duration = Duration::from_secs(30);
/// Simple tokens kept at most (the oldest go first beyond this).
const SIMPLE_TOKENS_MAX: usize = 100_000;

impl Tokens {
    /// Tokens of `kind`; simple tokens live `ttl` after their last use.
    pub fn new(kind: TokenKind, ttl: Duration) -> Tokens {
        Tokens { kind, ttl, simple: Mutex::default(), failures: Mutex::default() }
    }

    /// True for simple tokens (logins go through the log).
    pub fn is_simple(&self) -> bool {
        matches!(self.kind, TokenKind::Simple)
    }

    /// A new simple token and the hash the log carries.
    pub fn new_simple() -> (String, Vec<u8>) {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let hash = sha2::Sha256::digest(token.as_bytes()).to_vec();
        (token, hash)
    }

    /// A login command for a simple token.
    pub fn login(name: &str, token_hash: Vec<u8>, checked_at: u64) -> AuthCommand {
        AuthCommand::Authenticate { name: name.to_string(), token_hash, checked_at }
    }

    /// A signed token for `user` at auth revision `revision` (JWT only).
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, String> {
        let TokenKind::Jwt(keys) = &self.kind else { return Err("simple tokens are not signed".into()) };
        let encoding = keys.encoding.as_ref().ok_or("--auth-token jwt has no priv-key: this member only verifies")?;
        let exp = (std::time::SystemTime::now() + keys.ttl)
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let claims = Claims { username: user.to_string(), revision, exp };
        jsonwebtoken::encode(&jsonwebtoken::Header::new(keys.algorithm), &claims, encoding).map_err(|e| e.to_string())
    }

    /// Logins applied by the state machine: their tokens are good here from now on.
    pub fn register(&self, logins: Vec<Login>) {
        if logins.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut simple = self.simple.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if simple.len() + logins.len() > SIMPLE_TOKENS_MAX {
            simple.retain(|_, entry| entry.expires > now);
        }
        for login in logins {
            let Ok(hash) = <[u8; 32]>::try_from(login.token_hash.as_slice()) else { continue };
            if simple.len() >= SIMPLE_TOKENS_MAX {
                // Full of live tokens: drop one that expires first, rather than refuse logins.
                if let Some(oldest) = simple.iter().min_by_key(|(_, entry)| entry.expires).map(|(hash, _)| *hash) {
                    simple.remove(&oldest);
                }
            }
            simple.insert(hash, Entry { user: login.user, revision: login.revision, expires: now + self.ttl });
        }
    }

    /// The identity a token stands for.
    pub fn check(&self, token: &str) -> Result<Identity, TokenError> {
        match &self.kind {
            TokenKind::Simple => {
                let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
                let now = Instant::now();
                let mut simple = self.simple.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let Some(entry) = simple.get_mut(&hash) else { return Err(TokenError::Unknown) };
                if entry.expires <= now {
                    simple.remove(&hash);
                    return Err(TokenError::Invalid);
                }
                entry.expires = now + self.ttl;
                Ok(Identity { user: entry.user.clone(), revision: entry.revision })
            }
            TokenKind::Jwt(keys) => {
                let mut validation = jsonwebtoken::Validation::new(keys.algorithm);
                validation.leeway = 0;
                validation.set_required_spec_claims(&["exp"]);
                let data = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
                    .map_err(|_| TokenError::Invalid)?;
                Ok(Identity { user: data.claims.username, revision: data.claims.revision })
            }
        }
    }

    /// How long a login by `user` from `source` must wait, given its recent failures.
    pub fn login_wait(&self, user: &str, source: &str) -> Duration {
        let failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(entry) = failures.get(&failure_key(user, source)) else { return Duration::ZERO };
        if entry.count < LOGIN_FAILURES_FREE {
            return Duration::ZERO;
        }
        let wait = Duration::from_millis(250u64 << (entry.count - LOGIN_FAILURES_FREE).min(10)).min(LOGIN_WAIT_MAX);
        wait.saturating_sub(entry.last.elapsed())
    }

    /// Records the outcome of a login.
    pub fn login_outcome(&self, user: &str, source: &str, succeeded: bool) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = failure_key(user, source);
        if succeeded {
            failures.remove(&key);
            return;
        }
        if failures.len() >= SIMPLE_TOKENS_MAX {
            failures.retain(|_, entry| entry.last.elapsed() < LOGIN_WAIT_MAX);
        }
        let entry = failures.entry(key).or_insert(Failures { count: 0, last: Instant::now() });
        entry.count = entry.count.saturating_add(1);
        entry.last = Instant::now();
    }
}

fn failure_key(user: &str, source: &str) -> String {
    format!("{user}\u{0}{source}")
}

/// Metadata under which a member forwarding a request names the user it identified by client
/// certificate: a short-lived HS256 JWT signed with the cluster's forwarding key (replicated
/// auth state, made at AuthEnable), so the leader can trust it and a client cannot forge it.
pub const FORWARDED_IDENTITY: &str = "ballot-forwarded-identity";

/// How long a forwarded identity is good for.
const FORWARDED_IDENTITY_TTL: Duration = Duration::from_secs(30);

/// Signs `user` for a forwarded request.
pub fn sign_forwarded(key: &[u8; 32], user: &str) -> Option<String> {
    let exp =
        (std::time::SystemTime::now() + FORWARDED_IDENTITY_TTL).duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let claims = Claims { username: user.to_string(), revision: u64::MAX, exp };
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(key)).ok()
}

/// The identity a forwarded request carries, if its signature and time hold.
pub fn verify_forwarded(key: &[u8; 32], signed: &str) -> Option<Identity> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    let data =
        jsonwebtoken::decode::<Claims>(signed, &jsonwebtoken::DecodingKey::from_secret(key), &validation).ok()?;
    Some(Identity { user: data.claims.username, revision: data.claims.revision })
}

/// bcrypt's cost for new passwords (etcd's default `--bcrypt-cost`).
pub const BCRYPT_COST: u32 = 10;

/// The bcrypt hash of a password (slow on purpose: call it off the async workers).
pub fn hash_password(password: &str) -> Result<String, String> {
    bcrypt::hash(password, BCRYPT_COST).map_err(|error| error.to_string())
}

/// True if `password` matches the bcrypt `hash` (slow on purpose).
pub fn password_matches(password: &str, hash: &str) -> bool {
    !hash.is_empty() && bcrypt::verify(password, hash).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_are_known_after_their_login_is_applied_and_expire_unused() {
        let tokens = Tokens::new(TokenKind::Simple, Duration::from_millis(200));
        let (token, hash) = Tokens::new_simple();
        assert_eq!(tokens.check(&token), Err(TokenError::Unknown));
        tokens.register(vec![Login { token_hash: hash, user: "alice".into(), revision: 4 }]);
        assert_eq!(tokens.check(&token), Ok(Identity { user: "alice".into(), revision: 4 }));
        // Each use restarts the TTL.
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(100));
            assert!(tokens.check(&token).is_ok());
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(tokens.check(&token), Err(TokenError::Invalid));
        assert_eq!(tokens.check("forged"), Err(TokenError::Unknown));
    }

    #[test]
    fn jwt_tokens_verify_and_refuse_tampering() {
        let dir = std::env::temp_dir().join(format!("ballot-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, b"a shared secret of enough length for HS256").unwrap();
        let flag = format!("jwt,priv-key={},sign-method=HS256,ttl=1m", secret.display());
        let tokens = Tokens::new(TokenKind::parse(&flag).unwrap(), Duration::from_secs(60));
        let token = tokens.sign("bob", 9).unwrap();
        assert_eq!(tokens.check(&token), Ok(Identity { user: "bob".into(), revision: 9 }));
        let mut tampered = token.clone().into_bytes();
        let at = tampered.len() - 3;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(tokens.check(&String::from_utf8(tampered).unwrap()), Err(TokenError::Invalid));
        assert!(TokenKind::parse("jwt,sign-method=RS256").is_err(), "RS256 needs a public key");
        assert!(TokenKind::parse("kerberos").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn forwarded_identities_verify_only_with_the_cluster_key() {
        let signed = sign_forwarded(&[7; 32], "alice").unwrap();
        assert_eq!(verify_forwarded(&[7; 32], &signed).unwrap().user, "alice");
        assert!(verify_forwarded(&[8; 32], &signed).is_none());
        assert!(verify_forwarded(&[7; 32], "alice").is_none());
    }

    #[test]
    fn repeated_failed_logins_wait_longer_and_success_clears() {
        let tokens = Tokens::new(TokenKind::Simple, Duration::from_secs(1));
        for _ in 0..LOGIN_FAILURES_FREE {
            assert_eq!(tokens.login_wait("root", "127.0.0.1"), Duration::ZERO);
            tokens.login_outcome("root", "127.0.0.1", false);
        }
        assert!(tokens.login_wait("root", "127.0.0.1") > Duration::from_millis(200));
        assert_eq!(tokens.login_wait("root", "127.0.0.2"), Duration::ZERO, "per source");
        assert_eq!(tokens.login_wait("alice", "127.0.0.1"), Duration::ZERO, "per user");
        tokens.login_outcome("root", "127.0.0.1", true);
        assert_eq!(tokens.login_wait("root", "127.0.0.1"), Duration::ZERO);
    }

    #[test]
    fn passwords_are_salted_bcrypt_hashes() {
        let (a, b) = (hash_password("secret").unwrap(), hash_password("secret").unwrap());
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$2"));
        assert!(password_matches("secret", &a) && !password_matches("Secret", &a));
        assert!(!password_matches("", ""), "a user without a password cannot log in with one");
    }
}
