//! 好差评: a finished case or bundle rated once by its applicant (the owning service
//! asked first), a bad review's fix recorded.

use super::*;

impl Supervision {
    /// Rates a finished case or bundle. Ownership is the owning service's call, asked by
    /// supervision acting for the rater (its own token, the rater as the actor): the rater's
    /// token never leaves supervision.
    ///
    /// # Errors
    /// INVALID_ARGUMENT outside 1–5 or for an unknown target kind; PERMISSION_DENIED for
    /// someone else's case or a non-applicant; FAILED_PRECONDITION when it is not finished;
    /// ALREADY_EXISTS when it was rated.
    pub async fn rate(&self, p: &Principal, r: pb::RateRequest) -> Result<rating::Model> {
        // Who may rate at all is decided before the request is looked at.
        authz::check(p.kind.is_applicant(), p, "Rate", &r.target_id)?;
        if !(1..=5).contains(&r.score) {
            return Err(Error::invalid_field(Reason::SupervisionInvalidRating, "score", "from 1 to 5"));
        }
        let kind = r.target_kind.as_str();
        if !matches!(kind, "case" | "bundle") {
            return Err(Error::invalid_field(Reason::SupervisionInvalidRequest, "target_kind", "case or bundle"));
        }
        if r.target_id.trim().is_empty() || r.target_id.len() > 128 {
            return Err(Error::invalid_field(
                Reason::SupervisionInvalidRequest,
                "target_id",
                "required, at most 128 characters",
            ));
        }
        let department = if kind == "bundle" { "coordinator".to_string() } else { r.department.replace('-', "_") };
        self.ask_owner(kind, &department, &r.target_id, p).await?;
        let finished = tracked::Entity::find_by_id((kind.to_string(), r.target_id.clone()))
            .one(&self.db)
            .await?
            .is_some_and(|t| t.closed);
        if !finished {
            return Err(Error::failed_precondition(
                Reason::SupervisionNotFinished,
                "only a finished case or bundle is rated",
            ));
        }
        let exists = rating::Entity::find()
            .filter(rating::Column::TargetKind.eq(kind))
            .filter(rating::Column::TargetId.eq(r.target_id.clone()))
            .one(&self.db)
            .await?;
        if exists.is_some() {
            return Err(Error::new(Kind::AlreadyExists, Reason::SupervisionAlreadyRated, "it was rated already"));
        }
        let now = self.clock.now();
        let m = rating::Model {
            id: uuid::Uuid::now_v7().to_string(),
            target_kind: kind.into(),
            target_id: r.target_id.clone(),
            department: department.clone(),
            score: i32::try_from(r.score).unwrap_or(0),
            fix_due: (r.score <= 2).then(|| self.calendar.add_working_days(now, domain::FIX_WITHIN_WORKING_DAYS).at),
            fix_note: String::new(),
            created_at: now,
        };
        let txn = begin_write(&self.db).await?;
        rating::Entity::insert(rating::ActiveModel::from(m.clone()).reset_all()).exec_without_returning(&txn).await?;
        self.outbox.enqueue(&txn, Self::rating_event(&m, false, "submitted")).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(m)
    }

    pub(super) fn rating_event(m: &rating::Model, fixed: bool, happened: &str) -> OutgoingEvent {
        OutgoingEvent::new(
            format!("onething.supervision.v1.rating.{happened}"),
            format!("ratings/{}", m.id),
            &pb::RatingChanged {
                rating_id: m.id.clone(),
                target_kind: m.target_kind.clone(),
                target_id: m.target_id.clone(),
                department: m.department.clone(),
                score: u32::try_from(m.score).unwrap_or(0),
                fixed,
                occur_time: Some(timestamp(m.created_at)),
            },
        )
    }

    pub(super) async fn ask_owner(&self, kind: &str, department: &str, id: &str, rater: &Principal) -> Result<()> {
        let channel = self.peers.channel(department).ok_or_else(|| {
            Error::invalid_field(Reason::SupervisionUnknownDepartment, "department", "no such department")
        })?;
        let on_behalf = self.identity.acting_for(rater, department).map_err(Error::internal)?;
        let intercepted = tonic::service::interceptor::InterceptedService::new(channel, on_behalf);
        let answer = if kind == "bundle" {
            copb::bundle_service_client::BundleServiceClient::new(intercepted)
                .get_bundle(copb::GetBundleRequest { bundle_id: id.into() })
                .await
                .map(|_| ())
        } else {
            cpb::case_service_client::CaseServiceClient::new(intercepted)
                .get_case(cpb::GetCaseRequest { case_id: id.into() })
                .await
                .map(|_| ())
        };
        answer.map_err(|s| match s.code() {
            tonic::Code::PermissionDenied => {
                Error::new(Kind::PermissionDenied, Reason::AuthPermissionDenied, "not your case")
            }
            tonic::Code::NotFound => Error::not_found(Reason::SupervisionTargetNotFound, "no such case or bundle"),
            _ => Error::new(
                Kind::Unavailable,
                Reason::SupervisionOwnerUnavailable,
                "the owning service did not answer; retry",
            ),
        })
    }

    /// Records the follow-up and fix of a bad review.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision or the department's staff;
    /// FAILED_PRECONDITION for a good rating or one fixed already.
    pub async fn record_fix(&self, p: &Principal, r: pb::RecordFixRequest) -> Result<rating::Model> {
        // Staff only, before anything is looked up; which department's, once it is.
        authz::check(p.kind == SubjectKind::Staff, p, "RecordFix", &r.rating_id)?;
        let txn = begin_write(&self.db).await?;
        let found = rating::Entity::find_by_id(r.rating_id.clone()).one(&txn).await?;
        let found = found.ok_or_else(|| Error::not_found(Reason::SupervisionRatingNotFound, "no such rating"));
        // Staff of a department learn nothing of ratings that do not exist.
        let m = authz::hide_missing(found, staff(p), p, "RecordFix", &r.rating_id)?;
        authz::check(
            // A case's department fixes its bad reviews; a bundle's (stored under the
            // coordinator, which has no staff) only supervision.
            staff(p) || (p.kind == SubjectKind::Staff && m.target_kind == "case" && p.dept == m.department),
            p,
            "RecordFix",
            &r.rating_id,
        )?;
        if m.score > 2 || !m.fix_note.is_empty() {
            return Err(Error::failed_precondition(
                Reason::SupervisionNothingToFix,
                "only an unfixed bad review takes a fix",
            ));
        }
        if r.note.trim().is_empty() {
            return Err(Error::invalid_field(Reason::SupervisionInvalidRequest, "note", "required"));
        }
        let mut next = m.clone();
        next.fix_note = r.note.trim().into();
        rating::ActiveModel::from(next.clone()).reset_all().update(&txn).await?;
        self.outbox.enqueue(&txn, Self::rating_event(&next, true, "fixed")).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(next)
    }
}

/// The API message of a rating.
pub fn rating_pb(m: &rating::Model) -> pb::Rating {
    pb::Rating {
        rating_id: m.id.clone(),
        target_kind: m.target_kind.clone(),
        target_id: m.target_id.clone(),
        department: m.department.clone(),
        score: u32::try_from(m.score).unwrap_or(0),
        bad: m.score <= 2,
        fix_due: m.fix_due.map(timestamp),
        fix_note: m.fix_note.clone(),
    }
}
