//! Development keys and tokens: an Ed25519 key pair made on first start, its JWKS, and
//! the [`Minter`] that signs tokens with it (`onething token`, the tests).

use super::*;

/// Paths of a development key pair.
#[derive(Debug, Clone)]
pub struct DevKeys {
    /// PKCS#8 PEM of the Ed25519 signing key.
    pub signing_key: PathBuf,
    /// JWKS with the public key.
    pub jwks: PathBuf,
}

impl DevKeys {
    /// The folder holding the keys, where the development e-licence issuers live beside them
    /// ([`crate::elicence::ensure_dev_issuers`]).
    pub fn folder(&self) -> &Path {
        self.jwks.parent().unwrap_or(Path::new("."))
    }
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
    Ok(Minter::from_seed(write_ed25519_key(path)?, settings))
}

/// Makes a new Ed25519 key, writes it to `path` (PKCS#8 PEM, readable by its owner only)
/// and returns its seed.
///
/// # Errors
/// The system has no randomness, or the file cannot be written (or exists already).
pub fn write_ed25519_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write as _;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pkcs8_pem(&seed).as_bytes()).context("writing the signing key")?;
    Ok(seed)
}

/// The seed of the Ed25519 key in `path` (PKCS#8 PEM, as [`write_ed25519_key`] writes it).
///
/// # Errors
/// An unreadable file or not an Ed25519 PKCS#8 PEM.
pub fn read_ed25519_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64.trim()).context("signing key is not PEM")?;
    der.strip_prefix(&PKCS8_ED25519_PREFIX[..])
        .and_then(|s| s.try_into().ok())
        .context("signing key is not an Ed25519 PKCS#8 key")
}

/// PKCS#8 wrapping of an Ed25519 seed (RFC 8410): a fixed prefix, then the 32 bytes.
pub(super) const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

pub(super) fn pkcs8_der(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

pub(super) fn pkcs8_pem(seed: &[u8; 32]) -> String {
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
    pub(super) fn from_seed(seed: [u8; 32], settings: AuthSettings) -> Self {
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
        Ok(Self::from_seed(read_ed25519_key(path)?, settings))
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
