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
    /// A hash of the file it was read from: an unchanged file is not verified again.
    text_hash: u64,
}

/// The longest revocation list taken, in bytes: an issuer's list grows with every licence it
/// revokes (tens of thousands of numbers), unlike a licence.
pub const MAX_REVOCATIONS_BYTES: usize = 16 * 1024 * 1024;

/// How far ahead of this machine's clock a revocation list's issue time may be: more is a
/// list that would shut out every honest list after it.
const CLOCK_SKEW_SECONDS: i64 = 300;

/// The issuers the trust list names, as last read, with their revocations.
struct State {
    issuers: Vec<Issuer>,
    refresh: Duration,
    max_age: i64,
    revoked: BTreeMap<String, Revoked>,
}

/// The trusted issuers and their revocations; verifies e-licences offline. The trust list
/// file and the revocation lists are read again every `refresh_seconds`: a key or issuer
/// added, rotated or removed there is honoured without a restart, as the JWKS is.
pub struct Trust {
    /// The trust list file; none: trusts no issuer.
    source: Option<PathBuf>,
    state: RwLock<State>,
}

impl Trust {
    /// Trusts no issuer: nothing verifies (a deployment that configured none).
    pub fn none() -> Self {
        let state =
            State { issuers: Vec::new(), refresh: Duration::from_secs(300), max_age: 0, revoked: BTreeMap::new() };
        Self { source: None, state: RwLock::new(state) }
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
        let me = Self { source: Some(PathBuf::from(path)), state: RwLock::new(read_list(Path::new(path))?) };
        me.refresh();
        Ok(me)
    }

    /// A trust over `list`, its relative revocation paths taken from `base` (never read
    /// again: for tests and tools).
    ///
    /// # Errors
    /// As [`Trust::load`].
    pub fn from_list(list: TrustList, base: &Path) -> anyhow::Result<Self> {
        let me = Self { source: None, state: RwLock::new(state_of(list, base)?) };
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
        let state = self.state.read().map_err(|_| Unverified::RevocationUnknown)?;
        let issuer = state.issuers.iter().find(|i| i.entry.id == l.iss).ok_or(Unverified::UnknownIssuer)?;
        let entry = issuer.signer(&p.jws)?;
        // Rotation: a key signs what is issued within its validity; older licences keep
        // verifying after it is retired, newer ones signed with it do not.
        if l.iat < entry.nbf || entry.exp.is_some_and(|exp| l.iat >= exp) {
            return Err(Unverified::UnknownKey);
        }
        if !issuer.entry.kinds.iter().any(|k| k == &l.kind) {
            return Err(Unverified::KindNotAllowed);
        }
        // Issued in the future is not issued yet: a key published ahead of its use signs
        // nothing that verifies before then.
        if now < l.nbf || l.iat > now + CLOCK_SKEW_SECONDS {
            return Err(Unverified::NotYetValid);
        }
        if l.exp.is_some_and(|exp| now >= exp) {
            return Err(Unverified::Expired);
        }
        let r = state.revoked.get(&l.iss).ok_or(Unverified::RevocationUnknown)?;
        // The list's age on this machine's clock, not the business clock a test or a
        // demonstration moves: a list is as fresh as it really is.
        match r.issued_at {
            Some(at) if Utc::now().timestamp() - at <= state.max_age => {}
            _ => return Err(Unverified::RevocationUnknown),
        }
        if r.numbers.contains(&l.jti) || r.kids.contains(&p.jws.header.kid) {
            return Err(Unverified::Revoked);
        }
        Ok(())
    }

    /// Reads the trust list again (when it came from a file; one that cannot be read or is
    /// not a trust list is set aside, said in the log, and the one held stays), then every
    /// issuer's revocation list: one that cannot be read, does not verify with a key its
    /// issuer has not revoked, is dated ahead of this machine's clock, or is older than the
    /// one held is set aside too. Returns how many revocation lists were taken.
    pub fn refresh(&self) -> usize {
        if let Some(path) = &self.source {
            match read_list(path) {
                Ok(mut fresh) => {
                    let Ok(mut state) = self.state.write() else { return 0 };
                    // What was revoked stays known, also of an issuer left out for a while: an
                    // older list of it is not taken when it comes back.
                    fresh.revoked = std::mem::take(&mut state.revoked);
                    *state = fresh;
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "trust list not taken; the one held stays"),
            }
        }
        let Ok(state) = self.state.read() else { return 0 };
        let lists: Vec<(String, anyhow::Result<Option<Revoked>>)> = state
            .issuers
            .iter()
            .map(|i| (i.entry.id.clone(), read_revocations(i, state.revoked.get(&i.entry.id))))
            .collect();
        drop(state);
        let Ok(mut state) = self.state.write() else { return 0 };
        let mut taken = 0;
        for (id, list) in lists {
            match list {
                Ok(None) => taken += 1,
                Ok(Some(new)) => {
                    let current = state.revoked.entry(id.clone()).or_default();
                    if current.issued_at.is_none_or(|at| new.issued_at.is_some_and(|n| n >= at)) {
                        *current = new;
                        taken += 1;
                    } else {
                        tracing::warn!(issuer = %id, "revocation list older than the one held; kept the newer");
                    }
                }
                Err(e) => {
                    tracing::warn!(issuer = %id, error = %format!("{e:#}"), "revocation list not taken; the one held stays")
                }
            }
        }
        taken
    }

    /// How often the trust list and revocation lists are read again; none when no trust
    /// list is configured.
    pub fn refresh_interval(&self) -> Option<Duration> {
        let state = self.state.read().ok()?;
        (self.source.is_some() || !state.issuers.is_empty()).then_some(state.refresh)
    }
}

/// The trust list at `path`, its revocation lists not yet read.
fn read_list(path: &Path) -> anyhow::Result<State> {
    let shown = path.display();
    let text = read_bounded(path, MAX_TRUST_LIST_BYTES).with_context(|| format!("reading the trust list {shown}"))?;
    let list: TrustList = serde_json::from_str(&text).with_context(|| format!("parsing the trust list {shown}"))?;
    state_of(list, path.parent().unwrap_or(Path::new(".")))
}

/// The issuers of `list`, their keys checked, revocation paths taken from `base`.
fn state_of(list: TrustList, base: &Path) -> anyhow::Result<State> {
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
    Ok(State {
        issuers,
        refresh: Duration::from_secs(list.refresh_seconds.max(1)),
        max_age: list.max_revocation_age_seconds,
        revoked: BTreeMap::new(),
    })
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

/// `issuer`'s revocation list as its file says now, `held` the list taken before.
/// None: the file is the one the held list came from.
fn read_revocations(issuer: &Issuer, held: Option<&Revoked>) -> anyhow::Result<Option<Revoked>> {
    let text = read_bounded(&issuer.revocations, MAX_REVOCATIONS_BYTES)
        .with_context(|| format!("reading {}", issuer.revocations.display()))?;
    if held.is_some_and(|h| h.issued_at.is_some() && h.text_hash == hash(&text)) {
        // The same file as last time: nothing to verify or parse again.
        return Ok(None);
    }
    let jws = split(text.trim(), REVOCATIONS_TYP, MAX_REVOCATIONS_BYTES)?;
    let key = match issuer.signer(&jws) {
        Ok(key) => key,
        Err(u) => bail!("not signed by the issuer: {}", u.says()),
    };
    let claims: RevocationClaims = serde_json::from_slice(&jws.payload).context("claims")?;
    // As for a licence: a key signs lists issued within its validity, a retired key none.
    if claims.iat < key.nbf || key.exp.is_some_and(|exp| claims.iat >= exp) {
        bail!("signed by a key not in use when the list was issued");
    }
    if claims.iss != issuer.entry.id {
        bail!("a list of another issuer");
    }
    // A key revoked in the list held signs nothing, least of all the list that would take
    // it back. (A list may revoke the key that signs it: that only takes more away.)
    if held.is_some_and(|h| h.kids.contains(&jws.header.kid)) {
        bail!("signed by a revoked key");
    }
    if claims.iat > Utc::now().timestamp() + CLOCK_SKEW_SECONDS {
        bail!("dated ahead of this machine's clock");
    }
    Ok(Some(Revoked {
        numbers: claims.revoked.into_iter().collect(),
        kids: claims.revoked_keys.into_iter().collect(),
        issued_at: Some(claims.iat),
        text_hash: hash(&text),
    }))
}

/// The largest trust list read, in bytes.
const MAX_TRUST_LIST_BYTES: usize = 1024 * 1024;

/// The text of the file at `path`, refused without reading past `max` bytes.
fn read_bounded(path: &Path, max: usize) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?.take(max as u64 + 1).read_to_string(&mut text)?;
    if text.len() > max {
        bail!("larger than {max} bytes");
    }
    Ok(text)
}

fn hash(text: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}
