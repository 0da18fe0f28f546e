"""Regenerate search/tests/data/rank_stats_golden.json: SciPy's Kendall tau-b, Spearman rho and
average ranks for fixed vector pairs, the golden data of search/tests/rank_stats.rs (which checks
search/src/stats.rs against every value within 1e-12).

    scripts/golden/rank-stats            # makes or reuses the pinned venv, writes the JSON
    scripts/golden/rank-stats --check    # regenerates and compares byte for byte

Values come from `scipy.stats.kendalltau(x, y)` with its defaults (variant="b", the tau-b of
Kendall 1945, ties in either vector corrected for), `scipy.stats.spearmanr(x, y)` (Pearson's r
on average ranks) and `scipy.stats.rankdata(v, method="average")` (1-based). The pairs cover
ties in x only, ties in y only, ties in both (including pairs tied in both vectors), a perfectly
concordant and a perfectly discordant pair, n = 2, and a realistic pair of 14 architectures'
proxy and reference accuracies with repeated values. "undefined" lists pairs where one vector is
constant, for which SciPy returns NaN for both statistics (asserted here); the Rust side must
return its `Undefined` error for them.

The JSON goes to stdout: json.dumps with indent=1 and a final newline. Python writes each float
as the shortest decimal that reads back to the same double, so regenerating is byte-identical
under the pinned versions (numpy 2.4.6, scipy 1.17.1: see scripts/golden/rank-stats).
"""

import json
import math
import sys
import warnings

import numpy
import scipy
from scipy import stats

PAIRS = [
    ("ties_in_x", [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0, 5.0], [2.5, 1.0, 3.0, 4.5, 4.0, 6.0, 5.5, 7.0]),
    ("ties_in_y", [0.3, 0.1, 0.4, 0.15, 0.5, 0.9, 0.2, 0.6], [3.0, 1.0, 3.0, 2.0, 5.0, 5.0, 1.0, 5.0]),
    (
        "ties_in_both",
        [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 5.0],
        [10.0, 10.0, 20.0, 10.0, 30.0, 30.0, 20.0, 40.0, 40.0, 40.0],
    ),
    ("ties_in_both_negative", [-1.5, 0.0, 0.0, 2.25, -1.5, 7.0, 0.0], [3.0, -2.0, 3.0, 3.0, 1.0, -2.0, 0.5]),
    ("concordant", [0.1, 0.4, 0.2, 0.9, 0.5, 0.3], [1.0, 4.0, 2.0, 6.0, 5.0, 3.0]),
    ("discordant", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [70.0, 60.0, 50.0, 40.0, 30.0, 20.0, 10.0]),
    ("n2_concordant", [0.81, 0.84], [0.85, 0.86]),
    ("n2_discordant", [0.81, 0.84], [0.86, 0.85]),
    ("no_ties", [3.1, 0.2, 5.5, 1.7, 4.4, 2.9, 6.8, 0.9, 7.3], [2.0, 1.1, 4.2, 3.3, 3.9, 1.8, 5.0, 0.4, 4.6]),
    (
        # Cheap-proxy accuracies (x) against reference accuracies (y) of the same 14
        # architectures, written with the three decimals a report would show, so several repeat.
        "realistic_14_architectures",
        [0.812, 0.797, 0.835, 0.812, 0.851, 0.790, 0.846, 0.829, 0.797, 0.862, 0.835, 0.818, 0.840, 0.871],
        [0.843, 0.829, 0.851, 0.838, 0.866, 0.826, 0.851, 0.857, 0.832, 0.874, 0.848, 0.838, 0.861, 0.869],
    ),
]

UNDEFINED = [
    ("constant_x", [0.8, 0.8, 0.8, 0.8], [0.1, 0.2, 0.3, 0.4]),
    ("constant_y", [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]),
    ("both_constant", [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]),
]


def floats(values) -> list:
    return [float(v) for v in values]


def main() -> None:
    cases = []
    for name, x, y in PAIRS:
        assert len(x) == len(y), name
        tau = stats.kendalltau(x, y)
        rho = stats.spearmanr(x, y)
        cases.append(
            {
                "name": name,
                "x": x,
                "y": y,
                "tau_b": float(tau.statistic),
                "spearman_rho": float(rho.statistic),
                "ranks_x": floats(stats.rankdata(x, method="average")),
                "ranks_y": floats(stats.rankdata(y, method="average")),
            }
        )
    undefined = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy warns that the input is constant
        for name, x, y in UNDEFINED:
            assert math.isnan(stats.kendalltau(x, y).statistic), name
            assert math.isnan(stats.spearmanr(x, y).statistic), name
            undefined.append({"name": name, "x": x, "y": y})
    golden = {
        "source": f"scipy {scipy.__version__} (numpy {numpy.__version__}): "
        "stats.kendalltau (variant b), stats.spearmanr, stats.rankdata (average); "
        "regenerate with scripts/golden/rank-stats",
        "cases": cases,
        "undefined": undefined,
    }
    sys.stdout.write(json.dumps(golden, indent=1) + "\n")
    print(f"{len(cases)} cases, {len(undefined)} undefined pairs", file=sys.stderr)


if __name__ == "__main__":
    main()
