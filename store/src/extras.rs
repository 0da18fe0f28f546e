//! What the search and compound stages keep beside trials: controller checkpoints, compound
//! grid points, scaled models.

use tracing::instrument;

use crate::error::{Result, StoreError};
use crate::model::{
    Checkpoint, CompoundPoint, NewCompoundPoint, NewScaledModel, RunId, ScaledModel, TrialId,
};
use crate::{from_sql_int, time, to_sql_int, Store};

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    step: i64,
    state: String,
    blob: Option<Vec<u8>>,
    created_at: String,
}

#[derive(sqlx::FromRow)]
struct CompoundRow {
    id: i64,
    run_id: i64,
    alpha: f64,
    beta: f64,
    gamma: f64,
    phi: f64,
    flops_factor: f64,
    trial_id: Option<i64>,
    trial_state: Option<String>,
    accuracy: Option<f64>,
    reward: Option<f64>,
    params: Option<i64>,
    flops: Option<i64>,
    created_at: String,
}

#[derive(sqlx::FromRow)]
struct ScaledRow {
    id: i64,
    run_id: i64,
    name: String,
    phi: f64,
    width: f64,
    depth: f64,
    resolution_multiplier: f64,
    resolution: i64,
    dropout: f64,
    arch: String,
    arch_hash: String,
    blocks: String,
    params: i64,
    flops: i64,
    created_at: String,
}

fn check_finite(field: &'static str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(StoreError::invalid(field, format!("{value} is not a finite number")))
    }
}

impl Store {
    /// Saves the controller's state after `step` (replacing an earlier save of the same step).
    #[instrument(skip_all, fields(run = %run, step), err(level = "debug"))]
    pub async fn save_checkpoint(
        &self,
        run: RunId,
        step: i64,
        state: &serde_json::Value,
        blob: Option<&[u8]>,
    ) -> Result<()> {
        let state = serde_json::to_string(state)
            .map_err(|e| StoreError::invalid("checkpoint state", e.to_string()))?;
        let now = time::now();
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO controller_checkpoints (run_id, step, state, blob, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (run_id, step) DO UPDATE SET state = excluded.state, blob = excluded.blob, created_at = excluded.created_at",
            )
            .bind(run.0)
            .bind(step)
            .bind(&state)
            .bind(blob)
            .bind(&now)
            .execute(pool)
            .await
            .map(drop)
        })
        .map_err(|e| self.run_error(run, e))?;
        Ok(())
    }

    /// The checkpoint with the highest step of a run, if any.
    pub async fn latest_checkpoint(&self, run: RunId) -> Result<Option<Checkpoint>> {
        let row: Option<CheckpointRow> = on_pool!(self, pool => {
            sqlx::query_as("SELECT step, state, blob, created_at FROM controller_checkpoints WHERE run_id = $1 ORDER BY step DESC LIMIT 1")
                .bind(run.0)
                .fetch_optional(pool)
                .await
        })
        .map_err(|e| self.db_error(e))?;
        row.map(|r| {
            Ok(Checkpoint {
                run_id: run,
                step: r.step,
                state: serde_json::from_str(&r.state)
                    .map_err(|e| StoreError::corrupt(format!("checkpoint {} of run {run}", r.step), e))?,
                blob: r.blob,
                created: r.created_at,
            })
        })
        .transpose()
    }

    /// Records a compound-scaling grid point; α·β²·γ² is computed here. Returns its id.
    #[instrument(skip_all, fields(run = %run), err(level = "debug"))]
    pub async fn add_compound_point(&self, run: RunId, point: &NewCompoundPoint) -> Result<i64> {
        for (field, value) in
            [("alpha", point.alpha), ("beta", point.beta), ("gamma", point.gamma), ("phi", point.phi)]
        {
            check_finite(field, value)?;
        }
        let flops_factor = point.alpha * point.beta * point.beta * point.gamma * point.gamma;
        let now = time::now();
        on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO compound_points (run_id, alpha, beta, gamma, phi, flops_factor, trial_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(run.0)
            .bind(point.alpha)
            .bind(point.beta)
            .bind(point.gamma)
            .bind(point.phi)
            .bind(flops_factor)
            .bind(point.trial_id.map(|t| t.0))
            .bind(&now)
            .fetch_one(pool)
            .await
        })
        .map_err(|e| self.run_error(run, e))
    }

    /// The compound grid of a run with each point's trial result, in insertion order.
    pub async fn compound_points(&self, run: RunId) -> Result<Vec<CompoundPoint>> {
        let rows: Vec<CompoundRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT c.id, c.run_id, c.alpha, c.beta, c.gamma, c.phi, c.flops_factor, c.trial_id,
                        t.state AS trial_state, t.accuracy, t.reward, t.params, t.flops, c.created_at
                 FROM compound_points c LEFT JOIN trials t ON t.id = c.trial_id
                 WHERE c.run_id = $1 ORDER BY c.id",
            )
            .bind(run.0)
            .fetch_all(pool)
            .await
        })
        .map_err(|e| self.db_error(e))?;
        rows.into_iter()
            .map(|r| {
                let what = format!("compound point {}", r.id);
                Ok(CompoundPoint {
                    id: r.id,
                    run_id: RunId(r.run_id),
                    alpha: r.alpha,
                    beta: r.beta,
                    gamma: r.gamma,
                    phi: r.phi,
                    flops_factor: r.flops_factor,
                    trial_id: r.trial_id.map(TrialId),
                    trial_state: r
                        .trial_state
                        .map(|s| s.parse())
                        .transpose()
                        .map_err(|e| StoreError::corrupt(what.clone(), e))?,
                    accuracy: r.accuracy,
                    reward: r.reward,
                    params: r.params.map(|v| from_sql_int(&what, v)).transpose()?,
                    flops: r.flops.map(|v| from_sql_int(&what, v)).transpose()?,
                    created: r.created_at,
                })
            })
            .collect()
    }

    /// Records a scaled model with its cost from the cost model. Returns its id.
    #[instrument(skip_all, fields(run = %run, name = %model.name), err(level = "debug"))]
    pub async fn add_scaled_model(&self, run: RunId, model: &NewScaledModel) -> Result<i64> {
        for (field, value) in [
            ("phi", model.phi),
            ("width", model.width),
            ("depth", model.depth),
            ("resolution_multiplier", model.resolution_multiplier),
        ] {
            check_finite(field, value)?;
        }
        model.arch.validate().map_err(|e| StoreError::invalid("architecture", e.to_string()))?;
        let arch_json = serde_json::to_string(&model.arch)
            .map_err(|e| StoreError::invalid("architecture", e.to_string()))?;
        let cost = effnas_space::cost(&model.arch);
        let (params, flops) = (to_sql_int("params", cost.params)?, to_sql_int("flops", cost.macs)?);
        let (hash, blocks, now) =
            (effnas_space::arch_hash(&model.arch), model.arch.block_strings().join(","), time::now());
        on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO scaled_models (run_id, name, phi, width, depth, resolution_multiplier, resolution, dropout,
                                            arch, arch_hash, blocks, params, flops, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
            )
            .bind(run.0)
            .bind(&model.name)
            .bind(model.phi)
            .bind(model.width)
            .bind(model.depth)
            .bind(model.resolution_multiplier)
            .bind(i64::from(model.arch.resolution))
            .bind(model.arch.dropout)
            .bind(&arch_json)
            .bind(&hash)
            .bind(&blocks)
            .bind(params)
            .bind(flops)
            .bind(&now)
            .fetch_one(pool)
            .await
        })
        .map_err(|e| self.run_error(run, e))
    }

    /// The scaled models of a run, in insertion order.
    pub async fn scaled_models(&self, run: RunId) -> Result<Vec<ScaledModel>> {
        let rows: Vec<ScaledRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, run_id, name, phi, width, depth, resolution_multiplier, resolution, dropout, arch, arch_hash, blocks,
                        params, flops, created_at
                 FROM scaled_models WHERE run_id = $1 ORDER BY id",
            )
            .bind(run.0)
            .fetch_all(pool)
            .await
        })
        .map_err(|e| self.db_error(e))?;
        rows.into_iter()
            .map(|r| {
                let what = format!("scaled model {}", r.id);
                Ok(ScaledModel {
                    id: r.id,
                    run_id: RunId(r.run_id),
                    resolution: from_sql_int(&what, r.resolution)?,
                    params: from_sql_int(&what, r.params)?,
                    flops: from_sql_int(&what, r.flops)?,
                    blocks: r.blocks.split(',').filter(|b| !b.is_empty()).map(str::to_owned).collect(),
                    name: r.name,
                    phi: r.phi,
                    width: r.width,
                    depth: r.depth,
                    resolution_multiplier: r.resolution_multiplier,
                    dropout: r.dropout,
                    arch_json: r.arch,
                    arch_hash: r.arch_hash,
                    created: r.created_at,
                })
            })
            .collect()
    }
}
