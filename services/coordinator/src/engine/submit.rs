//! Submitting a bundle: the request validated in full first (steps, the form against the
//! catalog's fields, materials, who applies), so bad input creates nothing anywhere; then
//! the bundle and its steps stored with the bundle's event, and its first drive started.

use super::*;
use onething_platform::cases::evidence;
use onething_platform::reason::Reason;

/// A submit request that passed every check.
struct Valid {
    applicant: ApplicantRecord,
    /// The idempotency key as given (trimmed), before it is scoped to the caller.
    key: String,
    /// The steps applied for: the required ones and the optional ones chosen.
    included: Vec<String>,
    /// The form, values trimmed.
    form: BTreeMap<String, String>,
    /// The materials, validated.
    materials: Vec<MaterialRecord>,
}

impl Engine {
    /// Submits a bundle (see the proto for the contract).
    ///
    /// # Errors
    /// INVALID_ARGUMENT with field violations; PERMISSION_DENIED for someone applying in
    /// another's name; FAILED_PRECONDITION when the key was used for another application.
    pub async fn submit(&self, p: &Principal, r: pb::SubmitBundleRequest) -> Result<Aggregate> {
        // A window clerk of any department (一窗受理); supervision decides nothing.
        let clerk = p.kind == onething_platform::auth::SubjectKind::Staff
            && p.has_role(onething_platform::authz::ROLE_CLERK)
            && !onething_platform::authz::is_supervision(p);
        // Who may submit at all is decided before the request is looked at.
        onething_platform::authz::check(p.kind.is_applicant() || clerk, p, "SubmitBundle", &r.code)?;
        let def = self
            .inner
            .catalog
            .bundle(&r.code)
            .ok_or_else(|| {
                Error::invalid_field(Reason::CoordinatorUnknownBundle, "code", "not a bundle of the catalog")
            })?
            .clone();
        let valid = self.validate(&def, &r)?;
        // Applicants apply for themselves; window clerks of any department for anyone.
        let own = onething_platform::authz::is_applicant(p, valid.applicant.kind, &valid.applicant.identifier);
        onething_platform::authz::check(own || clerk, p, "SubmitBundle", &def.code)?;
        // The key is the caller's: another caller's same key finds nothing of this one.
        let key = onething_platform::idempotency::scoped(p, &valid.key);
        let agg = self.new_aggregate(&def, &valid, key)?;
        // The evidence each step's department will weigh, weighed at the door: a bundle is
        // not written to fail later for a certificate about someone else or a licence that
        // must verify and does not. A repeat of a submit that was taken is answered with its
        // bundle, whatever its evidence says now (a licence may have expired since).
        if let Err(refused) = self.weigh_evidence(&def, &valid) {
            return self.earlier(&agg, &def).await?.ok_or(refused);
        }
        self.store_new(agg, &def).await
    }

    /// Weighs each included step's e-licences as its department will ([`evidence::weigh`]).
    ///
    /// # Errors
    /// FAILED_PRECONDITION `CASE_ELICENCE_MISMATCH` for one about something else,
    /// `CASE_ELICENCE_NOT_VERIFIED` (naming the step) for one a step requires verified that
    /// is not.
    fn weigh_evidence(&self, def: &BundleDef, valid: &Valid) -> Result<()> {
        let now = self.inner.clock.now();
        let trust = &self.inner.trust;
        for st in def.steps.iter().filter(|s| valid.included.contains(&s.id)) {
            let Some(m) = self.inner.catalog.get(&st.matter) else { continue };
            let form = st.form_of(&valid.form);
            let weighed = evidence::weigh(trust, m, &valid.materials, &form, &valid.applicant.identifier, now)?;
            if let Some(r) = evidence::required_unverified(m, &weighed) {
                return Err(Error::failed_precondition(r.reason_code, format!("step {}: {}", st.id, r.reason_text)));
            }
        }
        Ok(())
    }

    /// Checks a submit request in full against bundle `def`, saying everything wrong at once.
    ///
    /// # Errors
    /// INVALID_ARGUMENT with every field violation.
    fn validate(&self, def: &BundleDef, r: &pb::SubmitBundleRequest) -> Result<Valid> {
        let mut bad = Vec::new();
        let applicant = ApplicantRecord::validate(r.applicant.as_ref(), &mut bad);
        let key = r.idempotency_key.trim().to_string();
        if key.is_empty() || key.len() > 128 {
            bad.push(violation("idempotency_key", "required, at most 128 characters"));
        }
        for (i, s) in r.optional_steps.iter().enumerate() {
            if !def.step(s).is_some_and(|d| d.optional) {
                bad.push(violation(format!("optional_steps[{i}]"), "not an optional step of this bundle"));
            }
        }
        let included: Vec<String> = def
            .steps
            .iter()
            .filter(|s| !s.optional || r.optional_steps.contains(&s.id))
            .map(|s| s.id.clone())
            .collect();
        if included.is_empty() {
            bad.push(violation("optional_steps", "choose at least one step"));
        }
        let form: BTreeMap<String, String> = r.form.iter().map(|(k, v)| (k.clone(), v.trim().to_string())).collect();
        // The catalog's fields, as for a case's form: a bundle's form becomes its steps' cases.
        self.inner.catalog.check_form(&form, &mut bad);
        for st in def.steps.iter().filter(|s| included.contains(&s.id)) {
            if let Some(m) = self.inner.catalog.get(&st.matter) {
                step_form_violations(&self.inner.catalog, st, m, &form, &mut bad);
            }
        }
        let matters: Vec<_> = def
            .steps
            .iter()
            .filter(|s| included.contains(&s.id))
            .filter_map(|s| self.inner.catalog.get(&s.matter))
            .collect();
        for (st, m) in def.steps.iter().filter(|s| included.contains(&s.id)).zip(&matters) {
            for required in &m.required_materials {
                if !r.materials.iter().any(|x| &x.code == required)
                    && !bad.iter().any(|b: &FieldViolation| b.description.contains(required.as_str()))
                {
                    bad.push(violation("materials", format!("{required} is required by step {}", st.id)));
                }
            }
        }
        let known = |code: &str| matters.iter().any(|mt| mt.knows_material(code));
        let materials =
            MaterialRecord::validate_with(&r.materials, known, "belongs to no step of this bundle", &mut bad);
        if let Some(e) = Error::from_violations(Reason::CoordinatorInvalidRequest, bad) {
            return Err(e);
        }
        let Some(applicant) = applicant else {
            return Err(Error::internal(anyhow::anyhow!("applicant validated without a value")));
        };
        Ok(Valid { applicant, key, included, form, materials })
    }

    /// The bundle and its steps as a valid request makes them, under the caller's `key`.
    ///
    /// # Errors
    /// INTERNAL when the form or materials do not serialize.
    fn new_aggregate(&self, def: &BundleDef, valid: &Valid, key: String) -> Result<Aggregate> {
        let Valid { applicant, included, form, .. } = valid;
        let now = self.inner.clock.now();
        let id = uuid::Uuid::now_v7().to_string();
        let materials = valid.materials.clone();
        let due = saga::due(def, included, &self.inner.catalog, &self.inner.calendar, now, &BTreeMap::new());
        let kind = onething_platform::store::case::ApplicantKind::from_proto(applicant.kind);
        let b = bundle::Model {
            id: id.clone(),
            code: def.code.clone(),
            state: BundleState::Running,
            applicant_kind: kind,
            applicant_identifier: applicant.identifier.clone(),
            applicant_name: applicant.name.clone(),
            applicant_phone: applicant.phone.clone(),
            form: form.clone().into(),
            materials: materials.into(),
            idempotency_key: key,
            due_at: due.at,
            version: 1,
            created_at: now,
            updated_at: now,
            traceparent: telemetry::current_traceparent(),
            waiting: false,
        };
        let steps: Vec<step::Model> = def
            .steps
            .iter()
            .filter(|s| included.contains(&s.id))
            .map(|s| step::Model {
                bundle_id: id.clone(),
                step_id: s.id.clone(),
                matter_code: s.matter.clone(),
                department: s.matter.split('.').next().unwrap_or_default().to_string(),
                state: if s.after.iter().any(|a| included.contains(a)) { Step::Blocked } else { Step::Pending },
                case_id: String::new(),
                case_state: String::new(),
                case_version: 0,
                reason: String::new(),
                result: Default::default(),
                attempts: 0,
                next_attempt_at: now,
                due_at: None,
                owed: Default::default(),
                owed_by: None,
                waiting: false,
            })
            .collect();
        Ok(Aggregate { bundle: b, steps })
    }

    /// The bundle an earlier submit of `agg`'s key made, when it is the same application;
    /// none when the key made nothing.
    ///
    /// # Errors
    /// FAILED_PRECONDITION when the key was used for another application; a database failure.
    async fn earlier(&self, agg: &Aggregate, def: &BundleDef) -> Result<Option<Aggregate>> {
        let Some(existing) = bundle::Entity::find()
            .filter(bundle::Column::IdempotencyKey.eq(agg.bundle.idempotency_key.clone()))
            .one(&self.inner.db)
            .await?
        else {
            return Ok(None);
        };
        if existing.code == def.code
            && existing.form == agg.bundle.form
            && existing.applicant_kind == agg.bundle.applicant_kind
            && existing.applicant_identifier == agg.bundle.applicant_identifier
        {
            return Ok(Some(self.load(&self.inner.db, &existing.id).await?));
        }
        Err(Error::failed_precondition(
            Reason::CoordinatorIdempotencyKeyReused,
            "the key was used for another application",
        ))
    }

    /// Stores a new bundle with its steps and its event, and starts its first drive; a
    /// repeated submit (same caller, same key) is answered with the bundle it made.
    ///
    /// # Errors
    /// FAILED_PRECONDITION when the key was used for another application; a database failure.
    async fn store_new(&self, agg: Aggregate, def: &BundleDef) -> Result<Aggregate> {
        let txn = begin_write(&self.inner.db).await?;
        // A repeated submit is answered with the bundle it made. The key is not looked up
        // first: the insert that finds it taken (also by a concurrent submit that committed)
        // is the lookup, one statement fewer for every new bundle.
        let inserted = bundle::Entity::insert(bundle::ActiveModel::from(agg.bundle.clone()).reset_all())
            .on_conflict_do_nothing_on([bundle::Column::IdempotencyKey])
            .exec_without_returning(&txn)
            .await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            txn.rollback().await?;
            return self
                .earlier(&agg, def)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("idempotency key taken by no bundle")));
        }
        step::Entity::insert_many(agg.steps.iter().map(|s| step::ActiveModel::from(s.clone()).reset_all()))
            .exec_without_returning(&txn)
            .await?;
        // The bundle is new in this transaction: its event goes to the relay as it is.
        let handed = self.inner.outbox.enqueue_new(&txn, vec![self.bundle_event(&agg, "submitted")]).await?;
        txn.commit().await?;
        handed.hand_over();
        tracing::info!(bundle_id = %agg.bundle.id, code = %def.code, "bundle submitted");
        self.spawn_drive(agg.clone());
        Ok(agg)
    }
}

pub(super) fn violation(field: impl Into<String>, description: impl Into<String>) -> FieldViolation {
    FieldViolation { field: field.into(), description: description.into() }
}

/// Checks the form a step's case will get, as its department's CreateCase will (the
/// catalog's declaration of its matter's form: required fields, enumerations), and reports
/// each violation on the bundle field it comes from, once per field.
fn step_form_violations(
    catalog: &onething_platform::catalog::Catalog,
    step: &onething_platform::catalog::Step,
    matter: &onething_platform::catalog::Matter,
    form: &BTreeMap<String, String>,
    bad: &mut Vec<FieldViolation>,
) {
    let source = |to: &str| step.fields.get(to).filter(|from| !from.starts_with('='));
    let step_form = step.form_of(form);
    let mut found = Vec::new();
    onething_platform::catalog::fields::check_matter_form(&catalog.fields, &matter.form, &step_form, &mut found);
    for v in found {
        let Some(from) = v.field.strip_prefix("form.").and_then(source) else { continue };
        let field = format!("form.{from}");
        if !bad.iter().any(|b| b.field == field) {
            let description = if v.description == "required" {
                format!("required by step {}", step.id)
            } else {
                format!("{} (step {})", v.description, step.id)
            };
            bad.push(violation(field, description));
        }
    }
}
