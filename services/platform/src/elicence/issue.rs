//! Issuing: an issuer's key signs e-licences and its revocation list. Production licences
//! come from the issuing authorities; these are for development and tests
//! (`onething elicence issue`, the README's examples), signed by development issuers that
//! [`ensure_dev_issuers`] makes beside the development keys, so every example takes the real
//! verification path.

use super::{Licence, REVOCATIONS_TYP, TYP, trust::RevocationClaims};
use crate::auth::{read_ed25519_key, write_ed25519_key};
use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// An issuer's signing key.
pub struct IssuerKey {
    /// The issuer's id (`iss`).
    pub issuer: String,
    /// The key's id (`kid`).
    pub kid: String,
    key: SigningKey,
}

impl IssuerKey {
    /// The key of `issuer` in `path` (PKCS#8 PEM).
    ///
    /// # Errors
    /// An unreadable file or not an Ed25519 key.
    pub fn load(issuer: &str, path: &Path) -> anyhow::Result<Self> {
        let key = SigningKey::from_bytes(&read_ed25519_key(path)?);
        let kid = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()).chars().take(16).collect();
        Ok(Self { issuer: issuer.to_string(), kid, key })
    }

    /// Its public half as a trust list key entry (valid from `nbf`).
    pub fn jwk(&self, nbf: i64) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "nbf": nbf,
            "x": URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes()),
        })
    }

    /// Signs `licence` (its `iss` set to this issuer) as an e-licence.
    ///
    /// # Errors
    /// The claims do not serialize (never with a [`Licence`]).
    pub fn issue(&self, licence: &Licence) -> anyhow::Result<String> {
        let licence = Licence { iss: self.issuer.clone(), ..licence.clone() };
        self.sign(TYP, &serde_json::to_value(licence)?)
    }

    /// Signs this issuer's revocation list, issued at `iat`: the licence numbers `revoked`
    /// and the keys `revoked_keys`.
    ///
    /// # Errors
    /// As [`IssuerKey::issue`].
    pub fn revocations(&self, revoked: &[String], revoked_keys: &[String], iat: i64) -> anyhow::Result<String> {
        let claims = RevocationClaims {
            iss: self.issuer.clone(),
            iat,
            revoked: revoked.to_vec(),
            revoked_keys: revoked_keys.to_vec(),
        };
        self.sign(REVOCATIONS_TYP, &serde_json::to_value(claims)?)
    }

    /// Signs any claims as a compact JWS of `typ`. Tests use it for licences an issuer
    /// should never make.
    ///
    /// # Errors
    /// The claims do not serialize.
    pub fn sign(&self, typ: &str, claims: &serde_json::Value) -> anyhow::Result<String> {
        let header = serde_json::json!({"alg": "EdDSA", "typ": typ, "kid": self.kid});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let signature = self.key.sign(signed.as_bytes());
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes())))
    }
}

/// The development issuers: 卫健 (birth and death medical certificates) and 市场监管
/// (business licences), each with its key and revocation list, and the trust list naming
/// them.
#[derive(Debug, Clone)]
pub struct DevIssuers {
    /// The trust list (`elicence.trust_list_file`).
    pub trust_list: PathBuf,
    /// The folder holding the issuers' keys (`<issuer>.pem`) and revocation lists.
    pub dir: PathBuf,
}

impl DevIssuers {
    /// The key of development issuer `issuer`.
    ///
    /// # Errors
    /// No such issuer, or its key cannot be read.
    pub fn key(&self, issuer: &str) -> anyhow::Result<IssuerKey> {
        IssuerKey::load(issuer, &self.dir.join(format!("{issuer}.pem")))
            .with_context(|| format!("no development issuer {issuer}"))
    }

    /// A development e-licence that meets `rule` for an application (`form`, `applicant`'s
    /// identifier), signed by the development issuer of its (first) kind: each value the
    /// rule matches is the form's (the first of alternatives), its number the form's when the
    /// rule matches one, otherwise a fresh one. What the applicant's e-licence wallet would
    /// hold; loads and tests take the real verification path with it.
    ///
    /// # Errors
    /// No development issuer of the kind, or its key cannot be read.
    pub fn licence_for(
        &self,
        rule: &crate::catalog::evidence::EvidenceRule,
        form: &BTreeMap<String, String>,
        applicant: &str,
    ) -> anyhow::Result<String> {
        let kind = rule.kinds().next().unwrap_or_default();
        let (issuer, _, _) = DEV_ISSUERS
            .iter()
            .find(|(_, _, kinds)| kinds.contains(&kind))
            .with_context(|| format!("no development issuer of {kind}"))?;
        let now = chrono::Utc::now().timestamp();
        let mut licence = Licence {
            jti: format!("DEV-{}", uuid::Uuid::now_v7().simple()),
            kind: kind.to_string(),
            iat: now,
            nbf: now - 3600,
            ..Default::default()
        };
        for (field, names) in &rule.matches {
            let given = if field == crate::catalog::evidence::APPLICANT {
                applicant
            } else {
                form.get(field).map_or("", String::as_str)
            };
            let value = given.to_string();
            match names.split('|').next().unwrap_or_default().trim() {
                "sub" => licence.sub = value,
                "jti" => licence.jti = value,
                "holder" => licence.holder = value,
                other => {
                    if let Some(name) = other.strip_prefix("fields.") {
                        licence.fields.insert(name.to_string(), value);
                    }
                }
            }
        }
        self.key(issuer)?.issue(&licence)
    }

    /// Gives each of `materials` that `matter` weighs as evidence, and that carries no
    /// e-licence, one for the application ([`DevIssuers::licence_for`]).
    ///
    /// # Errors
    /// As [`DevIssuers::licence_for`].
    pub fn attach(
        &self,
        matter: &crate::catalog::Matter,
        materials: &mut [onething_proto::common::Material],
        form: &BTreeMap<String, String>,
        applicant: &str,
    ) -> anyhow::Result<()> {
        for m in materials.iter_mut().filter(|m| m.elicence.is_empty()) {
            if let Some(rule) = matter.evidence.get(&m.code) {
                m.elicence = self.licence_for(rule, form, applicant)?;
            }
        }
        Ok(())
    }

    /// As [`DevIssuers::attach`] for every step `req` includes, from each step's form.
    ///
    /// # Errors
    /// As [`DevIssuers::licence_for`].
    pub fn attach_to_bundle(
        &self,
        catalog: &crate::catalog::Catalog,
        req: &mut onething_proto::coordinator::SubmitBundleRequest,
    ) -> anyhow::Result<()> {
        let Some(def) = catalog.bundle(&req.code) else { return Ok(()) };
        let form: BTreeMap<String, String> = req.form.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let applicant = req.applicant.as_ref().map(|a| a.identifier.clone()).unwrap_or_default();
        for step in def.steps.iter().filter(|s| !s.optional || req.optional_steps.contains(&s.id)) {
            if let Some(matter) = catalog.get(&step.matter) {
                self.attach(matter, &mut req.materials, &step.form_of(&form), &applicant)?;
            }
        }
        Ok(())
    }

    /// Adds `revoked` licence numbers and keys to `issuer`'s revocation list, signed anew now
    /// (what it revoked before stays revoked).
    ///
    /// # Errors
    /// No such issuer, or the list cannot be read or written.
    pub fn revoke(&self, issuer: &str, revoked: &[String], revoked_keys: &[String]) -> anyhow::Result<()> {
        let path = self.dir.join(format!("{issuer}-revocations.jws"));
        let (mut numbers, mut kids) = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let jws = super::split(text.trim(), REVOCATIONS_TYP, super::trust::MAX_REVOCATIONS_BYTES)?;
                let held: RevocationClaims =
                    serde_json::from_slice(&jws.payload).context("a revocation list's claims")?;
                (held.revoked, held.revoked_keys)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), Vec::new()),
            Err(e) => return Err(e).context("reading a revocation list"),
        };
        for (into, new) in [(&mut numbers, revoked), (&mut kids, revoked_keys)] {
            for n in new {
                if !into.contains(n) {
                    into.push(n.clone());
                }
            }
        }
        let list = self.key(issuer)?.revocations(&numbers, &kids, chrono::Utc::now().timestamp())?;
        std::fs::write(path, list).context("writing a revocation list")
    }
}

impl Licence {
    /// A 营业执照 (business licence) of the enterprise `credit_code` named `name`, issued at
    /// `at` (Unix seconds) and valid without end; its number is the credit code, as on the
    /// licence itself. What development issuer 市场监管 signs for the benchmark's and chaos's
    /// applicants and for tests.
    pub fn business(credit_code: &str, name: &str, at: i64) -> Self {
        Self {
            jti: credit_code.to_string(),
            kind: "business_licence".into(),
            sub: credit_code.to_string(),
            iat: at,
            nbf: at - 3600,
            fields: [("name".to_string(), name.to_string())].into(),
            ..Default::default()
        }
    }
}

/// The development issuers' ids and the kinds each may issue: one for every kind of
/// [`super::KINDS`].
pub const DEV_ISSUERS: [(&str, &str, &[&str]); 6] = [
    ("dev.wjw", "威海市卫生健康委员会（开发）", &["birth_medical_certificate", "death_medical_certificate"]),
    ("dev.scjg", "威海市市场监督管理局（开发）", &["business_licence", "deregistration_notice"]),
    ("dev.ga", "威海市公安局（开发）", &["id_card", "vehicle_licence"]),
    ("dev.bdc", "威海市不动产登记中心（开发）", &["property_certificate"]),
    ("dev.court", "威海市中级人民法院（开发）", &["bankruptcy_ruling"]),
    ("dev.kj", "威海市科学技术局（开发）", &["work_permit"]),
];

/// Makes the development issuers under `dir/elicence` unless they are there: a key and an
/// empty revocation list each, and `trust-list.json`. A revocation list is signed anew at
/// every call (a list is taken for a day).
///
/// # Errors
/// The folder or files cannot be written.
pub fn ensure_dev_issuers(dir: &Path) -> anyhow::Result<DevIssuers> {
    let dir = dir.join("elicence");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dev = DevIssuers { trust_list: dir.join("trust-list.json"), dir: dir.clone() };
    let mut issuers = Vec::new();
    for (id, name, kinds) in DEV_ISSUERS {
        let path = dir.join(format!("{id}.pem"));
        if !path.exists() {
            write_ed25519_key(&path)?;
        }
        let key = dev.key(id)?;
        let revocations = dir.join(format!("{id}-revocations.jws"));
        if !revocations.exists() {
            dev.revoke(id, &[], &[])?;
        } else if is_old(&revocations) {
            // Signed anew with what it revokes: a list is taken for a day.
            dev.revoke(id, &[], &[])?;
        }
        issuers.push(serde_json::json!({
            "id": id, "name": name, "kinds": kinds, "keys": [key.jwk(0)],
            "revocations": format!("{id}-revocations.jws"),
        }));
    }
    let list = serde_json::json!({"refresh_seconds": 60, "max_revocation_age_seconds": 86_400, "issuers": issuers});
    std::fs::write(&dev.trust_list, serde_json::to_string_pretty(&list)?).context("writing the trust list")?;
    Ok(dev)
}

/// Whether a development revocation list was written more than an hour ago.
fn is_old(path: &Path) -> bool {
    std::fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() > 3600))
}
