//! Identity: every RPC carries a JWT bearer token signed with an asymmetric key. The
//! verification keys come from a JWKS file (so a government SSO's keys plug in as they
//! are); claims name the subject, its kind, its department or credit code, and its roles.
//! [`Authenticator`] is the tonic interceptor that turns a token into a [`Principal`] in the
//! request's extensions; [`crate::authz`] decides what that principal may do.
//! For development, [`ensure_dev_keys`] makes an Ed25519 key pair and [`Minter`] signs tokens.
//!
//! [`verify`] checks tokens, [`dev`] makes development keys and tokens, [`peer`] is a
//! service's own identity towards the others.

use crate::error::{Error, Kind as ErrorKind};
use crate::reason::Reason;
use anyhow::{Context as _, bail};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

mod dev;
mod peer;
mod verify;

pub use dev::{DevKeys, Minter, ensure_dev_keys, new_signing_key, read_ed25519_key, write_ed25519_key};
pub use peer::{OnBehalf, PeerIdentity, ServiceIdentity};
pub use verify::{Authenticator, KeyScope, Verifier};

/// Authentication settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// JWKS file with the public keys tokens may be signed with (required).
    pub jwks_file: String,
    /// Expected `iss` claim.
    pub issuer: String,
    /// Expected `aud` claim.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// The longest a token may still be valid, in seconds (`exp` at most this far ahead):
    /// a stolen token minted to last for ever is refused.
    pub max_lifetime_seconds: u64,
    /// Ed25519 PKCS#8 key with which this service signs its own service tokens when it
    /// calls others (empty: it calls no one). Its public key must be in the callees' JWKS.
    pub signing_key_file: String,
    /// How often the JWKS file is read again, in seconds (0: never): a key the SSO adds is
    /// honoured, a key it removes refused, without a restart (a mounted ConfigMap changes
    /// in place).
    pub jwks_reload_seconds: u64,
    /// The service that verifies (set by the runtime, never configured): a service token
    /// must be addressed to it (`aud` = [`service_audience`]), so a token one service
    /// receives cannot be replayed to another.
    #[serde(skip)]
    pub service: String,
}

/// The audience of a service token for `callee`: `<audience>/<callee>`.
pub fn service_audience(audience: &str, callee: &str) -> String {
    format!("{audience}/{callee}")
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwks_file: String::new(),
            issuer: "onething-dev".into(),
            audience: "onething".into(),
            leeway_seconds: 30,
            max_lifetime_seconds: 24 * 3600,
            signing_key_file: String::new(),
            jwks_reload_seconds: 30,
            service: String::new(),
        }
    }
}

/// What kind of subject calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A clerk or officer of a department (claim `dept`, roles).
    Staff,
    /// A natural person applying for themself (claim `id_number`).
    Citizen,
    /// An enterprise applying (claim `credit_code`).
    Enterprise,
    /// One of our services (e.g. the coordinator).
    Service,
    /// A foreign national applying for themself (claim `passport_number`).
    Foreigner,
}

impl SubjectKind {
    /// Citizens, enterprises and foreigners apply; staff and services act on applications.
    pub fn is_applicant(self) -> bool {
        matches!(self, SubjectKind::Citizen | SubjectKind::Enterprise | SubjectKind::Foreigner)
    }
}

/// The claims of an onething token.
#[derive(Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Stable subject id (a user id of the SSO, a service name); no personal data.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Not before, seconds since the epoch (checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Subject kind.
    pub kind: SubjectKind,
    /// Department of staff and services, e.g. `household`, `supervision`, `coordinator`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dept: String,
    /// Roles, e.g. `clerk`, `approver`, `inspector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Citizen ID number of a citizen (real-name authentication). Personal data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_number: String,
    /// Unified social credit code of an enterprise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credit_code: String,
    /// Passport number of a foreign national. Personal data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub passport_number: String,
    /// The applicant a service acts for (token exchange, RFC 8693 style): a service that
    /// asks another on a user's behalf sends its own token with the user here, never the
    /// user's token. Only service tokens may carry it, and only an applicant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// The user named in a service token's `act` claim.
#[derive(Clone, Serialize, Deserialize)]
pub struct Actor {
    /// The user's stable subject id.
    pub sub: String,
    /// Citizen, enterprise or foreigner.
    pub kind: SubjectKind,
    /// Citizen ID number. Personal data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_number: String,
    /// Credit code.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credit_code: String,
    /// Passport number. Personal data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub passport_number: String,
}

/// The authenticated caller of a request.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable subject id.
    pub sub: String,
    /// Kind.
    pub kind: SubjectKind,
    /// Department (staff, service).
    pub dept: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Citizen ID number (citizens). Personal data: masked in `Debug`.
    pub id_number: String,
    /// Credit code (enterprises).
    pub credit_code: String,
    /// Passport number (foreigners). Personal data: masked in `Debug`.
    pub passport_number: String,
    /// The applicant a service acts for (the token's `act` claim), if any.
    pub actor: Option<Box<Principal>>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("sub", &self.sub)
            .field("kind", &self.kind)
            .field("dept", &self.dept)
            .field("roles", &self.roles)
            .field("id_number", &crate::ids::mask_id(&self.id_number))
            .field("credit_code", &self.credit_code)
            .field("passport_number", &crate::ids::mask_id(&self.passport_number))
            .field("actor", &self.actor)
            .finish()
    }
}

impl Principal {
    /// Whether the principal has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the principal is staff of `dept`.
    pub fn is_staff_of(&self, dept: &str) -> bool {
        self.kind == SubjectKind::Staff && self.dept == dept
    }

    /// Whether the principal is our service `name`.
    pub fn is_service(&self, name: &str) -> bool {
        self.kind == SubjectKind::Service && self.sub == name
    }

    /// The applicant this principal is: its kind and identifier (ID number, credit code or
    /// passport number). An applicant is always the pair: a passport number that equals a
    /// citizen's ID number is another person.
    pub fn applicant(&self) -> Option<(onething_proto::common::ApplicantKind, &str)> {
        use onething_proto::common::ApplicantKind as A;
        match self.kind {
            SubjectKind::Citizen if !self.id_number.is_empty() => Some((A::Citizen, &self.id_number)),
            SubjectKind::Enterprise if !self.credit_code.is_empty() => Some((A::Enterprise, &self.credit_code)),
            SubjectKind::Foreigner if !self.passport_number.is_empty() => Some((A::Foreigner, &self.passport_number)),
            _ => None,
        }
    }

    /// A principal with no department, roles, identifiers or actor.
    pub fn bare(sub: &str, kind: SubjectKind) -> Self {
        Self {
            sub: sub.to_string(),
            kind,
            dept: String::new(),
            roles: Vec::new(),
            id_number: String::new(),
            credit_code: String::new(),
            passport_number: String::new(),
            actor: None,
        }
    }

    /// The principal's claims for a token valid `ttl_seconds` from now.
    pub fn into_claims(self, settings: &AuthSettings, ttl_seconds: u64) -> Claims {
        let now = now();
        Claims {
            iss: settings.issuer.clone(),
            aud: settings.audience.clone(),
            sub: self.sub,
            exp: now + ttl_seconds,
            iat: now,
            nbf: None,
            kind: self.kind,
            dept: self.dept,
            roles: self.roles,
            id_number: self.id_number,
            credit_code: self.credit_code,
            passport_number: self.passport_number,
            act: self.actor.map(|a| Actor {
                sub: a.sub,
                kind: a.kind,
                id_number: a.id_number,
                credit_code: a.credit_code,
                passport_number: a.passport_number,
            }),
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clerk() -> Principal {
        Principal {
            sub: "clerk-1".into(),
            kind: SubjectKind::Staff,
            dept: "household".into(),
            roles: vec!["clerk".into()],
            id_number: String::new(),
            credit_code: String::new(),
            passport_number: String::new(),
            actor: None,
        }
    }

    fn setup() -> (Minter, Verifier, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let keys = ensure_dev_keys(dir.path()).unwrap();
        let settings = AuthSettings { jwks_file: keys.jwks.display().to_string(), ..Default::default() };
        let minter = Minter::load(&keys.signing_key, settings.clone()).unwrap();
        (minter, Verifier::load(&settings).unwrap(), dir)
    }

    fn reason(e: Error) -> String {
        e.reason().to_string()
    }

    #[test]
    fn a_token_verified_before_is_recognised_until_it_expires() {
        let (m, v, _d) = setup();
        let token = m.mint(clerk(), 60).unwrap();
        assert!(v.remembered(&token, now()).is_none(), "nothing remembered before the first check");
        assert_eq!(v.verify(&token).unwrap(), clerk());
        assert_eq!(v.remembered(&token, now()), Some(clerk()));
        assert_eq!(v.verify(&token).unwrap(), clerk());
        // Past its expiry and the leeway, a remembered token is checked in full again.
        let later = now() + 60 + v.settings.leeway_seconds + 1;
        assert!(v.remembered(&token, later).is_none());
        // A token that fails is never remembered.
        let stranger = Minter::from_seed([9; 32], AuthSettings::default());
        let forged = stranger.mint(clerk(), 60).unwrap();
        assert!(v.verify(&forged).is_err());
        assert!(v.remembered(&forged, now()).is_none());
    }

    #[test]
    fn a_reloaded_jwks_honours_a_new_key_and_refuses_a_removed_one() {
        let (old, v, _d) = setup();
        let new = Minter::from_seed([7; 32], v.settings.clone());
        let keys_of = |m: &Minter| serde_json::from_str::<serde_json::Value>(&m.jwks()).unwrap()["keys"].clone();
        let set = |ms: &[&Minter]| {
            let keys: Vec<serde_json::Value> =
                ms.iter().flat_map(|m| keys_of(m).as_array().cloned().unwrap_or_default()).collect();
            serde_json::json!({ "keys": keys }).to_string()
        };
        let by_old = old.mint(clerk(), 60).unwrap();
        let by_new = new.mint(clerk(), 60).unwrap();
        assert!(v.verify(&by_old).is_ok());
        assert!(v.verify(&by_new).is_err(), "not in the JWKS yet");
        assert!(!v.reload().unwrap(), "nothing changed");
        std::fs::write(&v.settings.jwks_file, set(&[&old, &new])).unwrap();
        assert!(v.reload().unwrap());
        assert!(v.verify(&by_new).is_ok() && v.verify(&by_old).is_ok(), "both keys during the rotation");
        std::fs::write(&v.settings.jwks_file, set(&[&new])).unwrap();
        assert!(v.reload().unwrap());
        assert!(v.verify(&by_old).is_err(), "a removed key fails, even for a token verified before");
        assert!(v.verify(&by_new).is_ok());
        // A broken file keeps the keys in use.
        std::fs::write(&v.settings.jwks_file, "{ not json").unwrap();
        assert!(v.reload().is_err());
        assert!(v.verify(&by_new).is_ok());
    }

    #[test]
    fn a_service_sends_the_same_token_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ensure_dev_keys(dir.path()).unwrap();
        let settings = AuthSettings {
            jwks_file: keys.jwks.display().to_string(),
            signing_key_file: keys.signing_key.display().to_string(),
            ..Default::default()
        };
        let identity = ServiceIdentity::load("coordinator", &settings).unwrap();
        let first = identity.token("household").unwrap();
        assert_eq!(identity.token("household").unwrap(), first, "reused, not signed again");
        let household = AuthSettings { service: "household".into(), ..settings.clone() };
        let p = Verifier::load(&household).unwrap().verify(&first).unwrap();
        assert_eq!((p.kind, p.sub.as_str()), (SubjectKind::Service, "coordinator"));
        // Addressed to household, it is refused by any other service.
        let vehicle = AuthSettings { service: "vehicle".into(), ..settings };
        let e = Verifier::load(&vehicle).unwrap().verify(&first).unwrap_err();
        assert_eq!(e.reason(), Reason::AuthTokenWrongAudience);
        let to_vehicle = identity.token("vehicle").unwrap();
        assert_ne!(to_vehicle, first, "one token per callee");
        assert!(Verifier::load(&vehicle).unwrap().verify(&to_vehicle).is_ok());
    }

    #[test]
    fn a_minted_token_verifies() {
        let (m, v, _d) = setup();
        let p = v.verify(&m.mint(clerk(), 60).unwrap()).unwrap();
        assert_eq!(p, clerk());
    }

    #[test]
    fn expired_foreign_and_garbage_tokens_are_refused() {
        let (m, v, _d) = setup();
        let mut old = clerk().into_claims(&AuthSettings::default(), 60);
        old.exp = now() - 3600;
        assert_eq!(reason(v.verify(&m.sign(&old).unwrap()).unwrap_err()), Reason::AuthTokenExpired);
        let mut other = clerk().into_claims(&AuthSettings::default(), 60);
        other.iss = "someone-else".into();
        assert_eq!(reason(v.verify(&m.sign(&other).unwrap()).unwrap_err()), Reason::AuthTokenWrongIssuer);
        let (stranger, _, _d2) = setup();
        assert_eq!(reason(v.verify(&stranger.mint(clerk(), 60).unwrap()).unwrap_err()), Reason::AuthTokenInvalid);
        assert_eq!(reason(v.verify("not.a.token").unwrap_err()), Reason::AuthTokenInvalid);
        // A citizen without a valid ID number claim is not a citizen.
        let mut bad = clerk();
        bad.kind = SubjectKind::Citizen;
        assert_eq!(reason(v.verify(&m.mint(bad, 60).unwrap()).unwrap_err()), Reason::AuthTokenInvalid);
    }

    #[test]
    fn symmetric_keys_are_not_accepted() {
        let jwks = r#"{"keys":[{"kty":"oct","alg":"HS256","k":"c2VjcmV0"}]}"#;
        assert!(Verifier::from_jwks(jwks, &AuthSettings::default()).is_err());
    }

    #[test]
    fn principal_debug_masks_the_id_number() {
        let mut p = clerk();
        p.id_number = "11010519491231002X".into();
        assert!(!format!("{p:?}").contains("11010519491231002X"));
    }
}
