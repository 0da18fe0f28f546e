//! Keeping the database small: controller checkpoints are only needed for the latest steps.

use tracing::instrument;

use crate::error::Result;
use crate::model::RunId;
use crate::Store;

impl Store {
    /// Deletes all but the `keep` highest-step checkpoints of a run. An RL controller's
    /// checkpoint is a few hundred kilobytes and a search writes one per result, so keeping
    /// them all would grow the database by hundreds of megabytes per run.
    #[instrument(skip_all, fields(run = %run, keep), err(level = "debug"))]
    pub async fn prune_checkpoints(&self, run: RunId, keep: i64) -> Result<u64> {
        on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM controller_checkpoints WHERE run_id = $1 AND step NOT IN
                     (SELECT step FROM controller_checkpoints WHERE run_id = $1 ORDER BY step DESC LIMIT $2)",
            )
            .bind(run.0)
            .bind(keep.max(1))
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(|e| self.db_error(e))
    }
}
