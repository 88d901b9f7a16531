//! The Auth service: the switch, logins, users and roles, with etcd's semantics and errors.
//! Changes are commands on behalf of the caller, checked (root only) where they are applied;
//! listings and lookups are read from this member's state after a ReadIndex barrier. Passwords
//! are hashed here, before proposing: the log and the store only ever hold bcrypt hashes.

use std::str::FromStr as _;
use std::time::Duration;

use ballot_mvcc::auth::{AuthCommand, Permission, PermissionKind};
use ballot_mvcc::Command;
use ballot_proto::authpb;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::auth_client::AuthClient;
use tonic::Status;

use super::{status, Caller, Handle};
use crate::auth::{hash_password, password_matches, Identity, Tokens};
use crate::driver::ApiError;

/// The Auth service.
pub struct Auth {
    /// The member.
    pub handle: Handle,
}

/// A bcrypt hash of a random password, checked when a user does not exist, so that a login
/// takes as long for a wrong name as for a wrong password.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let (random, _) = Tokens::new_simple();
            hash_password(&random).unwrap_or_default()
        })
        .clone()
}

fn mvcc(error: ballot_mvcc::Error) -> Status {
    status(ApiError::Mvcc(error))
}

/// Proposes an auth change for `$identity`; on a follower, forwards the request (`$message`,
/// kept for that) to the leader.
macro_rules! change {
    ($self:ident, $caller:ident, $message:ident, $identity:expr, $command:expr, $method:ident, $response:ident) => {{
        match $self.handle.propose_as(&$identity, Command::Auth($command)).await {
            Ok(answer) => {
                answer.value.result.map_err(mvcc)?;
                Ok(pb::$response { header: $self.handle.header(answer.revision, answer.term) })
            }
            Err(ApiError::NotLeader(leader)) => {
                let channel = $self.handle.leader_channel($caller, leader)?;
                Ok(AuthClient::new(channel).$method($message).await?.into_inner())
            }
            Err(error) => Err(status(error)),
        }
    }};
}

impl Auth {
    /// The caller, who must be root (checked again where the change is applied).
    async fn admin(&self, caller: &Caller) -> Result<Identity, Status> {
        let identity = self.handle.identity(caller).await?;
        self.handle.check_admin(&identity).await?;
        Ok(identity)
    }

    /// The hash to store for a new password: the client's own bcrypt hash (etcd 3.5's
    /// `hashedPassword`) or one made here, off the async workers.
    async fn password_hash(password: String, hashed: String) -> Result<String, Status> {
        if !hashed.is_empty() {
            if bcrypt::HashParts::from_str(&hashed).is_err() {
                return Err(Status::invalid_argument("etcdserver: hashedPassword is not a bcrypt hash"));
            }
            return Ok(hashed);
        }
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|_| status(ApiError::Stopped))?
            .map_err(|error| Status::internal(format!("hashing the password: {error}")))
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        self.handle.header(self.handle.reader().revision().unwrap_or(0), self.handle.term())
    }
}

impl Auth {
    /// etcd's AuthEnable.
    pub async fn auth_enable(
        &self,
        caller: &Caller,
        message: pb::AuthEnableRequest,
    ) -> Result<pb::AuthEnableResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let mut forward_key = vec![0u8; 32];
        getrandom::fill(&mut forward_key).map_err(|error| Status::internal(format!("random source: {error}")))?;
        change!(self, caller, message, identity, AuthCommand::Enable { forward_key }, auth_enable, AuthEnableResponse)
    }

    /// etcd's AuthDisable.
    pub async fn auth_disable(
        &self,
        caller: &Caller,
        message: pb::AuthDisableRequest,
    ) -> Result<pb::AuthDisableResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        change!(self, caller, message, identity, AuthCommand::Disable, auth_disable, AuthDisableResponse)
    }

    /// etcd's AuthStatus.
    pub async fn auth_status(
        &self,
        _caller: &Caller,
        _message: pb::AuthStatusRequest,
    ) -> Result<pb::AuthStatusResponse, Status> {
        self.handle.barrier().await?;
        let (enabled, auth_revision) = self.handle.authorize(|auth| auth.status())?;
        Ok(pb::AuthStatusResponse { header: self.header(), enabled, auth_revision })
    }

    /// etcd's Authenticate.
    pub async fn authenticate(
        &self,
        caller: &Caller,
        message: pb::AuthenticateRequest,
    ) -> Result<pb::AuthenticateResponse, Status> {
        let source = caller.source_text();
        let pb::AuthenticateRequest { name, password } = message.clone();
        let tokens = self.handle.tokens().clone();
        let wait = tokens.login_wait(&name, &source);
        if !wait.is_zero() {
            return Err(Status::resource_exhausted(format!(
                "etcdserver: too many failed authentication attempts for this user; retry in {:.1}s",
                wait.as_secs_f64()
            )));
        }
        // A few tries: a change to users or roles between the check and the login's commit
        // makes the login stale, and it is checked again.
        for _ in 0..3 {
            self.handle.barrier().await?;
            let ((enabled, revision), user) = self.handle.authorize(|auth| Ok((auth.status()?, auth.user(&name)?)))?;
            if !enabled {
                return Err(mvcc(ballot_mvcc::Error::AuthNotEnabled));
            }
            let hash = match &user {
                Some(user) if !user.no_password => user.password.clone(),
                _ => dummy_hash(),
            };
            let attempt = password.clone();
            let matches = tokio::task::spawn_blocking(move || password_matches(&attempt, &hash))
                .await
                .map_err(|_| status(ApiError::Stopped))?;
            if !matches || user.as_ref().is_none_or(|user| user.no_password) {
                tokens.login_outcome(&name, &source, false);
                tracing::info!(user = name, source, "authentication failed");
                return Err(mvcc(ballot_mvcc::Error::AuthFailed));
            }
            tokens.login_outcome(&name, &source, true);
            if !tokens.is_simple() {
                let token = tokens.sign(&name, revision).map_err(Status::internal)?;
                return Ok(pb::AuthenticateResponse { header: self.header(), token });
            }
            let (token, hash) = Tokens::new_simple();
            match self.handle.propose(Command::Auth(Tokens::login(&name, hash, revision))).await {
                Ok(answer) => match answer.value.result {
                    Ok(_) => {
                        let header = self.handle.header(answer.revision, answer.term);
                        return Ok(pb::AuthenticateResponse { header, token });
                    }
                    Err(ballot_mvcc::Error::AuthOldRevision) => continue,
                    Err(error) => return Err(mvcc(error)),
                },
                Err(ApiError::NotLeader(leader)) => {
                    let channel = self.handle.leader_channel(caller, leader)?;
                    return Ok(AuthClient::new(channel).authenticate(message).await?.into_inner());
                }
                Err(error) => return Err(status(error)),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Err(mvcc(ballot_mvcc::Error::AuthOldRevision))
    }

    /// etcd's UserAdd.
    pub async fn user_add(
        &self,
        caller: &Caller,
        message: pb::AuthUserAddRequest,
    ) -> Result<pb::AuthUserAddResponse, Status> {
        let identity = self.admin(caller).await?;
        let fields = message.clone();
        if fields.name.is_empty() {
            return Err(mvcc(ballot_mvcc::Error::UserEmpty));
        }
        let no_password = fields.options.is_some_and(|options| options.no_password);
        let password = if no_password {
            String::new()
        } else {
            Self::password_hash(fields.password, fields.hashed_password).await?
        };
        let command = AuthCommand::UserAdd { name: fields.name, password, no_password };
        change!(self, caller, message, identity, command, user_add, AuthUserAddResponse)
    }

    /// etcd's UserGet.
    pub async fn user_get(
        &self,
        caller: &Caller,
        message: pb::AuthUserGetRequest,
    ) -> Result<pb::AuthUserGetResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let name = message.name.clone();
        // A user may look itself up; anyone else needs root.
        if identity.user != name {
            self.handle.check_admin(&identity).await?;
        } else {
            self.handle.barrier().await?;
            self.handle.check_user(&identity)?;
        }
        let user =
            self.handle.authorize(|auth| auth.user(&name))?.ok_or_else(|| mvcc(ballot_mvcc::Error::UserNotFound))?;
        Ok(pb::AuthUserGetResponse { header: self.header(), roles: user.roles })
    }

    /// etcd's UserList.
    pub async fn user_list(
        &self,
        caller: &Caller,
        _message: pb::AuthUserListRequest,
    ) -> Result<pb::AuthUserListResponse, Status> {
        self.admin(caller).await?;
        let users = self.handle.authorize(|auth| auth.user_names())?;
        Ok(pb::AuthUserListResponse { header: self.header(), users })
    }

    /// etcd's UserDelete.
    pub async fn user_delete(
        &self,
        caller: &Caller,
        message: pb::AuthUserDeleteRequest,
    ) -> Result<pb::AuthUserDeleteResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let command = AuthCommand::UserDelete { name: message.name.clone() };
        change!(self, caller, message, identity, command, user_delete, AuthUserDeleteResponse)
    }

    /// etcd's UserChangePassword.
    pub async fn user_change_password(
        &self,
        caller: &Caller,
        message: pb::AuthUserChangePasswordRequest,
    ) -> Result<pb::AuthUserChangePasswordResponse, Status> {
        let identity = self.admin(caller).await?;
        let fields = message.clone();
        let password = Self::password_hash(fields.password, fields.hashed_password).await?;
        let command = AuthCommand::UserChangePassword { name: fields.name, password };
        change!(self, caller, message, identity, command, user_change_password, AuthUserChangePasswordResponse)
    }

    /// etcd's UserGrantRole.
    pub async fn user_grant_role(
        &self,
        caller: &Caller,
        message: pb::AuthUserGrantRoleRequest,
    ) -> Result<pb::AuthUserGrantRoleResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let pb::AuthUserGrantRoleRequest { user, role } = message.clone();
        change!(
            self,
            caller,
            message,
            identity,
            AuthCommand::UserGrantRole { user, role },
            user_grant_role,
            AuthUserGrantRoleResponse
        )
    }

    /// etcd's UserRevokeRole.
    pub async fn user_revoke_role(
        &self,
        caller: &Caller,
        message: pb::AuthUserRevokeRoleRequest,
    ) -> Result<pb::AuthUserRevokeRoleResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let pb::AuthUserRevokeRoleRequest { name, role } = message.clone();
        let command = AuthCommand::UserRevokeRole { user: name, role };
        change!(self, caller, message, identity, command, user_revoke_role, AuthUserRevokeRoleResponse)
    }

    /// etcd's RoleAdd.
    pub async fn role_add(
        &self,
        caller: &Caller,
        message: pb::AuthRoleAddRequest,
    ) -> Result<pb::AuthRoleAddResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let command = AuthCommand::RoleAdd { name: message.name.clone() };
        change!(self, caller, message, identity, command, role_add, AuthRoleAddResponse)
    }

    /// etcd's RoleGet.
    pub async fn role_get(
        &self,
        caller: &Caller,
        message: pb::AuthRoleGetRequest,
    ) -> Result<pb::AuthRoleGetResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let name = message.role.clone();
        self.handle.barrier().await?;
        // A user may look up its own roles; other roles need root.
        let own = self.handle.authorize(|auth| {
            Ok(auth.identify(&identity.user, identity.revision)?.is_none_or(|user| user.roles.contains(&name)))
        })?;
        if !own {
            self.handle.authorize(|auth| auth.check_admin(&identity.user, identity.revision))?;
        }
        let role =
            self.handle.authorize(|auth| auth.role(&name))?.ok_or_else(|| mvcc(ballot_mvcc::Error::RoleNotFound))?;
        let perm = role
            .permissions
            .into_iter()
            .map(|p| authpb::Permission { perm_type: p.kind as i32, key: p.key, range_end: p.range_end })
            .collect();
        Ok(pb::AuthRoleGetResponse { header: self.header(), perm })
    }

    /// etcd's RoleList.
    pub async fn role_list(
        &self,
        caller: &Caller,
        _message: pb::AuthRoleListRequest,
    ) -> Result<pb::AuthRoleListResponse, Status> {
        self.admin(caller).await?;
        let roles = self.handle.authorize(|auth| auth.role_names())?;
        Ok(pb::AuthRoleListResponse { header: self.header(), roles })
    }

    /// etcd's RoleDelete.
    pub async fn role_delete(
        &self,
        caller: &Caller,
        message: pb::AuthRoleDeleteRequest,
    ) -> Result<pb::AuthRoleDeleteResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let command = AuthCommand::RoleDelete { name: message.role.clone() };
        change!(self, caller, message, identity, command, role_delete, AuthRoleDeleteResponse)
    }

    /// etcd's RoleGrantPermission.
    pub async fn role_grant_permission(
        &self,
        caller: &Caller,
        message: pb::AuthRoleGrantPermissionRequest,
    ) -> Result<pb::AuthRoleGrantPermissionResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let fields = message.clone();
        let perm = fields.perm.ok_or_else(|| Status::invalid_argument("etcdserver: permission not given"))?;
        let kind = PermissionKind::from_code(perm.perm_type as u64)
            .ok_or_else(|| Status::invalid_argument("etcdserver: unknown permission type"))?;
        if perm.key.is_empty() {
            return Err(Status::invalid_argument("etcdserver: key is not provided"));
        }
        let permission = Permission { kind, key: perm.key, range_end: perm.range_end };
        let command = AuthCommand::RoleGrantPermission { role: fields.name, permission };
        change!(self, caller, message, identity, command, role_grant_permission, AuthRoleGrantPermissionResponse)
    }

    /// etcd's RoleRevokePermission.
    pub async fn role_revoke_permission(
        &self,
        caller: &Caller,
        message: pb::AuthRoleRevokePermissionRequest,
    ) -> Result<pb::AuthRoleRevokePermissionResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let pb::AuthRoleRevokePermissionRequest { role, key, range_end } = message.clone();
        let command = AuthCommand::RoleRevokePermission { role, key, range_end };
        change!(self, caller, message, identity, command, role_revoke_permission, AuthRoleRevokePermissionResponse)
    }
}
