//! The verifier against licences an issuer made, forged, out of its kinds, out of time,
//! revoked, and arbitrary bytes.

use super::*;
use chrono::{TimeZone as _, Utc};

struct Fixture {
    _dir: tempfile::TempDir,
    dev: DevIssuers,
    trust: Trust,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let dev = ensure_dev_issuers(dir.path()).unwrap();
    let trust = Trust::load(dev.trust_list.to_str().unwrap()).unwrap();
    Fixture { _dir: dir, dev, trust }
}

fn death(number: &str, subject: &str) -> Licence {
    Licence {
        jti: number.into(),
        kind: "death_medical_certificate".into(),
        sub: subject.into(),
        iat: Utc::now().timestamp() - 60,
        nbf: Utc::now().timestamp() - 60,
        fields: [("death_date".to_string(), "2026-11-30".to_string())].into(),
        ..Default::default()
    }
}

fn verdict(f: &Fixture, token: &str) -> Option<Unverified> {
    f.trust.verify(token, Utc::now()).unwrap().1
}

#[test]
fn an_issued_licence_verifies_with_its_claims() {
    let f = fixture();
    let token = f.dev.key("dev.wjw").unwrap().issue(&death("D1", "371002199001010015")).unwrap();
    let (licence, why) = f.trust.verify(&token, Utc::now()).unwrap();
    assert_eq!(why, None);
    assert_eq!((licence.iss.as_str(), licence.sub.as_str()), ("dev.wjw", "371002199001010015"));
    assert_eq!(licence.value("fields.death_date"), Some("2026-11-30"));
    assert_eq!(licence.value("jti"), Some("D1"));
    assert_eq!(licence.value("fields.absent"), None);
}

#[test]
fn a_forged_licence_does_not_verify() {
    let f = fixture();
    let token = f.dev.key("dev.wjw").unwrap().issue(&death("D1", "371002199001010015")).unwrap();
    // The claims changed after signing (another subject).
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let other = death("D1", "371002199001010023");
    let claims = serde_json::to_vec(&Licence { iss: "dev.wjw".into(), ..other }).unwrap();
    parts[1] = URL_SAFE_NO_PAD.encode(claims);
    assert_eq!(verdict(&f, &parts.join(".")), Some(Unverified::BadSignature));
    // Signed by a key of its own, claiming the trusted issuer's kid.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forger.pem");
    crate::auth::write_ed25519_key(&path).unwrap();
    let mut forger = IssuerKey::load("dev.wjw", &path).unwrap();
    forger.kid = f.dev.key("dev.wjw").unwrap().kid;
    assert_eq!(verdict(&f, &forger.issue(&death("D2", "x")).unwrap()), Some(Unverified::BadSignature));
    // An issuer the trust list does not name.
    let stranger = IssuerKey::load("elsewhere", &path).unwrap();
    assert_eq!(verdict(&f, &stranger.issue(&death("D3", "x")).unwrap()), Some(Unverified::UnknownIssuer));
}

#[test]
fn an_issuer_signs_only_its_kinds() {
    let f = fixture();
    let licence = Licence { kind: "death_medical_certificate".into(), ..death("D1", "x") };
    let token = f.dev.key("dev.scjg").unwrap().issue(&licence).unwrap();
    assert_eq!(verdict(&f, &token), Some(Unverified::KindNotAllowed));
}

#[test]
fn validity_is_checked_at_the_time_of_use() {
    let f = fixture();
    let key = f.dev.key("dev.wjw").unwrap();
    let now = Utc::now().timestamp();
    let expired = key.issue(&Licence { exp: Some(now - 1), ..death("D1", "x") }).unwrap();
    assert_eq!(verdict(&f, &expired), Some(Unverified::Expired));
    let later = key.issue(&Licence { nbf: now + 3600, ..death("D2", "x") }).unwrap();
    assert_eq!(verdict(&f, &later), Some(Unverified::NotYetValid));
}

#[test]
fn revocations_are_taken_when_refreshed_and_only_when_signed() {
    let f = fixture();
    let key = f.dev.key("dev.wjw").unwrap();
    let token = key.issue(&death("D-REVOKED", "x")).unwrap();
    let other = key.issue(&death("D-FINE", "x")).unwrap();
    assert_eq!(verdict(&f, &token), None);
    f.dev.revoke("dev.wjw", &["D-REVOKED".into()], &[]).unwrap();
    assert_eq!(verdict(&f, &token), None, "until the list is read again");
    assert_eq!(f.trust.refresh(), 2);
    assert_eq!(verdict(&f, &token), Some(Unverified::Revoked));
    assert_eq!(verdict(&f, &other), None);
    // A list signed by someone else is set aside; the one held stays.
    let path = f.dev.dir.join("dev.wjw-revocations.jws");
    let forged = f.dev.key("dev.scjg").unwrap().revocations(&[], &[], Utc::now().timestamp() + 10).unwrap();
    std::fs::write(&path, forged).unwrap();
    assert_eq!(f.trust.refresh(), 1, "only 市场监管's list was taken");
    assert_eq!(verdict(&f, &token), Some(Unverified::Revoked));
    // A revoked key: nothing it signed verifies.
    f.dev.revoke("dev.wjw", &[], std::slice::from_ref(&key.kid)).unwrap();
    f.trust.refresh();
    assert_eq!(verdict(&f, &other), Some(Unverified::Revoked));
}

#[test]
fn an_old_or_missing_revocation_list_leaves_licences_unverified() {
    let f = fixture();
    let key = f.dev.key("dev.wjw").unwrap();
    let token = key.issue(&death("D1", "x")).unwrap();
    let a_day_later = Utc::now() + chrono::Duration::seconds(86_401);
    let (_, why) = f.trust.verify(&token, a_day_later).unwrap();
    assert_eq!(why, Some(Unverified::RevocationUnknown));
    let list = serde_json::json!({"issuers": [{"id": "dev.wjw", "kinds": ["death_medical_certificate"],
        "keys": [key.jwk(0)], "revocations": "nowhere.jws"}]});
    let trust = Trust::from_list(serde_json::from_value(list).unwrap(), &f.dev.dir).unwrap();
    assert_eq!(trust.verify(&token, Utc::now()).unwrap().1, Some(Unverified::RevocationUnknown));
}

#[test]
fn a_rotated_key_keeps_its_old_licences_and_signs_no_new_ones() {
    let f = fixture();
    let key = f.dev.key("dev.wjw").unwrap();
    let retired = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap().timestamp();
    let mut entry = key.jwk(0);
    entry["exp"] = retired.into();
    let list = serde_json::json!({"issuers": [{"id": "dev.wjw", "kinds": ["death_medical_certificate"],
        "keys": [entry], "revocations": "dev.wjw-revocations.jws"}]});
    let trust = Trust::from_list(serde_json::from_value(list).unwrap(), &f.dev.dir).unwrap();
    let old = key.issue(&Licence { iat: retired - 10, ..death("D1", "x") }).unwrap();
    let new = key.issue(&Licence { iat: retired + 10, ..death("D2", "x") }).unwrap();
    assert_eq!(trust.verify(&old, Utc::now()).unwrap().1, None);
    assert_eq!(trust.verify(&new, Utc::now()).unwrap().1, Some(Unverified::UnknownKey));
}

#[test]
fn what_is_not_a_licence_is_malformed() {
    let f = fixture();
    for bad in ["", "a.b", "a.b.c.d", "!!.??.**", "eyJhbGciOiJFZERTQSJ9.e30.AA"] {
        assert!(f.trust.verify(bad, Utc::now()).is_err(), "{bad}");
    }
    assert_eq!(parse(&"a".repeat(MAX_ELICENCE_BYTES + 1)).unwrap_err(), Malformed::TooLong);
    // A revocation list is no licence.
    let list = f.dev.key("dev.wjw").unwrap().revocations(&[], &[], 0).unwrap();
    assert!(matches!(parse(&list), Err(Malformed::NotLicence(_))));
}

proptest::proptest! {
    #[test]
    fn no_input_makes_the_verifier_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text);
        let trust = Trust::none();
        let _ = trust.verify(&text, Utc::now());
    }

    #[test]
    fn no_jws_shaped_input_makes_the_verifier_panic(
        h in "[A-Za-z0-9_-]{0,80}", p in "[A-Za-z0-9_-]{0,200}", s in "[A-Za-z0-9_-]{0,100}"
    ) {
        let _ = Trust::none().verify(&format!("{h}.{p}.{s}"), Utc::now());
    }
}
