//! A small blocking ZooKeeper client over `std::net`, for `ballot zk`, ballot's tests and its
//! benchmark: one request at a time, watch events kept until asked for.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ballot_zk::acl::open_acl;
use ballot_zk::codes::{op, ErrorCode};
use ballot_zk::frame::framed;
use ballot_zk::jute::Jute;
use ballot_zk::multi::{MultiRequest, MultiResponse};
use ballot_zk::records::{
    Acl, Children2Response, ConnectRequest, ConnectResponse, CreateRequest, CreateResponse, DeleteRequest,
    GetDataResponse, PathRequest, PathWatchRequest, ReplyHeader, RequestHeader, SetDataRequest, Stat, StatResponse,
    WatcherEvent,
};

/// A failed request: ZooKeeper's error code, or the connection's failure.
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    /// The server answered with this error.
    #[error("ZooKeeper error {0:?}")]
    Code(ErrorCode),
    /// The connection failed or the answer was malformed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The session is gone (the server answered the handshake with timeout 0).
    #[error("session expired")]
    Expired,
}

/// One connection and session.
pub struct Client {
    stream: TcpStream,
    xid: i32,
    /// The session.
    pub session: i64,
    /// Its password.
    pub password: Vec<u8>,
    /// The negotiated timeout, ms.
    pub timeout_ms: i32,
    /// The highest zxid seen in a reply.
    pub last_zxid: i64,
    /// Watch events received and not yet taken.
    pub events: Vec<WatcherEvent>,
    /// How long a request waits for its reply.
    reply_timeout: Duration,
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(0..=ballot_zk::codes::JUTE_MAX_BUFFER as i32).contains(&len) {
        return Err(invalid("frame length out of range"));
    }
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload)?;
    Ok(payload)
}

impl Client {
    /// Opens a new session at `address` (`host:port`).
    pub fn connect(address: &str, timeout_ms: i32) -> Result<Client, ZkError> {
        Client::resume(address, 0, vec![0; 16], timeout_ms, 0)
    }

    /// Resumes `session` at `address` (0: a new one); `last_zxid` is the newest zxid the client
    /// saw.
    pub fn resume(
        address: &str,
        session: i64,
        password: Vec<u8>,
        timeout_ms: i32,
        last_zxid: i64,
    ) -> Result<Client, ZkError> {
        let addr = address.parse().map_err(|_| invalid("not host:port"))?;
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: last_zxid,
            time_out: timeout_ms,
            session_id: session,
            passwd: Some(password),
            read_only: Some(false),
        };
        stream.write_all(&framed(&request.encode()))?;
        let response = ConnectResponse::decode(&read_frame(&mut stream)?).map_err(|_| invalid("connect response"))?;
        if response.time_out <= 0 {
            return Err(ZkError::Expired);
        }
        Ok(Client {
            stream,
            xid: 0,
            session: response.session_id,
            password: response.passwd.unwrap_or_default(),
            timeout_ms: response.time_out,
            last_zxid,
            events: Vec::new(),
            reply_timeout: Duration::from_secs(10),
        })
    }

    /// How long a request may wait for its reply before it fails.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ZkError> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.set_write_timeout(Some(timeout))?;
        self.reply_timeout = timeout;
        Ok(())
    }

    /// Sends a request and waits for its reply (events that arrive first are kept).
    pub fn call(&mut self, code: i32, body: &[u8]) -> Result<(ReplyHeader, Vec<u8>), ZkError> {
        self.xid += 1;
        let xid = match code {
            op::PING => -2,
            op::SET_WATCHES | op::SET_WATCHES2 => -8,
            _ => self.xid,
        };
        let mut payload = RequestHeader { xid, op: code }.encode();
        payload.extend_from_slice(body);
        self.stream.write_all(&framed(&payload))?;
        loop {
            let frame = read_frame(&mut self.stream)?;
            let header = ReplyHeader::decode(frame.get(..16).unwrap_or(&[])).map_err(|_| invalid("reply header"))?;
            if header.xid == -1 {
                self.events.push(WatcherEvent::decode(&frame[16..]).map_err(|_| invalid("event"))?);
                continue;
            }
            if header.xid != xid {
                return Err(invalid("reply out of order").into());
            }
            self.last_zxid = self.last_zxid.max(header.zxid);
            if header.err != 0 {
                return Err(ZkError::Code(ErrorCode::from_code(header.err).unwrap_or(ErrorCode::SystemError)));
            }
            return Ok((header, frame[16..].to_vec()));
        }
    }

    fn decode<T: Jute>(bytes: &[u8]) -> Result<T, ZkError> {
        T::decode(bytes).map_err(|_| ZkError::Io(invalid("malformed reply")))
    }

    /// create with an open ACL; the created path.
    pub fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Result<String, ZkError> {
        self.create_with_acl(path, data, open_acl(), flags)
    }

    /// create with `acl`; the created path.
    pub fn create_with_acl(&mut self, path: &str, data: &[u8], acl: Vec<Acl>, flags: i32) -> Result<String, ZkError> {
        let request = CreateRequest { path: path.into(), data: Some(data.to_vec()), acl, flags };
        let (_, body) = self.call(op::CREATE, &request.encode())?;
        Ok(Client::decode::<CreateResponse>(&body)?.path)
    }

    /// getData.
    pub fn get_data(&mut self, path: &str, watch: bool) -> Result<(Option<Vec<u8>>, Stat), ZkError> {
        let (_, body) = self.call(op::GET_DATA, &PathWatchRequest { path: path.into(), watch }.encode())?;
        let response: GetDataResponse = Client::decode(&body)?;
        Ok((response.data, response.stat))
    }

    /// exists: the node's stat, `None` if there is no node.
    pub fn exists(&mut self, path: &str, watch: bool) -> Result<Option<Stat>, ZkError> {
        match self.call(op::EXISTS, &PathWatchRequest { path: path.into(), watch }.encode()) {
            Ok((_, body)) => Ok(Some(Client::decode::<StatResponse>(&body)?.stat)),
            Err(ZkError::Code(ErrorCode::NoNode)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// getChildren2: names and the node's stat.
    pub fn children(&mut self, path: &str, watch: bool) -> Result<(Vec<String>, Stat), ZkError> {
        let (_, body) = self.call(op::GET_CHILDREN2, &PathWatchRequest { path: path.into(), watch }.encode())?;
        let response: Children2Response = Client::decode(&body)?;
        Ok((response.children, response.stat))
    }

    /// setData; the new stat.
    pub fn set_data(&mut self, path: &str, data: &[u8], version: i32) -> Result<Stat, ZkError> {
        let request = SetDataRequest { path: path.into(), data: Some(data.to_vec()), version };
        let (_, body) = self.call(op::SET_DATA, &request.encode())?;
        Ok(Client::decode::<StatResponse>(&body)?.stat)
    }

    /// delete.
    pub fn delete(&mut self, path: &str, version: i32) -> Result<(), ZkError> {
        self.call(op::DELETE, &DeleteRequest { path: path.into(), version }.encode()).map(drop)
    }

    /// multi.
    pub fn multi(&mut self, request: &MultiRequest) -> Result<MultiResponse, ZkError> {
        let (_, body) = self.call(op::MULTI, &request.encode())?;
        Client::decode(&body)
    }

    /// sync.
    pub fn sync(&mut self, path: &str) -> Result<(), ZkError> {
        self.call(op::SYNC, &PathRequest { path: path.into() }.encode()).map(drop)
    }

    /// ping.
    pub fn ping(&mut self) -> Result<(), ZkError> {
        self.call(op::PING, &[]).map(drop)
    }

    /// Waits up to `timeout` for a watch event (pinging meanwhile), and takes the first.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<WatcherEvent>, ZkError> {
        let deadline = Instant::now() + timeout;
        while self.events.is_empty() && Instant::now() < deadline {
            self.stream.set_read_timeout(Some(Duration::from_millis(50)))?;
            let mut len = [0u8; 4];
            let peeked = self.stream.peek(&mut len);
            self.stream.set_read_timeout(Some(self.reply_timeout))?;
            match peeked {
                Ok(4) => {
                    let frame = read_frame(&mut self.stream)?;
                    let header = ReplyHeader::decode(&frame[..16]).map_err(|_| invalid("reply header"))?;
                    if header.xid == -1 {
                        self.events.push(WatcherEvent::decode(&frame[16..]).map_err(|_| invalid("event"))?);
                    }
                }
                Ok(0) => return Err(invalid("connection closed").into()),
                Ok(_) => {}
                Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(if self.events.is_empty() { None } else { Some(self.events.remove(0)) })
    }

    /// closeSession: ends the session (its ephemeral nodes go) and the connection.
    pub fn close(mut self) -> Result<(), ZkError> {
        self.call(op::CLOSE_SESSION, &[]).map(drop)
    }
}
