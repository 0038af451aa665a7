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
fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(text)
}

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
