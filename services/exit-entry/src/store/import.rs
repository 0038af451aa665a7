//! What exit-entry imports from its records (docs/reference-data.md): foreigners' permit
//! histories and violations (the five-year rule, M13, reads them) and citizens' travel
//! documents, each row checked with the rules requests are checked with.

use super::entities::{commissioner, permit, staff, travel_document, violation};
use chrono::{DateTime, Utc};
use onething_platform::{
    calendar::date_in_china,
    ids::{CitizenId, CreditCode, Passport},
    import::{Applied, Column, ImportKind, Row, date, one_of, required, text, upsert, value},
    store::case::Standing,
};
use sea_orm::{DatabaseTransaction, DbErr, EntityTrait};

/// The kinds exit-entry imports.
pub fn kinds() -> Vec<Box<dyn ImportKind>> {
    vec![
        Box::new(Permits),
        Box::new(Violations),
        Box::new(TravelDocuments),
        Box::new(EnterpriseStaff),
        Box::new(Commissioners),
    ]
}

fn passport(row: &Row) -> Result<String, String> {
    Passport::parse(value(row, "passport_number"))
        .map(|p| p.expose().to_string())
        .map_err(|e| format!("passport_number: not a passport number ({e})"))
}

/// A document number: 5 to 32 letters and digits.
fn number(row: &Row, column: &str) -> Result<String, String> {
    let v = value(row, column).to_ascii_uppercase();
    if !(5..=32).contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("{column}: 5 to 32 letters and digits"));
    }
    Ok(v)
}

/// `permits`: one residence permit a foreign national held.
struct Permits;

const PERMIT_COLUMNS: &[Column] = &[
    Column { name: "permit_number", required: true, description: "the permit's number: 5 to 32 letters and digits" },
    Column { name: "passport_number", required: true, description: "the holder's passport number" },
    Column { name: "kind", required: false, description: "`work` (default), `study`, `family` or `other`" },
    Column { name: "valid_from", required: true, description: "its first day, YYYY-MM-DD" },
    Column { name: "valid_until", required: true, description: "its last day, YYYY-MM-DD, not before valid_from" },
];

#[onething_platform::async_trait]
impl ImportKind for Permits {
    fn name(&self) -> &'static str {
        "permits"
    }
    fn description(&self) -> &'static str {
        "a residence permit a foreign national held (permit history)"
    }
    fn columns(&self) -> &'static [Column] {
        PERMIT_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        value(row, "permit_number").to_ascii_uppercase()
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, PERMIT_COLUMNS)?;
        number(row, "permit_number")?;
        passport(row)?;
        one_of(row, "kind", &["work", "study", "family", "other"])?;
        if date(row, "valid_until")? < date(row, "valid_from")? {
            return Err("valid_until: not before valid_from".into());
        }
        Ok(())
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| permit::Model {
                permit_number: self.key(r),
                passport_number: passport(r).unwrap_or_default(),
                kind: Some(value(r, "kind")).filter(|k| !k.is_empty()).unwrap_or("work").into(),
                valid_from: value(r, "valid_from").into(),
                valid_until: value(r, "valid_until").into(),
                case_id: String::new(),
            })
            .collect();
        let how = upsert::Keyed::<permit::Entity> {
            column: permit::Column::PermitNumber,
            of: |m| m.permit_number.clone(),
            key: |m| m.permit_number.clone(),
            // A permit this department granted keeps its case.
            keep: |old, new| new.case_id.clone_from(&old.case_id),
        };
        upsert::upsert(txn, &how, records).await
    }
}

/// `violations`: one violation of exit-entry law on a foreign national's record.
struct Violations;

const VIOLATION_COLUMNS: &[Column] = &[
    Column { name: "passport_number", required: true, description: "the foreign national's passport number" },
    Column { name: "date", required: true, description: "when, YYYY-MM-DD, not after today" },
    Column { name: "summary", required: true, description: "what happened, at most 200 characters" },
];

#[onething_platform::async_trait]
impl ImportKind for Violations {
    fn name(&self) -> &'static str {
        "violations"
    }
    fn description(&self) -> &'static str {
        "a violation on a foreign national's record (one per passport, date and summary)"
    }
    fn columns(&self) -> &'static [Column] {
        VIOLATION_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        format!("{}|{}|{}", passport(row).unwrap_or_default(), value(row, "date"), value(row, "summary"))
    }
    fn check(&self, row: &Row, now: DateTime<Utc>) -> Result<(), String> {
        required(row, VIOLATION_COLUMNS)?;
        passport(row)?;
        if date(row, "date")?.is_some_and(|d| d > date_in_china(now)) {
            return Err("date: not after today".into());
        }
        text(row, "summary", 200)
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        // No natural key but the whole row (unique): one already there is unchanged.
        let mut applied = Applied::default();
        for r in rows {
            let row = violation::ActiveModel {
                passport_number: sea_orm::ActiveValue::Set(passport(r).unwrap_or_default()),
                date: sea_orm::ActiveValue::Set(value(r, "date").into()),
                summary: sea_orm::ActiveValue::Set(value(r, "summary").into()),
                ..Default::default()
            };
            let inserted = violation::Entity::insert(row)
                .on_conflict_do_nothing_on([
                    violation::Column::PassportNumber,
                    violation::Column::Date,
                    violation::Column::Summary,
                ])
                .exec_without_returning(txn)
                .await?;
            if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
                applied.added += 1;
            } else {
                applied.unchanged += 1;
            }
        }
        Ok(applied)
    }
}

/// `travel_documents`: one citizen's travel document.
struct TravelDocuments;

const DOCUMENT_COLUMNS: &[Column] = &[
    Column { name: "document_number", required: true, description: "its number: 5 to 32 letters and digits" },
    Column { name: "id_number", required: true, description: "the holder's citizen ID number" },
    Column { name: "kind", required: true, description: "`passport`, `hk_macao_permit` or `taiwan_permit`" },
    Column { name: "valid_until", required: true, description: "its last day, YYYY-MM-DD" },
    Column { name: "status", required: false, description: "`active` (default) or `cancelled`" },
];

#[onething_platform::async_trait]
impl ImportKind for TravelDocuments {
    fn name(&self) -> &'static str {
        "travel_documents"
    }
    fn description(&self) -> &'static str {
        "a citizen's travel document"
    }
    fn columns(&self) -> &'static [Column] {
        DOCUMENT_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        value(row, "document_number").to_ascii_uppercase()
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, DOCUMENT_COLUMNS)?;
        number(row, "document_number")?;
        CitizenId::parse(value(row, "id_number")).map_err(|e| format!("id_number: not a citizen ID number ({e})"))?;
        one_of(row, "kind", &["passport", "hk_macao_permit", "taiwan_permit"])?;
        date(row, "valid_until")?;
        one_of(row, "status", &["active", "cancelled"])
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| travel_document::Model {
                document_number: self.key(r),
                id_number: value(r, "id_number").to_ascii_uppercase(),
                kind: value(r, "kind").into(),
                valid_until: value(r, "valid_until").into(),
                status: if value(r, "status") == "cancelled" { Standing::Cancelled } else { Standing::Active },
            })
            .collect();
        let how = upsert::Keyed::<travel_document::Entity> {
            column: travel_document::Column::DocumentNumber,
            of: |m| m.document_number.clone(),
            key: |m| m.document_number.clone(),
            // A document this department cancelled stays cancelled.
            keep: |old, new| {
                if old.status == Standing::Cancelled {
                    new.status = Standing::Cancelled;
                }
            },
        };
        upsert::upsert(txn, &how, records).await
    }
}

/// `enterprise_staff`: a citizen employed by an enterprise (M15 links an expedited trip to
/// its enterprise).
struct EnterpriseStaff;

const STAFF_COLUMNS: &[Column] = &[
    Column { name: "credit_code", required: true, description: "the enterprise's unified social credit code" },
    Column { name: "id_number", required: true, description: "the employee's citizen ID number" },
];

#[onething_platform::async_trait]
impl ImportKind for EnterpriseStaff {
    fn name(&self) -> &'static str {
        "enterprise_staff"
    }
    fn description(&self) -> &'static str {
        "a citizen employed by an enterprise (expedited business trips, M15)"
    }
    fn columns(&self) -> &'static [Column] {
        STAFF_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        format!("{}|{}", value(row, "credit_code").to_ascii_uppercase(), value(row, "id_number").to_ascii_uppercase())
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, STAFF_COLUMNS)?;
        CreditCode::parse(value(row, "credit_code")).map_err(|e| format!("credit_code: not a credit code ({e})"))?;
        CitizenId::parse(value(row, "id_number")).map_err(|e| format!("id_number: not a citizen ID number ({e})"))?;
        Ok(())
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| staff::Model {
                credit_code: value(r, "credit_code").to_ascii_uppercase(),
                id_number: value(r, "id_number").to_ascii_uppercase(),
            })
            .collect();
        let how = upsert::Keyed::<staff::Entity> {
            column: staff::Column::CreditCode,
            of: |m| m.credit_code.clone(),
            key: |m| format!("{}|{}", m.credit_code, m.id_number),
            keep: |_, _| {},
        };
        upsert::upsert(txn, &how, records).await
    }
}

/// `commissioners`: a service commissioner (服务专员) for high-level talent (M13).
struct Commissioners;

const COMMISSIONER_COLUMNS: &[Column] = &[
    Column { name: "officer_id", required: true, description: "the officer's id: 2 to 32 letters and digits" },
    Column {
        name: "name",
        required: true,
        description: "the officer's name (staff, not an applicant), at most 64 characters",
    },
];

#[onething_platform::async_trait]
impl ImportKind for Commissioners {
    fn name(&self) -> &'static str {
        "commissioners"
    }
    fn description(&self) -> &'static str {
        "a service commissioner for high-level talent (M13); the cases assigned stay exit-entry's"
    }
    fn columns(&self) -> &'static [Column] {
        COMMISSIONER_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        value(row, "officer_id").to_ascii_uppercase()
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, COMMISSIONER_COLUMNS)?;
        let id = value(row, "officer_id");
        if !(2..=32).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("officer_id: 2 to 32 letters and digits".into());
        }
        text(row, "name", 64)
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| commissioner::Model { officer_id: self.key(r), name: value(r, "name").into(), assigned: 0 })
            .collect();
        let how = upsert::Keyed::<commissioner::Entity> {
            column: commissioner::Column::OfficerId,
            of: |m| m.officer_id.clone(),
            key: |m| m.officer_id.clone(),
            // The cases assigned so far are exit-entry's count.
            keep: |old, new| new.assigned = old.assigned,
        };
        upsert::upsert(txn, &how, records).await
    }
}
