//! HTTPS with rustls: server certificates, and client certificates when a client CA is set.

use std::path::Path;

use larder_server::{Server, ServerConfig, TlsFiles};
use rcgen::{CertificateParams, KeyPair};

struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
    client_identity: String,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server cert");
    let client_key = KeyPair::generate().expect("client key");
    let client = CertificateParams::new(vec!["ci-runner".to_string()])
        .expect("client params")
        .signed_by(&client_key, &ca, &ca_key)
        .expect("client cert");
    Pki {
        ca_pem: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_identity: format!("{}{}", client.pem(), client_key.serialize_pem()),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write PEM");
    p
}

async fn start(
    dir: &Path,
    tls: TlsFiles,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config =
        ServerConfig::new(dir.join("cache"), "127.0.0.1:0".parse().expect("addr")).with_tls(tls);
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn client(pki: &Pki, identity: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA"));
    if identity {
        b = b.identity(
            reqwest::Identity::from_pem(pki.client_identity.as_bytes()).expect("identity"),
        );
    }
    b.build().expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn https_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki();
    let tls = TlsFiles {
        cert: write(dir.path(), "server.pem", &pki.server_cert),
        key: write(dir.path(), "server.key", &pki.server_key),
        client_ca: None,
    };
    let (addr, _stop) = start(dir.path(), tls).await;
    let c = client(&pki, false);
    let url = format!("https://{addr}/ccache/{:040x}", 5);
    let put = c.put(&url).body(vec![5u8; 2000]).send().await.expect("PUT");
    assert_eq!(put.status().as_u16(), 201);
    let got = c.get(&url).send().await.expect("GET");
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.bytes().await.expect("body").to_vec(), vec![5u8; 2000]);
    // Plain HTTP on the TLS port gets nowhere.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_ca_makes_client_certificates_mandatory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let tls = TlsFiles {
        cert: write(dir.path(), "server.pem", &pki.server_cert),
        key: write(dir.path(), "server.key", &pki.server_key),
        client_ca: Some(ca),
    };
    let (addr, _stop) = start(dir.path(), tls).await;
    let url = format!("https://{addr}/healthz");
    assert!(
        client(&pki, false).get(&url).send().await.is_err(),
        "a client without a certificate must be refused"
    );
    let ok = client(&pki, true)
        .get(&url)
        .send()
        .await
        .expect("GET with a client cert");
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tls_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki();
    let tls = TlsFiles {
        cert: write(dir.path(), "server.pem", "not a certificate"),
        key: write(dir.path(), "server.key", &pki.server_key),
        client_ca: None,
    };
    let config = ServerConfig::new(
        dir.path().join("cache"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .with_tls(tls);
    let err = Server::bind(config)
        .await
        .expect_err("a bad certificate file");
    let msg = err.to_string();
    assert!(
        msg.contains("server.pem") && msg.contains("no PEM certificate"),
        "{msg}"
    );
}

/// A client that offers `h2` by ALPN gets HTTP/2 on the TLS port (gRPC shares it); one that
/// offers only HTTP/1.1 gets HTTP/1.1.
#[tokio::test(flavor = "multi_thread")]
async fn alpn_chooses_http2_or_http1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki();
    let tls = TlsFiles {
        cert: write(dir.path(), "server.pem", &pki.server_cert),
        key: write(dir.path(), "server.key", &pki.server_key),
        client_ca: None,
    };
    let (addr, stop) = start(dir.path(), tls).await;
    let url = format!("https://{addr}/healthz");
    // reqwest with its http2 feature offers h2 and http/1.1 by ALPN.
    let r = client(&pki, false).get(&url).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA"))
        .build()
        .expect("client");
    let r = h1.get(&url).send().await.expect("GET");
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status().as_u16(), 200);
    let _ = stop.send(());
}
