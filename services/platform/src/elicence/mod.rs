//! 电子证照 (M24): materials as e-licences — documents of a known kind (死亡医学证明,
//! 出生医学证明, 营业执照 …) with their issuer, subject, fields and validity, signed by the
//! issuer's key — checked offline against a trust list that names which issuer keys may sign
//! which kinds, and the revocation lists the issuers publish.
//!
//! **Format.** An e-licence is a JWS in compact serialization (RFC 7515) with `alg` EdDSA
//! (Ed25519, RFC 8037), `typ` `elicence+jwt`, the signing key's `kid`, and these claims:
//! `iss` (issuer id), `jti` (licence number, 证照编号), `kind` (证照类型), `sub` (the subject's
//! identifier: the deceased's or the holder's ID number, an enterprise's credit code; empty
//! for a newborn), `holder` (持证主体, when not the subject), `iat`, `nbf`, `exp` (validity),
//! and `fields` (the licence's own fields, strings). Why this format: it carries exactly the
//! metadata the national e-licence standards (GB/T 36901–36904) give a licence — number,
//! type code, issuing authority, holder, validity, fields — under the issuer's signature; a
//! W3C verifiable credential secured with JOSE (`vc+jwt`) is the same structure, so either
//! maps onto it field by field; and it verifies offline in microseconds with a key the trust
//! list holds. (The national platform signs with SM2; an `alg` for it slots in beside EdDSA.)
//!
//! A matter's catalog entry says per material whether it must be a verified e-licence, may
//! be (verified: decided automatically; otherwise a clerk reviews it), or is plain, and which
//! of the licence's values must match the form ([`crate::catalog::EvidenceRule`]).

mod issue;
mod trust;

pub use issue::{DEV_ISSUERS, DevIssuers, IssuerKey, ensure_dev_issuers};
pub use trust::{MAX_REVOCATIONS_BYTES, Trust, TrustList};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest e-licence taken, in bytes: a licence is a few hundred; anything near this is
/// not one.
pub const MAX_ELICENCE_BYTES: usize = 16 * 1024;

/// The e-licence kinds (证照类型) the mesh knows, with their names: a catalog rule naming
/// another is refused when the catalog loads, so a typo cannot send every case to a clerk.
pub const KINDS: &[(&str, &str)] = &[
    ("death_medical_certificate", "死亡医学证明"),
    ("birth_medical_certificate", "出生医学证明"),
    ("business_licence", "营业执照"),
    ("id_card", "居民身份证"),
    ("property_certificate", "不动产权证书"),
    ("deregistration_notice", "准予注销登记通知书"),
    ("bankruptcy_ruling", "破产裁定书"),
    ("work_permit", "外国人工作许可证"),
    ("vehicle_licence", "机动车行驶证"),
];

/// The JWS `typ` of an e-licence.
pub const TYP: &str = "elicence+jwt";

/// The JWS `typ` of an issuer's revocation list.
pub const REVOCATIONS_TYP: &str = "elicence-revocations+jwt";

/// The claims of an e-licence.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Licence {
    /// Issuer id, as the trust list names it (e.g. `cn.sd.weihai.wjw`).
    pub iss: String,
    /// Licence number (证照编号).
    pub jti: String,
    /// Kind (证照类型), e.g. `death_medical_certificate`.
    pub kind: String,
    /// The subject's identifier (the deceased's ID number; empty for a newborn).
    #[serde(default)]
    pub sub: String,
    /// The holder (持证主体), when not the subject.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub holder: String,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: i64,
    /// Valid from, Unix seconds.
    #[serde(default)]
    pub nbf: i64,
    /// Valid until, Unix seconds; none: without end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// The licence's own fields; a name given twice makes the claims malformed (another
    /// parser of the archived document could read the other value).
    #[serde(default, deserialize_with = "unique_fields")]
    pub fields: BTreeMap<String, String>,
}

/// A JSON object of strings with no name twice.
fn unique_fields<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of strings, each name once")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                if out.insert(k, v).is_some() {
                    return Err(serde::de::Error::custom("a field given twice"));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique)
}

/// Without the subject, holder and fields, which are personal data: a licence may be
/// logged or put in an error.
impl std::fmt::Debug for Licence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Licence")
            .field("iss", &self.iss)
            .field("jti", &self.jti)
            .field("kind", &self.kind)
            .field("iat", &self.iat)
            .field("nbf", &self.nbf)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

impl Licence {
    /// The value the catalog's `match` names: `sub`, `jti`, `holder`, `kind`, `iss` or
    /// `fields.<name>`; `None` for anything else or a field the licence lacks.
    pub fn value(&self, name: &str) -> Option<&str> {
        match name {
            "sub" => Some(&self.sub),
            "jti" => Some(&self.jti),
            "holder" => Some(&self.holder),
            "kind" => Some(&self.kind),
            "iss" => Some(&self.iss),
            _ => self.fields.get(name.strip_prefix("fields.")?).map(String::as_str),
        }
    }
}

/// The protected header of an e-licence.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Header {
    /// Signature algorithm; only `EdDSA` is taken.
    pub alg: String,
    /// `elicence+jwt`.
    #[serde(default)]
    pub typ: String,
    /// The issuer key that signed it.
    #[serde(default)]
    pub kid: String,
}

/// An e-licence taken apart, its signature not yet checked.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Its claims.
    pub licence: Licence,
    /// Its envelope: header, signed part, signature.
    pub(crate) jws: Jws,
}

/// Why a text is not an e-licence at all (the request is malformed: INVALID_ARGUMENT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Longer than the most taken ([`MAX_ELICENCE_BYTES`] for a licence).
    #[error("too long")]
    TooLong,
    /// Not three base64url parts, or a part that does not decode.
    #[error("not a JWS in compact serialization")]
    NotJws,
    /// A header or claims that are not what an e-licence carries (a fixed description:
    /// never the values, which may be personal data).
    #[error("not an e-licence: {0}")]
    NotLicence(&'static str),
}

/// Takes `token` apart without checking its signature.
///
/// # Errors
/// [`Malformed`]: too long, not a compact JWS, or not an e-licence's header and claims.
pub fn parse(token: &str) -> Result<Parsed, Malformed> {
    let jws = split(token, TYP, MAX_ELICENCE_BYTES)?;
    let licence: Licence = serde_json::from_slice(&jws.payload)
        .map_err(|_| Malformed::NotLicence("its claims are not an e-licence's claims"))?;
    Ok(Parsed { licence, jws })
}

/// A compact JWS taken apart.
#[derive(Clone)]
pub(crate) struct Jws {
    pub(crate) header: Header,
    pub(crate) signed: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
}

/// The header only: the payload and the signed part carry the claims, personal data.
impl std::fmt::Debug for Jws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jws").field("header", &self.header).finish_non_exhaustive()
    }
}

/// Splits a compact JWS of at most `max` bytes whose header's `typ` is `typ`.
pub(crate) fn split(token: &str, typ: &str, max: usize) -> Result<Jws, Malformed> {
    if token.len() > max {
        return Err(Malformed::TooLong);
    }
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Malformed::NotJws);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Malformed::NotJws);
    let header: Header =
        serde_json::from_slice(&decode(h)?).map_err(|_| Malformed::NotLicence("its header is not a JWS header"))?;
    if header.typ != typ {
        return Err(Malformed::NotLicence("its header's typ is not this kind of document"));
    }
    Ok(Jws { header, signed: format!("{h}.{p}"), payload: decode(p)?, signature: decode(s)? })
}

/// Why an e-licence that parses is not taken as verified evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unverified {
    /// No e-licence was given, only a document reference.
    NotAnElicence,
    /// The trust list does not name its issuer.
    UnknownIssuer,
    /// Its issuer has no trusted key with its `kid` (or the key is not valid at its issue).
    UnknownKey,
    /// Its signature does not verify with that key.
    BadSignature,
    /// Its issuer may not issue this kind.
    KindNotAllowed,
    /// Not valid yet.
    NotYetValid,
    /// No longer valid.
    Expired,
    /// Its issuer revoked it, or the key that signed it.
    Revoked,
    /// Its issuer's revocation list could not be read recently enough to tell.
    RevocationUnknown,
}

impl Unverified {
    /// Whether a licence not verified for this reason still carries its issuer's valid
    /// signature (it is not valid now, or its issuer may not issue it, or withdrew it): what
    /// it says is the issuer's word, and may be held against the application.
    pub fn signature_holds(self) -> bool {
        matches!(
            self,
            Self::KindNotAllowed | Self::NotYetValid | Self::Expired | Self::Revoked | Self::RevocationUnknown
        )
    }

    /// The stable code in events (`unverified_reason`), e.g. `bad_signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAnElicence => "not_an_elicence",
            Self::UnknownIssuer => "unknown_issuer",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::KindNotAllowed => "kind_not_allowed",
            Self::NotYetValid => "not_yet_valid",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::RevocationUnknown => "revocation_unknown",
        }
    }

    /// What it means, for the clerk and the applicant.
    pub fn says(self) -> &'static str {
        match self {
            Self::NotAnElicence => "not an e-licence",
            Self::UnknownIssuer => "its issuer is not trusted",
            Self::UnknownKey => "signed by a key its issuer does not use",
            Self::BadSignature => "its signature does not verify",
            Self::KindNotAllowed => "its issuer may not issue this kind",
            Self::NotYetValid => "not valid yet",
            Self::Expired => "expired",
            Self::Revoked => "revoked by its issuer",
            Self::RevocationUnknown => "its issuer's revocation list could not be checked",
        }
    }
}

/// What was found about one material's evidence at intake; stored on the case and, without
/// the document, told in its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The material's catalog code.
    pub material: String,
    /// The e-licence kind the catalog asks for.
    pub kind: String,
    /// The issuer, when it verified.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    /// Why it is not verified evidence; none: verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<Unverified>,
}

impl Evidence {
    /// Whether it verified.
    pub fn verified(&self) -> bool {
        self.unverified.is_none()
    }

    /// One line for a clerk: the material and why it is not verified (nothing personal).
    pub fn for_clerk(&self) -> String {
        match self.unverified {
            None => format!("{}: verified e-licence of {}", self.material, self.issuer),
            Some(u) => format!("{}: {}", self.material, u.says()),
        }
    }
}

#[cfg(test)]
mod tests;
