//! `onething.household.v1.HouseholdService`: registry look-ups for clerks and other services,
//! and corrections by its registrars ([`crate::correct`]).

use crate::store::{household, person, person::PersonStatus};
use onething_platform::reason::Reason;
use onething_platform::{
    auth::{Principal, SubjectKind},
    authz,
    error::Error,
    ids::CitizenId,
};
use onething_proto::household::{self as pb, household_service_server::HouseholdService};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use tonic::{Request, Response, Status};

/// The registry API.
#[derive(Clone)]
pub struct Registry {
    db: DatabaseConnection,
    corrections: crate::correct::Corrections,
}

impl Registry {
    /// The registry over household's database, with its registrars' corrections.
    pub fn new(db: DatabaseConnection, corrections: crate::correct::Corrections) -> Self {
        Self { db, corrections }
    }
}

/// Registry readers: see [`authz::reads_register`]; a citizen reads their own record.
fn reads_registry(p: &Principal) -> bool {
    authz::reads_register(p, crate::matters::DEPARTMENT)
}

fn person_pb(p: person::Model) -> pb::Person {
    pb::Person {
        status: if p.status == PersonStatus::Deceased { pb::PersonStatus::Deceased } else { pb::PersonStatus::Active }
            as i32,
        id_number: p.id_number,
        name: p.name,
        birth_date: p.birth_date,
        sex: p.sex,
        household_number: p.household_number,
        death_date: p.death_date.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl HouseholdService for Registry {
    async fn get_person(&self, r: Request<pb::GetPersonRequest>) -> Result<Response<pb::GetPersonResponse>, Status> {
        let caller = authz::principal(&r)?;
        let requested = r.into_inner().id_number;
        let own = caller.kind == SubjectKind::Citizen && caller.id_number == requested.trim().to_ascii_uppercase();
        authz::check(reads_registry(&caller) || own, &caller, "GetPerson", "persons")?;
        let id = CitizenId::parse(&requested).map_err(|e| {
            Error::invalid_field(Reason::HouseholdInvalidIdNumber, "id_number", format!("not a citizen ID number: {e}"))
        })?;
        let p = person::Entity::find_by_id(id.expose().to_string())
            .one(&self.db)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(Reason::HouseholdPersonNotFound, "no such person in the registry"))?;
        Ok(Response::new(pb::GetPersonResponse { person: Some(person_pb(p)) }))
    }

    async fn get_household(
        &self,
        r: Request<pb::GetHouseholdRequest>,
    ) -> Result<Response<pb::GetHouseholdResponse>, Status> {
        let caller = authz::principal(&r)?;
        let number = r.into_inner().household_number;
        if !reads_registry(&caller) {
            // A citizen may see the household they belong to, and no other.
            let mine = match caller.kind {
                SubjectKind::Citizen => person::Entity::find_by_id(caller.id_number.clone())
                    .one(&self.db)
                    .await
                    .map_err(Error::from)?
                    .is_some_and(|p| p.household_number == number),
                _ => false,
            };
            authz::check(mine, &caller, "GetHousehold", "households")?;
        }
        if number.len() != 12 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid_field(Reason::HouseholdInvalidNumber, "household_number", "12 digits").into());
        }
        let h = household::Entity::find_by_id(number.clone())
            .one(&self.db)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(Reason::HouseholdNotFound, "no such household"))?;
        let members = person::Entity::find()
            .filter(person::Column::HouseholdNumber.eq(number))
            .order_by_asc(person::Column::BirthDate)
            .all(&self.db)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::GetHouseholdResponse {
            household: Some(pb::Household {
                kind: if h.kind == household::HouseholdKind::Collective {
                    pb::HouseholdKind::Collective
                } else {
                    pb::HouseholdKind::Family
                } as i32,
                household_number: h.household_number,
                region_code: h.region_code,
                address: h.address,
                credit_code: h.credit_code,
            }),
            members: members.into_iter().map(person_pb).collect(),
        }))
    }

    async fn correct_person(
        &self,
        r: Request<pb::CorrectPersonRequest>,
    ) -> Result<Response<pb::CorrectPersonResponse>, Status> {
        let caller = authz::principal(&r)?;
        let (p, corrected_fields) = self.corrections.correct(&caller, r.into_inner()).await?;
        Ok(Response::new(pb::CorrectPersonResponse { person: Some(person_pb(p)), corrected_fields }))
    }
}
