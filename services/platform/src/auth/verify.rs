//! Verifying tokens: the JWKS and each key's scope, the checks of a token (signature,
//! issuer, audience, lifetime, the subject's identifiers), and the interceptor that puts the
//! verified [`Principal`] into each request.

use super::*;

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

/// One verification key.
pub(super) struct Key {
    kid: Option<String>,
    key: DecodingKey,
    alg: Algorithm,
    scope: KeyScope,
}

/// Verification keys.
pub(super) type Keys = Vec<Key>;

/// Verifies tokens against a set of public keys.
pub struct Verifier {
    /// The keys and the JWKS text they came from; replaced whole by [`Verifier::reload`].
    keys: std::sync::RwLock<(Arc<Keys>, String)>,
    /// Bumped by every reload, under the `verified` lock: a check that began with the keys
    /// before a reload must not remember its token after the reload emptied the memory.
    generation: std::sync::atomic::AtomicU64,
    pub(super) settings: AuthSettings,
    /// Tokens verified before, with their principal and expiry: a caller sending the same
    /// token again (a service's own token, reused for a minute) is not checked again until
    /// it expires. Emptied when full.
    verified: std::sync::Mutex<std::collections::HashMap<String, (Principal, u64)>>,
}

/// How many verified tokens a [`Verifier`] remembers.
pub(super) const VERIFIED_CAPACITY: usize = 4096;

/// The usable asymmetric keys of a JWKS, each with its scope.
///
/// # Errors
/// Malformed JSON, a `signs` member that is not a [`KeyScope`], or no usable key.
pub(super) fn parse_jwks(jwks: &str) -> anyhow::Result<Keys> {
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

/// Whether `kind` with these identifiers is a well-formed subject.
pub(super) fn identified(kind: SubjectKind, dept: &str, id_number: &str, credit_code: &str, passport: &str) -> bool {
    match kind {
        SubjectKind::Staff | SubjectKind::Service => !dept.is_empty(),
        SubjectKind::Citizen => crate::ids::CitizenId::parse(id_number).is_ok(),
        SubjectKind::Enterprise => crate::ids::CreditCode::parse(credit_code).is_ok(),
        SubjectKind::Foreigner => crate::ids::Passport::parse(passport).is_ok(),
    }
}

pub(super) fn principal_of(c: Claims) -> Option<Principal> {
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

impl KeyScope {
    /// Whether a token with `claims` is within this scope.
    pub(super) fn allows(&self, c: &Claims) -> bool {
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

impl Verifier {
    /// Whether the token is addressed to this verifier: a person's to the mesh's audience,
    /// a service's to this service alone (to the mesh's audience only where the verifier
    /// serves no service, as in tools).
    pub(super) fn addressed_here(&self, c: &Claims) -> bool {
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

    pub(super) fn current_keys(&self) -> Arc<Keys> {
        self.keys.read().map(|k| k.0.clone()).unwrap_or_default()
    }
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
    pub(super) fn remembered(&self, token: &str, now: u64) -> Option<Principal> {
        let verified = self.verified.lock().ok()?;
        let (p, exp) = verified.get(token)?;
        (now <= exp.saturating_add(self.settings.leeway_seconds)).then(|| p.clone())
    }

    /// The full check: signature, issuer, audience, expiry, claims. Returns the principal
    /// and the expiry.
    pub(super) fn check(&self, token: &str) -> Result<(Principal, u64), Error> {
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
