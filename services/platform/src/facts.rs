//! Facts other departments publish that a service keeps its own copy of. Today: deaths
//! confirmed by household (`onething.household.v1.person.deceased`), which exit-entry and
//! vehicle act on. A service adds [`DECEASED_TABLE`] to its migrator, consumes the
//! fact with [`DeceasedProjection`], and its cases that wait for a death are decided in the
//! same transaction as the fact is recorded.

use crate::{
    cases::CaseApi,
    events::{ConsumerSpec, Envelope, Handler, nats::stream_name},
    lifecycle::State,
    store::case,
};
use chrono::Utc;
use onething_proto::household::PersonDeceased;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, entity::prelude::*,
};

/// A death confirmed by household, as this service recorded it.
pub mod deceased {
    use sea_orm::entity::prelude::*;

    /// One deceased person. Personal data.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deceased_persons")]
    pub struct Model {
        /// Citizen ID number.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_number: String,
        /// Date of death, YYYY-MM-DD.
        pub death_date: String,
        /// Household's deregistration case.
        pub source_case_id: String,
        /// When the fact arrived.
        pub received_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The migration of the `deceased_persons` table.
pub const DECEASED_TABLE: crate::store::Tables = crate::tables!("m20261129_000002_deceased_persons", [deceased]);

/// Whether household has confirmed the death of `id_number`. Asked in the transaction
/// that creates or advances a case; until that ends, the confirmation of this death waits
/// (see [`lock_person`]), so a case that found no confirmation is committed, as waiting,
/// before the confirmation looks for waiting cases — neither misses the other.
///
/// # Errors
/// A database failure.
pub async fn is_deceased(txn: &DatabaseTransaction, id_number: &str) -> Result<bool, DbErr> {
    lock_person(txn, id_number).await?;
    Ok(deceased::Entity::find_by_id(id_number.to_string()).one(txn).await?.is_some())
}

/// The field of a matter's form naming the person whose death decides it.
pub const SUBJECT_FIELD: &str = "subject_id_number";

/// The intake of a matter decided on a death (a licence or document cancellation): while
/// household has not confirmed the death of the case's subject, the case waits, saying so
/// with `waiting` (the department's reason code).
///
/// # Errors
/// A database failure.
pub async fn wait_for_death(
    txn: &DatabaseTransaction,
    case: &mut crate::cases::CaseRecord,
    waiting: crate::reason::Reason,
) -> Result<(), DbErr> {
    if !is_deceased(txn, case.field(SUBJECT_FIELD)).await? {
        case.reason_code = waiting.into();
        case.reason_text = "waiting for household to confirm the death".into();
    }
    Ok(())
}

/// Whether the death of the case's subject is confirmed: such a matter is ready then.
///
/// # Errors
/// A database failure.
pub async fn subject_deceased(txn: &DatabaseTransaction, case: &crate::cases::CaseRecord) -> Result<bool, DbErr> {
    is_deceased(txn, case.field(SUBJECT_FIELD)).await
}

/// Serialises, per person, the check for a death and its recording.
async fn lock_person(txn: &DatabaseTransaction, id_number: &str) -> Result<(), DbErr> {
    crate::db::lock_named(txn, &format!("deceased:{id_number}")).await
}

/// The durable consumer `<service>-deaths` on household's stream.
pub fn deceased_spec(service: &str) -> ConsumerSpec {
    ConsumerSpec {
        name: format!("{service}-deaths"),
        stream: stream_name("household"),
        filter_subjects: vec!["onething.household.v1.person.deceased".into()],
        // Deciding waiting cases locks them; deaths are rare.
        batch: 1,
    }
}

/// Records deaths and decides this department's cases that were waiting for them: accepted
/// cases of `matters` whose form field `field` names the deceased.
pub struct DeceasedProjection {
    api: CaseApi,
    matters: Vec<String>,
    field: &'static str,
}

impl DeceasedProjection {
    /// A projection advancing `api`'s cases of `matters` that name the person in `field`.
    pub fn new(api: CaseApi, matters: &[&str], field: &'static str) -> Self {
        Self { api, matters: matters.iter().map(|m| (*m).to_string()).collect(), field }
    }
}

impl Handler for DeceasedProjection {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Envelope) -> anyhow::Result<()> {
        let fact: PersonDeceased = event.decode()?;
        // A case checking this death right now commits first, and is then found waiting.
        lock_person(txn, &fact.id_number).await?;
        let inserted = deceased::Entity::insert(deceased::ActiveModel {
            id_number: Set(fact.id_number.clone()),
            death_date: Set(fact.death_date.clone()),
            source_case_id: Set(fact.case_id.clone()),
            received_at: Set(Utc::now()),
        })
        .on_conflict_do_nothing_on([deceased::Column::IdNumber])
        .exec_without_returning(txn)
        .await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            // The same death twice (another event id): already recorded and acted on.
            return Ok(());
        }
        // Each waiting case's id and form text, read row by row: a case whose form does not
        // parse (corrupted) is reported and skipped, and decides no other case's fate.
        let waiting: Vec<(String, String)> = case::Entity::find()
            .select_only()
            .column(case::Column::Id)
            .column(case::Column::Form)
            .filter(case::Column::State.eq(State::Accepted))
            .filter(case::Column::MatterCode.is_in(self.matters.clone()))
            .into_tuple()
            .all(txn)
            .await?;
        let mut ids = Vec::new();
        for (id, form) in waiting {
            match serde_json::from_str::<std::collections::BTreeMap<String, String>>(&form) {
                Ok(form) if form.get(self.field).is_some_and(|v| *v == fact.id_number) => ids.push(id),
                Ok(_) => {}
                Err(_) => tracing::error!(case_id = %id, "a waiting case's form does not read; skipped"),
            }
        }
        let n = self.api.advance(txn, &ids).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(decided = n, "death confirmed; waiting cases decided");
        Ok(())
    }
}
