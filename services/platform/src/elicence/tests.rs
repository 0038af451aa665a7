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
    assert_eq!(f.trust.refresh(), DEV_ISSUERS.len());
    assert_eq!(verdict(&f, &token), Some(Unverified::Revoked));
    assert_eq!(verdict(&f, &other), None);
    // A list signed by someone else is set aside; the one held stays.
    let path = f.dev.dir.join("dev.wjw-revocations.jws");
    let forged = f.dev.key("dev.scjg").unwrap().revocations(&[], &[], Utc::now().timestamp() + 10).unwrap();
    std::fs::write(&path, forged).unwrap();
    assert_eq!(f.trust.refresh(), DEV_ISSUERS.len() - 1, "all but 卫健's forged list were taken");
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
    // A list signed more than a day ago (by this machine's clock, whatever the business
    // clock says).
    let stale = key.revocations(&[], &[], Utc::now().timestamp() - 86_401).unwrap();
    std::fs::write(f.dev.dir.join("dev.wjw-revocations.jws"), stale).unwrap();
    let trust = Trust::load(f.dev.trust_list.to_str().unwrap()).unwrap();
    assert_eq!(trust.verify(&token, Utc::now()).unwrap().1, Some(Unverified::RevocationUnknown));
    // A business clock moved a day on leaves a fresh list fresh.
    let a_day_later = Utc::now() + chrono::Duration::seconds(86_401);
    assert_eq!(f.trust.verify(&token, a_day_later).unwrap().1, None);
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
    // Its successor, in use from the retirement on, signs the revocation list.
    let path = f.dev.dir.join("successor.pem");
    crate::auth::write_ed25519_key(&path).unwrap();
    let successor = IssuerKey::load("dev.wjw", &path).unwrap();
    std::fs::write(f.dev.dir.join("rotated.jws"), successor.revocations(&[], &[], Utc::now().timestamp()).unwrap())
        .unwrap();
    let list = serde_json::json!({"issuers": [{"id": "dev.wjw", "kinds": ["death_medical_certificate"],
        "keys": [entry, successor.jwk(retired)], "revocations": "rotated.jws"}]});
    let trust = Trust::from_list(serde_json::from_value(list).unwrap(), &f.dev.dir).unwrap();
    let old = key.issue(&Licence { iat: retired - 10, ..death("D1", "x") }).unwrap();
    let new = key.issue(&Licence { iat: retired + 10, ..death("D2", "x") }).unwrap();
    assert_eq!(trust.verify(&successor.issue(&death("D3", "x")).unwrap(), Utc::now()).unwrap().1, None);
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

#[test]
fn a_licence_issued_in_the_future_or_naming_a_field_twice_does_not_pass() {
    let f = fixture();
    let key = f.dev.key("dev.wjw").unwrap();
    let ahead = key.issue(&Licence { iat: Utc::now().timestamp() + 86_400, ..death("D1", "x") }).unwrap();
    assert_eq!(verdict(&f, &ahead), Some(Unverified::NotYetValid));
    let now = Utc::now().timestamp();
    let claims = format!(
        r#"{{"iss":"dev.wjw","jti":"D2","kind":"death_medical_certificate","sub":"x","iat":{now},"nbf":{now},"fields":{{"death_date":"2026-11-30","death_date":"2026-01-01"}}}}"#
    );
    let header = format!(r#"{{"alg":"EdDSA","typ":"{TYP}","kid":"{}"}}"#, key.kid);
    let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    assert!(matches!(f.trust.verify(&token, Utc::now()), Err(Malformed::NotLicence(_))));
}

#[test]
fn a_retired_key_signs_no_revocation_list() {
    let f = fixture();
    let key = f.dev.key("dev.wjw").unwrap();
    let retired = Utc::now().timestamp() - 3600;
    let mut entry = key.jwk(0);
    entry["exp"] = retired.into();
    let list = serde_json::json!({"issuers": [{"id": "dev.wjw", "kinds": ["death_medical_certificate"],
        "keys": [entry], "revocations": "dev.wjw-revocations.jws"}]});
    // The list on file was signed now, after the key's retirement: not taken.
    let trust = Trust::from_list(serde_json::from_value(list).unwrap(), &f.dev.dir).unwrap();
    let old = key.issue(&Licence { iat: retired - 10, ..death("D1", "x") }).unwrap();
    assert_eq!(trust.verify(&old, Utc::now()).unwrap().1, Some(Unverified::RevocationUnknown));
}

#[test]
fn a_revoked_key_cannot_take_itself_back() {
    let f = fixture();
    let key = f.dev.key("dev.wjw").unwrap();
    let token = key.issue(&death("D1", "x")).unwrap();
    f.dev.revoke("dev.wjw", &[], std::slice::from_ref(&key.kid)).unwrap();
    f.trust.refresh();
    assert_eq!(verdict(&f, &token), Some(Unverified::Revoked));
    // The revoked key signs a later list that revokes nothing: set aside.
    let undo = key.revocations(&[], &[], Utc::now().timestamp() + 5).unwrap();
    std::fs::write(f.dev.dir.join("dev.wjw-revocations.jws"), undo).unwrap();
    f.trust.refresh();
    assert_eq!(verdict(&f, &token), Some(Unverified::Revoked));
}

#[test]
fn a_list_dated_ahead_is_set_aside_and_blocks_nothing() {
    let f = fixture();
    let key = f.dev.key("dev.wjw").unwrap();
    let token = key.issue(&death("D1", "x")).unwrap();
    let ahead = key.revocations(&[], &[], Utc::now().timestamp() + 86_400).unwrap();
    let path = f.dev.dir.join("dev.wjw-revocations.jws");
    std::fs::write(&path, ahead).unwrap();
    assert_eq!(f.trust.refresh(), DEV_ISSUERS.len() - 1, "every list but the one dated ahead");
    // The honest list after it is taken.
    f.dev.revoke("dev.wjw", &["D1".into()], &[]).unwrap();
    f.trust.refresh();
    assert_eq!(verdict(&f, &token), Some(Unverified::Revoked));
}

#[test]
fn a_long_revocation_list_is_taken() {
    let f = fixture();
    let numbers: Vec<String> = (0..20_000).map(|n| format!("SW-2026-{n:08}")).collect();
    f.dev.revoke("dev.wjw", &numbers, &[]).unwrap();
    assert!(std::fs::metadata(f.dev.dir.join("dev.wjw-revocations.jws")).unwrap().len() > MAX_ELICENCE_BYTES as u64);
    f.trust.refresh();
    let token = f.dev.key("dev.wjw").unwrap().issue(&death("SW-2026-00012345", "x")).unwrap();
    assert_eq!(verdict(&f, &token), Some(Unverified::Revoked));
    // Revoking more keeps what was revoked.
    f.dev.revoke("dev.wjw", &["D9".into()], &[]).unwrap();
    f.trust.refresh();
    assert_eq!(verdict(&f, &token), Some(Unverified::Revoked));
}

#[test]
fn the_trust_list_is_read_again() {
    let f = fixture();
    let licence = Licence::business("91371000MA3D00001B", "威海示例企业", Utc::now().timestamp());
    let token = f.dev.key("dev.scjg").unwrap().issue(&licence).unwrap();
    let full = std::fs::read_to_string(&f.dev.trust_list).unwrap();
    let mut list: serde_json::Value = serde_json::from_str(&full).unwrap();
    list["issuers"].as_array_mut().unwrap().retain(|i| i["id"] == "dev.wjw");
    std::fs::write(&f.dev.trust_list, list.to_string()).unwrap();
    let trust = Trust::load(f.dev.trust_list.to_str().unwrap()).unwrap();
    assert_eq!(trust.verify(&token, Utc::now()).unwrap().1, Some(Unverified::UnknownIssuer));
    // 市场监管 added to the file: trusted at the next refresh, no restart.
    std::fs::write(&f.dev.trust_list, full).unwrap();
    trust.refresh();
    assert_eq!(trust.verify(&token, Utc::now()).unwrap().1, None);
    // A file that no longer parses is set aside; the list held stays.
    std::fs::write(&f.dev.trust_list, "{").unwrap();
    trust.refresh();
    assert_eq!(trust.verify(&token, Utc::now()).unwrap().1, None);
}

#[test]
fn a_licence_is_debugged_without_its_personal_data() {
    let shown = format!("{:?}", death("D1", "371002199001010015"));
    assert!(!shown.contains("371002199001010015") && !shown.contains("2026-11-30"), "{shown}");
}

/// One fixture for the property tests: a real trust list, so arbitrary input reaches the
/// signature and claims checks.
fn shared() -> &'static Fixture {
    static SHARED: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    SHARED.get_or_init(fixture)
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
    fn no_claims_under_a_trusted_header_make_the_verifier_panic(
        claims in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        json in "\\{(\"(iss|jti|kind|sub|iat|nbf|exp|fields)\":(\"dev.wjw\"|-?[0-9]{1,20}|\\{\\}|\\[\\]|null|\"[a-z_]{0,12}\"),?){0,8}\\}",
        signature in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
    ) {
        let f = shared();
        let key = f.dev.key("dev.wjw").unwrap();
        let header = format!(r#"{{"alg":"EdDSA","typ":"{TYP}","kid":"{}"}}"#, key.kid);
        for payload in [claims.clone(), json.into_bytes()] {
            let token = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(&signature));
            let _ = f.trust.verify(&token, Utc::now());
            // Signed for real: the claims checks run on whatever parsed.
            if let Ok(signed) = key.sign(TYP, &serde_json::from_slice(&payload).unwrap_or_default()) {
                let _ = f.trust.verify(&signed, Utc::now());
            }
        }
    }

    #[test]
    fn no_jws_shaped_input_makes_the_verifier_panic(
        h in "[A-Za-z0-9_-]{0,80}", p in "[A-Za-z0-9_-]{0,200}", s in "[A-Za-z0-9_-]{0,100}"
    ) {
        let _ = Trust::none().verify(&format!("{h}.{p}.{s}"), Utc::now());
    }
}

proptest::proptest! {
    // Each case makes its own issuers (keys and files): fewer cases.
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    #[test]
    fn no_revocation_list_makes_the_refresh_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().unwrap();
        let dev = ensure_dev_issuers(dir.path()).unwrap();
        let trust = Trust::load(dev.trust_list.to_str().unwrap()).unwrap();
        std::fs::write(dev.dir.join("dev.wjw-revocations.jws"), &bytes).unwrap();
        let _ = trust.refresh();
        let key = dev.key("dev.wjw").unwrap();
        let as_claims = key.sign(REVOCATIONS_TYP, &serde_json::from_slice(&bytes).unwrap_or_default()).unwrap();
        std::fs::write(dev.dir.join("dev.wjw-revocations.jws"), as_claims).unwrap();
        let _ = trust.refresh();
    }
}
