//! The case table: actions in one transaction with an optimistic version, amendments,
//! loads, and the ListCases page.

use super::*;

impl CaseApi {
    /// Opens the transaction of an action, loads the case, and checks the caller and
    /// `expected_version`. Nothing is written before these checks pass.
    pub(super) async fn begin_action(
        &self,
        p: &Principal,
        rpc: &str,
        need: Need,
        case_id: &str,
        expected_version: i64,
    ) -> Result<Action_> {
        authz::check(self.may(p, need, None), p, rpc, case_id)?;
        let txn = crate::db::begin_write(&self.inner.db).await?;
        // As in `get`: an unknown id and another's case answer alike to outsiders.
        let case = authz::hide_missing(load(&txn, case_id).await, self.reads_department(p), p, rpc, case_id)?;
        authz::check(self.may(p, need, Some(&case)), p, rpc, case_id)?;
        if expected_version != 0 && expected_version != case.version {
            return Err(Error::new(Kind::Aborted, Reason::CaseVersionMismatch, "the case changed; reload and retry"));
        }
        Ok(Action_ { before: (case.version, case.state), txn, case, events: Pending::new() })
    }

    /// Stores the case if nobody changed it meanwhile, with its events, and commits.
    pub(super) async fn finish_action(&self, a: Action_) -> Result<CaseRecord> {
        let Action_ { txn, case, before, events } = a;
        self.store_in(&txn, &case, before, events).await?;
        txn.commit().await?;
        self.inner.outbox.wake();
        tracing::info!(case_id = %case.id, state = %case.state, version = case.version, "case updated");
        Ok(case)
    }

    /// Writes `case` (if still at the version of `before`) and its events in `txn`, then
    /// runs the department's [`Department::after_change`].
    pub(super) async fn store_in(
        &self,
        txn: &DatabaseTransaction,
        case: &CaseRecord,
        (version, from): (i64, State),
        events: Pending,
    ) -> Result<()> {
        let updated = row::Entity::update_many()
            .set(case.to_active())
            .filter(row::Column::Id.eq(case.id.clone()))
            .filter(row::Column::Version.eq(version))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(Error::new(
                Kind::Aborted,
                Reason::CaseConcurrentUpdate,
                "the case changed concurrently; retry",
            ));
        }
        self.inner.outbox.enqueue_all(txn, events).await?;
        self.inner.changed.notify_one();
        self.rules(&case.matter_code)?.after_change(txn, case, from).await
    }

    /// Changes a case without a lifecycle transition (e.g. a rescheduled booking) inside the
    /// caller's transaction: `f` edits it, the version goes up, no state event is written.
    ///
    /// # Errors
    /// NOT_FOUND, the error `f` returns, or ABORTED on a concurrent change.
    pub async fn amend_in(
        &self,
        txn: &DatabaseTransaction,
        case_id: &str,
        f: impl FnOnce(&mut CaseRecord) -> Result<()>,
    ) -> Result<CaseRecord> {
        let mut case = load(txn, case_id).await?;
        let before = (case.version, case.state);
        f(&mut case)?;
        case.version += 1;
        case.updated_at = self.clock().now();
        self.store_in(txn, &case, before, Pending::new()).await?;
        Ok(case)
    }

    /// Reads a case inside the caller's transaction.
    ///
    /// # Errors
    /// NOT_FOUND or a database failure.
    pub async fn load_in(&self, txn: &DatabaseTransaction, case_id: &str) -> Result<CaseRecord> {
        load(txn, case_id).await
    }

    /// Runs a synchronous change on a case in one transaction.
    pub(super) async fn act(
        &self,
        (p, rpc, need): (&Principal, &str, Need),
        case_id: &str,
        expected_version: i64,
        f: impl FnOnce(&Self, &mut CaseRecord, &mut Pending) -> Result<()>,
    ) -> Result<CaseRecord> {
        crate::telemetry::record_ids(Some(case_id), None);
        let mut a = self.begin_action(p, rpc, need, case_id, expected_version).await?;
        f(self, &mut a.case, &mut a.events)?;
        self.finish_action(a).await
    }

    /// Lists cases, green-channel first, then newest first.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a negative page size or a bad page token; PERMISSION_DENIED
    /// for staff of another department.
    pub async fn list(&self, p: &Principal, req: pb::ListCasesRequest) -> Result<(Vec<CaseRecord>, String)> {
        // Staff and supervision see the department's cases; an applicant sees their own;
        // anyone else (the coordinator included) nothing.
        let everything = self.reads_department(p);
        let own = p.applicant().map(|(kind, id)| (crate::store::case::ApplicantKind::from_proto(kind), id.to_string()));
        authz::check(everything || own.is_some(), p, "ListCases", self.inner.dept.name())?;
        if req.page_size < 0 {
            return Err(Error::invalid_field(Reason::CaseInvalidRequest, "page_size", "must not be negative"));
        }
        let size = if req.page_size == 0 { DEFAULT_PAGE_SIZE } else { req.page_size.min(MAX_PAGE_SIZE) };
        let offset: u64 = if req.page_token.is_empty() {
            0
        } else {
            req.page_token.strip_prefix("o").and_then(|n| n.parse().ok()).ok_or_else(|| {
                Error::invalid_field(Reason::CaseInvalidRequest, "page_token", "not a token from this API")
            })?
        };
        let mut q = row::Entity::find()
            .filter(row::Column::Department.eq(self.inner.dept.name()))
            .order_by_desc(row::Column::Priority)
            .order_by_desc(row::Column::CreatedAt)
            .order_by_desc(row::Column::Id);
        if let Some(state) = pb::CaseState::try_from(req.state).ok().and_then(State::from_proto) {
            q = q.filter(row::Column::State.eq(state));
        }
        if !req.matter_code.is_empty() {
            q = q.filter(row::Column::MatterCode.eq(req.matter_code));
        }
        if req.under_notice {
            q = q.filter(row::Column::NoticeAt.is_not_null());
        }
        if !everything && let Some((kind, id)) = own {
            q = q.filter(row::Column::ApplicantKind.eq(kind)).filter(row::Column::ApplicantIdentifier.eq(id));
        }
        let rows = q.offset(offset).limit(size as u64 + 1).all(&self.inner.db).await?;
        let more = rows.len() > size as usize;
        let cases = rows.into_iter().take(size as usize).map(CaseRecord::from_model).collect();
        let next = if more { format!("o{}", offset + size as u64) } else { String::new() };
        Ok((cases, next))
    }

    /// The 督办 notices supervision issued to this department, newest first.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but its staff and supervision; INVALID_ARGUMENT for a
    /// negative page size.
    pub async fn notices(&self, p: &Principal, page_size: i32) -> Result<Vec<pb::Notice>> {
        authz::check(self.reads_department(p), p, "ListNotices", self.inner.dept.name())?;
        if page_size < 0 {
            return Err(Error::invalid_field(Reason::CaseInvalidRequest, "page_size", "must not be negative"));
        }
        let size = if page_size == 0 { DEFAULT_PAGE_SIZE } else { page_size.min(MAX_PAGE_SIZE) };
        let rows = crate::store::notice::Entity::find()
            .order_by_desc(crate::store::notice::Column::IssuedAt)
            .limit(size as u64)
            .all(&self.inner.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|n| pb::Notice {
                kind: n.kind,
                id: n.item_id,
                due_time: n.due_at.map(timestamp),
                issue_time: Some(timestamp(n.issued_at)),
            })
            .collect())
    }
}

/// The case made by the request with this idempotency key, if any.
pub(super) async fn find_by_key<C: sea_orm::ConnectionTrait>(db: &C, key: &str) -> Result<Option<CaseRecord>> {
    Ok(row::Entity::find().filter(row::Column::IdempotencyKey.eq(key)).one(db).await?.map(CaseRecord::from_model))
}

pub(super) async fn load<C: sea_orm::ConnectionTrait>(db: &C, case_id: &str) -> Result<CaseRecord> {
    if case_id.trim().is_empty() {
        return Err(Error::invalid_field(Reason::CaseInvalidRequest, "case_id", "required"));
    }
    let m = row::Entity::find_by_id(case_id.trim().to_string())
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found(Reason::CaseNotFound, "no such case"))?;
    Ok(CaseRecord::from_model(m))
}
