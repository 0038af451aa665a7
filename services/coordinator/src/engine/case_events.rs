//! The departments' case events: each counted for its step only when it comes from the
//! step's department, names the step's key and is about the step's own case.

use super::*;

impl Engine {
    /// A department reported a case of one of our bundles (inside the consumer's inbox
    /// transaction, so the event and its effect commit together). The event counts only
    /// when it comes from `department`'s stream, names that department, carries the step's
    /// key, and concerns the case the step's CreateCase created: an event of another
    /// department, or for another case, moves nothing.
    ///
    /// # Errors
    /// A database failure or a concurrent change: the event is redelivered.
    pub async fn on_case_event(
        &self,
        txn: &DatabaseTransaction,
        department: &str,
        e: &cpb::CaseStateChanged,
    ) -> Result<()> {
        let Some(step_id) = Self::step_of(department, e) else { return Ok(()) };
        if bundle::Entity::find_by_id(e.bundle_id.clone()).one(txn).await?.is_none() {
            return Ok(()); // Not ours (another coordinator deployment, or a test's own case).
        }
        let Some(news) = CaseNews::of_event(e) else { return Ok(()) };
        let (_, changed) = self
            .apply_in(txn, &e.bundle_id, |agg, _| {
                let step = agg
                    .steps
                    .iter_mut()
                    .find(|s| s.step_id == step_id && Self::is_its_case(s, department, news.case_id));
                if let Some(s) = step {
                    record_case(s, &news);
                }
            })
            .await?;
        // Most events only confirm what the create call already told the driver; only a
        // change can give the driver work.
        if changed {
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// The step an event of `department`'s stream speaks of: its key is the coordinator's
    /// step key and it names the stream's department.
    pub(super) fn step_of<'e>(department: &str, e: &'e cpb::CaseStateChanged) -> Option<&'e str> {
        if e.department != department || e.case_id.is_empty() {
            return None;
        }
        e.idempotency_key.strip_prefix(&format!("bundle:{}:", e.bundle_id))
    }

    /// Whether `case_id` can be the case the step's CreateCase created in `department`: the
    /// one recorded, or any while none is recorded yet (the answer may still be on its way,
    /// and the event must not be lost). No one else's case can pass for it: only the
    /// coordinator may create a case with a step's key, and one key makes one case.
    pub(super) fn is_its_case(s: &step::Model, department: &str, case_id: &str) -> bool {
        s.department == department && (s.case_id.is_empty() || s.case_id == case_id)
    }

    /// Whether a department's case event is already reflected in its step (the same case
    /// at this version or a later one) or concerns no step of ours: handling it would
    /// change nothing, now or later, since versions only go up. An event for a step whose
    /// CreateCase is still in flight is not known: the case may have moved on past what the
    /// answer will say (accepted, then approved by the department's own consumer), so it is
    /// applied, and the older answer then changes nothing but the result.
    ///
    /// # Errors
    /// A database failure.
    pub async fn knows_case_event(
        &self,
        db: &DatabaseConnection,
        department: &str,
        e: &cpb::CaseStateChanged,
    ) -> Result<bool> {
        let Some(step_id) = Self::step_of(department, e) else { return Ok(true) };
        let key = (e.bundle_id.clone(), step_id.to_string());
        let seen = |case_id: &str, version: i64| case_id == e.case_id && version >= e.version;
        if let Some((case_id, version)) = self.inner.recorded.lock().expect("recorded cases").get(&key)
            && seen(case_id, *version)
        {
            return Ok(true);
        }
        let known = step::Entity::find_by_id(key).one(db).await?;
        // Another case than the step's (or none recorded yet) would change nothing either.
        Ok(known.is_none_or(|s| !Self::is_its_case(&s, department, &e.case_id) || seen(&s.case_id, s.case_version)))
    }
}
