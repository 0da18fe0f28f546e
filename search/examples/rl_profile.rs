//! Where the RL controller's time goes per search trial (investigation aid): 64 rounds of
//! propose one candidate, checkpoint, observe its (synthetic) reward, checkpoint; wall time and
//! libtorch operations dispatched (`effnas-opcount`) per round. `scripts/bench-controllers`
//! measures the whole search.
use effnas_search::controller::{Controller, Observation, RlConfig, RlController};
use effnas_space::SearchSpace;
use std::time::Instant;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let space = SearchSpace::resolve("default")?;
    let mut c = RlController::new(space, RlConfig::default(), 0)?;
    let (mut tp, mut to, mut ts) = (0.0, 0.0, 0.0);
    let (mut op, mut oo) = (0u64, 0u64);
    for i in 0..64 {
        let t = Instant::now();
        let (p, n) = effnas_opcount::count(|| c.propose(1))?;
        op += n.top_level;
        let p = p?;
        tp += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = c.state()?.to_string();
        ts += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (r, n) = effnas_opcount::count(|| {
            c.observe(&[Observation { tokens: p[0].clone(), reward: Some((i % 7) as f64 / 7.0), rung: 0 }])
        })?;
        r?;
        oo += n.top_level;
        to += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = c.state()?.to_string();
        ts += t.elapsed().as_secs_f64();
    }
    println!(
        "per trial: propose {:.2} ms ({} ops), observe {:.2} ms ({} ops), 2 states {:.2} ms",
        tp * 1000.0 / 64.0,
        op / 64,
        to * 1000.0 / 64.0,
        oo / 64,
        ts * 1000.0 / 64.0
    );
    Ok(())
}
