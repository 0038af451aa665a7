//! The case workflow: idempotent intake (materials, 容缺受理, the department's checks), the
//! lifecycle steps, the automatic decision, and the one event per transition.

use super::*;

impl CaseApi {
    /// Creates a case (see the proto for the contract).
    ///
    /// # Errors
    /// PERMISSION_DENIED for a caller who may not apply (or applies as someone else);
    /// INVALID_ARGUMENT for an unknown matter or malformed fields; FAILED_PRECONDITION when
    /// the idempotency key was used for another application; INTERNAL on database failure.
    pub async fn create(&self, p: &Principal, req: pb::CreateCaseRequest) -> Result<CaseRecord> {
        let me = &self.inner;
        let may_create =
            p.kind.is_applicant() || (self.is_staff(p) && p.has_role(ROLE_CLERK)) || p.is_service(COORDINATOR);
        authz::check(may_create, p, "CreateCase", &req.matter_code)?;
        // Only the coordinator puts a case in a bundle: a bundle id or a step's key from
        // anyone else would let them steer someone else's bundle.
        let in_bundle = !req.bundle_id.trim().is_empty() || req.idempotency_key.trim().starts_with(BUNDLE_KEY_PREFIX);
        authz::check(!in_bundle || p.is_service(COORDINATOR), p, "CreateCase", "bundle")?;
        let matter = self.matter_of(&req.matter_code)?;
        let mut violations = Vec::new();
        let key = req.idempotency_key.trim();
        if key.is_empty() || key.len() > 128 {
            violations.push(violation("idempotency_key", "required, at most 128 characters"));
        }
        if req.bundle_id.len() > 128 {
            violations.push(violation("bundle_id", "at most 128 characters"));
        }
        let applicant = ApplicantRecord::validate(req.applicant.as_ref(), &mut violations);
        let materials = MaterialRecord::validate(&req.materials, matter, &mut violations);
        let form: crate::cases::Form = req.form.into_iter().map(|(k, v)| (k, v.trim().to_string())).collect();
        let now = me.clock.now();
        let rules = self.rules(&matter.code)?;
        violations.extend(crate::cases::check_case_form(&me.catalog, matter, rules, applicant.as_ref(), &form, now));
        let applicant_id = applicant.as_ref().map_or("", |a| a.identifier.as_str());
        let evidence = crate::cases::evidence::weigh(&me.trust, matter, &materials, &form, applicant_id, now);
        if let Some(e) = Error::from_violations(Reason::CaseInvalidRequest, violations) {
            return Err(e);
        }
        let evidence = evidence?;
        let Some(applicant) = applicant else {
            return Err(Error::internal(anyhow::anyhow!("applicant validated without a value")));
        };
        // Applicants apply for themselves; clerks and the coordinator for anyone.
        if p.kind.is_applicant() {
            authz::check(authz::is_applicant(p, applicant.kind, &applicant.identifier), p, "CreateCase", &matter.code)?;
        }
        let mut case = CaseRecord::received(matter, applicant, form, materials, now);
        case.idempotency_key = crate::idempotency::scoped(p, key);
        case.bundle_id = req.bundle_id.trim().to_string();
        let required = crate::cases::evidence::required_unverified(matter, &evidence);
        case.evidence = evidence;
        // Asked before any transaction: another service's answer (a green channel's employer).
        let verified = self.rules(&matter.code)?.verify(&mut case).await?.or(required);
        // A department rule that lost a race with a concurrent request (ABORTED: a number
        // taken meanwhile) runs again at once in a fresh transaction, with the case as it
        // was before the attempt; the caller sees a conflict only when it keeps losing.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.create_once(case.clone(), matter, verified.clone(), now).await {
                Err(e) if e.kind() == Kind::Aborted && attempt < 5 => continue,
                other => return other,
            }
        }
    }

    /// One attempt of [`Self::create`]: intake, the automatic decision, the row and its
    /// events in one transaction.
    ///
    /// The key is not looked up first (a statement fewer for every new case): a repeated
    /// request (the coordinator retrying, a client resending) does the work again in its
    /// transaction, finds its row already there, undoes everything and answers with the case
    /// it made. A repeat can also fail where the first succeeded (its effect is in place
    /// now), so a failed attempt asks for the key before it reports the failure.
    pub(super) async fn create_once(
        &self,
        mut case: CaseRecord,
        matter: &Matter,
        verified: Option<Refusal>,
        now: DateTime<Utc>,
    ) -> Result<CaseRecord> {
        let me = &self.inner;
        let key = case.idempotency_key.clone();
        let txn = crate::db::begin_write(&me.db).await?;
        let events = match self.intake(&txn, &mut case, matter, verified, now).await {
            Ok(events) => events,
            Err(e) => {
                txn.rollback().await?;
                return match find_by_key(&me.db, &key).await? {
                    Some(existing) => same_request(existing, matter, &case.applicant),
                    None => Err(e),
                };
            }
        };
        let inserted = row::Entity::insert(case.to_active())
            .on_conflict_do_nothing_on([row::Column::IdempotencyKey])
            .exec_without_returning(&txn)
            .await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            // The key is taken: by an earlier request, or a concurrent one that committed.
            txn.rollback().await?;
            let existing = find_by_key(&me.db, &key)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("idempotency key taken by no case")))?;
            return same_request(existing, matter, &case.applicant);
        }
        // The case is new in this transaction: when every event is about it or about
        // something else new in it (a household established), they go to the relay as they
        // are. An event about an older thing (a person's death) may have older ones of its
        // own waiting: then the relay reads the change's events from the outbox, all in the
        // order they were written.
        let own = format!("cases/{}", case.id);
        if events.iter().all(|e| e.ce_subject == own || e.subject_is_new) {
            let handed = me.outbox.enqueue_new(&txn, events).await?;
            txn.commit().await?;
            handed.hand_over();
        } else {
            me.outbox.enqueue_all(&txn, events).await?;
            txn.commit().await?;
            me.outbox.wake();
        }
        me.changed.notify_one();
        crate::telemetry::record_ids(Some(&case.id), Some(&case.bundle_id));
        tracing::info!(case_id = %case.id, matter = %case.matter_code, state = %case.state, "case created");
        Ok(case)
    }

    /// The intake of a new case in `txn`: its committed time and due time from receipt, then
    /// (unless what was verified before refuses it) [`Self::receive`]; returns the events to
    /// write with its row.
    pub(super) async fn intake(
        &self,
        txn: &DatabaseTransaction,
        case: &mut CaseRecord,
        matter: &Matter,
        verified: Option<Refusal>,
        now: DateTime<Utc>,
    ) -> Result<Pending> {
        let rules = self.rules(&matter.code)?;
        // The clock runs from receipt (M16: 24 hours from the application), whoever accepts.
        (case.time_unit, case.time_limit) = rules.time_limit(matter, case);
        let due = self.inner.calendar.due(case.created_at, case.time_unit, case.time_limit);
        (case.due_at, case.due_provisional) = (Some(due.at), due.provisional);
        case.warn_at = self.warn_at(case, matter);
        let mut events: Pending = vec![self.event(case, None)];
        if let Some(r) = verified {
            // The department's own conditions answer first (a stranger asking about someone
            // else's card hears that, not what another service said about that person).
            let r = rules.check_intake(txn, case).await?.unwrap_or(r);
            refuse(case, r);
            self.step(case, Action::NotAccept, now, &mut events)?;
            return Ok(events);
        }
        self.receive(txn, case, matter, now, &mut events).await?;
        Ok(events)
    }

    /// A submitted case checked at intake: the department's conditions (what no supplement
    /// can fix: not accepted), then the required materials (all that are missing asked for
    /// at once, 一次性告知), then the department's intake work and, by the matter's handling,
    /// acceptance and for an automatic matter the decision.
    pub(super) async fn receive(
        &self,
        txn: &DatabaseTransaction,
        case: &mut CaseRecord,
        matter: &Matter,
        now: DateTime<Utc>,
        events: &mut Pending,
    ) -> Result<()> {
        let rules = self.rules(&matter.code)?;
        if let Some(r) = rules.check_intake(txn, case).await? {
            refuse(case, r);
            return self.step(case, Action::NotAccept, now, events);
        }
        let missing: Vec<String> =
            matter.required_materials.iter().filter(|m| !case.has_material(m)).cloned().collect();
        if !missing.is_empty() {
            case.reason_code = Reason::CaseSupplementRequested.into();
            case.reason_text = format!("please supply: {}", missing.join(", "));
            case.missing_materials = missing;
            return self.step(case, Action::RequestSupplement, now, events);
        }
        rules.on_intake(txn, case, now).await?;
        // Evidence that did not verify: a clerk decides (whatever the handling), told what
        // could not be verified.
        if let Some(note) = super::evidence::for_clerk(case) {
            case.reason_text = note;
        }
        match matter.handling {
            Handling::Automatic => {
                self.step(case, Action::Accept, now, events)?;
                if self.decides_itself(txn, case).await? {
                    self.decide(txn, case, matter, now, events).await?;
                }
            }
            Handling::AutoAccept => self.step(case, Action::Accept, now, events)?,
            Handling::Review => {}
        }
        Ok(())
    }

    /// From when `case` counts as close to due: its due time less the matter's warning
    /// share of its committed time (counted from receipt, so a pause moves both alike).
    pub(super) fn warn_at(&self, case: &CaseRecord, matter: &Matter) -> Option<DateTime<Utc>> {
        let due = case.due_at?;
        let span = self.inner.calendar.due(case.created_at, case.time_unit, case.time_limit).at - case.created_at;
        let window = chrono::Duration::milliseconds((span.num_milliseconds() as f64 * matter.warn_share) as i64);
        Some(due - window)
    }

    /// Approves (or provisionally approves, when a 容缺 material is owed) an accepted case
    /// and applies the department's effect.
    pub(super) async fn decide(
        &self,
        txn: &DatabaseTransaction,
        case: &mut CaseRecord,
        matter: &Matter,
        now: DateTime<Utc>,
        events: &mut Pending,
    ) -> Result<()> {
        let owed: Vec<String> = matter.deferrable_materials.iter().filter(|m| !case.has_material(m)).cloned().collect();
        let rules = self.rules(&case.matter_code)?;
        rules.before_approve(txn, case).await?;
        case.result = rules.on_approve(txn, events, case, now).await?;
        if owed.is_empty() {
            self.step(case, Action::Approve, now, events)
        } else {
            case.missing_materials = owed;
            // The owed material's own deadline; missing it revokes the approval.
            let due = self.inner.calendar.add_working_days(now, matter.owed_within_working_days);
            (case.due_at, case.due_provisional) = (Some(due.at), due.provisional);
            self.step(case, Action::ApproveProvisionally, now, events)
        }
    }

    /// Revokes an approval at `now` for `reason` (`text` for the applicant): the lifecycle
    /// step and its event, then the department's [`super::super::MatterRules::on_revoke`]
    /// undoing its effects, in the caller's transaction.
    pub(super) async fn revoke(
        &self,
        txn: &DatabaseTransaction,
        case: &mut CaseRecord,
        (reason, text): (&str, String),
        now: DateTime<Utc>,
        events: &mut Pending,
    ) -> Result<()> {
        case.reason_code = reason.to_string();
        case.reason_text = text;
        self.step(case, Action::Revoke, now, events)?;
        self.rules(&case.matter_code)?.on_revoke(txn, events, case, now).await?;
        tracing::info!(case_id = %case.id, reason, "approval revoked");
        Ok(())
    }

    /// Applies `action` to `case`: lifecycle, clock, version, and its event.
    pub(super) fn step(
        &self,
        case: &mut CaseRecord,
        action: Action,
        now: DateTime<Utc>,
        events: &mut Pending,
    ) -> Result<()> {
        let from = case.state;
        let to =
            from.apply(action).map_err(|e| Error::failed_precondition(Reason::CaseIllegalTransition, e.to_string()))?;
        match action {
            Action::Accept => case.accepted_at = Some(now),
            Action::RequestSupplement => {
                case.paused_since = Some(now);
                let days = self.catalog_matter(case)?.supplement_within_working_days;
                case.supplement_due_at = Some(self.inner.calendar.add_working_days(now, days).at);
            }
            Action::StartSpecialProcedure => case.paused_since = Some(now),
            Action::Approve | Action::ApproveProvisionally | Action::CompleteOwed => {
                // A decision ends any waiting or supplement explanation the case carried.
                case.reason_code.clear();
                case.reason_text.clear();
            }
            Action::SupplyMaterials | Action::SupplyForIntake | Action::EndSpecialProcedure => {
                // The time the clock stood still is added back: working days for a
                // working-day limit, clock time for clock hours.
                if let (Some(due), Some(since)) = (case.due_at, case.paused_since.take()) {
                    let moved = self.inner.calendar.extend(due, case.time_unit, since, now);
                    case.due_at = Some(moved.at);
                    case.due_provisional |= moved.provisional;
                    case.warn_at = self.warn_at(case, self.catalog_matter(case)?);
                }
                case.supplement_due_at = None;
            }
            _ => {}
        }
        if to.is_final() {
            case.paused_since = None;
            case.supplement_due_at = None;
        }
        case.state = to;
        case.version += 1;
        case.updated_at = now;
        events.push(self.event(case, Some(from)));
        Ok(())
    }

    pub(super) fn event(&self, case: &CaseRecord, from: Option<State>) -> OutgoingEvent {
        let msg = pb::CaseStateChanged {
            case_id: case.id.clone(),
            matter_code: case.matter_code.clone(),
            department: case.department.clone(),
            from_state: from.map_or(pb::CaseState::Unspecified, State::to_proto) as i32,
            to_state: case.state.to_proto() as i32,
            reason_code: case.reason_code.clone(),
            missing_materials: case.missing_materials.clone(),
            version: case.version,
            due_time: case.due_at.map(timestamp),
            occur_time: Some(timestamp(case.updated_at)),
            // Only a bundle step's key: the coordinator needs it; anyone else's key is free
            // text of its caller and no subscriber's business.
            idempotency_key: Some(crate::idempotency::client_key(&case.idempotency_key))
                .filter(|k| k.starts_with(BUNDLE_KEY_PREFIX))
                .unwrap_or_default()
                .to_string(),
            bundle_id: case.bundle_id.clone(),
            applicant_kind: case.applicant.kind as i32,
            due_time_provisional: case.due_provisional,
            warn_time: case.warn_at.map(timestamp),
            supplement_due_time: case.supplement_due_at.map(timestamp),
            evidence: super::evidence::evidence_of(case),
        };
        OutgoingEvent::new(
            format!("{}.v1.case.{}", subject_root(&case.department), case.state.as_str()),
            format!("cases/{}", case.id),
            &msg,
        )
    }

    pub(super) fn matter_of(&self, code: &str) -> Result<&Matter> {
        let me = &self.inner;
        match me.catalog.get(code) {
            Some(m) if m.department == me.dept.name() => Ok(m),
            Some(_) => Err(Error::invalid_field(
                Reason::CaseWrongDepartment,
                "matter_code",
                format!("not a matter of the {} department", me.dept.name()),
            )),
            None => Err(Error::invalid_field(Reason::CaseUnknownMatter, "matter_code", "not in the catalog")),
        }
    }

    /// Decides the accepted cases of automatic matters among `case_ids` that are now
    /// ready, inside the caller's transaction (a consumer's inbox transaction, so the fact
    /// that made them ready and their decision commit together). Returns how many advanced.
    ///
    /// # Errors
    /// A database failure or a refused effect; the caller's transaction should roll back.
    pub async fn advance(&self, txn: &DatabaseTransaction, case_ids: &[String]) -> Result<usize> {
        let mut advanced = 0;
        for id in case_ids {
            let mut case = load(txn, id).await?;
            let Some(matter) = self.inner.catalog.get(&case.matter_code).cloned() else { continue };
            if case.state != State::Accepted
                || matter.handling != Handling::Automatic
                || !self.decides_itself(txn, &case).await?
            {
                continue;
            }
            let before = (case.version, case.state);
            let mut events = Pending::new();
            self.decide(txn, &mut case, &matter, self.clock().now(), &mut events).await?;
            self.store_in(txn, &case, before, events).await?;
            tracing::info!(case_id = %case.id, state = %case.state, "waiting case decided");
            advanced += 1;
        }
        Ok(advanced)
    }

    pub(super) fn catalog_matter(&self, case: &CaseRecord) -> Result<&Matter> {
        self.inner
            .catalog
            .get(&case.matter_code)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("matter {} left the catalog", case.matter_code)))
    }
}

/// Sets a refusal at intake on `case`, dropping what was verified before it (a green
/// channel admitted by another service's answer): a refused case tells nothing of it.
fn refuse(case: &mut CaseRecord, r: Refusal) {
    case.reason_code = r.reason_code.into();
    case.reason_text = r.reason_text;
    case.result.clear();
    case.priority = false;
}

/// A retried create returns the first case only when it is the same matter for the same
/// applicant; anything else reuses a key and learns nothing about the other case.
fn same_request(existing: CaseRecord, matter: &Matter, applicant: &ApplicantRecord) -> Result<CaseRecord> {
    if existing.matter_code == matter.code
        && existing.applicant.kind == applicant.kind
        && existing.applicant.identifier == applicant.identifier
    {
        Ok(existing)
    } else {
        Err(Error::failed_precondition(
            Reason::CaseIdempotencyKeyReused,
            "the idempotency key was already used for another application",
        ))
    }
}

pub(super) fn violation(field: &str, description: &str) -> FieldViolation {
    FieldViolation { field: field.to_string(), description: description.to_string() }
}

pub(super) fn check_reason_code(code: &str) -> Result<()> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(Reason::CaseInvalidRequest, "reason_code", "UPPER_SNAKE_CASE, at most 64"))
    }
}
