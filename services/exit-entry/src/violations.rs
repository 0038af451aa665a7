//! Recording violations (issue 25): exit-entry staff record a violation of exit-entry law on
//! a foreign national's record, with its ground — what the five-year rule (M13) reads. The
//! row and its `violation.recorded` event are written in one transaction; the same
//! violation again records nothing more; each recording is audited.

use crate::store::{entities::violation, import::kinds};
use onething_platform::{
    auth::Principal,
    authz,
    clock::Clock,
    error::{Error, Result},
    events::{OutgoingEvent, outbox::Outbox},
    import::Row,
    reason::Reason,
};
use onething_proto::exit_entry as pb;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};

/// What recording needs: the records, the outbox, the business clock.
#[derive(Clone)]
pub struct Violations {
    db: DatabaseConnection,
    outbox: Outbox,
    clock: Clock,
}

impl Violations {
    /// Recording over exit-entry's database and outbox.
    pub fn new(db: DatabaseConnection, outbox: Outbox, clock: Clock) -> Self {
        Self { db, outbox, clock }
    }

    /// Records the violation `req` describes, as `caller` (a registrar of exit-entry).
    /// Returns whether it was new.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone else; INVALID_ARGUMENT for a malformed passport (naming
    /// it), date, summary or ground, checked by the rules an import of violations checks.
    pub async fn record(&self, caller: &Principal, req: pb::RecordViolationRequest) -> Result<bool> {
        authz::check(authz::is_registrar(caller, crate::matters::DEPARTMENT), caller, "RecordViolation", "violations")?;
        let ground = onething_platform::import::ground(&req.ground, Reason::ExitEntryInvalidViolation)?.to_string();
        let row = Row::from([
            ("passport_number".to_string(), req.passport_number.trim().to_string()),
            ("date".to_string(), req.date.trim().to_string()),
            ("summary".to_string(), req.summary.trim().to_string()),
        ]);
        let now = self.clock.now();
        let rules = kinds()
            .into_iter()
            .find(|k| k.name() == "violations")
            .ok_or_else(|| Error::internal(anyhow::anyhow!("exit-entry imports no violations")))?;
        rules.check(&row, now).map_err(|why| {
            let field = why.split(':').next().unwrap_or("request").to_string();
            let reason = if field == "passport_number" {
                Reason::ExitEntryInvalidPassport
            } else {
                Reason::ExitEntryInvalidViolation
            };
            Error::invalid_field(reason, field, why)
        })?;
        let passport = rules.key(&row).split('|').next().unwrap_or_default().to_string();
        let (date, summary) = (row["date"].clone(), row["summary"].clone());
        let txn = onething_platform::db::begin_write(&self.db).await?;
        let record = violation::ActiveModel {
            passport_number: Set(passport.clone()),
            date: Set(date.clone()),
            summary: Set(summary),
            ..Default::default()
        };
        // On record once: the unique index decides between concurrent recordings.
        let inserted = violation::Entity::insert(record)
            .on_conflict_do_nothing_on([
                violation::Column::PassportNumber,
                violation::Column::Date,
                violation::Column::Summary,
            ])
            .exec_without_returning(&txn)
            .await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            return Ok(false);
        }
        let event = OutgoingEvent::new(
            "onething.exit_entry.v1.violation.recorded",
            format!("foreigners/{passport}"),
            &pb::ViolationRecorded {
                passport_number: passport,
                date,
                recorded_by: format!("{}:{}", caller.dept, caller.sub),
                occur_time: Some(onething_platform::cases::timestamp(now)),
                ground: ground.clone(),
            },
        );
        self.outbox.enqueue(&txn, event).await?;
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(
            target: "audit",
            subject = %caller.sub,
            dept = %caller.dept,
            rpc = "RecordViolation",
            ground = %ground,
            "violation recorded"
        );
        Ok(true)
    }
}
