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
use tonic::{Request, Response, Status};

use super::{forwarded, status, Handle};
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

/// Proposes an auth change for `$identity`; on a follower, forwards the request to the leader.
macro_rules! change {
    ($self:ident, $request:ident, $identity:expr, $command:expr, $method:ident, $response:ident) => {{
        match $self.handle.propose_as(&$identity, Command::Auth($command)).await {
            Ok(answer) => {
                answer.value.result.map_err(mvcc)?;
                Ok(Response::new(pb::$response { header: $self.handle.header(answer.revision, answer.term) }))
            }
            Err(ApiError::NotLeader(leader)) => {
                let channel = $self.handle.leader_channel(&$request, leader)?;
                AuthClient::new(channel).$method(forwarded($request)).await
            }
            Err(error) => Err(status(error)),
        }
    }};
}

impl Auth {
    /// The caller, who must be root (checked again where the change is applied).
    async fn admin<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        let identity = self.handle.identity(request).await?;
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

/// Where a request came from, for the login limit.
fn source<T>(request: &Request<T>) -> String {
    let info = request.extensions().get::<crate::listener::ClientConnInfo>();
    info.and_then(|info| info.remote).map(|address| address.ip().to_string()).unwrap_or_default()
}

#[tonic::async_trait]
impl pb::auth_server::Auth for Auth {
    async fn auth_enable(
        &self,
        request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let mut forward_key = vec![0u8; 32];
        getrandom::fill(&mut forward_key).map_err(|error| Status::internal(format!("random source: {error}")))?;
        change!(self, request, identity, AuthCommand::Enable { forward_key }, auth_enable, AuthEnableResponse)
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        change!(self, request, identity, AuthCommand::Disable, auth_disable, AuthDisableResponse)
    }

    async fn auth_status(
        &self,
        _request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        self.handle.barrier().await?;
        let (enabled, auth_revision) = self.handle.authorize(|auth| auth.status())?;
        Ok(Response::new(pb::AuthStatusResponse { header: self.header(), enabled, auth_revision }))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let source = source(&request);
        let pb::AuthenticateRequest { name, password } = request.get_ref().clone();
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
                return Ok(Response::new(pb::AuthenticateResponse { header: self.header(), token }));
            }
            let (token, hash) = Tokens::new_simple();
            match self.handle.propose(Command::Auth(Tokens::login(&name, hash, revision))).await {
                Ok(answer) => match answer.value.result {
                    Ok(_) => {
                        let header = self.handle.header(answer.revision, answer.term);
                        return Ok(Response::new(pb::AuthenticateResponse { header, token }));
                    }
                    Err(ballot_mvcc::Error::AuthOldRevision) => continue,
                    Err(error) => return Err(mvcc(error)),
                },
                Err(ApiError::NotLeader(leader)) => {
                    let channel = self.handle.leader_channel(&request, leader)?;
                    return AuthClient::new(channel).authenticate(forwarded(request)).await;
                }
                Err(error) => return Err(status(error)),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Err(mvcc(ballot_mvcc::Error::AuthOldRevision))
    }

    async fn user_add(
        &self,
        request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let identity = self.admin(&request).await?;
        let message = request.get_ref().clone();
        if message.name.is_empty() {
            return Err(mvcc(ballot_mvcc::Error::UserEmpty));
        }
        let no_password = message.options.is_some_and(|options| options.no_password);
        let password = if no_password {
            String::new()
        } else {
            Self::password_hash(message.password, message.hashed_password).await?
        };
        let command = AuthCommand::UserAdd { name: message.name, password, no_password };
        change!(self, request, identity, command, user_add, AuthUserAddResponse)
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let name = request.get_ref().name.clone();
        // A user may look itself up; anyone else needs root.
        if identity.user != name {
            self.handle.check_admin(&identity).await?;
        } else {
            self.handle.barrier().await?;
            self.handle.check_user(&identity)?;
        }
        let user =
            self.handle.authorize(|auth| auth.user(&name))?.ok_or_else(|| mvcc(ballot_mvcc::Error::UserNotFound))?;
        Ok(Response::new(pb::AuthUserGetResponse { header: self.header(), roles: user.roles }))
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        self.admin(&request).await?;
        let users = self.handle.authorize(|auth| auth.user_names())?;
        Ok(Response::new(pb::AuthUserListResponse { header: self.header(), users }))
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let command = AuthCommand::UserDelete { name: request.get_ref().name.clone() };
        change!(self, request, identity, command, user_delete, AuthUserDeleteResponse)
    }

    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let identity = self.admin(&request).await?;
        let message = request.get_ref().clone();
        let password = Self::password_hash(message.password, message.hashed_password).await?;
        let command = AuthCommand::UserChangePassword { name: message.name, password };
        change!(self, request, identity, command, user_change_password, AuthUserChangePasswordResponse)
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let pb::AuthUserGrantRoleRequest { user, role } = request.get_ref().clone();
        change!(
            self,
            request,
            identity,
            AuthCommand::UserGrantRole { user, role },
            user_grant_role,
            AuthUserGrantRoleResponse
        )
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let pb::AuthUserRevokeRoleRequest { name, role } = request.get_ref().clone();
        let command = AuthCommand::UserRevokeRole { user: name, role };
        change!(self, request, identity, command, user_revoke_role, AuthUserRevokeRoleResponse)
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let command = AuthCommand::RoleAdd { name: request.get_ref().name.clone() };
        change!(self, request, identity, command, role_add, AuthRoleAddResponse)
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let name = request.get_ref().role.clone();
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
        Ok(Response::new(pb::AuthRoleGetResponse { header: self.header(), perm }))
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        self.admin(&request).await?;
        let roles = self.handle.authorize(|auth| auth.role_names())?;
        Ok(Response::new(pb::AuthRoleListResponse { header: self.header(), roles }))
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let command = AuthCommand::RoleDelete { name: request.get_ref().role.clone() };
        change!(self, request, identity, command, role_delete, AuthRoleDeleteResponse)
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let message = request.get_ref().clone();
        let perm = message.perm.ok_or_else(|| Status::invalid_argument("etcdserver: permission not given"))?;
        let kind = PermissionKind::from_code(perm.perm_type as u64)
            .ok_or_else(|| Status::invalid_argument("etcdserver: unknown permission type"))?;
        if perm.key.is_empty() {
            return Err(Status::invalid_argument("etcdserver: key is not provided"));
        }
        let permission = Permission { kind, key: perm.key, range_end: perm.range_end };
        let command = AuthCommand::RoleGrantPermission { role: message.name, permission };
        change!(self, request, identity, command, role_grant_permission, AuthRoleGrantPermissionResponse)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        let pb::AuthRoleRevokePermissionRequest { role, key, range_end } = request.get_ref().clone();
        let command = AuthCommand::RoleRevokePermission { role, key, range_end };
        change!(self, request, identity, command, role_revoke_permission, AuthRoleRevokePermissionResponse)
    }
}
