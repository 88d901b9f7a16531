//! etcd's authentication and role-based access control as replicated state: users (with
//! password hashes made before proposing: the state machine draws no randomness), roles with
//! key-range permissions, the on/off switch and the auth revision that every change raises.
//!
//! Permission checks run where the state is: a command on behalf of a user
//! ([`crate::Command::AsUser`]) is checked when it is applied, so every member decides alike
//! and a revoked permission stops the next command after the revoke, whichever member serves
//! it. Reads are checked by the server against its store after its ReadIndex barrier.

use redb::ReadableTable;

use crate::types::*;
use crate::{storage_error, tables, Error};

/// The user and role with every permission.
pub const ROOT: &str = "root";

/// What a permission allows, with etcd's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PermissionKind {
    /// Range, watch, compare.
    Read = 0,
    /// Put, delete.
    Write = 1,
    /// Both.
    ReadWrite = 2,
}

impl PermissionKind {
    /// From etcd's number.
    pub fn from_code(code: u64) -> Option<PermissionKind> {
        match code {
            0 => Some(PermissionKind::Read),
            1 => Some(PermissionKind::Write),
            2 => Some(PermissionKind::ReadWrite),
            _ => None,
        }
    }

    fn allows(self, wanted: PermissionKind) -> bool {
        self == PermissionKind::ReadWrite || self == wanted
    }
}

/// A key or range a role may read or write: `range_end` empty is the key alone, `"\0"` every
/// key from `key` on, otherwise `[key, range_end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// Read, write or both.
    pub kind: PermissionKind,
    /// First key.
    pub key: Vec<u8>,
    /// End of the range, as above.
    pub range_end: Vec<u8>,
}

/// A user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// Name.
    pub name: String,
    /// bcrypt hash of the password (empty for a user without one).
    pub password: String,
    /// Granted roles, sorted.
    pub roles: Vec<String>,
    /// Added without a password: it can only authenticate by a client certificate.
    pub no_password: bool,
}

/// A role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Role {
    /// Name.
    pub name: String,
    /// Permissions, sorted by key then range end.
    pub permissions: Vec<Permission>,
}

/// A change to the auth state (each raises the auth revision when it changes something), or a
/// login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthCommand {
    /// Turn authentication on (the root user must exist and have the root role), with a new
    /// key that members sign forwarded identities with (32 random bytes chosen before
    /// proposing; see the server's `auth`).
    Enable {
        /// The key (empty: keep the one there is).
        forward_key: Vec<u8>,
    },
    /// Turn it off.
    Disable,
    /// A user logged in with a token whose SHA-256 is `token_hash`; the password was checked
    /// against the state at auth revision `checked_at` (refused if it changed since).
    Authenticate {
        /// The user.
        name: String,
        /// SHA-256 of the token (the token itself is never in the log).
        token_hash: Vec<u8>,
        /// Auth revision the password was checked at.
        checked_at: u64,
    },
    /// Add a user.
    UserAdd {
        /// Name.
        name: String,
        /// bcrypt hash (empty with `no_password`).
        password: String,
        /// No password.
        no_password: bool,
    },
    /// Delete a user.
    UserDelete {
        /// Name.
        name: String,
    },
    /// Replace a user's password hash.
    UserChangePassword {
        /// Name.
        name: String,
        /// bcrypt hash.
        password: String,
    },
    /// Grant a role to a user.
    UserGrantRole {
        /// User.
        user: String,
        /// Role.
        role: String,
    },
    /// Revoke a role from a user.
    UserRevokeRole {
        /// User.
        user: String,
        /// Role.
        role: String,
    },
    /// Add a role.
    RoleAdd {
        /// Name.
        name: String,
    },
    /// Delete a role (and take it from every user).
    RoleDelete {
        /// Name.
        name: String,
    },
    /// Grant (or change the kind of) a permission.
    RoleGrantPermission {
        /// Role.
        role: String,
        /// Permission.
        permission: Permission,
    },
    /// Revoke the permission on exactly `[key, range_end)`.
    RoleRevokePermission {
        /// Role.
        role: String,
        /// Key.
        key: Vec<u8>,
        /// Range end.
        range_end: Vec<u8>,
    },
}

/// A login recorded by the state machine: the server's token keeper learns tokens from these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// The user.
    pub user: String,
    /// Auth revision the token is good for.
    pub revision: u64,
}

/// Key of the on/off switch in the `auth` table.
pub const AUTH_ENABLED: &str = "enabled";
/// Key of the auth revision in the `auth` table.
pub const AUTH_REVISION: &str = "revision";
/// Keys of the forwarding key's four 64-bit words in the `auth` table.
pub const AUTH_FORWARD_KEY: [&str; 4] = ["forward_key_0", "forward_key_1", "forward_key_2", "forward_key_3"];

/// The auth tables of one transaction (read or write).
pub struct AuthTables<A, U, R> {
    /// `auth`: switch and revision.
    pub auth: A,
    /// `auth_users`: name → `authpb.User`.
    pub users: U,
    /// `auth_roles`: name → `authpb.Role`.
    pub roles: R,
}

type Named = &'static str;

impl<A, U, R> AuthTables<A, U, R>
where
    A: ReadableTable<Named, u64>,
    U: ReadableTable<Named, &'static [u8]>,
    R: ReadableTable<Named, &'static [u8]>,
{
    /// Whether authentication is on, and the auth revision.
    pub fn status(&self) -> Result<(bool, u64), Error> {
        let get = |name| Ok::<_, Error>(self.auth.get(name).map_err(storage_error)?.map(|v| v.value()).unwrap_or(0));
        Ok((get(AUTH_ENABLED)? == 1, get(AUTH_REVISION)?))
    }

    /// The key members sign forwarded identities with, if authentication was ever enabled here.
    pub fn forward_key(&self) -> Result<Option<[u8; 32]>, Error> {
        let mut key = [0u8; 32];
        for (word, name) in AUTH_FORWARD_KEY.iter().enumerate() {
            let Some(value) = self.auth.get(*name).map_err(storage_error)? else { return Ok(None) };
            key[word * 8..word * 8 + 8].copy_from_slice(&value.value().to_be_bytes());
        }
        Ok(Some(key))
    }

    /// A user.
    pub fn user(&self, name: &str) -> Result<Option<User>, Error> {
        let Some(bytes) = self.users.get(name).map_err(storage_error)? else { return Ok(None) };
        crate::etcd_format::decode_user(bytes.value())
            .map(Some)
            .map_err(|e| Error::Storage(format!("user {name}: {e}")))
    }

    /// A role.
    pub fn role(&self, name: &str) -> Result<Option<Role>, Error> {
        let Some(bytes) = self.roles.get(name).map_err(storage_error)? else { return Ok(None) };
        crate::etcd_format::decode_role(bytes.value())
            .map(Some)
            .map_err(|e| Error::Storage(format!("role {name}: {e}")))
    }

    /// Every user's name, sorted.
    pub fn user_names(&self) -> Result<Vec<String>, Error> {
        names(&self.users)
    }

    /// Every role's name, sorted.
    pub fn role_names(&self) -> Result<Vec<String>, Error> {
        names(&self.roles)
    }

    /// Who `user` is, if it may act at all: refused without a name (`UserEmpty`), with a token
    /// from before the last auth change (`AuthOldRevision`), or for a user that is gone.
    /// `Ok(None)` when authentication is off (everything is allowed).
    pub fn identify(&self, user: &str, revision: u64) -> Result<Option<User>, Error> {
        let (enabled, current) = self.status()?;
        if !enabled {
            return Ok(None);
        }
        if user.is_empty() {
            return Err(Error::UserEmpty);
        }
        if revision < current {
            return Err(Error::AuthOldRevision);
        }
        self.user(user)?.map(Some).ok_or(Error::PermissionDenied)
    }

    /// Refuses unless `user` has the root role (when authentication is on).
    pub fn check_admin(&self, user: &str, revision: u64) -> Result<(), Error> {
        match self.identify(user, revision)? {
            Some(found) if !is_root(&found) => Err(Error::PermissionDenied),
            _ => Ok(()),
        }
    }

    /// Refuses unless `user` may `kind` every key of the range (`range_end` as in a request).
    pub fn check_range(
        &self,
        user: &str,
        revision: u64,
        kind: PermissionKind,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), Error> {
        let Some(found) = self.identify(user, revision)? else { return Ok(()) };
        self.check_user_range(&found, kind, key, range_end)
    }

    fn check_user_range(&self, user: &User, kind: PermissionKind, key: &[u8], range_end: &[u8]) -> Result<(), Error> {
        if is_root(user) {
            return Ok(());
        }
        let mut granted = Vec::new();
        for name in &user.roles {
            if let Some(role) = self.role(name)? {
                granted.extend(role.permissions.into_iter().filter(|p| p.kind.allows(kind)));
            }
        }
        if covered(&granted, key, range_end) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// Refuses unless `user` may run `command` (when authentication is on).
    pub fn check_command(
        &self,
        user: &str,
        revision: u64,
        command: &Command,
        lease_keys: &impl ReadableTable<(i64, &'static [u8]), ()>,
    ) -> Result<(), Error> {
        let Some(found) = self.identify(user, revision)? else { return Ok(()) };
        if is_root(&found) {
            return Ok(());
        }
        let lease_puts = |lease: i64| -> Result<(), Error> {
            // Keys already on the lease would go with it: etcd asks for write on all of them.
            for key in tables::attached_keys(lease_keys, lease)? {
                self.check_user_range(&found, PermissionKind::Write, &key, &[])?;
            }
            Ok(())
        };
        match command {
            Command::Put(put) => self.check_put(&found, put, &lease_puts),
            Command::DeleteRange(delete) => self.check_delete(&found, delete),
            Command::Txn(txn) => self.check_txn(&found, txn, &lease_puts),
            Command::LeaseRevoke { id } => lease_puts(*id),
            // Any user may compact and hold leases, as in etcd.
            Command::Compact { .. } | Command::LeaseGrant { .. } | Command::LeaseCheckpoint { .. } => Ok(()),
            Command::Auth(AuthCommand::Authenticate { .. }) => Ok(()),
            // ZooKeeper writes carry their own identities and are checked against znode ACLs;
            // none is ever sent on behalf of an etcd user.
            Command::Auth(_)
            | Command::Alarm { .. }
            | Command::Members(_)
            | Command::AsUser { .. }
            | Command::Zk(_)
            | Command::ZkSession { .. } => Err(Error::PermissionDenied),
        }
    }

    /// Refuses unless `user` may read everything a read-only txn names: its compares and the
    /// ranges of both branches, as for the same txn through the log.
    pub fn check_read_only_txn(&self, user: &str, revision: u64, txn: &TxnRequest) -> Result<(), Error> {
        let Some(found) = self.identify(user, revision)? else { return Ok(()) };
        if is_root(&found) {
            return Ok(());
        }
        // A read-only txn puts nothing, so no lease's keys come into it.
        self.check_txn(&found, txn, &|_| Ok(()))
    }

    fn check_put(
        &self,
        user: &User,
        put: &PutRequest,
        lease_puts: &dyn Fn(i64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.check_user_range(user, PermissionKind::Write, &put.key, &[])?;
        if put.prev_kv {
            self.check_user_range(user, PermissionKind::Read, &put.key, &[])?;
        }
        if put.lease != 0 {
            lease_puts(put.lease)?;
        }
        Ok(())
    }

    fn check_delete(&self, user: &User, delete: &DeleteRangeRequest) -> Result<(), Error> {
        self.check_user_range(user, PermissionKind::Write, &delete.key, &delete.range_end)?;
        if delete.prev_kv {
            self.check_user_range(user, PermissionKind::Read, &delete.key, &delete.range_end)?;
        }
        Ok(())
    }

    /// Every compare and every operation of both branches, whichever would run.
    fn check_txn(
        &self,
        user: &User,
        txn: &TxnRequest,
        lease_puts: &dyn Fn(i64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        for compare in &txn.compare {
            self.check_user_range(user, PermissionKind::Read, &compare.key, &compare.range_end)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                RequestOp::Range(range) => {
                    self.check_user_range(user, PermissionKind::Read, &range.key, &range.range_end)?
                }
                RequestOp::Put(put) => self.check_put(user, put, lease_puts)?,
                RequestOp::DeleteRange(delete) => self.check_delete(user, delete)?,
                RequestOp::Txn(nested) => self.check_txn(user, nested, lease_puts)?,
            }
        }
        Ok(())
    }
}

fn names(table: &impl ReadableTable<Named, &'static [u8]>) -> Result<Vec<String>, Error> {
    table
        .iter()
        .map_err(storage_error)?
        .map(|item| item.map(|(k, _)| k.value().to_string()).map_err(storage_error))
        .collect()
}

fn is_root(user: &User) -> bool {
    user.roles.iter().any(|role| role == ROOT)
}

/// The end of a single key's range: the key followed by a zero byte.
fn key_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    end.push(0);
    end
}

/// A request's or permission's range as `[start, end)`, `None` for no end.
fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    match range_end {
        [] => (key.to_vec(), Some(key_end(key))),
        [0] => (key.to_vec(), None),
        end => (key.to_vec(), Some(end.to_vec())),
    }
}

/// True if the permissions together cover every key of the request's range.
pub fn covered(granted: &[Permission], key: &[u8], range_end: &[u8]) -> bool {
    let (mut at, end) = interval(key, range_end);
    if let Some(end) = &end {
        if *end <= at {
            // An empty range reads nothing; etcd allows it if the start key is allowed.
            return covered(granted, key, &[]);
        }
    }
    let mut ranges: Vec<_> = granted.iter().map(|p| interval(&p.key, &p.range_end)).collect();
    ranges.sort();
    // Sweep: extend the covered prefix of [at, end) while some range starts inside it.
    loop {
        let mut advanced = false;
        for (start, stop) in &ranges {
            if *start <= at && stop.as_ref().is_none_or(|stop| *stop > at) {
                match stop {
                    None => return true,
                    Some(stop) => at = stop.clone(),
                }
                advanced = true;
            }
        }
        if end.as_ref().is_some_and(|end| at >= *end) {
            return true;
        }
        if !advanced {
            return false;
        }
    }
}

/// Applies an auth change to the tables of a write transaction.
pub(crate) fn apply(
    t: &mut crate::tables::WriteAuth<'_>,
    command: &AuthCommand,
    logins: &mut Vec<Login>,
) -> Result<(), Error> {
    let (enabled, revision) = t.status()?;
    let put_user = |t: &mut AuthTables<_, redb::Table<'_, Named, &'static [u8]>, _>, user: &User| {
        let bytes = crate::etcd_format::encode_user(user);
        t.users.insert(user.name.as_str(), bytes.as_slice()).map(|_| ()).map_err(storage_error)
    };
    let put_role = |t: &mut AuthTables<_, _, redb::Table<'_, Named, &'static [u8]>>, role: &Role| {
        let bytes = crate::etcd_format::encode_role(role);
        t.roles.insert(role.name.as_str(), bytes.as_slice()).map(|_| ()).map_err(storage_error)
    };
    match command {
        AuthCommand::Enable { forward_key } => {
            if enabled {
                // Enabled by an import from etcd, which has no key: this enable makes one.
                if t.forward_key()?.is_none() {
                    set_forward_key(&mut t.auth, forward_key)?;
                }
                return Ok(());
            }
            let root = t.user(ROOT)?.ok_or(Error::RootUserNotExist)?;
            if !is_root(&root) {
                return Err(Error::RootRoleNotExist);
            }
            t.auth.insert(AUTH_ENABLED, 1).map_err(storage_error)?;
            set_forward_key(&mut t.auth, forward_key)?;
        }
        AuthCommand::Disable => {
            if !enabled {
                return Ok(());
            }
            t.auth.insert(AUTH_ENABLED, 0).map_err(storage_error)?;
        }
        AuthCommand::Authenticate { name, token_hash, checked_at } => {
            if !enabled {
                return Err(Error::AuthNotEnabled);
            }
            if t.user(name)?.is_none() {
                return Err(Error::AuthFailed);
            }
            if *checked_at != revision {
                return Err(Error::AuthOldRevision);
            }
            logins.push(Login { token_hash: token_hash.clone(), user: name.clone(), revision });
            // A login changes nothing: the revision stays.
            return Ok(());
        }
        AuthCommand::UserAdd { name, password, no_password } => {
            if name.is_empty() {
                return Err(Error::UserEmpty);
            }
            if t.user(name)?.is_some() {
                return Err(Error::UserAlreadyExists);
            }
            let user =
                User { name: name.clone(), password: password.clone(), roles: Vec::new(), no_password: *no_password };
            put_user(t, &user)?;
        }
        AuthCommand::UserDelete { name } => {
            if enabled && name == ROOT {
                return Err(Error::InvalidAuthMgmt);
            }
            if t.user(name)?.is_none() {
                return Err(Error::UserNotFound);
            }
            t.users.remove(name.as_str()).map_err(storage_error)?;
        }
        AuthCommand::UserChangePassword { name, password } => {
            let mut user = t.user(name)?.ok_or(Error::UserNotFound)?;
            user.password = password.clone();
            user.no_password = false;
            put_user(t, &user)?;
        }
        AuthCommand::UserGrantRole { user, role } => {
            let mut found = t.user(user)?.ok_or(Error::UserNotFound)?;
            if role != ROOT && t.role(role)?.is_none() {
                return Err(Error::RoleNotFound);
            }
            match found.roles.binary_search(role) {
                Ok(_) => return Ok(()),
                Err(at) => found.roles.insert(at, role.clone()),
            }
            put_user(t, &found)?;
        }
        AuthCommand::UserRevokeRole { user, role } => {
            if enabled && user == ROOT && role == ROOT {
                return Err(Error::InvalidAuthMgmt);
            }
            let mut found = t.user(user)?.ok_or(Error::UserNotFound)?;
            let at = found.roles.binary_search(role).map_err(|_| Error::RoleNotGranted)?;
            found.roles.remove(at);
            put_user(t, &found)?;
        }
        AuthCommand::RoleAdd { name } => {
            if name.is_empty() {
                return Err(Error::RoleEmpty);
            }
            if t.role(name)?.is_some() {
                return Err(Error::RoleAlreadyExists);
            }
            put_role(t, &Role { name: name.clone(), permissions: Vec::new() })?;
        }
        AuthCommand::RoleDelete { name } => {
            if enabled && name == ROOT {
                return Err(Error::InvalidAuthMgmt);
            }
            if t.role(name)?.is_none() {
                return Err(Error::RoleNotFound);
            }
            t.roles.remove(name.as_str()).map_err(storage_error)?;
            for user_name in t.user_names()? {
                let mut user = t.user(&user_name)?.expect("listed just now");
                if let Ok(at) = user.roles.binary_search(name) {
                    user.roles.remove(at);
                    put_user(t, &user)?;
                }
            }
        }
        AuthCommand::RoleGrantPermission { role, permission } => {
            let mut found = t.role(role)?.ok_or(Error::RoleNotFound)?;
            let place = found
                .permissions
                .binary_search_by(|p| (&p.key, &p.range_end).cmp(&(&permission.key, &permission.range_end)));
            match place {
                Ok(at) => found.permissions[at].kind = permission.kind,
                Err(at) => found.permissions.insert(at, permission.clone()),
            }
            put_role(t, &found)?;
        }
        AuthCommand::RoleRevokePermission { role, key, range_end } => {
            let mut found = t.role(role)?.ok_or(Error::RoleNotFound)?;
            let at = found
                .permissions
                .iter()
                .position(|p| p.key == *key && p.range_end == *range_end)
                .ok_or(Error::PermissionNotGranted)?;
            found.permissions.remove(at);
            put_role(t, &found)?;
        }
    }
    t.auth.insert(AUTH_REVISION, revision + 1).map_err(storage_error)?;
    Ok(())
}

/// Stores a 32-byte forwarding key as four words (anything else is ignored).
pub(crate) fn set_forward_key(auth: &mut redb::Table<'_, Named, u64>, key: &[u8]) -> Result<(), Error> {
    if key.len() != 32 {
        return Ok(());
    }
    for (word, name) in AUTH_FORWARD_KEY.iter().enumerate() {
        let value = u64::from_be_bytes(key[word * 8..word * 8 + 8].try_into().expect("8 bytes"));
        auth.insert(*name, value).map_err(storage_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PutRequest, RangeRequest, RequestOp, TxnRequest};

    fn perm(key: &str, end: &str) -> Permission {
        Permission { kind: PermissionKind::Read, key: key.into(), range_end: end.into() }
    }

    fn auth(command: AuthCommand) -> Command {
        Command::Auth(command)
    }

    fn as_user(user: &str, revision: u64, command: Command) -> Command {
        Command::AsUser { user: user.into(), revision, command: Box::new(command) }
    }

    fn put(key: &str) -> PutRequest {
        PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() }
    }

    /// Applies one command at the next index and returns its outcome.
    fn run(store: &mut crate::Store, command: Command) -> Result<crate::Response, Error> {
        let index = store.applied_index() + 1;
        store.apply_batch(&[(index, command)]).unwrap().remove(0).unwrap().result
    }

    #[test]
    fn commands_are_checked_against_the_user_s_roles_when_applied() {
        let mut store = crate::Store::in_memory().unwrap();
        let setup = [
            AuthCommand::UserAdd { name: ROOT.into(), password: "h".into(), no_password: false },
            AuthCommand::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
            AuthCommand::UserAdd { name: "alice".into(), password: "h".into(), no_password: false },
            AuthCommand::RoleAdd { name: "reader".into() },
            AuthCommand::RoleGrantPermission {
                role: "reader".into(),
                permission: Permission { kind: PermissionKind::Read, key: b"/a/".to_vec(), range_end: b"/a0".to_vec() },
            },
            AuthCommand::UserGrantRole { user: "alice".into(), role: "reader".into() },
        ];
        // Without authentication, anything goes.
        assert!(run(&mut store, as_user("", 0, Command::Put(put("/b/x")))).is_ok());
        let enable = || auth(AuthCommand::Enable { forward_key: vec![9; 32] });
        assert_eq!(run(&mut store, enable()), Err(Error::RootUserNotExist));
        for command in setup {
            run(&mut store, auth(command)).unwrap();
        }
        assert!(!store.reader().auth_enabled());
        run(&mut store, enable()).unwrap();
        assert!(store.reader().auth_enabled());
        let revision = store.reader().auth(|a| a.status()).unwrap().1;
        assert_eq!(revision, 7);

        let kv_revision = store.revision();
        assert_eq!(run(&mut store, Command::Put(put("/a/x"))).map(|_| ()), Ok(()), "the server's own commands");
        assert_eq!(run(&mut store, as_user("", 0, Command::Put(put("/a/x")))), Err(Error::UserEmpty));
        assert_eq!(
            run(&mut store, as_user("alice", revision, Command::Put(put("/a/x")))),
            Err(Error::PermissionDenied)
        );
        assert_eq!(
            run(&mut store, as_user("alice", revision - 1, Command::Put(put("/a/x")))),
            Err(Error::AuthOldRevision)
        );
        assert_eq!(
            run(&mut store, as_user("mallory", revision, Command::Put(put("/a/x")))),
            Err(Error::PermissionDenied)
        );
        // A txn is refused for a forbidden key in the branch that would not run.
        let txn = TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Range(RangeRequest { key: b"/a/x".to_vec(), ..Default::default() })],
            failure: vec![RequestOp::Put(put("/a/y"))],
        };
        assert_eq!(
            run(&mut store, as_user("alice", revision, Command::Txn(txn.clone()))),
            Err(Error::PermissionDenied)
        );
        let read_only = TxnRequest { failure: vec![], ..txn };
        assert!(run(&mut store, as_user("alice", revision, Command::Txn(read_only))).is_ok());
        assert!(run(&mut store, as_user(ROOT, revision, Command::Put(put("/b/y")))).is_ok());
        assert_eq!(store.revision(), kv_revision + 2, "refused commands leave no revision");
        // Only root manages users; root cannot be deleted or lose root while auth is on.
        let add = auth(AuthCommand::UserAdd { name: "bob".into(), password: "h".into(), no_password: false });
        assert_eq!(run(&mut store, as_user("alice", revision, add.clone())), Err(Error::PermissionDenied));
        assert!(run(&mut store, as_user(ROOT, revision, add)).is_ok());
        let delete_root = auth(AuthCommand::UserDelete { name: ROOT.into() });
        assert_eq!(run(&mut store, as_user(ROOT, revision + 1, delete_root)), Err(Error::InvalidAuthMgmt));
        // A login is recorded for the token keeper and changes no revision.
        let login =
            AuthCommand::Authenticate { name: "alice".into(), token_hash: vec![7; 32], checked_at: revision + 1 };
        run(&mut store, auth(login)).unwrap();
        let logins = store.take_logins();
        assert_eq!(logins, vec![Login { token_hash: vec![7; 32], user: "alice".into(), revision: revision + 1 }]);
        let stale = AuthCommand::Authenticate { name: "alice".into(), token_hash: vec![8; 32], checked_at: revision };
        assert_eq!(run(&mut store, auth(stale)), Err(Error::AuthOldRevision));

        // Users and roles travel in a snapshot image.
        let image: Vec<Vec<u8>> = store.snapshot_chunks(1 << 10).unwrap().map(Result::unwrap).collect();
        let mut copy = crate::Store::in_memory().unwrap();
        copy.install_snapshot(image).unwrap();
        assert!(copy.reader().auth_enabled());
        let names = copy.reader().auth(|a| Ok((a.user_names()?, a.role_names()?, a.status()?))).unwrap();
        assert_eq!(
            names,
            (vec!["alice".into(), "bob".into(), ROOT.into()], vec!["reader".into()], (true, revision + 1))
        );
        let check = copy.reader().auth(|a| a.check_range("alice", revision + 1, PermissionKind::Read, b"/a/", b"/a0"));
        assert_eq!(check, Ok(()));
        let check = copy.reader().auth(|a| a.check_range("alice", revision + 1, PermissionKind::Read, b"/b/x", b""));
        assert_eq!(check, Err(Error::PermissionDenied));
        assert_eq!(copy.reader().auth(|a| a.forward_key()), Ok(Some([9; 32])));
    }

    #[test]
    fn commands_round_trip_through_the_log_codec() {
        let commands = [
            auth(AuthCommand::Enable { forward_key: vec![1; 32] }),
            auth(AuthCommand::Authenticate { name: "a".into(), token_hash: vec![1, 2], checked_at: 9 }),
            auth(AuthCommand::RoleGrantPermission {
                role: "r".into(),
                permission: Permission { kind: PermissionKind::ReadWrite, key: b"k".to_vec(), range_end: vec![0] },
            }),
            auth(AuthCommand::RoleRevokePermission { role: "r".into(), key: b"k".to_vec(), range_end: vec![] }),
            as_user("alice", 3, Command::Put(put("/a"))),
        ];
        for command in commands {
            let bytes = crate::command_codec::encode(&command);
            assert_eq!(crate::command_codec::decode(&bytes).unwrap(), command);
        }
        let nested = as_user("a", 1, as_user("b", 1, Command::Compact { revision: 1 }));
        assert!(crate::command_codec::decode(&crate::command_codec::encode(&nested)).is_err());
    }

    #[test]
    fn ranges_are_covered_only_when_every_key_is() {
        let prefix_a = [perm("/a/", "/a0")];
        assert!(covered(&prefix_a, b"/a/x", b""));
        assert!(covered(&prefix_a, b"/a/", b"/a0"));
        assert!(covered(&prefix_a, b"/a/b", b"/a/c"));
        assert!(!covered(&prefix_a, b"/b/x", b""));
        assert!(!covered(&prefix_a, b"/a/", b"/b"));
        assert!(!covered(&prefix_a, b"/a/", b"\0"));
        // Adjacent grants join up.
        let joined = [perm("a", "c"), perm("c", "e")];
        assert!(covered(&joined, b"b", b"d"));
        assert!(!covered(&[perm("a", "c"), perm("d", "e")], b"b", b"d"));
        // A single-key grant covers that key alone.
        let single = [perm("k", "")];
        assert!(covered(&single, b"k", b""));
        assert!(!covered(&single, b"k", b"l"));
        assert!(!covered(&single, b"k0", b""));
        // From a key to the end.
        let open = [perm("m", "\0")];
        assert!(covered(&open, b"z", b"\0"));
        assert!(!covered(&open, b"a", b"\0"));
        assert!(!covered(&[], b"a", b""));
    }
}
