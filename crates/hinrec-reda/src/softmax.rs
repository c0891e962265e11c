//! Softmax helpers for evaluation's inner loop, which takes one softmax
//! over the m memory slots per (candidate, history item, aspect pair): one
//! libm `expf` call per value was a quarter of an evaluation, so
//! [`softmax_dots`] exponentiates a whole row at once in straight-line
//! arithmetic the compiler vectorizes.

/// `e^x` for `x <= 0` (as after subtracting a maximum), within about two
/// units in the last place: Cody-Waite reduction by `ln 2` and Cephes'
/// degree-6 polynomial for `expf`. Below `-87` it returns `e^-87`.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // Not `f32::max`: its NaN rule keeps the loop from vectorizing.
    let x = if x > -87.0 { x } else { -87.0 };
    let big = x * std::f32::consts::LOG2_E + ROUND;
    let n = big - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let exponent = (big.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    y * f32::from_bits(((exponent + 127) << 23) as u32)
}

/// `softmax(a) . v`, computed stably with libm's exponential.
pub(crate) fn softmax_dot(a: &[f32], v: &[f32]) -> f32 {
    let mx = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut num, mut den) = (0f32, 0f32);
    for (&x, &y) in a.iter().zip(v) {
        let e = (x - mx).exp();
        num += e * y;
        den += e;
    }
    num / den
}

/// `out[s] = softmax(row[s m..(s + 1) m]) . v` for every segment `s` of
/// `row` (`v` has length `m`), using `buf` as scratch. One shift, the
/// row's maximum, serves every segment (a softmax does not change under a
/// shift); a segment whose values all underflow against it is recomputed
/// with its own maximum.
pub(crate) fn softmax_dots(row: &[f32], v: &[f32], buf: &mut Vec<f32>, out: &mut [f32]) {
    let m = v.len();
    let mx = row
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| if x > a { x } else { a });
    buf.clear();
    buf.extend(row.iter().map(|&x| exp_nonpositive(x - mx)));
    for ((o, seg), exps) in out
        .iter_mut()
        .zip(row.chunks_exact(m))
        .zip(buf.chunks_exact(m))
    {
        let (mut num, mut den) = (0f32, 0f32);
        for (&e, &y) in exps.iter().zip(v) {
            num += e * y;
            den += e;
        }
        *o = if den > 1e-30 {
            num / den
        } else {
            softmax_dot(seg, v)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = (x as f64).exp();
            worst = worst.max((exp_nonpositive(x) as f64 - want).abs() / want);
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1e4), exp_nonpositive(-87.0));
    }

    #[test]
    fn softmax_dots_by_hand() {
        // Softmax (ln 3, 0) = (3/4, 1/4): 3/4 * 4 + 1/4 * 8 = 5; the second
        // segment (0, 0) averages: 6; the third lies 200 below the row's
        // maximum and underflows: recomputed with its own, (1/4, 3/4): 7.
        let v = [4.0, 8.0];
        let row = [3f32.ln(), 0.0, 0.0, 0.0, -200.0 - 3f32.ln(), -200.0];
        let mut out = [0f32; 3];
        softmax_dots(&row, &v, &mut Vec::new(), &mut out);
        for (got, want) in out.iter().zip([5.0, 6.0, 7.0]) {
            assert!((got - want).abs() < 1e-5, "{out:?}");
        }
        assert!((softmax_dot(&row[..2], &v) - 5.0).abs() < 1e-6);
    }

    #[test]
    fn softmax_dots_match_the_exact_form() {
        let m = 20;
        let row: Vec<f32> = (0..m * 30)
            .map(|i| 50.0 + (i as f32 * 0.37).sin() * 8.0)
            .collect();
        let v: Vec<f32> = (0..m).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![0f32; 30];
        softmax_dots(&row, &v, &mut Vec::new(), &mut out);
        for (seg, got) in row.chunks(m).zip(out) {
            let mx = seg.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
            let w: Vec<f64> = seg.iter().map(|&x| (x as f64 - mx).exp()).collect();
            let want =
                w.iter().zip(&v).map(|(w, &v)| w * v as f64).sum::<f64>() / w.iter().sum::<f64>();
            assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
        }
    }
}
