//! The accuracy / multiply-adds Pareto front (MnasNet §3: the search trades one for the other).

/// Indices of the items not dominated on (accuracy higher, multiply-adds lower), cheapest
/// first. An item dominates another when it is at least as accurate and at most as costly,
/// and strictly better in one. Equal points are all kept. Items for which `point` gives
/// `None` (unmeasured) or a NaN accuracy take no part.
pub fn pareto_front<T>(items: &[T], point: impl Fn(&T) -> Option<(f64, u64)>) -> Vec<usize> {
    let mut measured: Vec<(usize, f64, u64)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            point(item).filter(|(acc, _)| !acc.is_nan()).map(|(acc, flops)| (i, acc, flops))
        })
        .collect();
    // Cheapest first; among equal cost, most accurate first.
    measured.sort_by(|a, b| a.2.cmp(&b.2).then(b.1.total_cmp(&a.1)).then(a.0.cmp(&b.0)));
    let mut front = Vec::new();
    let mut best: Option<(f64, u64)> = None;
    for (index, accuracy, flops) in measured {
        let keep = match best {
            None => true,
            Some((best_accuracy, best_flops)) => {
                accuracy > best_accuracy || (accuracy == best_accuracy && flops == best_flops)
            }
        };
        if keep {
            front.push(index);
            best = Some((accuracy, flops));
        }
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front(points: &[(f64, u64)]) -> Vec<usize> {
        pareto_front(points, |p| Some(*p))
    }

    #[test]
    fn keeps_only_non_dominated_points_cheapest_first() {
        let points = [(0.90, 400), (0.80, 100), (0.85, 300), (0.70, 200), (0.95, 900), (0.90, 500)];
        assert_eq!(front(&points), vec![1, 2, 0, 4]);
    }

    #[test]
    fn ties_and_equal_points() {
        // Same cost: only the more accurate survives; identical points both survive.
        assert_eq!(front(&[(0.8, 100), (0.9, 100)]), vec![1]);
        assert_eq!(front(&[(0.9, 100), (0.9, 100)]), vec![0, 1]);
        // Same accuracy, higher cost: dominated.
        assert_eq!(front(&[(0.9, 200), (0.9, 100)]), vec![1]);
    }

    #[test]
    fn brute_force_agrees() {
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state >> 33
        };
        for _ in 0..200 {
            let points: Vec<(f64, u64)> =
                (0..20).map(|_| ((next() % 10) as f64 / 10.0, next() % 10)).collect();
            let dominated = |j: usize| {
                points.iter().any(|p| {
                    p.0 >= points[j].0 && p.1 <= points[j].1 && (p.0 > points[j].0 || p.1 < points[j].1)
                })
            };
            let mut expected: Vec<usize> = (0..points.len()).filter(|&j| !dominated(j)).collect();
            let mut got = front(&points);
            expected.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, expected, "{points:?}");
        }
    }

    #[test]
    fn unmeasured_items_are_skipped() {
        let items = [None, Some((0.5, 10)), Some((f64::NAN, 1))];
        assert_eq!(pareto_front(&items, |p| *p), vec![1]);
    }
}
