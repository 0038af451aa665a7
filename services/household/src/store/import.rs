//! What household imports from the population registry (docs/reference-data.md): households,
//! persons and kinship, each row checked with the rules requests are checked with.

use super::{household, kin, person, person::PersonStatus};
use chrono::{DateTime, Utc};
use onething_platform::{
    ids::{CitizenId, CreditCode, Sex},
    import::{Applied, Column, ImportKind, Row, date, one_of, required, text, upsert, value},
};
use sea_orm::{DatabaseTransaction, DbErr};

/// The kinds household imports.
pub fn kinds() -> Vec<Box<dyn ImportKind>> {
    vec![Box::new(Households), Box::new(Persons), Box::new(Kin)]
}

fn citizen(row: &Row, column: &str) -> Result<CitizenId, String> {
    CitizenId::parse(value(row, column)).map_err(|e| format!("{column}: not a citizen ID number ({e})"))
}

fn household_number(row: &Row, column: &str) -> Result<(), String> {
    let v = value(row, column);
    if v.len() != 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{column}: 12 digits"));
    }
    Ok(())
}

/// `households`: one household (户) of the registry.
struct Households;

const HOUSEHOLD_COLUMNS: &[Column] = &[
    Column { name: "household_number", required: true, description: "户号: 12 digits" },
    Column { name: "kind", required: false, description: "`family` (default) or `collective` (企业集体户)" },
    Column { name: "region_code", required: true, description: "the administrative division: 6 digits" },
    Column { name: "address", required: true, description: "the registered address, at most 200 characters" },
    Column {
        name: "credit_code",
        required: false,
        description: "a collective household's enterprise: an 18-character unified social credit code",
    },
];

#[onething_platform::async_trait]
impl ImportKind for Households {
    fn name(&self) -> &'static str {
        "households"
    }
    fn description(&self) -> &'static str {
        "a household of the registry"
    }
    fn columns(&self) -> &'static [Column] {
        HOUSEHOLD_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        value(row, "household_number").to_string()
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, HOUSEHOLD_COLUMNS)?;
        household_number(row, "household_number")?;
        let region = value(row, "region_code");
        if region.len() != 6 || !region.bytes().all(|b| b.is_ascii_digit()) {
            return Err("region_code: 6 digits".into());
        }
        text(row, "address", 200)?;
        one_of(row, "kind", &["family", "collective"])?;
        match (value(row, "kind"), value(row, "credit_code")) {
            ("collective", "") => Err("credit_code: required for a collective household".into()),
            (_, "") => Ok(()),
            (_, code) => {
                CreditCode::parse(code).map(|_| ()).map_err(|e| format!("credit_code: not a credit code ({e})"))
            }
        }
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| household::Model {
                household_number: value(r, "household_number").into(),
                kind: if value(r, "kind") == "collective" {
                    household::HouseholdKind::Collective
                } else {
                    household::HouseholdKind::Family
                },
                region_code: value(r, "region_code").into(),
                address: value(r, "address").into(),
                credit_code: CreditCode::parse(value(r, "credit_code"))
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
                created_at: now,
            })
            .collect();
        let how = upsert::Keyed::<household::Entity> {
            column: household::Column::HouseholdNumber,
            of: |m| m.household_number.clone(),
            key: |m| m.household_number.clone(),
            // A collective household this department set up keeps its enterprise when the
            // register's row names none.
            keep: |old, new| {
                new.created_at = old.created_at;
                if new.credit_code.is_empty() && old.kind == household::HouseholdKind::Collective {
                    new.kind = old.kind;
                    new.credit_code.clone_from(&old.credit_code);
                }
            },
        };
        upsert::upsert(txn, &how, records).await
    }
}

/// `persons`: one registered person. Registry corrections are checked by its rules too.
pub(crate) struct Persons;

const PERSON_COLUMNS: &[Column] = &[
    Column {
        name: "id_number",
        required: true,
        description: "the 18-character citizen ID number (GB 11643, check character)",
    },
    Column { name: "name", required: true, description: "the name, at most 64 characters" },
    Column { name: "birth_date", required: true, description: "YYYY-MM-DD, the date in the ID number" },
    Column { name: "sex", required: true, description: "`M` or `F`, as the ID number's sequence code says" },
    Column { name: "household_number", required: true, description: "the person's household: 12 digits" },
    Column { name: "status", required: false, description: "`active` (default) or `deceased`" },
    Column {
        name: "death_date",
        required: false,
        description: "YYYY-MM-DD; required when deceased, not before birth nor after today",
    },
    Column {
        name: "birth_certificate_number",
        required: false,
        description: "出生医学证明 number, at most 32 characters",
    },
];

#[onething_platform::async_trait]
impl ImportKind for Persons {
    fn name(&self) -> &'static str {
        "persons"
    }
    fn description(&self) -> &'static str {
        "a person of the registry"
    }
    fn columns(&self) -> &'static [Column] {
        PERSON_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        value(row, "id_number").to_ascii_uppercase()
    }
    fn check(&self, row: &Row, now: DateTime<Utc>) -> Result<(), String> {
        required(row, PERSON_COLUMNS)?;
        let id = citizen(row, "id_number")?;
        text(row, "name", 64)?;
        if date(row, "birth_date")? != Some(id.birth_date()) {
            return Err("birth_date: not the date in the ID number".into());
        }
        one_of(row, "sex", &["M", "F"])?;
        let sex = if id.sex() == Sex::Male { "M" } else { "F" };
        if value(row, "sex") != sex {
            return Err("sex: not what the ID number's sequence code says".into());
        }
        household_number(row, "household_number")?;
        one_of(row, "status", &["active", "deceased"])?;
        text(row, "birth_certificate_number", 32)?;
        match (value(row, "status"), date(row, "death_date")?) {
            ("deceased", None) => Err("death_date: required for a deceased person".into()),
            (s, Some(_)) if s != "deceased" => Err("death_date: only for a deceased person".into()),
            (_, Some(d)) if d < id.birth_date() || d > onething_platform::calendar::date_in_china(now) => {
                Err("death_date: between birth and today".into())
            }
            _ => Ok(()),
        }
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let optional = |r: &Row, c: &str| Some(value(r, c).to_string()).filter(|v| !v.is_empty());
        let records = rows
            .iter()
            .map(|r| person::Model {
                id_number: self.key(r),
                name: value(r, "name").into(),
                birth_date: value(r, "birth_date").into(),
                sex: value(r, "sex").into(),
                household_number: value(r, "household_number").into(),
                status: if value(r, "status") == "deceased" { PersonStatus::Deceased } else { PersonStatus::Active },
                death_date: optional(r, "death_date"),
                birth_certificate_number: optional(r, "birth_certificate_number"),
                created_at: now,
            })
            .collect();
        let how = upsert::Keyed::<person::Entity> {
            column: person::Column::IdNumber,
            of: |m| m.id_number.clone(),
            key: |m| m.id_number.clone(),
            // What the department recorded itself stands: an import never brings back a
            // person it deregistered (the death fact went out), nor drops the birth
            // certificate a registration recorded.
            keep: |old, new| {
                new.created_at = old.created_at;
                if old.status == PersonStatus::Deceased {
                    new.status = old.status;
                    new.death_date.clone_from(&old.death_date);
                }
                if new.birth_certificate_number.is_none() {
                    new.birth_certificate_number.clone_from(&old.birth_certificate_number);
                }
            },
        };
        upsert::upsert(txn, &how, records).await
    }
}

/// `kin`: one close relative on record, stored both ways.
struct Kin;

const KIN_COLUMNS: &[Column] = &[
    Column { name: "id_number", required: true, description: "the person: a citizen ID number" },
    Column { name: "relative_id_number", required: true, description: "their relative: another citizen ID number" },
    Column {
        name: "relation",
        required: true,
        description: "what the relative is to the person: `spouse`, `parent`, `child`, `sibling`, `grandparent` or `grandchild`",
    },
];

const RELATIONS: [(&str, kin::Kinship); 6] = [
    ("spouse", kin::Kinship::Spouse),
    ("parent", kin::Kinship::Parent),
    ("child", kin::Kinship::Child),
    ("sibling", kin::Kinship::Sibling),
    ("grandparent", kin::Kinship::Grandparent),
    ("grandchild", kin::Kinship::Grandchild),
];

#[onething_platform::async_trait]
impl ImportKind for Kin {
    fn name(&self) -> &'static str {
        "kin"
    }
    fn description(&self) -> &'static str {
        "a close relative (近亲属) on record; the relation is stored both ways"
    }
    fn columns(&self) -> &'static [Column] {
        KIN_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        // One relation between two people, whichever way a row names it.
        let (a, b) =
            (value(row, "id_number").to_ascii_uppercase(), value(row, "relative_id_number").to_ascii_uppercase());
        if a < b { format!("{a}|{b}") } else { format!("{b}|{a}") }
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, KIN_COLUMNS)?;
        let (a, b) = (citizen(row, "id_number")?, citizen(row, "relative_id_number")?);
        if a == b {
            return Err("relative_id_number: someone else than id_number".into());
        }
        let names: Vec<&str> = RELATIONS.iter().map(|(n, _)| *n).collect();
        one_of(row, "relation", &names)
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let mut records = Vec::with_capacity(rows.len() * 2);
        for r in rows {
            let relation =
                RELATIONS.iter().find(|(n, _)| *n == value(r, "relation")).map_or(kin::Kinship::Spouse, |(_, k)| *k);
            let (a, b) =
                (value(r, "id_number").to_ascii_uppercase(), value(r, "relative_id_number").to_ascii_uppercase());
            records.push(kin::Model {
                id_number: a.clone(),
                relative_id_number: b.clone(),
                relation,
                source: "import".into(),
                created_at: now,
            });
            records.push(kin::Model {
                id_number: b,
                relative_id_number: a,
                relation: relation.inverse(),
                source: "import".into(),
                created_at: now,
            });
        }
        let how = upsert::Keyed::<kin::Entity> {
            column: kin::Column::IdNumber,
            of: |m| m.id_number.clone(),
            key: |m| format!("{}|{}", m.id_number, m.relative_id_number),
            keep: |old, new| {
                new.created_at = old.created_at;
                new.source.clone_from(&old.source);
            },
        };
        let both = upsert::upsert(txn, &how, records).await?;
        // Two rows per relation: count relations.
        Ok(Applied { added: both.added / 2, updated: both.updated.div_ceil(2), unchanged: both.unchanged / 2 })
    }
}
