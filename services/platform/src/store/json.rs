//! Structured column values, stored as JSON text so SQLite and PostgreSQL agree. A stored
//! value that does not parse as its type fails the read (a corrupted or foreign row is an
//! error, never an empty default).

use crate::cases::MaterialRecord;
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;

/// The JSON text of `value`.
fn to_json<T: Serialize>(value: &T) -> String {
    // Maps and lists of strings (and structs of strings) always serialise.
    serde_json::to_string(value).unwrap_or_default()
}

/// `text` parsed as `T`.
fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, NotItsJson> {
    serde_json::from_str(text).map_err(|e| NotItsJson { line: e.line(), column: e.column() })
}

/// A stored JSON value that is not of its column's type. It says where, never what: the
/// text may be personal data, and serde's own message quotes it.
#[derive(Debug)]
pub struct NotItsJson {
    line: usize,
    column: usize,
}

impl std::fmt::Display for NotItsJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a stored JSON value is not of its column's type (line {}, column {})", self.line, self.column)
    }
}

impl std::error::Error for NotItsJson {}

macro_rules! json_column {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, sea_orm::DeriveValueType)]
        #[serde(transparent)]
        #[sea_orm(value_type = "String", from_str = "from_json", to_str = "to_json", column_type = "Text")]
        pub struct $name(pub $inner);

        impl std::ops::Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl From<$inner> for $name {
            fn from(inner: $inner) -> Self {
                Self(inner)
            }
        }
    };
}

json_column!(
    /// Named string fields: a form, or a case's result.
    Fields(BTreeMap<String, String>)
);
json_column!(
    /// Submitted materials.
    Materials(Vec<MaterialRecord>)
);
json_column!(
    /// A list of codes or short texts (missing materials, notes).
    Texts(Vec<String>)
);
json_column!(
    /// What was found about a case's e-licence materials.
    EvidenceList(Vec<crate::elicence::Evidence>)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_not_of_its_type_fails_without_quoting_it() {
        assert_eq!(from_json::<Fields>(r#"{"a":"b"}"#).unwrap().get("a").map(String::as_str), Some("b"));
        let e = from_json::<Fields>(r#"{"subject_id_number": 371002199003150011}"#).unwrap_err().to_string();
        assert!(!e.contains("371002199003150011") && e.contains("line 1"), "{e}");
        assert!(from_json::<Materials>("not json").is_err());
    }
}
