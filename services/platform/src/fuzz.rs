//! Property tests: whatever arrives from outside — identifiers in requests, NATS headers
//! and payloads, bearer tokens — is refused or accepted, never a panic.

use crate::{
    auth::{AuthSettings, Verifier},
    events::Envelope,
    ids::{CitizenId, CreditCode, Plate, mask_address, mask_id, mask_name, mask_phone},
};
use onething_proto::{common::CaseStateChanged, household::PersonBorn};
use proptest::prelude::*;

/// Strings near the shapes we parse: digits, X, code letters, CJK, multi-byte, controls.
fn near_identifier() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[0-9XxA-Z鲁京一\u{0}\u{1F600} -]{0,24}").expect("regex")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn identifier_parsers_never_panic(s in any::<String>(), t in near_identifier()) {
        for input in [&s, &t] {
            let _ = CitizenId::parse(input);
            let _ = CreditCode::parse(input);
            let _ = Plate::parse(input);
            let _ = crate::ids::Passport::parse(input).map(|p| p.to_string());
            let _ = (mask_id(input), mask_name(input), mask_phone(input), mask_address(input));
        }
    }

    #[test]
    fn a_parsed_id_round_trips(s in "[1-6][0-9]{16}[0-9X]") {
        if let Ok(id) = CitizenId::parse(&s) {
            prop_assert_eq!(CitizenId::parse(id.expose()).ok(), Some(id.clone()));
            prop_assert!(!id.to_string().contains(&s[6..14]), "birth date masked");
        }
    }

    #[test]
    fn the_event_decoder_never_panics(
        headers in proptest::collection::vec((
            prop_oneof![Just("ce-id"), Just("ce-source"), Just("ce-type"), Just("ce-time"), Just("ce-subject"),
                        Just("ce-specversion"), Just("content-type"), Just("traceparent"), Just("x-other")],
            any::<String>()), 0..10),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in &headers {
            // Header values cannot hold line breaks on the wire; NATS would refuse them.
            map.insert(*k, v.replace(['\r', '\n'], "").as_str());
        }
        if let Ok(env) = Envelope::from_nats(Some(&map), payload.clone().into()) {
            let _ = env.decode::<CaseStateChanged>();
            let _ = env.decode::<PersonBorn>();
        }
        let forced = Envelope {
            id: "x".into(), source: "s".into(), ce_type: "onething.common.v1.CaseStateChanged".into(),
            subject: String::new(), time: chrono::Utc::now(), traceparent: None, data: payload.into(),
        };
        let _ = forced.decode::<CaseStateChanged>();
    }

    #[test]
    fn the_token_verifier_never_panics(token in any::<String>(), parts in proptest::collection::vec("[A-Za-z0-9_-]{0,40}", 0..5)) {
        let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let v = Verifier::from_jwks(jwks, &AuthSettings::default()).expect("verifier");
        prop_assert!(v.verify(&token).is_err());
        prop_assert!(v.verify(&parts.join(".")).is_err());
    }
}
