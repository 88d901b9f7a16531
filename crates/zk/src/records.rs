//! ZooKeeper's records (`zookeeper.jute`, 3.8), field for field.

use crate::jute::{DecodeError, Jute, Reader, Writer};
use crate::record;

record! {
    /// An identity: scheme (`world`, `auth`, `digest`, `ip`) and id.
    pub struct Id {
        /// The scheme.
        pub scheme: String,
        /// The id within it (`anyone`, `user:base64(sha1(user:password))`, an address).
        pub id: String,
    }
}

record! {
    /// One ACL entry: permission bits for an identity.
    pub struct Acl {
        /// [`crate::codes::perms`] bits.
        pub perms: i32,
        /// Whom it is for.
        pub id: Id,
    }
}

record! {
    /// A znode's metadata (68 bytes).
    pub struct Stat {
        /// The zxid of its creation.
        pub czxid: i64,
        /// The zxid of its last data change.
        pub mzxid: i64,
        /// When it was created (ms since the epoch, the leader's clock).
        pub ctime: i64,
        /// When its data last changed.
        pub mtime: i64,
        /// Data changes.
        pub version: i32,
        /// Child changes (as reported: creations and deletions).
        pub cversion: i32,
        /// ACL changes.
        pub aversion: i32,
        /// The owning session of an ephemeral node, else 0.
        pub ephemeral_owner: i64,
        /// Bytes of data.
        pub data_length: i32,
        /// Children now.
        pub num_children: i32,
        /// The zxid of the last change to its children.
        pub pzxid: i64,
    }
}

record! {
    /// One of a connection's identities, as `whoAmI` reports it.
    pub struct ClientInfo {
        /// The scheme.
        pub auth_scheme: String,
        /// The user (or address).
        pub user: String,
    }
}

/// The read-only flag after a connect packet's jute fields, if the peer sent one.
fn trailing_read_only(reader: &mut Reader<'_>) -> Result<Option<bool>, DecodeError> {
    if reader.is_empty() {
        Ok(None)
    } else {
        reader.boolean().map(Some)
    }
}

/// The first packet of a connection (no request header). The trailing read-only flag is not
/// in the jute definition and very old clients leave it out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    /// Clients send 0.
    pub protocol_version: i32,
    /// The highest zxid the client has seen: a member behind it must not serve the client.
    pub last_zxid_seen: i64,
    /// The session timeout it asks for, ms.
    pub time_out: i32,
    /// 0 for a new session, else the session to resume.
    pub session_id: i64,
    /// The session's password (16 zero bytes for a new one).
    pub passwd: Option<Vec<u8>>,
    /// `Some` if the client sent the read-only flag.
    pub read_only: Option<bool>,
}

impl Jute for ConnectRequest {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ConnectRequest {
            protocol_version: reader.int()?,
            last_zxid_seen: reader.long()?,
            time_out: reader.int()?,
            session_id: reader.long()?,
            passwd: reader.buffer()?,
            read_only: trailing_read_only(reader)?,
        })
    }

    fn write(&self, writer: &mut Writer) {
        writer.int(self.protocol_version);
        writer.long(self.last_zxid_seen);
        writer.int(self.time_out);
        writer.long(self.session_id);
        writer.buffer(self.passwd.as_deref());
        self.read_only.iter().for_each(|read_only| writer.boolean(*read_only));
    }
}

/// The answer to [`ConnectRequest`]; the read-only flag only if the client sent one. A time-out
/// of 0 tells the client its session is gone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    /// Always 0.
    pub protocol_version: i32,
    /// The negotiated session timeout, ms (0: the session is invalid).
    pub time_out: i32,
    /// The session.
    pub session_id: i64,
    /// Its password (16 bytes).
    pub passwd: Option<Vec<u8>>,
    /// Whether this is a read-only server, if the client asked.
    pub read_only: Option<bool>,
}

impl Jute for ConnectResponse {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ConnectResponse {
            protocol_version: reader.int()?,
            time_out: reader.int()?,
            session_id: reader.long()?,
            passwd: reader.buffer()?,
            read_only: trailing_read_only(reader)?,
        })
    }

    fn write(&self, writer: &mut Writer) {
        writer.int(self.protocol_version);
        writer.int(self.time_out);
        writer.long(self.session_id);
        writer.buffer(self.passwd.as_deref());
        self.read_only.iter().for_each(|read_only| writer.boolean(*read_only));
    }
}

record! {
    /// Before every request after the connect packet.
    pub struct RequestHeader {
        /// The client's request number (or a special xid, [`crate::codes::xid`]).
        pub xid: i32,
        /// The operation ([`crate::codes::op`]).
        pub op: i32,
    }
}

record! {
    /// Before every reply and notification (16 bytes).
    pub struct ReplyHeader {
        /// The request's xid (−1 for a notification).
        pub xid: i32,
        /// The server's last applied zxid (−1 for a notification).
        pub zxid: i64,
        /// 0 or an [`crate::codes::ErrorCode`].
        pub err: i32,
    }
}

record! {
    /// `addauth`: credentials for the connection.
    pub struct AuthPacket {
        /// Always 0.
        pub auth_type: i32,
        /// `digest`, `ip`, …
        pub scheme: String,
        /// For `digest`, `user:password`.
        pub auth: Option<Vec<u8>>,
    }
}

record! {
    /// A watch event (after a reply header with xid −1).
    pub struct WatcherEvent {
        /// [`crate::codes::EventType`].
        pub event_type: i32,
        /// Always [`crate::codes::STATE_SYNC_CONNECTED`] from a server.
        pub state: i32,
        /// The node.
        pub path: String,
    }
}

record! {
    /// Watches to set again after a reconnect, firing for changes after `relative_zxid`.
    pub struct SetWatches {
        /// The client's last seen zxid.
        pub relative_zxid: i64,
        /// getData watches.
        pub data_watches: Vec<String>,
        /// exists watches.
        pub exist_watches: Vec<String>,
        /// getChildren watches.
        pub child_watches: Vec<String>,
    }
}

record! {
    /// [`SetWatches`] with persistent watches too.
    pub struct SetWatches2 {
        /// The client's last seen zxid.
        pub relative_zxid: i64,
        /// getData watches.
        pub data_watches: Vec<String>,
        /// exists watches.
        pub exist_watches: Vec<String>,
        /// getChildren watches.
        pub child_watches: Vec<String>,
        /// addWatch persistent watches.
        pub persistent_watches: Vec<String>,
        /// addWatch persistent recursive watches.
        pub persistent_recursive_watches: Vec<String>,
    }
}

record! {
    /// create, create2, createContainer.
    pub struct CreateRequest {
        /// The node (for a sequential node, the prefix of its name).
        pub path: String,
        /// Its data (null differs from empty).
        pub data: Option<Vec<u8>>,
        /// Its ACL.
        pub acl: Vec<Acl>,
        /// [`crate::codes::CreateMode`] flags.
        pub flags: i32,
    }
}

record! {
    /// createTTL.
    pub struct CreateTtlRequest {
        /// The node.
        pub path: String,
        /// Its data.
        pub data: Option<Vec<u8>>,
        /// Its ACL.
        pub acl: Vec<Acl>,
        /// [`crate::codes::CreateMode`] flags.
        pub flags: i32,
        /// ms without change after which it goes.
        pub ttl: i64,
    }
}

record! {
    /// delete.
    pub struct DeleteRequest {
        /// The node.
        pub path: String,
        /// The version it must have (−1: any).
        pub version: i32,
    }
}

record! {
    /// exists, getData, getChildren, getChildren2.
    pub struct PathWatchRequest {
        /// The node.
        pub path: String,
        /// Leave a one-shot watch.
        pub watch: bool,
    }
}

record! {
    /// setData.
    pub struct SetDataRequest {
        /// The node.
        pub path: String,
        /// The new data.
        pub data: Option<Vec<u8>>,
        /// The version it must have (−1: any).
        pub version: i32,
    }
}

record! {
    /// getACL, sync, getEphemerals, getAllChildrenNumber: a path alone.
    pub struct PathRequest {
        /// The node (for getEphemerals, a prefix).
        pub path: String,
    }
}

record! {
    /// setACL.
    pub struct SetAclRequest {
        /// The node.
        pub path: String,
        /// The new ACL.
        pub acl: Vec<Acl>,
        /// The ACL version it must have (−1: any).
        pub version: i32,
    }
}

record! {
    /// check (inside a multi).
    pub struct CheckVersionRequest {
        /// The node.
        pub path: String,
        /// The version it must have.
        pub version: i32,
    }
}

record! {
    /// reconfig.
    pub struct ReconfigRequest {
        /// Servers to add.
        pub joining_servers: String,
        /// Servers to remove.
        pub leaving_servers: String,
        /// A whole new membership.
        pub new_members: String,
        /// The configuration version it must replace (−1: any).
        pub cur_config_id: i64,
    }
}

record! {
    /// checkWatches, removeWatches.
    pub struct WatchesRequest {
        /// The node.
        pub path: String,
        /// 1 children, 2 data, 3 any.
        pub watcher_type: i32,
    }
}

record! {
    /// addWatch.
    pub struct AddWatchRequest {
        /// The node.
        pub path: String,
        /// [`crate::codes::AddWatchMode`].
        pub mode: i32,
    }
}

record! {
    /// create's answer: the node's name (with a sequential node's counter).
    pub struct CreateResponse {
        /// The node created.
        pub path: String,
    }
}

record! {
    /// create2's (and createContainer's, createTTL's) answer.
    pub struct Create2Response {
        /// The node created.
        pub path: String,
        /// Its metadata.
        pub stat: Stat,
    }
}

record! {
    /// exists', setData's and setACL's answer.
    pub struct StatResponse {
        /// The node's metadata.
        pub stat: Stat,
    }
}

record! {
    /// getData's answer.
    pub struct GetDataResponse {
        /// The data (null if created without).
        pub data: Option<Vec<u8>>,
        /// Its metadata.
        pub stat: Stat,
    }
}

record! {
    /// getChildren's answer (and getEphemerals').
    pub struct ChildrenResponse {
        /// Child names (getEphemerals: paths).
        pub children: Vec<String>,
    }
}

record! {
    /// getChildren2's answer.
    pub struct Children2Response {
        /// Child names.
        pub children: Vec<String>,
        /// The parent's metadata.
        pub stat: Stat,
    }
}

record! {
    /// getACL's answer.
    pub struct GetAclResponse {
        /// The ACL.
        pub acl: Vec<Acl>,
        /// The node's metadata.
        pub stat: Stat,
    }
}

record! {
    /// sync's answer (the path, echoed).
    pub struct SyncResponse {
        /// The path of the request.
        pub path: String,
    }
}

record! {
    /// An error result inside a multi, and addWatch's answer (code 0).
    pub struct ErrorResponse {
        /// The code.
        pub err: i32,
    }
}

record! {
    /// getAllChildrenNumber's answer.
    pub struct AllChildrenNumberResponse {
        /// Every descendant of the node.
        pub total_number: i32,
    }
}

record! {
    /// whoAmI's answer.
    pub struct WhoAmIResponse {
        /// The connection's identities.
        pub client_info: Vec<ClientInfo>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat() -> Stat {
        Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: -1,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        }
    }

    #[test]
    fn headers_and_stat_have_zookeepers_sizes() {
        assert_eq!(RequestHeader { xid: 1, op: 4 }.encode().len(), 8);
        assert_eq!(ReplyHeader { xid: 1, zxid: 2, err: -101 }.encode().len(), 16);
        assert_eq!(stat().encode().len(), 68);
        let bytes = ReplyHeader { xid: -1, zxid: -1, err: 0 }.encode();
        assert_eq!(bytes, [&[0xff; 12][..], &[0; 4][..]].concat());
    }

    #[test]
    fn a_connect_request_reads_with_and_without_the_read_only_flag() {
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: 30_000,
            session_id: 0,
            passwd: Some(vec![0; 16]),
            read_only: Some(false),
        };
        let bytes = request.encode();
        assert_eq!(bytes.len(), 45, "as a 3.8 client sends it");
        assert_eq!(ConnectRequest::decode(&bytes).unwrap(), request);
        let old = ConnectRequest::decode(&bytes[..44]).unwrap();
        assert_eq!(old.read_only, None);
        let response = ConnectResponse {
            protocol_version: 0,
            time_out: 10_000,
            session_id: 0x0100_0000_0000_0001,
            passwd: Some(vec![7; 16]),
            read_only: Some(false),
        };
        assert_eq!(response.encode().len(), 37);
        assert_eq!(ConnectResponse::decode(&response.encode()).unwrap(), response);
    }

    #[test]
    fn records_round_trip() {
        let acl = vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }];
        let create = CreateRequest { path: "/a".into(), data: None, acl: acl.clone(), flags: 3 };
        assert_eq!(CreateRequest::decode(&create.encode()).unwrap(), create);
        let ttl = CreateTtlRequest { path: "/t".into(), data: Some(b"x".to_vec()), acl, flags: 5, ttl: 1000 };
        assert_eq!(CreateTtlRequest::decode(&ttl.encode()).unwrap(), ttl);
        let data = GetDataResponse { data: Some(b"hello".to_vec()), stat: stat() };
        assert_eq!(GetDataResponse::decode(&data.encode()).unwrap(), data);
        let watches = SetWatches2 {
            relative_zxid: 9,
            data_watches: vec!["/a".into()],
            persistent_recursive_watches: vec!["/".into()],
            ..SetWatches2::default()
        };
        assert_eq!(SetWatches2::decode(&watches.encode()).unwrap(), watches);
        let who =
            WhoAmIResponse { client_info: vec![ClientInfo { auth_scheme: "ip".into(), user: "127.0.0.1".into() }] };
        assert_eq!(WhoAmIResponse::decode(&who.encode()).unwrap(), who);
    }

    #[test]
    fn a_truncated_record_is_an_error() {
        let bytes = stat().encode();
        assert!(Stat::decode(&bytes[..67]).is_err());
        assert!(CreateRequest::decode(&[0, 0, 0, 2, b'/']).is_err());
    }
}
