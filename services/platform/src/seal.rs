//! Sealing personal data that a service's own events must carry so that it can rebuild its
//! records from its stream (supervision's complaints: what happened and how to reach the
//! complainant). A sealed value is ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from a
//! secret only that service holds: subscribers see ciphertext, the service replaying its
//! stream reads it again. Events carry a masked form beside it for display.

use anyhow::Context as _;
use ring::{
    aead::{self, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    hkdf,
    rand::{SecureRandom, SystemRandom},
};

/// Seals and opens values with one service's key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

/// A sealed value that does not open: another key, or altered.
#[derive(Debug, thiserror::Error)]
#[error("a sealed value does not open (another key, or altered)")]
pub struct NotOpened;

impl Sealer {
    /// The sealer of `purpose` (e.g. `onething supervision complaints v1`) keyed from
    /// `secret`; another purpose or secret gives another key.
    pub fn derive(secret: &[u8], purpose: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, purpose.as_bytes()).extract(secret);
        let mut bytes = [0u8; 32];
        // Both calls succeed for a 32-byte output of SHA-256's HKDF.
        let okm = prk.expand(&[b"seal"], &aead::CHACHA20_POLY1305).expect("HKDF output of the AEAD's length");
        okm.fill(&mut bytes).expect("HKDF fills the key");
        let key = UnboundKey::new(&aead::CHACHA20_POLY1305, &bytes).expect("a 32-byte ChaCha20-Poly1305 key");
        Self { key: LessSafeKey::new(key), rng: SystemRandom::new() }
    }

    /// The sealer of `purpose` keyed from the secret in file `path`.
    ///
    /// # Errors
    /// The file cannot be read or is empty.
    pub fn from_file(path: &str, purpose: &str) -> anyhow::Result<Self> {
        let secret = std::fs::read(path).with_context(|| format!("reading the sealing secret {path}"))?;
        anyhow::ensure!(!secret.is_empty(), "the sealing secret {path} is empty");
        Ok(Self::derive(&secret, purpose))
    }

    /// `plain` sealed: a fresh nonce, then the ciphertext with its tag.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // The system's randomness does not fail on a working system; a zero nonce would be
        // unique only once, so failing to read it stops here.
        self.rng.fill(&mut nonce).expect("system randomness");
        let mut out = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut out)
            .expect("sealing a value of any length");
        let mut sealed = nonce.to_vec();
        sealed.append(&mut out);
        sealed
    }

    /// What `sealed` holds.
    ///
    /// # Errors
    /// [`NotOpened`] for a value sealed under another key, altered or cut short.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, NotOpened> {
        if sealed.len() < NONCE_LEN {
            return Err(NotOpened);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| NotOpened)?;
        let mut buf = body.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut buf).map_err(|_| NotOpened)?;
        Ok(plain.to_vec())
    }
}

/// The 11 digits of a mainland mobile number written `c`: 11 digits from 1, optionally after
/// `+86` and spaces or dashes; `None` for anything else.
pub fn mobile_digits(c: &str) -> Option<&str> {
    let local = c.strip_prefix("+86").map_or(c, |rest| rest.trim_start_matches([' ', '-']));
    (local.len() == 11 && local.starts_with('1') && local.bytes().all(|b| b.is_ascii_digit())).then_some(local)
}

/// A contact (phone number or e-mail address) masked for display and events: the first three
/// and last four digits of a mobile number (as Chinese services show them), the last two
/// digits of any other number, the first character and the domain of an address; anything
/// else all masked.
pub fn mask_contact(contact: &str) -> String {
    let c: Vec<char> = contact.trim().chars().collect();
    if let Some(at) = c.iter().position(|ch| *ch == '@') {
        let domain: String = c[at..].iter().collect();
        return format!("{}***{domain}", c.first().copied().unwrap_or('*'));
    }
    if c.len() >= 7 && c.iter().all(|ch| ch.is_ascii_digit() || *ch == '-' || *ch == '+' || *ch == ' ') {
        let digits: String = c.iter().filter(|ch| ch.is_ascii_digit()).collect();
        if let Some(mobile) = mobile_digits(&digits).or_else(|| digits.strip_prefix("86").and_then(mobile_digits)) {
            return format!("{}****{}", &mobile[..3], &mobile[7..]);
        }
        return format!("****{}", &digits[digits.len().saturating_sub(2)..]);
    }
    "*".repeat(c.len().min(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sealed_opens_with_its_key_only() {
        let a = Sealer::derive(b"secret", "purpose one");
        let sealed = a.seal("13712345678".as_bytes());
        assert!(!String::from_utf8_lossy(&sealed).contains("13712345678"));
        assert_eq!(a.open(&sealed).unwrap(), b"13712345678");
        assert_ne!(a.seal(b"x"), a.seal(b"x"), "a fresh nonce each time");
        assert!(Sealer::derive(b"secret", "purpose two").open(&sealed).is_err());
        assert!(Sealer::derive(b"other", "purpose one").open(&sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(a.open(&altered).is_err());
        assert!(a.open(&sealed[..5]).is_err());
    }

    #[test]
    fn contacts_are_masked() {
        assert_eq!(mask_contact("13712345678"), "137****5678");
        assert_eq!(mask_contact("+86 13712345678"), "137****5678");
        assert_eq!(mask_contact("51925330"), "****30", "two digits of any other number");
        assert_eq!(mask_contact("0631-5192533"), "****33");
        assert_eq!(mask_contact("wang@example.cn"), "w***@example.cn");
        assert_eq!(mask_contact("微信号abc"), "******");
    }
}
