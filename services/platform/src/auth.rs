//! Identity: every RPC carries a JWT bearer token signed with an asymmetric key. The
//! verification keys come from a JWKS file (so a government SSO's keys plug in as they
//! are); claims name the subject, its kind, its department or credit code, and its roles.
//! [`Authenticator`] is the tonic interceptor that turns a token into a [`Principal`] in the
//! request's extensions; [`crate::authz`] decides what that principal may do.
//! For development, [`ensure_dev_keys`] makes an Ed25519 key pair and [`Minter`] signs tokens.

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

/// What a key may sign: the JWK member `signs`, e.g.
/// `{"iss": "https://sso.example", "kinds": ["staff", "citizen"], "depts": ["household"]}` for
/// an SSO key, `{"services": ["coordinator"]}` for a service's key. A key without it signs
/// people (staff, citizens, enterprises, foreigners) and never a service, so an SSO's JWKS
/// works as published and still cannot mint a service; a service's key signs only that
/// service. `"services": ["*"]` (any service) is for development keys.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyScope {
    /// The issuer of this key's tokens (default: `auth.issuer`).
    #[serde(default)]
    pub iss: Option<String>,
    /// The kinds of people it signs (default: all, when `services` is empty; none otherwise).
    #[serde(default)]
    pub kinds: Option<Vec<SubjectKind>>,
    /// When given, the only departments its staff tokens may name.
    #[serde(default)]
    pub depts: Option<Vec<String>>,
    /// The services it signs (`sub` = `dept` = the name); `*` for any.
    #[serde(default)]
    pub services: Vec<String>,
}

impl KeyScope {
    /// Whether a token with `claims` is within this scope.
    fn allows(&self, c: &Claims) -> bool {
        if c.kind == SubjectKind::Service {
            return c.sub == c.dept && self.services.iter().any(|s| s == "*" || *s == c.sub);
        }
        let people = [SubjectKind::Staff, SubjectKind::Citizen, SubjectKind::Enterprise, SubjectKind::Foreigner];
        let kinds: &[SubjectKind] = match &self.kinds {
            Some(k) => k,
            None if self.services.is_empty() => &people,
            None => &[],
        };
        kinds.contains(&c.kind)
            && (c.kind != SubjectKind::Staff || self.depts.as_ref().is_none_or(|d| d.contains(&c.dept)))
    }
}

/// One verification key.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    alg: Algorithm,
    scope: KeyScope,
}

/// Verification keys.
type Keys = Vec<Key>;

/// Verifies tokens against a set of public keys.
pub struct Verifier {
    /// The keys and the JWKS text they came from; replaced whole by [`Verifier::reload`].
    keys: std::sync::RwLock<(Arc<Keys>, String)>,
    /// Bumped by every reload, under the `verified` lock: a check that began with the keys
    /// before a reload must not remember its token after the reload emptied the memory.
    generation: std::sync::atomic::AtomicU64,
    settings: AuthSettings,
    /// Tokens verified before, with their principal and expiry: a caller sending the same
    /// token again (a service's own token, reused for a minute) is not checked again until
    /// it expires. Emptied when full.
    verified: std::sync::Mutex<std::collections::HashMap<String, (Principal, u64)>>,
}

/// How many verified tokens a [`Verifier`] remembers.
const VERIFIED_CAPACITY: usize = 4096;

impl Verifier {
    /// Whether the token is addressed to this verifier: a person's to the mesh's audience,
    /// a service's to this service alone (to the mesh's audience only where the verifier
    /// serves no service, as in tools).
    fn addressed_here(&self, c: &Claims) -> bool {
        match (c.kind, self.settings.service.as_str()) {
            (SubjectKind::Service, "") => c.aud == self.settings.audience,
            (SubjectKind::Service, me) => c.aud == service_audience(&self.settings.audience, me),
            _ => c.aud == self.settings.audience,
        }
    }

    /// Loads the JWKS file named in `settings`.
    ///
    /// # Errors
    /// No file configured (authentication cannot be switched off), an unreadable file,
    /// or a JWKS without a usable signing key.
    pub fn load(settings: &AuthSettings) -> anyhow::Result<Self> {
        if settings.jwks_file.is_empty() {
            bail!("auth.jwks_file is required: every RPC is authenticated (onething dev makes development keys)");
        }
        let text = std::fs::read_to_string(&settings.jwks_file)
            .with_context(|| format!("reading JWKS {}", settings.jwks_file))?;
        Self::from_jwks(&text, settings)
    }

    /// Builds a verifier from JWKS text.
    ///
    /// # Errors
    /// Malformed JSON or no usable key.
    pub fn from_jwks(jwks: &str, settings: &AuthSettings) -> anyhow::Result<Self> {
        let keys = parse_jwks(jwks)?;
        Ok(Self {
            keys: std::sync::RwLock::new((Arc::new(keys), jwks.to_string())),
            generation: Default::default(),
            settings: settings.clone(),
            verified: Default::default(),
        })
    }

    /// Reads the JWKS file again and, when it changed, verifies with its keys from now on
    /// and forgets every token verified before (one signed by a removed key must fail).
    /// Returns whether the keys changed.
    ///
    /// # Errors
    /// An unreadable file or a JWKS without a usable key: the keys in use stay.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let text = std::fs::read_to_string(&self.settings.jwks_file)
            .with_context(|| format!("reading JWKS {}", self.settings.jwks_file))?;
        if self.keys.read().is_ok_and(|k| k.1 == text) {
            return Ok(false);
        }
        let keys = parse_jwks(&text)?;
        if let Ok(mut slot) = self.keys.write() {
            *slot = (Arc::new(keys), text);
        }
        if let Ok(mut verified) = self.verified.lock() {
            self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            verified.clear();
        }
        Ok(true)
    }

    fn current_keys(&self) -> Arc<Keys> {
        self.keys.read().map(|k| k.0.clone()).unwrap_or_default()
    }
}

/// The usable asymmetric keys of a JWKS, each with its scope.
///
/// # Errors
/// Malformed JSON, a `signs` member that is not a [`KeyScope`], or no usable key.
fn parse_jwks(jwks: &str) -> anyhow::Result<Keys> {
    let set: JwkSet = serde_json::from_str(jwks).context("parsing JWKS")?;
    let raw: serde_json::Value = serde_json::from_str(jwks).context("parsing JWKS")?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(a), _) => a.to_string().parse::<Algorithm>().ok(),
            (None, jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_)) => Some(Algorithm::EdDSA),
            (None, jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_)) => Some(Algorithm::ES256),
            (None, jsonwebtoken::jwk::AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
            _ => None,
        };
        // Symmetric keys are refused: the verifier must never be able to mint.
        let Some(alg) = alg.filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) else {
            continue;
        };
        // A malformed scope is an error, not "no scope": that would widen the key.
        let scope = match raw["keys"][i].get("signs") {
            Some(v) => serde_json::from_value(v.clone())
                .with_context(|| format!("key {:?}: `signs` is not a key scope", jwk.common.key_id))?,
            None => KeyScope::default(),
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.push(Key { kid: jwk.common.key_id.clone(), key, alg, scope });
        }
    }
    if keys.is_empty() {
        bail!("JWKS holds no usable asymmetric signing key");
    }
    Ok(keys)
}

impl Verifier {
    /// Verifies a token and returns its principal.
    ///
    /// # Errors
    /// UNAUTHENTICATED: `AUTH_TOKEN_EXPIRED`, `AUTH_TOKEN_NOT_YET_VALID`,
    /// `AUTH_TOKEN_WRONG_ISSUER`, `AUTH_TOKEN_WRONG_AUDIENCE` (not addressed to the mesh, or a
    /// service token addressed to another service), `AUTH_TOKEN_OUT_OF_SCOPE`,
    /// `AUTH_TOKEN_INVALID` (malformed, unknown key, bad signature, bad claims).
    pub fn verify(&self, token: &str) -> Result<Principal, Error> {
        if let Some(p) = self.remembered(token, now()) {
            return Ok(p);
        }
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let (principal, exp) = self.check(token)?;
        if let Ok(mut verified) = self.verified.lock()
            && self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation
        {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(token.to_string(), (principal.clone(), exp));
        }
        Ok(principal)
    }

    /// The principal of `token` if it was verified before and has not expired at `now`
    /// (with the same leeway as a full check).
    fn remembered(&self, token: &str, now: u64) -> Option<Principal> {
        let verified = self.verified.lock().ok()?;
        let (p, exp) = verified.get(token)?;
        (now <= exp.saturating_add(self.settings.leeway_seconds)).then(|| p.clone())
    }

    /// The full check: signature, issuer, audience, expiry, claims. Returns the principal
    /// and the expiry.
    fn check(&self, token: &str) -> Result<(Principal, u64), Error> {
        let invalid = || Error::new(ErrorKind::Unauthenticated, Reason::AuthTokenInvalid, "the token is not valid");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let keys = self.current_keys();
        let candidates = keys.iter().filter(|k| k.alg == header.alg && (header.kid.is_none() || k.kid == header.kid));
        let mut last = invalid();
        for k in candidates {
            let mut v = Validation::new(k.alg);
            v.set_issuer(&[k.scope.iss.as_deref().unwrap_or(&self.settings.issuer)]);
            let own = service_audience(&self.settings.audience, &self.settings.service);
            v.set_audience(&[&self.settings.audience, &own]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            v.validate_nbf = true;
            v.leeway = self.settings.leeway_seconds;
            match jsonwebtoken::decode::<Claims>(token, &k.key, &v) {
                Ok(data) if !k.scope.allows(&data.claims) => {
                    // Signed by a key that may not sign this (an SSO key minting a service,
                    // a service's key minting a person or another service).
                    return Err(Error::new(
                        ErrorKind::Unauthenticated,
                        Reason::AuthTokenOutOfScope,
                        "the token's key may not sign this subject",
                    ));
                }
                Ok(data)
                    if data.claims.exp > now() + self.settings.max_lifetime_seconds + self.settings.leeway_seconds =>
                {
                    return Err(Error::new(
                        ErrorKind::Unauthenticated,
                        Reason::AuthTokenLifetimeTooLong,
                        "the token is valid for longer than this mesh allows",
                    ));
                }
                Ok(data) if !self.addressed_here(&data.claims) => {
                    return Err(Error::new(
                        ErrorKind::Unauthenticated,
                        Reason::AuthTokenWrongAudience,
                        "the token is addressed to another service",
                    ));
                }
                Ok(data) => {
                    let exp = data.claims.exp;
                    return principal_of(data.claims).map(|p| (p, exp)).ok_or_else(invalid);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as J;
                    last = match e.kind() {
                        J::ExpiredSignature => {
                            Error::new(ErrorKind::Unauthenticated, Reason::AuthTokenExpired, "the token has expired")
                        }
                        J::ImmatureSignature => Error::new(
                            ErrorKind::Unauthenticated,
                            Reason::AuthTokenNotYetValid,
                            "the token is not valid yet",
                        ),
                        J::InvalidIssuer => Error::new(
                            ErrorKind::Unauthenticated,
                            Reason::AuthTokenWrongIssuer,
                            "the token was not issued by a trusted issuer",
                        ),
                        J::InvalidAudience => Error::new(
                            ErrorKind::Unauthenticated,
                            Reason::AuthTokenWrongAudience,
                            "the token is not addressed to this service",
                        ),
                        _ => invalid(),
                    };
                }
            }
        }
        Err(last)
    }
}

/// Whether `kind` with these identifiers is a well-formed subject.
fn identified(kind: SubjectKind, dept: &str, id_number: &str, credit_code: &str, passport: &str) -> bool {
    match kind {
        SubjectKind::Staff | SubjectKind::Service => !dept.is_empty(),
        SubjectKind::Citizen => crate::ids::CitizenId::parse(id_number).is_ok(),
        SubjectKind::Enterprise => crate::ids::CreditCode::parse(credit_code).is_ok(),
        SubjectKind::Foreigner => crate::ids::Passport::parse(passport).is_ok(),
    }
}

fn principal_of(c: Claims) -> Option<Principal> {
    let ok = !c.sub.is_empty() && identified(c.kind, &c.dept, &c.id_number, &c.credit_code, &c.passport_number);
    // Only a service acts for someone, and only for an applicant.
    let actor = match c.act {
        None => None,
        Some(a) if c.kind == SubjectKind::Service && a.kind.is_applicant() && !a.sub.is_empty() => {
            if !identified(a.kind, "", &a.id_number, &a.credit_code, &a.passport_number) {
                return None;
            }
            Some(Box::new(Principal {
                id_number: a.id_number,
                credit_code: a.credit_code,
                passport_number: a.passport_number,
                ..Principal::bare(&a.sub, a.kind)
            }))
        }
        Some(_) => return None,
    };
    ok.then_some(Principal {
        sub: c.sub,
        kind: c.kind,
        dept: c.dept,
        roles: c.roles,
        id_number: c.id_number,
        credit_code: c.credit_code,
        passport_number: c.passport_number,
        actor,
    })
}

/// The tonic interceptor: `authorization: Bearer <token>` → a [`Principal`] in the
/// request extensions, or UNAUTHENTICATED (and an audit line).
#[derive(Clone)]
pub struct Authenticator(Arc<Verifier>);

impl Authenticator {
    /// An interceptor over `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self(Arc::new(verifier))
    }

    /// How often the JWKS file is to be read again (`auth.jwks_reload_seconds`), if at all.
    pub fn reload_interval(&self) -> Option<std::time::Duration> {
        let every = self.0.settings.jwks_reload_seconds;
        (every > 0 && !self.0.settings.jwks_file.is_empty()).then(|| std::time::Duration::from_secs(every))
    }

    /// Reads the JWKS file again ([`Verifier::reload`]), logging a change (key ids only).
    ///
    /// # Errors
    /// As [`Verifier::reload`]: the keys in use stay.
    pub fn reload_keys(&self) -> anyhow::Result<()> {
        if self.0.reload()? {
            let kids: Vec<String> = self.0.current_keys().iter().map(|k| k.kid.clone().unwrap_or_default()).collect();
            tracing::info!(target: "audit", keys = ?kids, "verification keys reloaded");
        }
        Ok(())
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let result = match token {
            None | Some("") => {
                Err(Error::new(ErrorKind::Unauthenticated, Reason::AuthTokenMissing, "a bearer token is required"))
            }
            Some(t) => self.0.verify(t),
        };
        match result {
            Ok(p) => {
                req.extensions_mut().insert(p);
                Ok(req)
            }
            Err(e) => {
                tracing::warn!(target: "audit", reason = %e.reason(), "unauthenticated request refused");
                Err(e.into())
            }
        }
    }
}

/// Paths of a development key pair.
#[derive(Debug, Clone)]
pub struct DevKeys {
    /// PKCS#8 PEM of the Ed25519 signing key.
    pub signing_key: PathBuf,
    /// JWKS with the public key.
    pub jwks: PathBuf,
}

/// Makes an Ed25519 key pair under `dir` unless one is there: `dev-signing-key.pem` and
/// `dev-jwks.json`. For development and tests only; production keys come from the SSO.
///
/// # Errors
/// The folder or files cannot be written, or the system has no randomness.
pub fn ensure_dev_keys(dir: &Path) -> anyhow::Result<DevKeys> {
    let keys = DevKeys { signing_key: dir.join("dev-signing-key.pem"), jwks: dir.join("dev-jwks.json") };
    if keys.signing_key.exists() {
        // A JWKS missing, or written before keys had scopes, is written again from the key:
        // without a scope the development key could no longer sign the services.
        let scoped = std::fs::read_to_string(&keys.jwks).is_ok_and(|t| t.contains("\"signs\""));
        if !scoped {
            let minter = Minter::load(&keys.signing_key, AuthSettings::default())?;
            std::fs::write(&keys.jwks, minter.jwks()).context("writing the JWKS")?;
        }
        return Ok(keys);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let minter = new_signing_key(&keys.signing_key, AuthSettings::default())?;
    std::fs::write(&keys.jwks, minter.jwks()).context("writing the JWKS")?;
    Ok(keys)
}

/// Makes a new Ed25519 signing key, writes it to `path` (PKCS#8 PEM, readable by its owner
/// only) and returns it; its public half, scoped with [`Minter::jwk`], goes in the JWKS.
///
/// # Errors
/// The system has no randomness, or the file cannot be written (or exists already).
pub fn new_signing_key(path: &Path, settings: AuthSettings) -> anyhow::Result<Minter> {
    use std::io::Write as _;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pkcs8_pem(&seed).as_bytes()).context("writing the signing key")?;
    Ok(Minter::from_seed(seed, settings))
}

/// PKCS#8 wrapping of an Ed25519 seed (RFC 8410): a fixed prefix, then the 32 bytes.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

fn pkcs8_der(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

fn pkcs8_pem(seed: &[u8; 32]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8_der(seed));
    format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
}

/// Signs development tokens with an Ed25519 key.
pub struct Minter {
    key: EncodingKey,
    kid: String,
    public_x: String,
    settings: AuthSettings,
}

impl Minter {
    fn from_seed(seed: [u8; 32], settings: AuthSettings) -> Self {
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let public_x = URL_SAFE_NO_PAD.encode(public);
        let kid = public_x.chars().take(16).collect();
        Self { key: EncodingKey::from_ed_der(&pkcs8_der(&seed)), kid, public_x, settings }
    }

    /// Loads the signing key written by [`ensure_dev_keys`].
    ///
    /// # Errors
    /// An unreadable file or not an Ed25519 PKCS#8 PEM.
    pub fn load(path: &Path, settings: AuthSettings) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64.trim()).context("signing key is not PEM")?;
        let seed: [u8; 32] = der
            .strip_prefix(&PKCS8_ED25519_PREFIX[..])
            .and_then(|s| s.try_into().ok())
            .context("signing key is not an Ed25519 PKCS#8 key")?;
        Ok(Self::from_seed(seed, settings))
    }

    /// The development JWKS (public key only) matching this key: it signs everyone, every
    /// service included. Production keys are scoped (see [`KeyScope`]).
    pub fn jwks(&self) -> String {
        let everyone = serde_json::json!({"services": ["*"]});
        let mut key = self.jwk(&everyone);
        key["signs"]["kinds"] = serde_json::json!(["staff", "citizen", "enterprise", "foreigner"]);
        serde_json::json!({ "keys": [key] }).to_string()
    }

    /// This key as one JWK (public key only) that may sign `scope` (a [`KeyScope`] as JSON).
    pub fn jwk(&self, scope: &serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": self.kid, "x": self.public_x, "signs": scope,
        })
    }

    /// A token for `principal`, valid `ttl_seconds`.
    ///
    /// # Errors
    /// Signing failed (a broken key).
    pub fn mint(&self, principal: Principal, ttl_seconds: u64) -> anyhow::Result<String> {
        self.sign(&principal.into_claims(&self.settings, ttl_seconds))
    }

    /// A token for `principal` addressed to the service `callee` (`aud` =
    /// [`service_audience`]): how a service's token is made.
    ///
    /// # Errors
    /// Signing failed (a broken key).
    pub fn mint_to(&self, principal: Principal, callee: &str, ttl_seconds: u64) -> anyhow::Result<String> {
        let mut claims = principal.into_claims(&self.settings, ttl_seconds);
        claims.aud = service_audience(&self.settings.audience, callee);
        self.sign(&claims)
    }

    /// Signs arbitrary claims (tests use it for expired or foreign tokens).
    ///
    /// # Errors
    /// Signing failed.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }
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

/// This service's own identity (kind `service`, `sub` = the service name) for calling
/// others: [`ServiceIdentity::to`] makes the client interceptor for one callee.
#[derive(Clone)]
pub struct ServiceIdentity {
    minter: Arc<Minter>,
    name: String,
    /// Per callee, the token sent lately and when it was signed: reused for
    /// [`TOKEN_REUSE`], so the peer's verifier recognises it, and neither side spends a
    /// signature per call.
    current: Arc<std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>>,
}

/// A tonic client interceptor that sends this service's token addressed to one callee
/// (`aud` = [`service_audience`]) and the current trace context with every call.
#[derive(Clone)]
pub struct PeerIdentity {
    identity: ServiceIdentity,
    callee: String,
}

/// Lifetime of a service token.
const SERVICE_TOKEN_TTL_SECONDS: u64 = 300;
/// How long a service token is sent again before a fresh one is signed (well inside its
/// lifetime, so it never arrives expired).
const TOKEN_REUSE: std::time::Duration = std::time::Duration::from_secs(60);

impl ServiceIdentity {
    /// The identity of service `name`, signed with `settings.signing_key_file`.
    ///
    /// # Errors
    /// No or an unreadable signing key.
    pub fn load(name: &str, settings: &AuthSettings) -> anyhow::Result<Self> {
        if settings.signing_key_file.is_empty() {
            bail!("auth.signing_key_file is required for {name} to call other services");
        }
        let minter = Minter::load(Path::new(&settings.signing_key_file), settings.clone())?;
        Ok(Self { minter: Arc::new(minter), name: name.to_string(), current: Default::default() })
    }

    /// The client interceptor for calls to `callee` (a service name, e.g. `household`).
    pub fn to(&self, callee: &str) -> PeerIdentity {
        PeerIdentity { identity: self.clone(), callee: callee.to_string() }
    }

    fn token(&self, callee: &str) -> anyhow::Result<String> {
        let mut current = self.current.lock().map_err(|_| anyhow::anyhow!("service token poisoned"))?;
        if let Some((token, signed)) = current.get(callee)
            && signed.elapsed() < TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let token = self.minter.mint_to(self.principal(), callee, SERVICE_TOKEN_TTL_SECONDS)?;
        current.insert(callee.to_string(), (token.clone(), std::time::Instant::now()));
        Ok(token)
    }

    fn principal(&self) -> Principal {
        Principal { dept: self.name.clone(), ..Principal::bare(&self.name, SubjectKind::Service) }
    }

    /// A client interceptor that calls as this service acting for `user` (an applicant):
    /// this service's own short-lived token with the user in its `act` claim, so the callee
    /// decides as for the user while the user's own token never leaves the service it was
    /// sent to.
    ///
    /// # Errors
    /// The user is not an applicant, or signing failed.
    pub fn acting_for(&self, user: &Principal, callee: &str) -> anyhow::Result<OnBehalf> {
        if !user.kind.is_applicant() {
            bail!("a service acts only for an applicant");
        }
        let actor = Principal {
            id_number: user.id_number.clone(),
            credit_code: user.credit_code.clone(),
            passport_number: user.passport_number.clone(),
            ..Principal::bare(&user.sub, user.kind)
        };
        let principal = Principal { actor: Some(Box::new(actor)), ..self.principal() };
        let token = self.minter.mint_to(principal, callee, ON_BEHALF_TTL_SECONDS)?;
        Ok(OnBehalf(format!("Bearer {token}").parse().context("token is not ASCII")?))
    }
}

/// Lifetime of a token made for one call on a user's behalf.
const ON_BEHALF_TTL_SECONDS: u64 = 60;

/// Sends a token made by [`ServiceIdentity::acting_for`] (and the trace context).
#[derive(Clone)]
pub struct OnBehalf(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for OnBehalf {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut req = crate::telemetry::inject_grpc(req)?;
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

impl tonic::service::Interceptor for PeerIdentity {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut req = crate::telemetry::inject_grpc(req)?;
        // Signed at most once a minute per callee, lazily: no refresh task.
        let token =
            self.identity.token(&self.callee).map_err(|_| tonic::Status::internal("cannot sign the service token"))?;
        let value = format!("Bearer {token}").parse().map_err(|_| tonic::Status::internal("token is not ASCII"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}
