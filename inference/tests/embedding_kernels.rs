//! The CPU encoder's vectorised `erf` (used by its exact GELU) against libm's scalar `erff`, which
//! burn's own GELU calls: the embedding tests compare whole models, this pins the function itself.

use agora_inference::embedding::erf;
use burn_flex::ops::unary::erf_f32 as libm_erf;

#[test]
fn erf_matches_the_scalar_one_everywhere() {
    let mut worst = (0.0f32, 0.0f32);
    // Every 1e-4 over [-8, 8]: past ±4 both must be exactly ±1 (f32 rounding).
    for i in -80_000..=80_000 {
        let x = i as f32 * 1e-4;
        let err = (erf(x) - libm_erf(x)).abs();
        if err > worst.1 {
            worst = (x, err);
        }
    }
    println!(
        "erf: max abs difference from libm {:e} at {}",
        worst.1, worst.0
    );
    assert!(
        worst.1 <= 1.5e-7,
        "erf({}) is {:e} away from libm's",
        worst.0,
        worst.1
    );
}

#[test]
fn erf_edge_values() {
    assert_eq!(erf(0.0), 0.0);
    assert_eq!(erf(f32::INFINITY), 1.0);
    assert_eq!(erf(f32::NEG_INFINITY), -1.0);
    assert_eq!(erf(1e30), 1.0);
    assert!(erf(f32::NAN).is_nan());
    // Odd, and tiny inputs keep their relative precision (erf(x) ≈ 2x/√π near 0).
    for x in [1e-30f32, 1e-10, 1e-5, 0.3, 1.7, 3.9] {
        assert_eq!(erf(-x), -erf(x));
    }
    let tiny = 1e-10f32;
    let expected = tiny * std::f32::consts::FRAC_2_SQRT_PI;
    assert!(((erf(tiny) - expected) / expected).abs() < 1e-6);
}
