//! KPI questions: answered from the rollups of the snapshot asked about (the newest,
//! the version before while a commit is counted, or a past one), cached for the current
//! versions; restatements between two snapshots.

use super::*;

impl Analytics {
    /// The cached answer to a question, if there is one: checked first (a bad question,
    /// an area outside the scope, an answer over the cell limit are refused here, cheaply),
    /// so that a caller can keep the cost of computing for the questions that need it.
    pub async fn cached_kpi(
        &self,
        req: &KpiRequest,
        scope: &Scope,
    ) -> Result<Option<Arc<KpiResponse>>, AnalyticsError> {
        req.validate()?;
        let snapshot = self.snapshot().await?;
        let key = cache_key(&snapshot, req, scope);
        if let Some(hit) = self.cache.lock().expect("not poisoned").get(&key) {
            return Ok(Some(hit.clone()));
        }
        let refd = self.reference(&snapshot).await?;
        self.check_size(&refd, req, scope)?;
        Ok(None)
    }

    fn check_size(
        &self,
        refd: &Reference,
        req: &KpiRequest,
        scope: &Scope,
    ) -> Result<(), AnalyticsError> {
        let cells = kpi::answer_size(refd, req, scope, self.settings.tz)?;
        let limit = self.settings.kpi_limits.max_cells;
        if cells > limit {
            return Err(AnalyticsError::Limit(format!(
                "the answer would have up to {cells} rows (periods × areas{}); the limit is {limit}: \
                 ask for a coarser granularity (month rather than day), a higher level, a \
                 smaller area or a shorter range",
                if req.compare.is_some() {
                    " × 2 for the comparison"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    /// Answer a KPI question for a caller limited to `scope`, from the rollups.
    pub async fn kpi(
        &self,
        req: &KpiRequest,
        scope: &Scope,
    ) -> Result<Arc<KpiResponse>, AnalyticsError> {
        self.kpi_from(req, scope, false, &At::Latest).await
    }

    /// `kpi` asked of the versions `at` names: a snapshot id from an earlier answer's
    /// lineage gives that answer again, identical.
    pub async fn kpi_at(
        &self,
        req: &KpiRequest,
        scope: &Scope,
        at: &At,
    ) -> Result<Arc<KpiResponse>, AnalyticsError> {
        self.kpi_from(req, scope, false, at).await
    }

    /// Answer a KPI question with the reference computation (SQL over the views, no
    /// rollups, no cache): what `wenming kpi --exact-recompute` runs to check an answer.
    pub async fn kpi_exact(
        &self,
        req: &KpiRequest,
        scope: &Scope,
    ) -> Result<Arc<KpiResponse>, AnalyticsError> {
        self.kpi_from(req, scope, true, &At::Latest).await
    }

    /// `kpi_exact` asked of the versions `at` names.
    pub async fn kpi_exact_at(
        &self,
        req: &KpiRequest,
        scope: &Scope,
        at: &At,
    ) -> Result<Arc<KpiResponse>, AnalyticsError> {
        self.kpi_from(req, scope, true, at).await
    }

    /// The cells of a question's answer that differ between the snapshots `since` and
    /// `until` names, each with the new events that explain it (see `restatement`). A
    /// comparison (`compare`) is not restated: each of its periods is a cell already.
    pub async fn changes(
        &self,
        req: &KpiRequest,
        scope: &Scope,
        since: &At,
        until: &At,
    ) -> Result<Restatement, AnalyticsError> {
        let req = KpiRequest {
            compare: None,
            ..req.clone()
        };
        let old = self.kpi_at(&req, scope, since).await?;
        let new = self.kpi_at(&req, scope, until).await?;
        // The snapshots the answers were computed from (the newest may have been
        // answered from the version before while a commit is counted).
        let answered = |a: &KpiResponse| {
            let id = a
                .lineage
                .as_ref()
                .map(|l| l.snapshot.as_str())
                .unwrap_or("");
            SnapshotId::parse(id).map(At::Snapshot)
        };
        let (since, _) = self
            .at(&answered(&old).map_err(|e| AnalyticsError::BadRequest(e.to_string()))?)
            .await?;
        let (until, past) = self
            .at(&answered(&new).map_err(|e| AnalyticsError::BadRequest(e.to_string()))?)
            .await?;
        let refd = match &past {
            Some(past) => load_reference(&past.references, &until).await?,
            None => self.reference(&until).await?,
        };
        let work = restatement::restate(
            &req,
            scope,
            &old,
            &new,
            &since,
            &until,
            &refd,
            self.settings.tz,
        );
        match tokio::time::timeout(self.settings.kpi_limits.timeout, work).await {
            Ok(restated) => restated,
            Err(_) => Err(AnalyticsError::Cancelled(format!(
                "counting the changes took longer than the {} s limit and was stopped: ask \
                 about a shorter range, a higher level or a smaller area",
                self.settings.kpi_limits.timeout.as_secs()
            ))),
        }
    }

    /// The snapshot `at` names, and when it is not the current one, the past snapshot
    /// it is answered from (with rollups and reference data of its own).
    pub(super) async fn at(
        &self,
        at: &At,
    ) -> Result<(Arc<Snapshot>, Option<Arc<Past>>), AnalyticsError> {
        let current = self.snapshot().await?;
        let id = match at {
            At::Latest => return Ok((current, None)),
            At::Snapshot(id) => id.clone(),
            At::Instant(t) => self.house.lock().await.id_at(*t).await?,
        };
        if id == current.id {
            return Ok((current, None));
        }
        let house = self.house.lock().await;
        if let Some(past) = self.pasts.get(&id) {
            if house.intact(&past.snapshot).await {
                return Ok((past.snapshot.clone(), Some(past)));
            }
            self.pasts.forget(&id);
        }
        let snapshot = Arc::new(house.at(&id).await?);
        drop(house);
        let past = Arc::new(Past::new(snapshot.clone(), self.settings.tz));
        self.pasts.keep(past.clone());
        Ok((snapshot, Some(past)))
    }

    /// The lineage of answers computed from `snapshot`.
    pub fn lineage(&self, snapshot: &Snapshot) -> Lineage {
        Lineage::new(&snapshot.commits, &snapshot.id, self.settings.tz.name())
    }

    async fn kpi_from(
        &self,
        req: &KpiRequest,
        scope: &Scope,
        exact: bool,
        at: &At,
    ) -> Result<Arc<KpiResponse>, AnalyticsError> {
        req.validate()?;
        let (current, past) = self.at(at).await?;
        let distributed = self.settings.engine.is_distributed();
        // Asked of named versions (`at` not the newest), it is answered from those; on a
        // cluster (no rollups here), from the newest.
        let snapshot = if exact || distributed || *at != At::Latest {
            current.clone()
        } else {
            self.answering(req.kpi, current.clone())
        };
        let cached = !exact && past.is_none();
        let key = cache_key(&snapshot, req, scope);
        if cached && let Some(hit) = self.cache.lock().expect("not poisoned").get(&key) {
            return Ok(hit.clone());
        }
        let (rollups, refd) = match &past {
            Some(past) => (
                past.rollups.clone(),
                load_reference(&past.references, &snapshot).await?,
            ),
            None => (self.rollups.clone(), self.reference(&snapshot).await?),
        };
        self.check_size(&refd, req, scope)?;
        let limits = &self.settings.kpi_limits;
        let tz = self.settings.tz;
        let work = async {
            if let crate::distributed::Engine::Ballista { host, port } = &self.settings.engine {
                // The SQL measures, planned here over the snapshot's files (the scope is
                // the frame's `q_area`) and run on the cluster.
                let ctx = self
                    .distributed_context((host, *port), &snapshot, None)
                    .await?;
                kpi::answer(Source::Exact(&ctx), &refd, req, scope, tz).await
            } else if exact {
                let ctx = snapshot.context_on(snapshot.runtime_with_memory(limits.memory_bytes)?);
                kpi::answer(Source::Exact(&ctx), &refd, req, scope, tz).await
            } else {
                let rollup = rollups.for_kpi(req.kpi, &snapshot, &refd).await?;
                kpi::answer(Source::Rollup(&rollup), &refd, req, scope, tz).await
            }
        };
        let answer = match tokio::time::timeout(limits.timeout, work).await {
            Ok(answer) => {
                let mut answer = answer.map_err(crate::sql::limit_error)?;
                answer.data_from = snapshot.span.data_from;
                answer.data_through = snapshot.span.data_through;
                answer.lineage = Some(self.lineage(&snapshot));
                Arc::new(answer)
            }
            Err(_) => {
                return Err(AnalyticsError::Cancelled(format!(
                    "the question took longer than its {} s limit and was stopped: ask for \
                     a coarser granularity, a higher level or a shorter range",
                    limits.timeout.as_secs()
                )));
            }
        };
        if !cached {
            return Ok(answer);
        }
        if !Arc::ptr_eq(&snapshot, &current) {
            // An answer of the version before: not kept (the current one's are soon).
            return Ok(answer);
        }
        *self.ready.lock().expect("not poisoned") = Some(current);
        self.cache.lock().expect("not poisoned").insert(
            snapshot.version_key(),
            key,
            answer.clone(),
            self.settings.cache_rows,
        );
        Ok(answer)
    }

    /// How often a KPI rollup was updated from a commit's changes instead of being built
    /// from every row (for logs and tests).
    pub fn rollup_updates(&self) -> u64 {
        self.rollups.updates()
    }
}

/// Answers to KPI questions, (version key, question, scope) → answer, for one set of
/// table versions: an answer of other versions can never be asked for again once a
/// commit moved them, and a day × unit answer holds tens of thousands of rows, so
/// keeping old ones (or thousands of new ones) is what made a server answering
/// questions nobody asked before grow by gigabytes. Cleared when the versions move and
/// when the rows kept would pass the bound; answers are cheap to count again.
#[derive(Default)]
pub(super) struct Answers {
    versions: String,
    answers: HashMap<String, Arc<KpiResponse>>,
    rows: usize,
}

impl Answers {
    pub(super) fn get(&self, key: &str) -> Option<Arc<KpiResponse>> {
        self.answers.get(key).cloned()
    }

    pub(super) fn insert(
        &mut self,
        versions: String,
        key: String,
        answer: Arc<KpiResponse>,
        max_rows: usize,
    ) {
        let rows = answer.rows.len();
        if self.versions != versions || self.rows + rows > max_rows {
            self.answers.clear();
            self.rows = 0;
            self.versions = versions;
        }
        if rows <= max_rows {
            self.rows += rows;
            self.answers.insert(key, answer);
        }
    }
}

pub(super) fn cache_key(snapshot: &Snapshot, req: &KpiRequest, scope: &Scope) -> String {
    format!("{}|{req:?}|{scope}", snapshot.version_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rows: usize) -> Arc<KpiResponse> {
        let row = serde_json::json!({"period": "2024-01-01", "area": "u1", "value": 1,
            "numerator": null, "denominator": null});
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "kpi": "service_hours", "from": "2024-01-01", "to": "2024-01-31",
                "granularity": "day", "level": "unit", "area": null,
                "rows": vec![row; rows],
            }))
            .unwrap(),
        )
    }

    #[test]
    fn answers_are_kept_for_the_current_versions_and_within_their_rows() {
        let mut cache = Answers::default();
        cache.insert("v1".into(), "a".into(), answer(40), 100);
        cache.insert("v1".into(), "b".into(), answer(50), 100);
        assert!(cache.get("a").is_some() && cache.get("b").is_some());
        // Past the bound: the old answers go, the new one stays.
        cache.insert("v1".into(), "c".into(), answer(20), 100);
        assert!(cache.get("a").is_none() && cache.get("c").is_some());
        assert_eq!(cache.rows, 20);
        // New versions: answers of the old ones can never be asked for again.
        cache.insert("v2".into(), "d".into(), answer(1), 100);
        assert!(cache.get("c").is_none() && cache.get("d").is_some());
        // An answer larger than the bound is not kept at all.
        cache.insert("v2".into(), "e".into(), answer(101), 100);
        assert!(cache.get("e").is_none());
    }
}
