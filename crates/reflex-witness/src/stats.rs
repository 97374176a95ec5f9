//! The statistics of the judgement: how unlikely a count of failures is
//! under a component's baseline rate.
//!
//! Failures of `n` requests at a small rate `p` are close to a Poisson
//! count of mean `λ = n·p`. [`poisson_tail`] is `P(X ≥ k)`: summed exactly
//! (in log space, from the `k`-th term up) while `λ` is at most
//! [`EXACT_UP_TO`], and from the normal approximation with a continuity
//! correction above (which underestimates the far tail by up to 2× at 5
//! standard deviations, the Poisson being skewed right: there the error
//! factor, 2× the baseline rate, tens of deviations up, is what decides).

/// The largest mean summed exactly.
pub(crate) const EXACT_UP_TO: f64 = 1000.0;

/// `P(X ≥ k)` for `X` Poisson of mean `lambda`; 1 for `k` 0, 0 for a mean
/// of 0 and `k` above 0.
pub(crate) fn poisson_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda.is_nan() || lambda <= 0.0 {
        return 0.0;
    }
    let kf = k as f64;
    if lambda > EXACT_UP_TO {
        let z = (kf - 0.5 - lambda) / lambda.sqrt();
        return normal_tail(z);
    }
    if kf <= lambda {
        // At or below the mean: the tail is at least about a half, far from
        // any margin worth summing for.
        return 1.0 - poisson_cdf_below(k, lambda);
    }
    // The k-th term, then the next ones by ratio λ/(i+1) (below 1 from
    // here on, so the sum converges geometrically).
    let mut term = (kf.mul_add(lambda.ln(), -lambda) - ln_factorial(k)).exp();
    let mut sum = 0.0;
    let mut i = kf;
    for _ in 0..100_000 {
        sum += term;
        i += 1.0;
        term *= lambda / i;
        if term <= sum * 1e-15 {
            break;
        }
    }
    sum.min(1.0)
}

/// `P(X < k)`, summed from 0 (used only where `k` is at most `λ ≤ 1000`).
fn poisson_cdf_below(k: u64, lambda: f64) -> f64 {
    let mut term = (-lambda).exp();
    let mut sum = 0.0;
    for i in 0..k {
        sum += term;
        term *= lambda / (i + 1) as f64;
    }
    sum.min(1.0)
}

/// `ln(k!)`: exact below 32, Stirling's series above (error below 1e-10).
fn ln_factorial(k: u64) -> f64 {
    if k < 32 {
        return (2..=k).map(|i| (i as f64).ln()).sum();
    }
    let n = k as f64;
    0.5f64.mul_add((2.0 * std::f64::consts::PI * n).ln(), n.mul_add(n.ln(), -n)) + 1.0 / (12.0 * n)
        - 1.0 / (360.0 * n * n * n)
}

/// `P(Z > z)` for a standard normal `Z` (relative error below 1.2e-7:
/// Numerical Recipes' `erfcc`).
pub(crate) fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / 0.5f64.mul_add(z, 1.0);
    let poly = (-z).mul_add(z, -1.265_512_23)
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_tails_match_hand_computed_values() {
        // P(X >= 1 | 1) = 1 - e^-1.
        assert!((poisson_tail(1, 1.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        // P(X >= 5 | 0.1) ≈ 0.1^5/120 · e^-0.1 (first term dominates).
        let tail = poisson_tail(5, 0.1);
        assert!(
            (tail / (1e-5 / 120.0 * (-0.1f64).exp()) - 1.0).abs() < 0.03,
            "{tail}"
        );
        // P(X >= 10 | 2) = 4.6e-5 (tables).
        assert!((poisson_tail(10, 2.0) / 4.650_4e-5 - 1.0).abs() < 1e-3);
        // Far tails do not underflow to garbage, and the tail falls with k.
        assert!(poisson_tail(10_000, 10.0) < 1e-300);
        assert!(poisson_tail(30, 10.0) < poisson_tail(20, 10.0));
        assert_eq!(poisson_tail(0, 0.0), 1.0);
        assert_eq!(poisson_tail(3, 0.0), 0.0);
    }

    #[test]
    fn the_exact_sum_and_the_normal_approximation_agree_near_the_switch() {
        // λ = 1000, 5 standard deviations up: 5.8e-7 exact, 3.2e-7 normal
        // (the Poisson's right skew). Within a factor of 2, far inside the
        // error factor (2× the baseline rate is 31 deviations up at λ =
        // 1000), which is what decides above the switch.
        let exact = poisson_tail(1158, 1000.0);
        let z = (1158.0 - 0.5 - 1000.0) / 1000f64.sqrt();
        let approx = normal_tail(z);
        assert!((exact / approx).ln().abs() < 0.7, "{exact} vs {approx}");
        // The normal tail at 4.753 is the one-sided 1e-6 quantile.
        assert!((normal_tail(4.753_4) / 1e-6 - 1.0).abs() < 0.01);
    }

    #[test]
    fn ln_factorial_is_continuous_across_the_switch_to_stirling() {
        let exact: f64 = (2..=40u64).map(|i| (i as f64).ln()).sum();
        assert!((ln_factorial(40) - exact).abs() < 1e-9);
    }
}
