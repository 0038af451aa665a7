//! What liaison imports from 市场监管's enterprise register (docs/reference-data.md):
//! enterprises, each row checked with the rules requests are checked with.

use super::entities::{employee, enterprise};
use chrono::{DateTime, Utc};
use onething_platform::{
    ids::{CitizenId, CreditCode},
    import::{Applied, Column, ImportKind, Row, date, one_of, required, text, upsert, value},
};
use sea_orm::{DatabaseTransaction, DbErr};

/// The kinds liaison imports.
pub fn kinds() -> Vec<Box<dyn ImportKind>> {
    vec![Box::new(Enterprises), Box::new(Employees)]
}

/// `enterprises`: one enterprise of the register, with its liaison officer (M8).
struct Enterprises;

const COLUMNS: &[Column] = &[
    Column {
        name: "credit_code",
        required: true,
        description: "the unified social credit code (GB 32100, check character)",
    },
    Column { name: "name", required: true, description: "at most 100 characters" },
    Column {
        name: "legal_representative",
        required: true,
        description: "the legal representative's name, at most 64 characters",
    },
    Column { name: "address", required: true, description: "at most 200 characters" },
    Column { name: "park", required: false, description: "the park it is in, at most 100 characters" },
    Column {
        name: "liaison_officer", required: false, description: "its 项目警长 / 园区警长, at most 64 characters"
    },
    Column {
        name: "precursor_qualified",
        required: false,
        description: "`true` or `false` (default): may buy or move precursor chemicals",
    },
    Column { name: "ownership", required: false, description: "`private`, `state`, `foreign` or `collective`" },
];

#[onething_platform::async_trait]
impl ImportKind for Enterprises {
    fn name(&self) -> &'static str {
        "enterprises"
    }
    fn description(&self) -> &'static str {
        "an enterprise of the register"
    }
    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        value(row, "credit_code").to_ascii_uppercase()
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, COLUMNS)?;
        CreditCode::parse(value(row, "credit_code")).map_err(|e| format!("credit_code: not a credit code ({e})"))?;
        text(row, "name", 100)?;
        text(row, "legal_representative", 64)?;
        text(row, "address", 200)?;
        text(row, "park", 100)?;
        text(row, "liaison_officer", 64)?;
        one_of(row, "precursor_qualified", &["true", "false"])?;
        one_of(row, "ownership", &["private", "state", "foreign", "collective"])
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| enterprise::Model {
                credit_code: self.key(r),
                name: value(r, "name").into(),
                legal_representative: value(r, "legal_representative").into(),
                address: value(r, "address").into(),
                park: value(r, "park").into(),
                liaison_officer: value(r, "liaison_officer").into(),
                precursor_qualified: value(r, "precursor_qualified") == "true",
                ownership: value(r, "ownership").into(),
            })
            .collect();
        let how = upsert::Keyed::<enterprise::Entity> {
            column: enterprise::Column::CreditCode,
            of: |m| m.credit_code.clone(),
            key: |m| m.credit_code.clone(),
            // The liaison officer and the precursor qualification are liaison's own; the
            // register's row gives them only for an enterprise new here. A column the row
            // leaves empty keeps what is there.
            keep: |old, new| {
                new.precursor_qualified = old.precursor_qualified;
                for (n, o) in [
                    (&mut new.liaison_officer, &old.liaison_officer),
                    (&mut new.park, &old.park),
                    (&mut new.ownership, &old.ownership),
                ] {
                    if n.is_empty() {
                        n.clone_from(o);
                    }
                }
            },
        };
        upsert::upsert(txn, &how, records).await
    }
}

/// `employees`: a citizen employed by an enterprise since a date (the residence permit's
/// green channel asks liaison whether an applicant works for a local enterprise).
struct Employees;

const EMPLOYEE_COLUMNS: &[Column] = &[
    Column { name: "credit_code", required: true, description: "the enterprise's unified social credit code" },
    Column { name: "id_number", required: true, description: "the employee's citizen ID number" },
    Column { name: "since", required: true, description: "employed since, YYYY-MM-DD" },
];

#[onething_platform::async_trait]
impl ImportKind for Employees {
    fn name(&self) -> &'static str {
        "employees"
    }
    fn description(&self) -> &'static str {
        "a citizen employed by an enterprise (green channels)"
    }
    fn columns(&self) -> &'static [Column] {
        EMPLOYEE_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        format!("{}|{}", value(row, "credit_code").to_ascii_uppercase(), value(row, "id_number").to_ascii_uppercase())
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, EMPLOYEE_COLUMNS)?;
        CreditCode::parse(value(row, "credit_code")).map_err(|e| format!("credit_code: not a credit code ({e})"))?;
        CitizenId::parse(value(row, "id_number")).map_err(|e| format!("id_number: not a citizen ID number ({e})"))?;
        date(row, "since").map(|_| ())
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| employee::Model {
                credit_code: value(r, "credit_code").to_ascii_uppercase(),
                id_number: value(r, "id_number").to_ascii_uppercase(),
                since: value(r, "since").into(),
            })
            .collect();
        let how = upsert::Keyed::<employee::Entity> {
            column: employee::Column::CreditCode,
            of: |m| m.credit_code.clone(),
            key: |m| format!("{}|{}", m.credit_code, m.id_number),
            keep: |_, _| {},
        };
        upsert::upsert(txn, &how, records).await
    }
}
