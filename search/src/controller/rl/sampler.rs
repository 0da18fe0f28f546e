//! Sampling from the policy on the host. A sample is an autoregressive walk through some forty
//! decisions of a policy with 64 hidden units: about a million multiply-adds, which plain Rust
//! does in a fraction of a millisecond, where the same walk in libtorch costs over a thousand
//! dispatched operations (one search trial each). The weights are copied out once per policy
//! update; the arithmetic is the libtorch path's (an LSTM with gates in the order i, f, g, o,
//! softmax over each decision's choices), in f32, and the random draws are taken in the same
//! order (decision by decision, sequence by sequence).

use rand::Rng;

/// The policy's weights as host arrays, as of one Adam step.
pub(super) struct HostPolicy {
    /// `[rows, 4H]`: every embedding row through the input weights, plus the gate bias.
    projected: Vec<f32>,
    /// `[H, 4H]`: the hidden weights transposed, so that a step runs through them row by row
    /// (see `step`).
    hidden_weight_t: Vec<f32>,
    /// `[Σ choices, H]`.
    head_weight: Vec<f32>,
    /// `[Σ choices]`.
    head_bias: Vec<f32>,
    hidden: usize,
    /// The Adam step the weights are of.
    pub(super) adam_steps: i64,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl HostPolicy {
    pub(super) fn new(
        projected: Vec<f32>,
        hidden_weight: Vec<f32>,
        head_weight: Vec<f32>,
        head_bias: Vec<f32>,
        hidden: usize,
        adam_steps: i64,
    ) -> Self {
        let gates = 4 * hidden;
        let mut hidden_weight_t = vec![0f32; hidden_weight.len()];
        for (j, row) in hidden_weight.chunks_exact(hidden.max(1)).enumerate() {
            for (k, &w) in row.iter().enumerate() {
                hidden_weight_t[k * gates + j] = w;
            }
        }
        HostPolicy { projected, hidden_weight_t, head_weight, head_bias, hidden, adam_steps }
    }

    /// `n` sequences, each decision drawn from the softmax over its choices (`counts`, with
    /// their rows in the stacked output layer starting at `offsets`).
    pub(super) fn sample(
        &self,
        counts: &[i64],
        offsets: &[i64],
        n: usize,
        rng: &mut impl Rng,
    ) -> Vec<Vec<usize>> {
        let width = self.hidden;
        let (mut h, mut c) = (vec![vec![0f32; width]; n], vec![vec![0f32; width]; n]);
        // The embedding row each sequence feeds next: the start token first.
        let mut rows = vec![0usize; n];
        let mut sequences = vec![Vec::with_capacity(counts.len()); n];
        let (mut gates, mut probabilities) = (vec![0f32; 4 * width], Vec::new());
        for (&start, &count) in offsets.iter().zip(counts) {
            let (start, count) = (start as usize, count as usize);
            for s in 0..n {
                self.step(rows[s], &mut h[s], &mut c[s], &mut gates);
                self.softmax(start, count, &h[s], &mut probabilities);
                let choice = draw(&probabilities, rng);
                sequences[s].push(choice);
                rows[s] = start + choice + 1;
            }
        }
        sequences
    }

    /// The log-probability of `sequence` under these weights (for checking against libtorch).
    #[cfg(test)]
    pub(super) fn log_prob(&self, counts: &[i64], offsets: &[i64], sequence: &[usize]) -> f64 {
        let (mut h, mut c) = (vec![0f32; self.hidden], vec![0f32; self.hidden]);
        let (mut gates, mut probabilities, mut row) = (vec![0f32; 4 * self.hidden], Vec::new(), 0usize);
        let mut total = 0.0;
        for ((&start, &count), &choice) in offsets.iter().zip(counts).zip(sequence) {
            self.step(row, &mut h, &mut c, &mut gates);
            self.softmax(start as usize, count as usize, &h, &mut probabilities);
            total += f64::from(probabilities[choice]).ln();
            row = start as usize + choice + 1;
        }
        total
    }

    /// One LSTM step fed embedding row `row`: updates `h` and `c`. Each gate's `h·w` is summed
    /// over the hidden units in order, as a dot product would, but all gates advance together
    /// (one row of the transposed weights per hidden unit), which the compiler vectorises: the
    /// same values, a fraction of the time.
    fn step(&self, row: usize, h: &mut [f32], c: &mut [f32], gates: &mut [f32]) {
        let width = self.hidden;
        gates.fill(0.0);
        for (&hk, weights) in h.iter().zip(self.hidden_weight_t.chunks_exact(4 * width)) {
            for (gate, &w) in gates.iter_mut().zip(weights) {
                *gate += w * hk;
            }
        }
        for (gate, &x) in gates.iter_mut().zip(&self.projected[row * 4 * width..(row + 1) * 4 * width]) {
            *gate += x;
        }
        for k in 0..width {
            let (i, f) = (sigmoid(gates[k]), sigmoid(gates[width + k]));
            let (g, o) = (gates[2 * width + k].tanh(), sigmoid(gates[3 * width + k]));
            c[k] = f * c[k] + i * g;
            h[k] = o * c[k].tanh();
        }
    }

    /// The softmax over the `count` choices whose output rows start at `start`.
    fn softmax(&self, start: usize, count: usize, h: &[f32], out: &mut Vec<f32>) {
        let width = self.hidden;
        out.clear();
        out.extend(
            (start..start + count)
                .map(|m| self.head_bias[m] + dot(&self.head_weight[m * width..(m + 1) * width], h)),
        );
        let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        out.iter_mut().for_each(|v| *v = (*v - max).exp());
        let total: f32 = out.iter().sum();
        out.iter_mut().for_each(|v| *v /= total);
    }
}

/// The choice a uniform draw lands on (the last one if rounding leaves the draw past the end).
fn draw(probabilities: &[f32], rng: &mut impl Rng) -> usize {
    let mut draw: f32 = rng.random();
    for (index, &p) in probabilities.iter().enumerate() {
        if draw < p {
            return index;
        }
        draw -= p;
    }
    probabilities.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The transposed step computes each gate as `projected + w·h` with the dot product summed
    /// in order, bit for bit as the straightforward form: sampling is unchanged by it.
    #[test]
    fn the_vectorised_step_is_the_dot_product_step_bit_for_bit() {
        let (width, rows) = (8usize, 3usize);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut values = |n: usize| (0..n).map(|_| rng.random_range(-1f32..1.0)).collect::<Vec<_>>();
        let (projected, hidden_weight) = (values(rows * 4 * width), values(4 * width * width));
        let policy =
            HostPolicy::new(projected.clone(), hidden_weight.clone(), values(2 * width), values(2), width, 0);
        let (mut h, mut c, mut gates) = (values(width), values(width), vec![0f32; 4 * width]);
        let (mut want_h, mut want_c) = (h.clone(), c.clone());
        for row in [0, 2, 1, 1] {
            policy.step(row, &mut h, &mut c, &mut gates);
            let gate = |j: usize| {
                projected[row * 4 * width + j] + dot(&hidden_weight[j * width..(j + 1) * width], &want_h)
            };
            let all: Vec<f32> = (0..4 * width).map(gate).collect();
            for k in 0..width {
                let (i, f) = (sigmoid(all[k]), sigmoid(all[width + k]));
                let (g, o) = (all[2 * width + k].tanh(), sigmoid(all[3 * width + k]));
                want_c[k] = f * want_c[k] + i * g;
                want_h[k] = o * want_c[k].tanh();
            }
            assert_eq!(
                h.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want_h.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(
                c.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want_c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
