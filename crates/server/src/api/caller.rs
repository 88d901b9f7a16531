//! Who is asking, as a front end found it, in no protocol's terms: the gRPC services, the JSON
//! gateway and later front ends each fill a [`Caller`] from their own request (metadata,
//! headers, the TLS connection) and hand it to the layer below, which resolves it to a user
//! ([`super::Handle::identity`]) and carries it on when it forwards the request to the leader.

use std::net::IpAddr;

/// Metadata key counting how often members forwarded a request (leadership can move while a
/// request travels; a bound stops it from circling).
pub const FORWARDED: &str = "ballot-forwarded";

/// Metadata key of a causal read: the highest revision the client has seen. A serializable
/// read carrying it is served once the member has applied that revision (see
/// [`super::Handle::caught_up`]); the JSON gateway takes it from the `Ballot-Min-Revision`
/// header.
pub const MIN_REVISION: &str = "ballot-min-revision";

/// Metadata key of a read as of a time: RFC 3339 (`2026-12-01T10:05:00Z`) or milliseconds
/// since the epoch. A range carrying it reads at the newest revision stamped at or before that
/// time; the answer's metadata names the revision ([`AS_OF_REVISION`]) and its stamp
/// ([`AS_OF_TIME`], [`AS_OF_STAMP`]). The JSON gateway takes the `Ballot-As-Of` header.
pub const AS_OF: &str = "ballot-as-of";
/// Answer metadata of an as-of read: the revision it read at.
pub const AS_OF_REVISION: &str = "ballot-as-of-revision";
/// Answer metadata of an as-of read: that revision's time, RFC 3339.
pub const AS_OF_TIME: &str = "ballot-as-of-time";
/// Answer metadata of an as-of read: that revision's hybrid-logical-clock stamp.
pub const AS_OF_STAMP: &str = "ballot-as-of-stamp";

/// Answer metadata of Maintenance.Status: the leader's wall clock minus the member's, in ms,
/// at the last heartbeat (0 on the leader; absent until a heartbeat came).
pub const CLOCK_OFFSET: &str = "ballot-clock-offset-ms";

/// The credentials and provenance of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// An auth token (etcd's `token` metadata, or the gateway's `Authorization` header).
    pub token: Option<String>,
    /// The common name of the client's verified certificate, with `--client-cert-auth`; never
    /// set for a forwarded request (the connection is then the forwarding member's).
    pub certificate_user: Option<String>,
    /// The user a forwarding member identified by certificate, signed with the members' key.
    pub forwarded_identity: Option<String>,
    /// How often members forwarded the request already.
    pub forwards: u8,
    /// The client's address (for the login limit).
    pub source: Option<IpAddr>,
    /// The highest revision the client has seen ([`MIN_REVISION`]), for a causal read.
    pub min_revision: Option<i64>,
    /// The time a read is as of ([`AS_OF`]), as the client wrote it.
    pub as_of: Option<String>,
}

impl Caller {
    /// The caller as gRPC metadata and connection information show it.
    pub fn of_grpc<T>(request: &tonic::Request<T>, client_cert_auth: bool) -> Caller {
        let metadata = request.metadata();
        let text = |key: &str| metadata.get(key).and_then(|value| value.to_str().ok()).map(str::to_string);
        let token = text(crate::auth::TOKEN_METADATA).or_else(|| text(crate::auth::AUTHORIZATION_METADATA));
        let forwards = text(FORWARDED).and_then(|count| count.parse().ok()).unwrap_or(0);
        let connection = request.extensions().get::<crate::listener::ClientConnInfo>();
        Caller {
            token,
            certificate_user: connection.filter(|_| client_cert_auth && forwards == 0).and_then(certificate_user),
            forwarded_identity: text(crate::auth::FORWARDED_IDENTITY),
            forwards,
            source: connection.and_then(|info| info.remote).map(|address| address.ip()),
            min_revision: text(MIN_REVISION).and_then(|revision| revision.trim().parse().ok()),
            as_of: text(AS_OF),
        }
    }

    /// The caller as HTTP headers and connection information show it (the JSON gateway: the
    /// token travels in `Authorization`, as with etcd's gateway).
    pub fn of_http(
        headers: &axum::http::HeaderMap,
        connection: Option<&crate::listener::ClientConnInfo>,
        client_cert_auth: bool,
    ) -> Caller {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).to_string());
        Caller {
            token,
            certificate_user: connection.filter(|_| client_cert_auth).and_then(certificate_user),
            forwarded_identity: None,
            forwards: 0,
            source: connection.and_then(|info| info.remote).map(|address| address.ip()),
            min_revision: headers
                .get(MIN_REVISION)
                .and_then(|value| value.to_str().ok())
                .and_then(|revision| revision.trim().parse().ok()),
            as_of: headers.get(AS_OF).and_then(|value| value.to_str().ok()).map(str::to_string),
        }
    }

    /// The login limit's key for where the request came from.
    pub fn source_text(&self) -> String {
        self.source.map(|address| address.to_string()).unwrap_or_default()
    }
}

/// The common name of a connection's client certificate.
fn certificate_user(connection: &crate::listener::ClientConnInfo) -> Option<String> {
    let leaf = connection.certs.as_ref()?.first()?;
    crate::tls::common_name(leaf).filter(|name| !name.is_empty())
}
