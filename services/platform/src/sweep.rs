//! The sweeps that act on many items on the clock (provisional approvals revoked, supplements
//! overdue, late enterprise requests), one transaction per item: an item that fails (a row
//! that does not read, a write that fails) is logged and skipped, holding up no other.

use std::future::Future;

/// Runs `one` on each of `ids` in turn and counts those it acted on (`Ok(true)`). An item
/// whose `one` fails is logged, saying `what` failed, and skipped.
pub async fn each<F, Fut>(ids: Vec<String>, what: &str, mut one: F) -> usize
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = crate::error::Result<bool>>,
{
    let mut acted = 0;
    for id in ids {
        match one(id.clone()).await {
            Ok(done) => acted += usize::from(done),
            Err(e) => tracing::error!(item = %id, error = %e, "{what} failed; skipped"),
        }
    }
    acted
}
