//! Chinese identifiers as parse-don't-validate types: a value of these types is valid by
//! construction. `Debug` and `Display` mask them, so they cannot leak into logs by accident;
//! [`CitizenId::expose`] and friends give the raw value where it is really needed.

use chrono::{Datelike, NaiveDate};
use std::fmt;

/// Why an identifier was refused. The message names no part of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not the right number of characters.
    #[error("wrong length")]
    Length,
    /// A character that may not stand at its place.
    #[error("invalid character")]
    Character,
    /// The administrative division code is not a real province.
    #[error("unknown region")]
    Region,
    /// The embedded birth date is not a date, or lies in the future.
    #[error("invalid birth date")]
    BirthDate,
    /// The check digit or character does not match.
    #[error("wrong check character")]
    CheckDigit,
}

/// Province-level division codes (first two digits of GB/T 2260).
const PROVINCES: &[&str] = &[
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43", "44",
    "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
];

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Sex encoded by the parity of the sequence code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    /// Odd sequence code.
    Male,
    /// Even sequence code.
    Female,
}

/// An 18-digit resident identity number (GB 11643-1999): region, birth date, sequence, check.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CitizenId(String);

impl CitizenId {
    /// Parses and validates an ID number; a lowercase `x` check character is accepted.
    ///
    /// # Errors
    /// [`IdError`] for a wrong length, a non-digit, an unknown province, an impossible or
    /// future birth date, or a wrong check digit.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim().to_ascii_uppercase();
        if s.chars().count() != 18 {
            return Err(IdError::Length);
        }
        let bytes = s.as_bytes();
        if !bytes[..17].iter().all(u8::is_ascii_digit) || !(bytes[17].is_ascii_digit() || bytes[17] == b'X') {
            return Err(IdError::Character);
        }
        if !PROVINCES.contains(&&s[..2]) || &s[2..6] == "0000" {
            return Err(IdError::Region);
        }
        let birth = NaiveDate::parse_from_str(&s[6..14], "%Y%m%d").map_err(|_| IdError::BirthDate)?;
        if birth.year() < 1900 || birth > chrono::Local::now().date_naive() {
            return Err(IdError::BirthDate);
        }
        if check_digit(&s[..17]) != bytes[17] as char {
            return Err(IdError::CheckDigit);
        }
        Ok(Self(s))
    }

    /// Builds the ID number of a person born on `birth` in `region` with sequence `seq`
    /// (1..=999), computing the check digit.
    ///
    /// # Errors
    /// [`IdError::Region`] for a region that is not six digits of a real province,
    /// [`IdError::Character`] for a sequence outside 1..=999, [`IdError::BirthDate`] for a
    /// date before 1900 or in the future.
    pub fn assign(region: &str, birth: NaiveDate, seq: u16) -> Result<Self, IdError> {
        if !(1..=999).contains(&seq) {
            return Err(IdError::Character);
        }
        if region.len() != 6 || !region.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::Region);
        }
        let body = format!("{region}{}{seq:03}", birth.format("%Y%m%d"));
        let id = format!("{body}{}", check_digit(&body));
        Self::parse(&id)
    }

    /// The six-digit administrative division code of the registration place at issue.
    pub fn region(&self) -> &str {
        &self.0[..6]
    }

    /// The date of birth.
    pub fn birth_date(&self) -> NaiveDate {
        // Validated in `parse`.
        NaiveDate::parse_from_str(&self.0[6..14], "%Y%m%d").unwrap_or_default()
    }

    /// The three-digit sequence code.
    pub fn sequence(&self) -> u16 {
        self.0[14..17].parse().unwrap_or_default()
    }

    /// Sex from the parity of the sequence code.
    pub fn sex(&self) -> Sex {
        if self.sequence() % 2 == 1 { Sex::Male } else { Sex::Female }
    }

    /// The raw number, for storage and for the person it belongs to. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Check digit of the first 17 digits of an ID number.
fn check_digit(body17: &str) -> char {
    let sum: u32 = body17.bytes().zip(ID_WEIGHTS).map(|(b, w)| u32::from(b - b'0') * w).sum();
    ID_CHECK[(sum % 11) as usize]
}

impl fmt::Display for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_id(&self.0))
    }
}

impl fmt::Debug for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CitizenId({self})")
    }
}

const USCC_CHARS: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// An 18-character unified social credit code (统一社会信用代码, GB 32100-2015).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CreditCode(String);

impl CreditCode {
    /// Parses and validates a credit code (case-insensitive).
    ///
    /// # Errors
    /// [`IdError`] for a wrong length, a character outside the code's alphabet (I, O, S, V,
    /// Z never occur), a region part that is not six digits of a real province, or a wrong
    /// check character.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim().to_ascii_uppercase();
        if s.chars().count() != 18 {
            return Err(IdError::Length);
        }
        let values: Vec<u32> = s
            .chars()
            .map(|c| USCC_CHARS.find(c).map(|i| i as u32).ok_or(IdError::Character))
            .collect::<Result<_, _>>()?;
        let region = &s[2..8];
        if !region.bytes().all(|b| b.is_ascii_digit()) || !PROVINCES.contains(&&region[..2]) {
            return Err(IdError::Region);
        }
        let sum: u32 = values[..17].iter().zip(USCC_WEIGHTS).map(|(v, w)| v * w).sum();
        let check = (31 - sum % 31) % 31;
        if values[17] != check {
            return Err(IdError::CheckDigit);
        }
        Ok(Self(s))
    }

    /// Completes a 17-character body with its check character (for synthetic data).
    ///
    /// # Errors
    /// As [`CreditCode::parse`] on the completed code.
    pub fn complete(body17: &str) -> Result<Self, IdError> {
        let sum: u32 =
            body17.chars().zip(USCC_WEIGHTS).map(|(c, w)| USCC_CHARS.find(c).map_or(0, |i| i as u32) * w).sum();
        let check = USCC_CHARS.as_bytes()[((31 - sum % 31) % 31) as usize] as char;
        Self::parse(&format!("{body17}{check}"))
    }

    /// The six-digit region code of the registering authority.
    pub fn region(&self) -> &str {
        &self.0[2..8]
    }

    /// The code itself. A credit code is public information, so it also displays unmasked.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CreditCode({})", self.0)
    }
}

/// Province abbreviations that open a civil plate.
const PLATE_PROVINCES: &str = "京津冀晋蒙辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川贵云藏陕甘青宁新";

/// A motor vehicle plate (号牌), e.g. `鲁K12345`, or a new-energy `鲁KD12345`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Plate(String);

impl Plate {
    /// Parses a civil plate: a province character, a city letter, then five (ordinary) or six
    /// (new energy, starting or ending with D or F) letters and digits, never I or O.
    ///
    /// # Errors
    /// [`IdError::Length`], [`IdError::Region`] for an unknown province or city letter,
    /// [`IdError::Character`] for anything else out of place.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s: String = input.trim().to_uppercase();
        let chars: Vec<char> = s.chars().collect();
        if chars.len() != 7 && chars.len() != 8 {
            return Err(IdError::Length);
        }
        if !PLATE_PROVINCES.contains(chars[0]) {
            return Err(IdError::Region);
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() && c != 'I' && c != 'O';
        if !chars[1].is_ascii_uppercase() || !allowed(chars[1]) {
            return Err(IdError::Region);
        }
        if !chars[2..].iter().all(|&c| allowed(c)) {
            return Err(IdError::Character);
        }
        if chars.len() == 8 {
            let energy = |c: char| c == 'D' || c == 'F';
            if !(energy(chars[2]) || energy(chars[7])) {
                return Err(IdError::Character);
            }
        }
        Ok(Self(s))
    }

    /// The plate itself, for storage and display to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: Vec<char> = self.0.chars().collect();
        let head: String = chars[..2].iter().collect();
        let tail: String = chars[chars.len() - 2..].iter().collect();
        write!(f, "{head}***{tail}")
    }
}

impl fmt::Debug for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plate({self})")
    }
}

/// A passport number: 5 to 20 letters and digits with at least one digit (case-insensitive).
/// Displays masked (`E1*****78`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Passport(String);

impl Passport {
    /// Parses a passport number.
    ///
    /// # Errors
    /// [`IdError::Length`] outside 5..=20 characters, [`IdError::Character`] for anything but
    /// ASCII letters and digits, or no digit at all.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim().to_ascii_uppercase();
        if !(5..=20).contains(&s.chars().count()) {
            return Err(IdError::Length);
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric()) || !s.chars().any(|c| c.is_ascii_digit()) {
            return Err(IdError::Character);
        }
        Ok(Self(s))
    }

    /// The number, for storage and its holder. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Passport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c: Vec<char> = self.0.chars().collect();
        let head: String = c[..2].iter().collect();
        let tail: String = c[c.len() - 2..].iter().collect();
        write!(f, "{head}{}{tail}", "*".repeat(c.len() - 4))
    }
}

impl fmt::Debug for Passport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Passport({self})")
    }
}

/// Masks an ID-like string: the first six and last four characters stay
/// (`371002********1234`); anything shorter than eleven characters is fully starred.
pub fn mask_id(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 11 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

/// Free text (an error's message, a reason) with every run of six or more digits (an ID
/// number, a phone, a credit code's digits; a trailing `X` included) masked as
/// [`mask_id`] masks: for text that may quote a value, such as a database error.
pub fn scrub(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric()) {
            i += 1;
        }
        let run: String = chars[start..i].iter().collect();
        if run.chars().filter(char::is_ascii_digit).count() >= 6 {
            out.push_str(&if run.len() >= 15 { mask_id(&run) } else { mask_phone(&run) });
        } else {
            out.push_str(&run);
        }
    }
    out
}

/// Masks a personal name: the family name stays (`张**`).
pub fn mask_name(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().max(1))),
        None => String::new(),
    }
}

/// Masks a phone number: the first three and last four digits stay (`138****5678`).
pub fn mask_phone(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// Masks an address: the first six characters (province, city) stay.
pub fn mask_address(s: &str) -> String {
    let head: String = s.chars().take(6).collect();
    format!("{head}***")
}

#[cfg(test)]
mod tests {
    use super::*;

    // A well-known sample number from GB 11643 examples: 11010519491231002X.
    const SAMPLE: &str = "11010519491231002X";

    #[test]
    fn scrubbed_text_keeps_no_number_whole() {
        let s = scrub(&format!("duplicate key (id_number)=({SAMPLE}) phone 13800138000, case 42"));
        assert!(!s.contains(SAMPLE) && !s.contains("13800138000"), "{s}");
        assert!(s.contains("110105********002X") && s.contains("case 42"), "{s}");
    }

    #[test]
    fn citizen_id_valid() {
        let id = CitizenId::parse(SAMPLE).unwrap();
        assert_eq!(id.region(), "110105");
        assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1949, 12, 31).unwrap());
        assert_eq!(id.sequence(), 2);
        assert_eq!(id.sex(), Sex::Female);
        assert!(CitizenId::parse(&SAMPLE.to_lowercase()).is_ok());
    }

    #[test]
    fn citizen_id_wrong_check_digit() {
        assert_eq!(CitizenId::parse("110105194912310021"), Err(IdError::CheckDigit));
    }

    #[test]
    fn citizen_id_wrong_length() {
        assert_eq!(CitizenId::parse("11010519491231002"), Err(IdError::Length));
        assert_eq!(CitizenId::parse("11010519491231002X1"), Err(IdError::Length));
        assert_eq!(CitizenId::parse(""), Err(IdError::Length));
    }

    #[test]
    fn citizen_id_bad_characters() {
        assert_eq!(CitizenId::parse("1101051949123100AX"), Err(IdError::Character));
        assert_eq!(CitizenId::parse("11010519491231002Y"), Err(IdError::Character));
        // 18 characters but multi-byte: refused, not a panic on slicing.
        assert_eq!(CitizenId::parse("一一一一一一一一一一一一一一一一一一"), Err(IdError::Character));
    }

    #[test]
    fn citizen_id_bad_date() {
        let body = "11010519490231002";
        let id = format!("{body}{}", check_digit(body));
        assert_eq!(CitizenId::parse(&id), Err(IdError::BirthDate));
        let future = "11010520990101002";
        let id = format!("{future}{}", check_digit(future));
        assert_eq!(CitizenId::parse(&id), Err(IdError::BirthDate));
    }

    #[test]
    fn citizen_id_bad_region() {
        let body = "99010519491231002";
        let id = format!("{body}{}", check_digit(body));
        assert_eq!(CitizenId::parse(&id), Err(IdError::Region));
        let body = "37000019491231002";
        let id = format!("{body}{}", check_digit(body));
        assert_eq!(CitizenId::parse(&id), Err(IdError::Region));
    }

    #[test]
    fn citizen_id_assign_round_trips() {
        let born = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let id = CitizenId::assign("371002", born, 15).unwrap();
        assert_eq!(id.region(), "371002");
        assert_eq!(id.birth_date(), born);
        assert_eq!(id.sex(), Sex::Male);
        assert!(CitizenId::assign("371002", born, 0).is_err());
        assert!(CitizenId::assign("37100", born, 1).is_err());
    }

    #[test]
    fn citizen_id_masks_in_display_and_debug() {
        let id = CitizenId::parse(SAMPLE).unwrap();
        assert_eq!(id.to_string(), "110105********002X");
        assert!(!format!("{id:?}").contains(SAMPLE));
    }

    #[test]
    fn credit_code_valid_and_invalid() {
        // A published sample code: 91350100M000100Y43.
        let code = CreditCode::parse("91350100M000100Y43").unwrap();
        assert_eq!(code.region(), "350100");
        assert_eq!(CreditCode::parse("91350100M000100Y44"), Err(IdError::CheckDigit));
        assert_eq!(CreditCode::parse("91350100M000100Y4"), Err(IdError::Length));
        assert_eq!(CreditCode::parse("91350100M000100YI3"), Err(IdError::Character));
        assert_eq!(CreditCode::parse("9199A100M000100Y43"), Err(IdError::Region));
        let made = CreditCode::complete("91371002MA3C00001").unwrap();
        assert_eq!(made.region(), "371002");
    }

    #[test]
    fn plates() {
        assert!(Plate::parse("鲁K12345").is_ok());
        assert!(Plate::parse("鲁KD12345").is_ok());
        assert!(Plate::parse("鲁K12345F").is_ok());
        assert_eq!(Plate::parse("鲁K1234"), Err(IdError::Length));
        assert_eq!(Plate::parse("XK12345"), Err(IdError::Region));
        assert_eq!(Plate::parse("鲁K1234O"), Err(IdError::Character));
        assert_eq!(Plate::parse("鲁KA12345"), Err(IdError::Character));
        assert_eq!(Plate::parse("鲁K12345").unwrap().to_string(), "鲁K***45");
    }

    #[test]
    fn passports() {
        let p = Passport::parse("e12345678").unwrap();
        assert_eq!(p.expose(), "E12345678");
        assert_eq!(p.to_string(), "E1*****78");
        assert_eq!(Passport::parse("E123"), Err(IdError::Length));
        assert_eq!(Passport::parse("E1234-678"), Err(IdError::Character));
        assert_eq!(Passport::parse("ABCDEFGH"), Err(IdError::Character));
        assert_eq!(Passport::parse("护照12345"), Err(IdError::Character));
    }

    #[test]
    fn masks() {
        assert_eq!(mask_name("张三丰"), "张**");
        assert_eq!(mask_name("李"), "李*");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_address("山东省威海市环翠区某路1号"), "山东省威海市***");
        assert_eq!(mask_id("short"), "*****");
    }
}
