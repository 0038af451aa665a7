//! Driving bundles: a bundle's due steps created at their departments, withdrawals made
//! and results fetched, one drive per bundle in this process at a time; the driver's sweep
//! and the submit path share a bounded number of drive slots.

use super::*;
use sea_orm::{Condition, QuerySelect};

impl Engine {
    /// Drives bundle `id` in the background, in the trace of `traceparent`.
    /// Drives a bundle this process has just written, starting from `agg` as committed
    /// (its first round reads nothing).
    /// With every drive slot taken, the driver's next sweep drives it instead.
    pub(super) fn spawn_drive(&self, agg: Aggregate) {
        let Ok(slot) = self.inner.drive_slots.clone().try_acquire_owned() else {
            self.inner.wake.notify_one();
            return;
        };
        let engine = self.clone();
        tokio::spawn(async move {
            let id = agg.bundle.id.clone();
            let traceparent = agg.bundle.traceparent.clone();
            engine.drive_traced(&id, Some(traceparent), Some(agg)).await;
            drop(slot);
        });
    }

    /// Advances one bundle: creates due pending steps, withdraws steps being cancelled,
    /// and fetches the results of steps that finished through events. Errors are logged;
    /// the driver comes back. A bundle already being driven in this process is not driven
    /// twice at once: the running drive goes round once more instead, so a wake-up is never
    /// lost and a department is not asked for the same case twice by one replica.
    pub async fn drive(&self, id: &str) {
        self.drive_traced(id, None, None).await;
    }

    /// [`Self::drive`] with the bundle's trace context when the caller has it already
    /// (`None`: read it from the bundle), and the bundle as just committed, if the caller has it.
    pub(super) async fn drive_traced(&self, id: &str, traceparent: Option<Option<String>>, first: Option<Aggregate>) {
        if self.claim(id) {
            self.drive_claimed(id, traceparent, first).await;
        }
    }

    /// Claims bundle `id` for a drive in this process: `true` when none is running (the
    /// caller drives it, then [`Self::drive_claimed`] releases it), else `false`, and the
    /// running drive goes round once more. One lock for both, so no wake-up falls between.
    pub(super) fn claim(&self, id: &str) -> bool {
        let mut driving = self.inner.driving.lock().expect("driving list");
        if let Some(again) = driving.get_mut(id) {
            *again = true;
            return false;
        }
        driving.insert(id.to_string(), false);
        true
    }

    /// Drives bundle `id`, claimed by [`Self::claim`], round after round while wake-ups came
    /// meanwhile; releases the claim under the lock that sees the last wake-up.
    pub(super) async fn drive_claimed(
        &self,
        id: &str,
        traceparent: Option<Option<String>>,
        mut first: Option<Aggregate>,
    ) {
        let mut claim = Driving(&self.inner, id, true);
        // Whoever wakes the driver (the submit, an event, the sweeper), its calls and events
        // belong to the bundle's trace.
        let parent = match traceparent {
            Some(known) => known,
            None => bundle::Entity::find_by_id(id).one(&self.inner.db).await.ok().flatten().and_then(|b| b.traceparent),
        };
        loop {
            let span = tracing::info_span!("bundle.drive", bundle_id = %id);
            telemetry::set_remote_parent(&span, parent.as_deref());
            tracing::Instrument::instrument(self.drive_rounds(id, first.take()), span).await;
            let mut driving = self.inner.driving.lock().expect("driving list");
            match driving.get_mut(id) {
                Some(again) if *again => *again = false,
                _ => {
                    driving.remove(id);
                    claim.2 = false;
                    break;
                }
            }
        }
    }

    pub(super) async fn drive_rounds(&self, id: &str, mut first: Option<Aggregate>) {
        for _ in 0..50 {
            match self.drive_once(id, first.take()).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(bundle_id = %id, error = %e, "driving the bundle failed; retrying later");
                    break;
                }
            }
        }
    }

    /// One round; `known` is the bundle as this process just committed it (else it is read).
    /// Says whether another round has something to do.
    pub(super) async fn drive_once(&self, id: &str, known: Option<Aggregate>) -> Result<bool> {
        let agg = match known {
            Some(agg) => agg,
            None => self.load(&self.inner.db, id).await?,
        };
        let now = Utc::now();
        let due = self.due_for_case(&agg, now);
        if !due.is_empty() {
            return self.create_due(id, &agg, &due).await;
        }
        let state = agg.bundle.state;
        for s in &agg.steps {
            match s.state {
                Step::Cancelling | Step::Revoking if s.next_attempt_at <= now => {
                    return self.withdraw_case_of(id, s, state).await;
                }
                Step::InProgress if awaiting_result(s) && s.next_attempt_at <= now => {
                    return self.fetch_result(id, s).await;
                }
                _ => {}
            }
        }
        Ok(false)
    }

    /// The steps whose case is to be created now. They are created at their departments at
    /// once and the answers recorded together: one round trip's time and one transaction,
    /// not one per step. A step that does not stand alone waits while another required step
    /// is still pending, so a refusal there withdraws it before any case exists (as one by
    /// one).
    fn due_for_case<'a>(&self, agg: &'a Aggregate, now: chrono::DateTime<Utc>) -> Vec<&'a step::Model> {
        let state = agg.bundle.state;
        let def = self.inner.catalog.bundle(&agg.bundle.code);
        let pending = |s: &step::Model| s.state == Step::Pending;
        let required = |s: &step::Model| def.and_then(|d| d.step(&s.step_id)).is_none_or(|d| !d.optional);
        let stands_alone = |s: &step::Model| def.and_then(|d| d.step(&s.step_id)).is_some_and(|d| d.stands_alone);
        // A failed bundle still creates what stands alone (its optional steps carry on).
        let may_start =
            |s: &step::Model| state == BundleState::Running || (state == BundleState::Failed && stands_alone(s));
        let mut due: Vec<&step::Model> =
            agg.steps.iter().filter(|s| pending(s) && s.next_attempt_at <= now && may_start(s)).collect();
        let at_once: Vec<&step::Model> = due
            .iter()
            .copied()
            .filter(|s| {
                stands_alone(s) || !agg.steps.iter().any(|o| o.step_id != s.step_id && pending(o) && required(o))
            })
            .collect();
        if !at_once.is_empty() {
            due = at_once;
        } else {
            due.truncate(1);
        }
        due
    }

    /// Creates the cases of `due` steps at their departments at once and records the answers
    /// in one transaction.
    async fn create_due(&self, id: &str, agg: &Aggregate, due: &[&step::Model]) -> Result<bool> {
        let answers = futures::future::join_all(due.iter().map(|s| self.create_case(agg, s))).await;
        let outcomes: Vec<(String, std::result::Result<cpb::Case, Failure>)> =
            due.iter().map(|s| s.step_id.clone()).zip(answers).collect();
        let agg = self
            .apply(id, |agg, _| {
                for (sid, outcome) in &outcomes {
                    if let Some(st) = agg.steps.iter_mut().find(|x| &x.step_id == sid) {
                        record_created(st, outcome);
                    }
                }
            })
            .await?;
        // The next pass sees what this one changed; a bundle whose steps all ended has none.
        Ok(agg.steps.iter().any(|s| !s.state.is_final()))
    }

    /// Withdraws or cancels the case of a step being cancelled, or revokes the approval of
    /// one being revoked, and records how it ended.
    async fn withdraw_case_of(&self, id: &str, s: &step::Model, state: BundleState) -> Result<bool> {
        let outcome = self.cancel_case(s, state).await;
        let sid = s.step_id.clone();
        self.apply(id, |agg, _| {
            let Some(st) = agg.steps.iter_mut().find(|x| x.step_id == sid) else { return };
            // Another replica (or an event) settled it meanwhile: its outcome stands.
            if !matches!(st.state, Step::Cancelling | Step::Revoking) {
                return;
            }
            match &outcome {
                Ok((case, stands)) => {
                    let cs = cpb::CaseState::try_from(case.state).ok().and_then(CaseState::from_proto);
                    if case.version >= st.case_version {
                        st.case_state = cs.map(|c| c.as_str().to_string()).unwrap_or_default();
                        st.case_version = case.version;
                    }
                    st.state = match (st.state, cs) {
                        // Revoked (a cancellation that found the case approved meanwhile
                        // revokes it too): shown as revoked, not refused.
                        (_, Some(CaseState::Revoked)) => Step::Revoked,
                        // The department cannot revoke it: the approval stands, said so.
                        (Step::Revoking, Some(c @ (CaseState::Approved | CaseState::ApprovedProvisionally)))
                            if *stands =>
                        {
                            st.reason = format!("{}: the approval stands", Reason::CaseNotRevocable.as_str());
                            saga::step_of_case(c)
                        }
                        // Still approved: the revocation did not take; asked again later.
                        (Step::Revoking, Some(CaseState::Approved | CaseState::ApprovedProvisionally)) => {
                            retry_later(st, "the approval was not revoked yet");
                            Step::Revoking
                        }
                        (_, Some(c)) => match saga::step_of_case(c) {
                            s @ (Step::Done | Step::Provisional | Step::Refused) => s,
                            _ => Step::Cancelled,
                        },
                        (_, None) => Step::Cancelled,
                    };
                    // Found approved (the approver was quicker): the step carries what the
                    // approval gave, as if it had come by the create answer.
                    if st.state.lets_dependants_start() {
                        record::record_decided(st, case);
                    }
                }
                Err(failure) => failure.reschedule(st),
            }
        })
        .await?;
        Ok(true)
    }

    /// Fetches the result of a step's case that finished through an event, for the
    /// applicant; tried again later, waiting longer each time, while its department is away.
    async fn fetch_result(&self, id: &str, s: &step::Model) -> Result<bool> {
        let fetched = match self.client(&s.department) {
            Ok(mut c) => self
                .guarded(&s.department, c.get_case(cpb::GetCaseRequest { case_id: s.case_id.clone() }))
                .await
                .map_err(|e| Failure::retry(&e, &s.department)),
            Err(e) => Err(Failure::Retry(e.to_string())),
        };
        let sid = s.step_id.clone();
        let r = match fetched {
            Ok(r) => r,
            Err(failure) => {
                self.apply(id, |agg, _| {
                    if let Some(st) = agg.steps.iter_mut().find(|x| x.step_id == sid) {
                        failure.reschedule(st);
                    }
                })
                .await?;
                return Ok(false);
            }
        };
        let Some(case) = r.into_inner().case else { return Ok(false) };
        self.apply(id, |agg, _| {
            if let (Some(st), Some(news)) = (agg.steps.iter_mut().find(|x| x.step_id == sid), CaseNews::of_case(&case))
                && awaiting_result(st)
            {
                record_case(st, &news);
            }
        })
        .await?;
        Ok(true)
    }

    /// The driver: every half second (or when an event arrived), every bundle with a step
    /// due for a (re)try or a withdrawal is driven. Runs until `stop`.
    pub async fn run_driver(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            // Bundle ids only: a step row that does not read (corrupted) fails the drive of
            // its own bundle, which is reported there, never this sweep of every bundle.
            let awaiting_result = Condition::all()
                .add(step::Column::State.eq(Step::InProgress))
                .add(step::Column::Result.eq(onething_platform::store::json::Fields::default()))
                .add(
                    step::Column::CaseState
                        .is_in([CaseState::Approved.as_str(), CaseState::ApprovedProvisionally.as_str()]),
                );
            let due: Result<Vec<String>, _> = step::Entity::find()
                .select_only()
                .column(step::Column::BundleId)
                .filter(
                    Condition::any()
                        .add(step::Column::State.is_in([Step::Pending, Step::Cancelling, Step::Revoking]))
                        .add(awaiting_result),
                )
                .filter(step::Column::NextAttemptAt.lte(Utc::now()))
                .into_tuple()
                .all(&self.inner.db)
                .await;
            let mut ids = match due {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::error!(error = %e, "the driver could not list due steps");
                    continue;
                }
            };
            ids.sort();
            ids.dedup();
            // Each bundle in a task of its own, a bounded number at once: a bundle waiting
            // on a slow department holds one slot, not the sweep; with every slot taken,
            // the sweep ends and the next one drives the rest. A bundle still being driven
            // takes no slot (its drive goes round once more instead).
            for id in ids {
                let Ok(slot) = self.inner.drive_slots.clone().try_acquire_owned() else { break };
                if !self.claim(&id) {
                    continue;
                }
                let engine = self.clone();
                tokio::spawn(async move {
                    engine.drive_claimed(&id, None, None).await;
                    drop(slot);
                });
            }
        }
    }
}

/// Takes bundle `id` off the driving list if its drive ends without releasing it (a panic,
/// a cancelled task); a drive that ends normally releases it itself, under its lock.
pub(super) struct Driving<'a>(&'a Inner, &'a str, bool);

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        if self.2 {
            self.0.driving.lock().expect("driving list").remove(self.1);
        }
    }
}
