//! The trust list: which issuers' keys may sign which kinds of e-licence, with key rotation
//! (a key is trusted for licences issued within its validity) and revocation (each issuer
//! publishes a signed list of revoked licence numbers and keys, read again every
//! `refresh_seconds`; a list older than `max_revocation_age_seconds` leaves that issuer's
//! licences unverified, as does a list that cannot be read or does not verify).
//!
//! The file (JSON; relative paths are taken from its folder):
//! ```json
//! {"refresh_seconds": 300, "max_revocation_age_seconds": 86400,
//!  "issuers": [{"id": "cn.sd.weihai.wjw", "name": "威海市卫生健康委员会",
//!    "kinds": ["death_medical_certificate", "birth_medical_certificate"],
//!    "keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "…", "x": "…", "nbf": 0, "exp": null}],
//!    "revocations": "wjw-revocations.jws"}]}
//! ```

use super::{Jws, Licence, Malformed, REVOCATIONS_TYP, Unverified, parse, split};
use anyhow::{Context as _, bail};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::RwLock,
    time::Duration,
};

/// The trust list file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustList {
    /// Seconds between readings of the revocation lists.
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    /// The oldest revocation list (by its own issue time) still taken.
    #[serde(default = "default_max_age")]
    pub max_revocation_age_seconds: i64,
    /// The trusted issuers.
    pub issuers: Vec<IssuerEntry>,
}

fn default_refresh() -> u64 {
    300
}

fn default_max_age() -> i64 {
    86_400
}

/// One trusted issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerEntry {
    /// Its id, the `iss` of what it signs.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// The kinds it may issue.
    pub kinds: Vec<String>,
    /// Its public keys (Ed25519 JWKs with a `kid`), each with its validity.
    pub keys: Vec<KeyEntry>,
    /// Where its signed revocation list is read from (a file the deployment keeps current).
    pub revocations: String,
}

/// One issuer key.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyEntry {
    /// Key id.
    pub kid: String,
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// Licences issued from (Unix seconds) …
    #[serde(default)]
    pub nbf: i64,
    /// … until (exclusive) are signed by this key; none: still in use.
    #[serde(default)]
    pub exp: Option<i64>,
}

struct Issuer {
    entry: IssuerEntry,
    keys: Vec<(KeyEntry, VerifyingKey)>,
    revocations: PathBuf,
}

impl Issuer {
    /// The key of this issuer that signed `jws` (a licence or a revocation list), when one did.
    fn signer(&self, jws: &Jws) -> Result<&KeyEntry, Unverified> {
        if jws.header.alg != "EdDSA" {
            return Err(Unverified::BadSignature);
        }
        let (entry, key) = self.keys.iter().find(|(k, _)| k.kid == jws.header.kid).ok_or(Unverified::UnknownKey)?;
        let signature = Signature::from_slice(&jws.signature).map_err(|_| Unverified::BadSignature)?;
        key.verify_strict(jws.signed.as_bytes(), &signature).map_err(|_| Unverified::BadSignature)?;
        Ok(entry)
    }
}

/// What an issuer's latest good revocation list says.
#[derive(Default, Clone)]
struct Revoked {
    numbers: HashSet<String>,
    kids: HashSet<String>,
    /// Its issue time; none: no list read yet.
    issued_at: Option<i64>,
}

/// The trusted issuers and their revocations; verifies e-licences offline.
pub struct Trust {
    issuers: Vec<Issuer>,
    refresh: Duration,
    max_age: i64,
    revoked: RwLock<BTreeMap<String, Revoked>>,
}

impl Trust {
    /// Trusts no issuer: nothing verifies (a deployment that configured none).
    pub fn none() -> Self {
        Self { issuers: Vec::new(), refresh: Duration::from_secs(300), max_age: 0, revoked: RwLock::default() }
    }

    /// Loads the trust list at `path` (empty: [`Trust::none`]) and reads every issuer's
    /// revocation list once.
    ///
    /// # Errors
    /// The file cannot be read, is not a trust list, or holds a key that is not an Ed25519
    /// public key. (A revocation list that cannot be read is not an error: that issuer's
    /// licences stay unverified until it can.)
    pub fn load(path: &str) -> anyhow::Result<Self> {
        if path.trim().is_empty() {
            return Ok(Self::none());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the trust list {path}"))?;
        let list: TrustList = serde_json::from_str(&text).with_context(|| format!("parsing the trust list {path}"))?;
        let base = Path::new(path).parent().unwrap_or(Path::new("."));
        Self::from_list(list, base)
    }

    /// A trust over `list`, its relative revocation paths taken from `base`.
    ///
    /// # Errors
    /// As [`Trust::load`].
    pub fn from_list(list: TrustList, base: &Path) -> anyhow::Result<Self> {
        let mut issuers = Vec::new();
        let mut seen = HashSet::new();
        for entry in list.issuers {
            if !seen.insert(entry.id.clone()) {
                bail!("trust list: issuer {} appears twice", entry.id);
            }
            let mut keys = Vec::new();
            for k in &entry.keys {
                if k.kty != "OKP" || k.crv != "Ed25519" {
                    bail!("trust list: issuer {} key {} is not an Ed25519 key", entry.id, k.kid);
                }
                let bytes: [u8; 32] = URL_SAFE_NO_PAD
                    .decode(&k.x)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .with_context(|| format!("trust list: issuer {} key {}: x is not 32 bytes", entry.id, k.kid))?;
                let key = VerifyingKey::from_bytes(&bytes)
                    .with_context(|| format!("trust list: issuer {} key {} is not a public key", entry.id, k.kid))?;
                keys.push((k.clone(), key));
            }
            let revocations = base.join(&entry.revocations);
            issuers.push(Issuer { entry, keys, revocations });
        }
        let me = Self {
            issuers,
            refresh: Duration::from_secs(list.refresh_seconds.max(1)),
            max_age: list.max_revocation_age_seconds,
            revoked: RwLock::default(),
        };
        me.refresh();
        Ok(me)
    }

    /// Checks `token` at `now`: its signature with a key the trust list gives its issuer, the
    /// issuer's right to issue its kind, its validity and its revocation. Returns the licence
    /// and, when it is not verified evidence, why.
    ///
    /// # Errors
    /// [`Malformed`]: not an e-licence at all.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<(Licence, Option<Unverified>), Malformed> {
        let parsed = parse(token)?;
        let why = self.check(&parsed, now.timestamp()).err();
        Ok((parsed.licence, why))
    }

    fn check(&self, p: &super::Parsed, now: i64) -> Result<(), Unverified> {
        let l = &p.licence;
        let issuer = self.issuers.iter().find(|i| i.entry.id == l.iss).ok_or(Unverified::UnknownIssuer)?;
        let entry = issuer.signer(&p.jws)?;
        // Rotation: a key signs what is issued within its validity; older licences keep
        // verifying after it is retired, newer ones signed with it do not.
        if l.iat < entry.nbf || entry.exp.is_some_and(|exp| l.iat >= exp) {
            return Err(Unverified::UnknownKey);
        }
        if !issuer.entry.kinds.iter().any(|k| k == &l.kind) {
            return Err(Unverified::KindNotAllowed);
        }
        if now < l.nbf {
            return Err(Unverified::NotYetValid);
        }
        if l.exp.is_some_and(|exp| now >= exp) {
            return Err(Unverified::Expired);
        }
        let revoked = self.revoked.read().map_err(|_| Unverified::RevocationUnknown)?;
        let r = revoked.get(&l.iss).ok_or(Unverified::RevocationUnknown)?;
        match r.issued_at {
            Some(at) if now - at <= self.max_age => {}
            _ => return Err(Unverified::RevocationUnknown),
        }
        if r.numbers.contains(&l.jti) || r.kids.contains(&p.jws.header.kid) {
            return Err(Unverified::Revoked);
        }
        Ok(())
    }

    /// Reads every issuer's revocation list again; a list that cannot be read, does not
    /// verify with its issuer's keys, or is older than the one held is set aside (said in
    /// the log) and the one held stays. Returns how many lists were taken.
    pub fn refresh(&self) -> usize {
        let mut taken = 0;
        for issuer in &self.issuers {
            match read_revocations(issuer) {
                Ok(new) => {
                    let Ok(mut held) = self.revoked.write() else { return taken };
                    let current = held.entry(issuer.entry.id.clone()).or_default();
                    if current.issued_at.is_none_or(|at| new.issued_at.is_some_and(|n| n >= at)) {
                        *current = new;
                        taken += 1;
                    } else {
                        tracing::warn!(issuer = %issuer.entry.id, "revocation list older than the one held; kept the newer");
                    }
                }
                Err(e) => {
                    tracing::warn!(issuer = %issuer.entry.id, error = %format!("{e:#}"), "revocation list not taken; the one held stays")
                }
            }
        }
        taken
    }

    /// How often the revocation lists are read again; none when no issuer is trusted.
    pub fn refresh_interval(&self) -> Option<Duration> {
        (!self.issuers.is_empty()).then_some(self.refresh)
    }
}

/// The claims of a revocation list.
#[derive(Debug, Deserialize, serde::Serialize)]
pub(super) struct RevocationClaims {
    /// The issuer.
    pub iss: String,
    /// When it was issued (Unix seconds).
    pub iat: i64,
    /// Revoked licence numbers.
    #[serde(default)]
    pub revoked: Vec<String>,
    /// Revoked key ids: nothing they signed verifies.
    #[serde(default)]
    pub revoked_keys: Vec<String>,
}

fn read_revocations(issuer: &Issuer) -> anyhow::Result<Revoked> {
    let text = std::fs::read_to_string(&issuer.revocations)
        .with_context(|| format!("reading {}", issuer.revocations.display()))?;
    let jws = split(text.trim(), REVOCATIONS_TYP)?;
    if let Err(u) = issuer.signer(&jws) {
        bail!("not signed by the issuer: {}", u.says());
    }
    let claims: RevocationClaims = serde_json::from_slice(&jws.payload).context("claims")?;
    if claims.iss != issuer.entry.id {
        bail!("a list of another issuer");
    }
    Ok(Revoked {
        numbers: claims.revoked.into_iter().collect(),
        kids: claims.revoked_keys.into_iter().collect(),
        issued_at: Some(claims.iat),
    })
}
