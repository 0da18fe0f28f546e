//! Ridge regression (A. E. Hoerl and R. W. Kennard, "Ridge regression: biased estimation for
//! nonorthogonal problems", Technometrics 12(1), 1970) on standardized features: minimizes
//! `‖y − ȳ − Zw‖² + λ‖w‖²` where `Z` is each feature centred and divided by its standard
//! deviation, solved by a Cholesky factorization of `ZᵀZ + λI`. A constant feature gets
//! weight 0. The features of one-hot choices are collinear; the penalty keeps the system
//! positive definite.

use serde::{Deserialize, Serialize};

/// A fitted linear model over raw features: `intercept + Σ weights[f]·x[f]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ridge {
    pub lambda: f64,
    pub intercept: f64,
    pub weights: Vec<f64>,
}

impl Ridge {
    /// Fits rows `x` to `y` with penalty `lambda` (> 0).
    pub fn fit(x: &[Vec<f64>], y: &[f64], lambda: f64) -> Self {
        let n = x.len().max(1) as f64;
        let features = x.first().map_or(0, Vec::len);
        let mean: Vec<f64> = (0..features).map(|f| x.iter().map(|r| r[f]).sum::<f64>() / n).collect();
        let scale: Vec<f64> = (0..features)
            .map(|f| {
                let var = x.iter().map(|r| (r[f] - mean[f]).powi(2)).sum::<f64>() / n;
                if var > 1e-24 {
                    1.0 / var.sqrt()
                } else {
                    0.0
                }
            })
            .collect();
        let y_mean = y.iter().sum::<f64>() / n;
        let z = |r: &[f64], f: usize| (r[f] - mean[f]) * scale[f];
        let mut gram = vec![vec![0.0; features]; features];
        let mut rhs = vec![0.0; features];
        for (row, &target) in x.iter().zip(y) {
            let zr: Vec<f64> = (0..features).map(|f| z(row, f)).collect();
            for a in 0..features {
                rhs[a] += zr[a] * (target - y_mean);
                for b in 0..=a {
                    gram[a][b] += zr[a] * zr[b];
                }
            }
        }
        for (a, row) in gram.iter_mut().enumerate() {
            row[a] += lambda;
        }
        let w = cholesky_solve(gram, rhs);
        // Back to raw features: w_f·(x_f − m_f)·s_f.
        let weights: Vec<f64> = w.iter().zip(&scale).map(|(w, s)| w * s).collect();
        let intercept = y_mean - weights.iter().zip(&mean).map(|(w, m)| w * m).sum::<f64>();
        Ridge { lambda, intercept, weights }
    }

    pub fn predict(&self, row: &[f64]) -> f64 {
        self.intercept + self.weights.iter().zip(row).map(|(w, x)| w * x).sum::<f64>()
    }

    /// Why the model cannot be used on rows of `features` values, if it cannot.
    pub fn check(&self, features: usize) -> Result<(), String> {
        if self.weights.len() != features {
            return Err(format!("{} weights for {features} features", self.weights.len()));
        }
        if !self.intercept.is_finite() || self.weights.iter().any(|w| !w.is_finite()) {
            return Err("a weight is not finite".to_owned());
        }
        Ok(())
    }
}

/// Solves `a·x = b` for a symmetric positive-definite `a` given by its lower triangle.
fn cholesky_solve(mut a: Vec<Vec<f64>>, b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    // a becomes L with a = L·Lᵀ (lower triangle, in place).
    for j in 0..n {
        let d = a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>();
        a[j][j] = d.max(1e-300).sqrt();
        for i in j + 1..n {
            let s = a[i][j] - (0..j).map(|k| a[i][k] * a[j][k]).sum::<f64>();
            a[i][j] = s / a[j][j];
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| a[i][k] * y[k]).sum::<f64>()) / a[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| a[k][i] * x[k]).sum::<f64>()) / a[i][i];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_function() {
        // y = 2 + 3·x0 − x1, x2 constant: nearly exact with a small penalty.
        let x: Vec<Vec<f64>> = (0..50).map(|i| vec![f64::from(i % 7), f64::from(i % 5) * 0.5, 4.0]).collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 + 3.0 * r[0] - r[1]).collect();
        let model = Ridge::fit(&x, &y, 1e-6);
        assert!((model.weights[0] - 3.0).abs() < 1e-4, "{:?}", model.weights);
        assert!((model.weights[1] + 1.0).abs() < 1e-4, "{:?}", model.weights);
        assert_eq!(model.weights[2], 0.0);
        assert!((model.predict(&[1.0, 1.0, 4.0]) - 4.0).abs() < 1e-4);
        assert!(model.check(3).is_ok() && model.check(2).is_err());
    }
}
