//! Yield points above the operators that make more rows than they read.
//!
//! A query is stopped (statement timeout, CancelRequest, a client gone) by dropping its
//! stream, which only takes effect when the stream next returns to the executor.
//! DataFusion makes its scans yield (`EnsureCooperative`), but a join emits many batches
//! from one batch of its inputs without touching them: `SELECT count(*) FROM t a, t b,
//! t c` over a small table would compute for minutes without yielding, holding a
//! worker thread and its CPU after its answer was given up. Wrapping each join (and
//! `unnest`) in a `CooperativeExec` spends the task's budget per batch it makes, so the
//! query returns to the executor every few hundred batches and dropping it stops it.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

#[derive(Debug, Default)]
pub struct YieldAboveJoins;

impl YieldAboveJoins {
    /// Operators whose output can outgrow their input.
    fn multiplies(plan: &Arc<dyn ExecutionPlan>) -> bool {
        plan.children().len() >= 2 || plan.name() == "UnnestExec"
    }
}

impl PhysicalOptimizerRule for YieldAboveJoins {
    fn name(&self) -> &str {
        "YieldAboveJoins"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if Self::multiplies(&node) {
                return Ok(Transformed::yes(
                    Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
                ));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use datafusion::execution::runtime_env::RuntimeEnv;
    use futures::StreamExt;

    use crate::sql::{SqlLimits, session};

    /// On one thread, a query that never yields would keep the timer from ever firing:
    /// the join below (10¹⁰ rows) would run to its end. With the yield points the
    /// timer wins and dropping the stream ends the work.
    #[tokio::test(flavor = "current_thread")]
    async fn a_runaway_join_returns_to_the_executor_and_stops_when_dropped() {
        let ctx = session(Arc::new(RuntimeEnv::default()), &SqlLimits::default()).unwrap();
        let df = ctx
            .sql("SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b")
            .await
            .unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        let join = shown.lines().position(|l| l.contains("CrossJoinExec"));
        let above = join.and_then(|j| shown.lines().nth(j - 1)).unwrap_or("");
        assert!(above.contains("CooperativeExec"), "{shown}");

        let mut stream = df.execute_stream().await.unwrap();
        tokio::select! {
            row = stream.next() => panic!("the runaway finished or failed: {row:?}"),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        drop(stream);
    }
}
