//! The client against a server that wants HTTPS and a bearer token to push.

use std::sync::Arc;

use larder_core::{Content, Entry, Key, Output, OutputKind, Store, StoreExt};
use larder_http::HttpStore;
use larder_server::{Access, Server, ServerConfig, TlsFiles};
use rcgen::{CertificateParams, KeyPair};

const TOKEN: &str = "0123456789abcdef0123";

fn entry(key: &Key) -> Entry {
    let mut e = Entry::new(key.as_str(), "test");
    e.outputs.push(Output {
        path: "out.txt".into(),
        kind: OutputKind::File {
            content: Content::inline(b"hello over tls".to_vec()),
            executable: false,
        },
    });
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_private_ca_and_a_bearer_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("server cert");
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");

    let config = ServerConfig::new(
        dir.path().join("cache"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .with_tls(TlsFiles {
        cert: cert_path,
        key: key_path,
        client_ca: None,
    })
    .with_access(Access::open().with_token(TOKEN));
    let server = Server::bind(config).await.expect("bind");
    let base = format!("https://{}/v1", server.local_addr());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let key = Key::new("secure/one").expect("key");
    // Without the CA, the server's certificate is not trusted: an error, not a silent miss.
    let untrusted = HttpStore::new(base.clone()).expect("store");
    assert!(untrusted.put_entry(&key, &entry(&key)).await.is_err());
    // Trusted but without the token: pushing is refused, reading is allowed.
    let anonymous: Arc<dyn Store> = Arc::new(
        HttpStore::builder(base.clone())
            .root_certificates_pem(ca.pem())
            .build()
            .expect("store"),
    );
    assert!(anonymous.put_entry(&key, &entry(&key)).await.is_err());
    assert_eq!(
        anonymous.get_entry(&key).await.expect("anonymous read"),
        None
    );
    // With both, a round trip.
    let pusher = HttpStore::builder(base)
        .root_certificates_pem(ca.pem())
        .bearer_token(TOKEN)
        .build()
        .expect("store");
    assert!(
        !format!("{pusher:?}").contains(TOKEN),
        "the token leaks into Debug"
    );
    let sent = entry(&key);
    pusher.put_entry(&key, &sent).await.expect("put");
    assert_eq!(anonymous.get_entry(&key).await.expect("read"), Some(sent));
}
