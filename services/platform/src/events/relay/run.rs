//! The relay's loop: a round whenever woken or every poll interval, backing off while NATS
//! is away; published rows marked sent a moment later; the gauges; sent rows pruned; one
//! last round on shutdown.

use super::*;

impl Relay {
    /// Runs until `shutdown`: publishes whenever woken or every poll interval, backs off
    /// while NATS is unavailable, prunes old sent rows. On shutdown, one last attempt.
    pub async fn run(self, shutdown: CancellationToken) {
        // Checking that sent events are still in the stream runs beside the publishing.
        let reconciler = crate::events::reconcile::Reconciler::new(
            self.db.clone(),
            self.js.clone(),
            &self.department,
            &self.settings,
        );
        let reconciling = tokio::spawn(reconciler.run(shutdown.clone()));
        let mut pace = Pace::new(Duration::from_millis(Ord::max(self.settings.poll_interval_ms, 10)));
        loop {
            let delay = self.publish_step(&mut pace).await;
            let delay = self.mark_step(&mut pace, delay).await;
            self.gauges_step(&mut pace).await;
            if pace.last_prune.elapsed() > Duration::from_secs(600) {
                self.prune().await;
                pace.last_prune = Instant::now();
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.signals.wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.drain().await;
        let _ = reconciling.await;
    }

    /// One publishing round (after making sure the stream is there); returns how long the
    /// loop may sleep before the next.
    async fn publish_step(&self, pace: &mut Pace) -> Duration {
        if !pace.stream_ready {
            match crate::events::nats::ensure_stream(&self.js, &self.department, self.replicas).await {
                Ok(()) => pace.stream_ready = true,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "stream not ready; outbox waits")
                }
            }
        }
        let mut delay = pace.poll;
        if pace.stream_ready {
            let read = self.signals.read_wanted.swap(false, Ordering::AcqRel)
                || pace.full
                || pace.last_read.is_none_or(|t| t.elapsed() >= pace.poll);
            if read {
                pace.last_read = Some(Instant::now());
            }
            // A round never waits for ever: whatever it awaits (the database, the
            // broker) is given up after ROUND_LIMIT, and its rows are read again.
            let round = tokio::time::timeout(ROUND_LIMIT, self.publish(read)).await.unwrap_or_else(|_| {
                self.read_back();
                Err(anyhow::anyhow!("a round took longer than {} s; given up", ROUND_LIMIT.as_secs()))
            });
            match round {
                Ok(n) => {
                    pace.gauges_stale |= n > 0;
                    pace.backoff = Duration::from_millis(100);
                    pace.full = n as u64 >= self.settings.batch_size;
                    if pace.full {
                        delay = Duration::ZERO;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = pace.backoff.as_millis() as u64, "outbox relay failed; rows kept");
                    delay = pace.backoff;
                    pace.backoff = (pace.backoff * 2).min(Duration::from_secs(10));
                    pace.stream_ready = false;
                }
            }
        }
        if !pace.stream_ready {
            // Handed rows unsent are in the outbox: read them back once NATS is there.
            self.read_back();
        }
        delay
    }

    /// Published rows are marked sent together, at most MARK_EVERY after publishing;
    /// returns `delay`, shortened so the loop wakes for the next marking.
    async fn mark_step(&self, pace: &mut Pace, delay: Duration) -> Duration {
        if !self.unmarked.lock().is_ok_and(|u| !u.is_empty()) {
            pace.last_mark = Instant::now();
            return delay;
        }
        let waited = pace.last_mark.elapsed();
        if waited >= MARK_EVERY {
            let marked = tokio::time::timeout(ROUND_LIMIT, self.mark_sent())
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("marking took longer than {} s", ROUND_LIMIT.as_secs())));
            if let Err(e) = marked {
                tracing::warn!(error = %format!("{e:#}"), "marking outbox rows sent failed; retrying");
            }
            pace.last_mark = Instant::now();
        }
        delay.min(MARK_EVERY.saturating_sub(waited).max(Duration::from_millis(10)))
    }

    /// The backlog gauges: at most every second after publishing, every 5 seconds while
    /// stuck or idle.
    async fn gauges_step(&self, pace: &mut Pace) {
        let due = if pace.gauges_stale { Duration::from_secs(1) } else { Duration::from_secs(5) };
        if pace.last_gauges.is_none_or(|t| t.elapsed() >= due) {
            pace.gauges_stale = false;
            let gauges = tokio::time::timeout(ROUND_LIMIT, self.record_backlog())
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("took longer than {} s", ROUND_LIMIT.as_secs())));
            if let Err(e) = gauges {
                tracing::warn!(error = %format!("{e:#}"), "reading the outbox backlog failed");
            }
            pace.last_gauges = Some(Instant::now());
        }
    }

    /// At shutdown: whatever committed before it gets one more chance to leave now, and
    /// what was published is marked sent.
    async fn drain(&self) {
        match tokio::time::timeout(Duration::from_secs(5), self.publish_pending()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(sent = n, "outbox drained at shutdown"),
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "outbox not drained; rows stay for the next start")
            }
            _ => {}
        }
        if let Err(e) = self.mark_sent().await {
            tracing::warn!(error = %format!("{e:#}"), "published rows not marked sent; they go again (as duplicates) next start");
        }
    }

    /// Deletes sent rows written more than `retain_sent_hours` ago (by creation time, which
    /// is indexed; rows are sent moments after they are written). A row still waiting for
    /// NATS stays however old it is. Returns how many went. Public so tests can call it.
    ///
    /// # Errors
    /// The database failed; nothing was deleted.
    pub async fn prune_sent(&self) -> anyhow::Result<u64> {
        let cutoff = Utc::now() - chrono::Duration::hours(self.settings.retain_sent_hours as i64);
        Ok(row::Entity::delete_many().filter(row::Column::SentAt.lt(cutoff)).exec(&self.db).await?.rows_affected)
    }

    async fn prune(&self) {
        if let Err(e) = self.prune_sent().await {
            tracing::warn!(error = %e, "pruning sent outbox rows failed");
        }
    }
}

/// The relay loop's clocks and flags from one iteration to the next.
struct Pace {
    /// How often the outbox is read without being asked.
    poll: Duration,
    /// The wait after a failed round; doubles up to 10 s.
    backoff: Duration,
    stream_ready: bool,
    last_prune: Instant,
    last_gauges: Option<Instant>,
    /// Rows went out since the gauges were last read.
    gauges_stale: bool,
    last_mark: Instant,
    /// The outbox is read when a writer asks (`wake`), every poll interval (rows of other
    /// replicas, rows whose writer did not hand them over), and after a full batch; woken
    /// only by handed-over rows, the relay publishes just those.
    last_read: Option<Instant>,
    /// The last round was a full batch: read again at once.
    full: bool,
}

impl Pace {
    fn new(poll: Duration) -> Self {
        Self {
            poll,
            backoff: Duration::from_millis(100),
            stream_ready: false,
            last_prune: Instant::now(),
            last_gauges: None,
            gauges_stale: true,
            last_mark: Instant::now(),
            last_read: None,
            full: false,
        }
    }
}
