//! mTLS between services: with a client CA configured, a client without a certificate
//! cannot talk to the service; with one signed by that CA it can. Certificates are made here.

use crate::common::*;
use onething_platform::config::TlsSettings;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn leaf(names: &[&str], usage: ExtendedKeyUsagePurpose, issuer: &Issuer<'_, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![usage];
    (params.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
}

fn authority() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn pki() -> Pki {
    let (ca, issuer) = authority();
    let (_, other_issuer) = authority();
    Pki {
        ca,
        server: leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth, &issuer),
        client: leaf(&["coordinator"], ExtendedKeyUsagePurpose::ClientAuth, &issuer),
        stranger: leaf(&["intruder"], ExtendedKeyUsagePurpose::ClientAuth, &other_issuer),
    }
}

async fn health(
    addr: std::net::SocketAddr,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<ServingStatus, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(status.into_inner().status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_needs_a_certificate_from_the_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let nats = NatsServer::start().await;
    let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let mut settings = test_settings(&db.url, &nats.url());
    settings.tls = TlsSettings {
        cert_file: write("server.pem", &pki.server.0),
        key_file: write("server.key", &pki.server.1),
        client_ca_file: write("ca.pem", &pki.ca),
        ..Default::default()
    };
    let household = start_household_with(settings).await;

    assert!(health(household.addr, &pki.ca, None).await.is_err(), "no client certificate, no service");
    assert!(
        health(household.addr, &pki.ca, Some(&pki.stranger)).await.is_err(),
        "a certificate of another CA is refused"
    );
    assert_eq!(health(household.addr, &pki.ca, Some(&pki.client)).await.unwrap(), ServingStatus::Serving);
    // A plain-text client gets nothing either.
    let plain = tonic::transport::Channel::from_shared(household.endpoint()).unwrap().connect().await;
    if let Ok(ch) = plain {
        assert!(HealthClient::new(ch).check(HealthCheckRequest { service: String::new() }).await.is_err());
    }
    household.stop().await;
}
