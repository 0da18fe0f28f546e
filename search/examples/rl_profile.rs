//! Where the RL controller's time goes per search trial (investigation aid): ROUNDS rounds
//! (default 64, four policy updates) of propose one candidate, checkpoint, observe its
//! (synthetic) reward, checkpoint; wall time and libtorch operations dispatched
//! (`effnas-opcount`) per round. `scripts/bench-controllers` measures the whole search.
//!
//!     cargo run --release -p effnas-search --example rl_profile [ROUNDS]
use effnas_search::controller::{Controller, Observation, RlConfig, RlController};
use effnas_space::SearchSpace;
use std::time::Instant;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u64 = match std::env::args().nth(1) {
        Some(text) => text.parse().map_err(|e| format!("ROUNDS {text:?}: {e}"))?,
        None => 64,
    };
    let space = SearchSpace::resolve("default")?;
    let mut c = RlController::new(space, RlConfig::default(), 0)?;
    let (mut tp, mut to, mut ts) = (0.0, 0.0, 0.0);
    let (mut op, mut oo) = (0u64, 0u64);
    for i in 0..rounds {
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
        "{rounds} rounds, per trial: propose {:.2} ms ({} ops), observe {:.2} ms ({} ops), 2 states {:.2} ms",
        tp * 1000.0 / rounds as f64,
        op / rounds,
        to * 1000.0 / rounds as f64,
        oo / rounds,
        ts * 1000.0 / rounds as f64
    );
    Ok(())
}
