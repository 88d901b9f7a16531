//! TLS on real processes: clients and peers over mutual TLS with a throwaway CA made here
//! (no private key is ever committed), a client with a certificate from another CA refused, a
//! plain-text client told clearly that the port needs TLS, and a rotated certificate picked up
//! without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ballot_proto::authpb;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::auth_client::AuthClient;
use ballot_proto::etcdserverpb::kv_client::KvClient;
use common::{get, put, Cluster};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

/// A CA: its certificate and key.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca { cert: params.self_signed(&key).unwrap(), key }
    }

    /// A certificate for 127.0.0.1 and localhost with common name `name`: (cert PEM, key PEM).
    fn issue(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

fn client_tls(ca: &Ca, identity: Option<&(String, String)>) -> ClientTlsConfig {
    let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.cert.pem()));
    match identity {
        Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
        None => config,
    }
}

/// The first error of a range against `endpoint`, as text (connecting or calling).
async fn refusal(endpoint: tonic::transport::Endpoint) -> String {
    match endpoint.connect().await {
        Err(error) => format!("{error:?}"),
        Ok(channel) => match KvClient::new(channel).range(get("k")).await {
            Ok(_) => "accepted".to_string(),
            Err(status) => format!("{status:?}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_for_clients_and_peers_refuses_strangers_and_reloads_certificates() {
    let dir = std::env::temp_dir().join(format!("ballot-tls-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("ballot test CA");
    let (server_cert, server_key) = ca.issue("member");
    let cert = write(&dir, "server.pem", &server_cert);
    let key = write(&dir, "server-key.pem", &server_key);
    let ca_file = write(&dir, "ca.pem", &ca.cert.pem());
    let paths = [&cert, &key, &ca_file].map(|path| path.to_str().unwrap().to_string());
    let flags = [
        "--cert-file",
        &paths[0],
        "--key-file",
        &paths[1],
        "--trusted-ca-file",
        &paths[2],
        "--client-cert-auth",
        "--peer-cert-file",
        &paths[0],
        "--peer-key-file",
        &paths[1],
        "--peer-trusted-ca-file",
        &paths[2],
        "--peer-client-cert-auth",
    ];
    let client = ca.issue("alice");
    let mut cluster = Cluster::prepare("tls", 3, &flags);
    cluster.use_tls(client_tls(&ca, Some(&client)));
    for i in 0..3 {
        cluster.spawn(i);
    }
    // The members elect a leader over mutual TLS, and a write through a follower is forwarded
    // to the leader over TLS too.
    let leader = cluster.leader(Duration::from_secs(15)).await;
    let follower = (leader + 1) % 3;
    let mut kv = KvClient::new(cluster.channel(follower).await);
    kv.put(put("k", "v")).await.unwrap();
    let got = KvClient::new(cluster.channel(leader).await).range(get("k")).await.unwrap().into_inner();
    assert_eq!(got.kvs[0].value, b"v");

    // The client certificate's common name is the user (`--client-cert-auth`, no token): alice
    // may read `k`; a write through a follower reaches the leader as alice, not as the member
    // that forwarded it.
    let mut auth = AuthClient::new(cluster.channel(leader).await);
    let user = |name: &str, password: &str, no_password: bool| pb::AuthUserAddRequest {
        name: name.into(),
        password: password.into(),
        options: Some(authpb::UserAddOptions { no_password }),
        ..Default::default()
    };
    auth.user_add(user("root", "rootpw", false)).await.unwrap();
    auth.user_grant_role(pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.unwrap();
    auth.user_add(user("alice", "", true)).await.unwrap();
    auth.role_add(pb::AuthRoleAddRequest { name: "k".into() }).await.unwrap();
    let grant = |perm_type| pb::AuthRoleGrantPermissionRequest {
        name: "k".into(),
        perm: Some(authpb::Permission { perm_type, key: b"k".to_vec(), range_end: vec![] }),
    };
    auth.role_grant_permission(grant(0)).await.unwrap();
    auth.user_grant_role(pb::AuthUserGrantRoleRequest { user: "alice".into(), role: "k".into() }).await.unwrap();
    auth.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
    assert_eq!(kv.range(get("k")).await.unwrap().into_inner().kvs[0].value, b"v");
    let denied = kv.put(put("k", "w")).await.unwrap_err();
    assert_eq!((denied.code(), denied.message()), (Code::PermissionDenied, "etcdserver: permission denied"));
    let login = pb::AuthenticateRequest { name: "root".into(), password: "rootpw".into() };
    let root = auth.authenticate(login).await.unwrap().into_inner().token;
    let mut as_root = tonic::Request::new(grant(2));
    as_root.metadata_mut().insert("token", root.parse().unwrap());
    auth.role_grant_permission(as_root).await.unwrap();
    kv.put(put("k", "w")).await.unwrap();
    // A client cannot pass itself off as forwarded by a member.
    let mut forged = tonic::Request::new(get("k"));
    forged.metadata_mut().insert("ballot-forwarded-identity", "root".parse().unwrap());
    assert_eq!(kv.range(forged).await.unwrap_err().code(), Code::Unauthenticated);
    // The grant made root's token old (any change does): log in again to turn auth off.
    let login = pb::AuthenticateRequest { name: "root".into(), password: "rootpw".into() };
    let root = auth.authenticate(login).await.unwrap().into_inner().token;
    let mut off = tonic::Request::new(pb::AuthDisableRequest {});
    off.metadata_mut().insert("token", root.parse().unwrap());
    auth.auth_disable(off).await.unwrap();

    let url = cluster.client_url(follower).to_string();
    let endpoint = || Channel::from_shared(url.clone()).unwrap().connect_timeout(Duration::from_secs(2));
    // A client certificate from another CA is refused in the handshake.
    let stranger = Ca::new("another CA");
    let foreign = stranger.issue("mallory");
    let refused = refusal(endpoint().tls_config(client_tls(&ca, Some(&foreign))).unwrap()).await;
    assert_ne!(refused, "accepted");
    // So is a client without a certificate.
    assert_ne!(refusal(endpoint().tls_config(client_tls(&ca, None)).unwrap()).await, "accepted");
    // A client that does not trust the member's CA refuses the member.
    let distrust = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(stranger.cert.pem()));
    assert_ne!(
        refusal(endpoint().tls_config(distrust.identity(Identity::from_pem(&client.0, &client.1))).unwrap()).await,
        "accepted"
    );
    // A plain-text client is told what is wrong.
    let plain = refusal(Channel::from_shared(url.replace("https://", "http://")).unwrap()).await;
    assert!(plain.contains("requires TLS"), "{plain}");
    let http1 = std::process::Command::new("curl").args(["-s", &url.replace("https://", "http://")]).output();
    if let Ok(output) = http1 {
        if output.status.success() {
            assert!(String::from_utf8_lossy(&output.stdout).contains("requires TLS"));
        }
    }

    // Rotation: new files from another CA in place; after the reload, clients that trust only
    // the new CA get in, without a restart.
    let next = Ca::new("next CA");
    let (next_cert, next_key) = next.issue("member");
    // Both CAs are trusted during the rotation, so members and old clients keep working.
    std::fs::write(&ca_file, format!("{}{}", ca.cert.pem(), next.cert.pem())).unwrap();
    std::fs::write(&key, &next_key).unwrap();
    std::fs::write(&cert, &next_cert).unwrap();
    let next_client = next.issue("bob");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let config = client_tls(&next, Some(&next_client));
        if refusal(endpoint().tls_config(config).unwrap()).await == "accepted" {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The members still talk to each other (new connections use the new files).
    cluster.kill(leader);
    cluster.spawn(leader);
    let config = client_tls(&next, Some(&next_client));
    let channel = Channel::from_shared(cluster.client_url(follower).to_string())
        .unwrap()
        .tls_config(config)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while KvClient::new(channel.clone()).put(put("k", "after")).await.is_err() {
        assert!(Instant::now() < deadline, "no write after the rotation and a restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
