//! The distributed engine: KPI and SQL plans run on a Ballista cluster (DataFusion's own
//! distributed engine: a scheduler and executors) instead of in this process.
//!
//! With `[analytics] engine = "ballista://scheduler:50050"`, a question is planned here
//! as it always is, over the snapshot's tables, with the caller's scope already in the
//! plan: an analyst's raw tables are `ScopedTable`s carrying their scope's units, and a
//! KPI question's areas are its `q_area` table. Only then does the plan leave wenming,
//! written by `codec` (which the scheduler and the executors run too: `wenming ballista
//! scheduler|executor`); the executors read the snapshot's Parquet files by URL and
//! never decide what a caller may see.
//!
//! KPI questions are answered by the SQL measures (`kpi::measure`) on the cluster rather
//! than from this process's rollups; answers are cached by table versions as usual.

pub mod cluster;
pub mod codec;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::planner::BallistaQueryPlanner;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use datafusion_proto::protobuf::LogicalPlanNode;

use crate::error::AnalyticsError;

/// The port a Ballista scheduler listens on unless told otherwise.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// Where KPI and SQL plans run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Engine {
    /// In this process (the default).
    #[default]
    Embedded,
    /// On the Ballista cluster whose scheduler is at `host:port`.
    Ballista { host: String, port: u16 },
}

impl Engine {
    pub fn is_distributed(&self) -> bool {
        matches!(self, Engine::Ballista { .. })
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Embedded => f.write_str("embedded"),
            Engine::Ballista { host, port } => write!(f, "ballista://{host}:{port}"),
        }
    }
}

impl FromStr for Engine {
    type Err = String;

    /// `embedded`, or `ballista://host[:port]` (port 50050 unless given).
    fn from_str(text: &str) -> Result<Engine, String> {
        let text = text.trim();
        if text.is_empty() || text == "embedded" {
            return Ok(Engine::Embedded);
        }
        let bad = |why: &str| {
            format!(
                "the engine {text:?} {why}: write \"embedded\" or \"ballista://host:port\" \
                 (a Ballista scheduler)"
            )
        };
        let Some(rest) = text.strip_prefix("ballista://") else {
            return Err(bad("is not one wenming knows"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| bad("has a port that is not a number from 1 to 65535"))?,
            ),
            None => (rest, DEFAULT_SCHEDULER_PORT),
        };
        if host.is_empty() || host.contains('/') || port == 0 {
            return Err(bad("names no scheduler host and port"));
        }
        Ok(Engine::Ballista {
            host: host.to_string(),
            port,
        })
    }
}

/// How long a question waits to reach the scheduler before it is answered "unavailable".
const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether the scheduler at `host:port` takes connections: asked before each question,
/// so that a cluster that is down is said to be down, by name, rather than surfacing as
/// a transport error in the middle of a query.
pub async fn reach(host: &str, port: u16) -> Result<(), AnalyticsError> {
    let unavailable = |why: String| {
        AnalyticsError::Unavailable(format!(
            "the Ballista scheduler at {host}:{port} ([analytics] engine) cannot be reached:              {why}"
        ))
    };
    match tokio::time::timeout(REACH_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(_) => Err(unavailable(format!(
            "no answer within {} s",
            REACH_TIMEOUT.as_secs()
        ))),
    }
}

/// A session like `state` whose plans run on the cluster at `host:port`, with wenming's
/// codec. The functions `state` knows are kept (Ballista's state starts from the
/// library's own), so a session's own functions, like a KPI frame's `wm_bucket` or the
/// bounded functions of the SQL sandbox, are registered after this.
pub fn session(
    state: SessionState,
    host: &str,
    port: u16,
) -> Result<SessionContext, AnalyticsError> {
    let codec = Arc::new(codec::Codec::default());
    let own: Vec<_> = state.scalar_functions().values().cloned().collect();
    let config = state
        .config()
        .clone()
        .with_ballista_logical_extension_codec(codec.clone())
        .with_ballista_physical_extension_codec(codec.clone())
        // Ballista 55's adaptive planner re-plans the stages above a wall's scan without
        // end (the scan is a leaf that hides its table's scan); the static planner
        // splits the plan once.
        .with_ballista_adaptive_query_planner(false);
    // Its static planner swaps hash join inputs after DataFusion has built their
    // dynamic filters, and the task then fails ("Cannot swap HashJoinExec inputs after
    // dynamic filters have been constructed") and is retried without end.
    let mut config = config;
    config
        .options_mut()
        .optimizer
        .enable_dynamic_filter_pushdown = false;
    // The scheduler turns this off in every session it is given (and says so each time).
    config
        .options_mut()
        .optimizer
        .enable_round_robin_repartition = false;
    let planner = Planner {
        cluster: BallistaQueryPlanner::with_extension(
            format!("http://{host}:{port}"),
            config.ballista_config(),
            codec,
        ),
        here: DefaultPhysicalPlanner::default(),
    };
    let config = config.with_ballista_query_planner(Arc::new(planner));
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build()
        .upgrade_for_ballista(format!("http://{host}:{port}"))
        .map_err(AnalyticsError::Query)?;
    let ctx = SessionContext::new_with_state(state);
    for f in own {
        if ctx.state().scalar_functions().get(f.name()).is_none() {
            ctx.register_udf(f.as_ref().clone());
        }
    }
    Ok(ctx)
}

/// Where a statement is planned: on the cluster when it reads the lake, here when it
/// does not (the catalog queries a Postgres client sends on connecting, `SELECT 1`):
/// only the lake's tables can travel (`codec`), and a catalog lists this session's own.
struct Planner {
    cluster: BallistaQueryPlanner<LogicalPlanNode>,
    here: DefaultPhysicalPlanner,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl QueryPlanner for Planner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn Session,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        if reads_the_lake(plan)? {
            self.cluster.create_physical_plan(plan, session).await
        } else {
            self.here.create_physical_plan(plan, session).await
        }
    }
}

/// Whether `plan` scans one of the published tables (after the views were inlined, the
/// raw event tables) or a KPI question's `q_area`.
fn reads_the_lake(plan: &LogicalPlan) -> datafusion::error::Result<bool> {
    let ours: std::collections::HashSet<&str> = crate::views::published()
        .into_iter()
        .chain(["q_area"])
        .collect();
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && ours.contains(scan.table_name.table())
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_read_from_their_names_and_bad_ones_are_named() {
        assert_eq!("embedded".parse::<Engine>(), Ok(Engine::Embedded));
        assert_eq!("".parse::<Engine>(), Ok(Engine::Embedded));
        assert_eq!(
            "ballista://sched.local:6000".parse::<Engine>(),
            Ok(Engine::Ballista {
                host: "sched.local".into(),
                port: 6000
            })
        );
        assert_eq!(
            "ballista://10.0.0.5".parse::<Engine>(),
            Ok(Engine::Ballista {
                host: "10.0.0.5".into(),
                port: DEFAULT_SCHEDULER_PORT
            })
        );
        let e = "spark://x:1".parse::<Engine>().unwrap_err();
        assert!(
            e.contains("spark://x:1") && e.contains("ballista://host:port"),
            "{e}"
        );
        let e = "ballista://x:port".parse::<Engine>().unwrap_err();
        assert!(e.contains("port"), "{e}");
        assert!("ballista://:50050".parse::<Engine>().is_err());
        assert_eq!(
            Engine::Ballista {
                host: "h".into(),
                port: 1
            }
            .to_string(),
            "ballista://h:1"
        );
    }
}
