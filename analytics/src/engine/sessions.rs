//! Analysts' SQL sessions over a snapshot, behind the scope wall.

use super::*;
use crate::distributed::Engine;

impl Analytics {
    /// Run an analyst's read-only SQL over the published tables, restricted to `scope`
    /// (see `sql` and `wall`).
    pub async fn sql(
        &self,
        query: &str,
        scope: &Scope,
        limits: &SqlLimits,
    ) -> Result<SqlResult, AnalyticsError> {
        self.sql_at(query, scope, limits, &At::Latest).await
    }

    /// `sql` over the versions `at` names; the result carries their lineage.
    pub async fn sql_at(
        &self,
        query: &str,
        scope: &Scope,
        limits: &SqlLimits,
        at: &At,
    ) -> Result<SqlResult, AnalyticsError> {
        let statement = sql::check_read_only(query)?;
        let (ctx, lineage) = self.sql_session_at(scope, limits, at).await?;
        let mut result = sql::run_checked(&ctx, statement, limits).await?;
        result.lineage = Some(lineage);
        Ok(result)
    }

    /// An analyst's session over the lake's current snapshot, restricted to `scope`,
    /// within `limits`' memory (see `sql::session`): what `sql` runs a query in, and
    /// what the Postgres wire plans and runs each statement in (`sql::plan`,
    /// `sql::execute`), so that both meet the same walls.
    pub async fn sql_session(
        &self,
        scope: &Scope,
        limits: &SqlLimits,
    ) -> Result<datafusion::prelude::SessionContext, AnalyticsError> {
        Ok(self.sql_session_at(scope, limits, &At::Latest).await?.0)
    }

    /// `sql_session` over the versions `at` names, and their lineage. The wall is of
    /// the current units: a unit of the past is still a unit now (events are never
    /// taken back), so the scope's units now include all it had then.
    pub async fn sql_session_at(
        &self,
        scope: &Scope,
        limits: &SqlLimits,
        at: &At,
    ) -> Result<(datafusion::prelude::SessionContext, Lineage), AnalyticsError> {
        let current = self.snapshot().await?;
        let units = self.scope_units(&current, scope).await?;
        let (snapshot, _) = self.at(at).await?;
        let runtime = snapshot.runtime_with_memory(limits.memory_bytes)?;
        let ctx = match &self.settings.engine {
            Engine::Embedded => {
                let ctx = sql::session(runtime, limits)?;
                snapshot.publish_into(&ctx, units).await?;
                ctx
            }
            Engine::Ballista { host, port } => {
                crate::distributed::reach(host, *port).await?;
                let ctx = sql::session_with(runtime, limits, |state| {
                    crate::distributed::session(state, host, *port)
                })?;
                snapshot.publish_files(&ctx, units).await?;
                ctx
            }
        };
        sql::add_local_dates(&ctx, self.settings.tz.name()).await?;
        Ok((ctx, self.lineage(&snapshot)))
    }

    /// The units of `scope` for the wall (`None`: the city, no wall needed).
    async fn scope_units(
        &self,
        snapshot: &Arc<Snapshot>,
        scope: &Scope,
    ) -> Result<Option<Arc<ScopeUnits>>, AnalyticsError> {
        if *scope == Scope::City {
            return Ok(None);
        }
        let refd = self.reference(snapshot).await?;
        let ids = refd
            .units
            .iter()
            .filter(|u| scope.contains(u))
            .map(|u| u.id.clone());
        Ok(Some(Arc::new(ScopeUnits::new(scope.to_string(), ids))))
    }
}

impl Analytics {
    /// A session of the distributed engine over `snapshot`'s files, behind the wall of
    /// `units` when given (see `distributed`).
    pub(super) async fn distributed_context(
        &self,
        (host, port): (&str, u16),
        snapshot: &Snapshot,
        units: Option<Arc<ScopeUnits>>,
    ) -> Result<datafusion::prelude::SessionContext, AnalyticsError> {
        crate::distributed::reach(host, port).await?;
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_default_features()
            .with_config(datafusion::prelude::SessionConfig::new().with_information_schema(false))
            .with_runtime_env(snapshot.runtime())
            .build();
        let ctx = crate::distributed::session(state, host, port)?;
        snapshot.publish_files(&ctx, units).await?;
        Ok(ctx)
    }
}
