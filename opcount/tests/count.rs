//! The counter against operations whose number is known.

use tch::{Device, Kind, Tensor};

#[test]
fn counts_the_operations_a_closure_dispatches() -> Result<(), Box<dyn std::error::Error>> {
    let a = Tensor::f_ones([4], (Kind::Float, Device::Cpu))?;
    let (sum, counts) = effnas_opcount::count(|| -> Result<Tensor, tch::TchError> {
        let b = a.f_add_scalar(1.0)?;
        let c = b.f_mul(&a)?;
        c.f_sub(&b)
    })?;
    assert_eq!(sum?.f_double_value(&[0])?, 0.0);
    assert_eq!(counts.top_level, 3, "{counts:?}");
    assert!(counts.all >= counts.top_level, "{counts:?}");
    // Nothing is counted outside a measurement.
    let (_, none) = effnas_opcount::count(|| ())?;
    assert_eq!(none, effnas_opcount::Counts::default());
    Ok(())
}
