//! Registry corrections (issue 25): a household registrar corrects a person's entry with
//! the ground it rests on. The corrected entry is checked by the rules an import checks;
//! the change and its `person.corrected` event are written in one transaction, and the
//! correction is audited (who, which fields; never the values).

use crate::store::{household, import::Persons, person, person::PersonStatus};
use onething_platform::{
    auth::Principal,
    authz,
    clock::Clock,
    error::{Error, Result},
    events::{OutgoingEvent, outbox::Outbox},
    ids::CitizenId,
    import::{ImportKind as _, Row},
    reason::Reason,
};
use onething_proto::household as pb;
use sea_orm::{ActiveModelTrait as _, DatabaseConnection, EntityTrait, IntoActiveModel as _};

/// What a correction needs: the registry, the outbox, the business clock.
#[derive(Clone)]
pub struct Corrections {
    db: DatabaseConnection,
    outbox: Outbox,
    clock: Clock,
}

impl Corrections {
    /// Corrections over household's database and outbox.
    pub fn new(db: DatabaseConnection, outbox: Outbox, clock: Clock) -> Self {
        Self { db, outbox, clock }
    }

    /// Corrects the entry `req` names, as `caller` (a registrar of household).
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone else; INVALID_ARGUMENT for a malformed ID number or
    /// ground, or a corrected entry an import would refuse (naming the field); NOT_FOUND for
    /// an unknown person; FAILED_PRECONDITION for an unknown household or nothing to change.
    pub async fn correct(
        &self,
        caller: &Principal,
        req: pb::CorrectPersonRequest,
    ) -> Result<(person::Model, Vec<String>)> {
        authz::check(authz::is_registrar(caller, crate::matters::DEPARTMENT), caller, "CorrectPerson", "persons")?;
        let ground = onething_platform::import::ground(&req.ground, Reason::HouseholdInvalidCorrection)?.to_string();
        // A death is 户口注销's, with its evidence rules and the death fact it publishes; a
        // correction that made or unmade one would tell no department acting on deaths.
        for (field, given) in [("status", &req.status), ("death_date", &req.death_date)] {
            if given.is_some() {
                return Err(Error::invalid_field(
                    Reason::HouseholdInvalidCorrection,
                    field,
                    "not corrected here: a death is recorded by deregistration (household.deregistration)",
                ));
            }
        }
        let id = CitizenId::parse(&req.id_number).map_err(|e| {
            Error::invalid_field(Reason::HouseholdInvalidIdNumber, "id_number", format!("not a citizen ID number: {e}"))
        })?;
        let txn = onething_platform::db::begin_write(&self.db).await?;
        // Locked until the correction commits: two corrections of one entry follow each
        // other instead of one writing back what the other changed.
        let old = sea_orm::QuerySelect::lock_exclusive(person::Entity::find_by_id(id.expose().to_string()))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found(Reason::HouseholdPersonNotFound, "no such person in the registry"))?;
        let mut row = row_of(&old);
        let given = [
            ("name", req.name),
            ("household_number", req.household_number),
            ("status", req.status),
            ("death_date", req.death_date),
        ];
        for (field, value) in given {
            match value.map(|v| v.trim().to_string()) {
                Some(v) if v.is_empty() => {
                    row.remove(field);
                }
                Some(v) => {
                    row.insert(field.into(), v);
                }
                None => {}
            }
        }
        let now = self.clock.now();
        Persons.check(&row, now).map_err(|why| {
            let field = why.split(':').next().unwrap_or("request").to_string();
            Error::invalid_field(Reason::HouseholdInvalidCorrection, field, why)
        })?;
        let new = model_of(&row, &old);
        let changed = changed_fields(&old, &new);
        if changed.is_empty() {
            return Err(Error::failed_precondition(Reason::HouseholdNothingToCorrect, "the entry already says so"));
        }
        if new.household_number != old.household_number
            && household::Entity::find_by_id(new.household_number.clone()).one(&txn).await?.is_none()
        {
            return Err(Error::failed_precondition(Reason::HouseholdNotFound, "household_number: no such household"));
        }
        new.clone().into_active_model().reset_all().update(&txn).await?;
        let event = OutgoingEvent::new(
            "onething.household.v1.person.corrected",
            format!("persons/{}", new.id_number),
            &pb::PersonCorrected {
                id_number: new.id_number.clone(),
                corrected_fields: changed.clone(),
                corrected_by: format!("{}:{}", caller.dept, caller.sub),
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
            rpc = "CorrectPerson",
            fields = ?changed,
            ground = %ground,
            "registry entry corrected"
        );
        Ok((new, changed))
    }
}

/// `p` as an import row of `persons`.
fn row_of(p: &person::Model) -> Row {
    let mut row = Row::from([
        ("id_number".to_string(), p.id_number.clone()),
        ("name".to_string(), p.name.clone()),
        ("birth_date".to_string(), p.birth_date.clone()),
        ("sex".to_string(), p.sex.clone()),
        ("household_number".to_string(), p.household_number.clone()),
        ("status".to_string(), if p.status == PersonStatus::Deceased { "deceased" } else { "active" }.to_string()),
    ]);
    for (k, v) in [("death_date", &p.death_date), ("birth_certificate_number", &p.birth_certificate_number)] {
        if let Some(v) = v {
            row.insert(k.to_string(), v.clone());
        }
    }
    row
}

/// The entry `row` describes, `old`'s record otherwise.
fn model_of(row: &Row, old: &person::Model) -> person::Model {
    let value = |k: &str| row.get(k).cloned().unwrap_or_default();
    person::Model {
        name: value("name"),
        household_number: value("household_number"),
        status: if value("status") == "deceased" { PersonStatus::Deceased } else { PersonStatus::Active },
        death_date: row.get("death_date").cloned(),
        ..old.clone()
    }
}

fn changed_fields(old: &person::Model, new: &person::Model) -> Vec<String> {
    let pairs = [
        ("name", old.name != new.name),
        ("household_number", old.household_number != new.household_number),
        ("status", old.status != new.status),
        ("death_date", old.death_date != new.death_date),
    ];
    pairs.iter().filter(|(_, c)| *c).map(|(f, _)| (*f).to_string()).collect()
}
