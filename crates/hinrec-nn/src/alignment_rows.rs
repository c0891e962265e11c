//! DURation's alignment and topology losses ([`crate::alignment`]) on
//! plain row-major `f32` rows, each returning its value and writing its
//! gradient in one call, for a training step computed outside candle.
//!
//! The alignment loss is a weighted sum over every pair of the batch's
//! mapped rows of `exp(-gamma ||z_r - z_s||^2)`. The kernel matrix is
//! symmetric: [`distributional_variance_grad`] computes its upper tiles
//! only (each tile one product `Z_a Z_b^T` and one pass of a vectorised
//! exponential), keeps them, and builds each row tile's gradient from its
//! tiles and their transposes. Against the composed candle ops it halves
//! the exponentials and products of the forward pass, and the tiles run in
//! parallel. Every tile and every row tile's gradient is its own task and
//! the sums are taken in tile order, so the result does not depend on the
//! thread count.
//!
//! ```
//! use hinrec_nn::alignment_rows::{distributional_variance_grad, AlignmentScratch};
//!
//! // Two sets of one row each, 1 apart: A = (1 - e^{-gamma}) / 2.
//! let z = [0.0f32, 1.0];
//! let mut grad = [0.0f32; 2];
//! let a = distributional_variance_grad(&z, 1, &[1, 1], 0.5, 1.0, &mut grad, &mut AlignmentScratch::default())?;
//! assert!((a - (1.0 - (-0.5f64).exp()) / 2.0).abs() < 1e-6);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{bail, Result};
use rayon::prelude::*;

use crate::dense_mlp::gemm;

/// Rows per kernel tile: a `128 x 128` tile of `f32` (64 KiB) stays in
/// the L2 cache between its product and its exponential pass. Measured
/// on 2 x 1,024 rows of 64 (`cargo bench --bench duration --
/// alignment_tiles`), one / two threads: 64 rows 8.5 / 4.2 ms, 128 rows
/// 7.3 / 4.0 ms, 256 rows 7.9 / 4.3 ms, 512 rows 8.1 / 5.1 ms.
const TILE: usize = 128;

/// `e^x` for `f32`, within 2e-7 relative of the exact value for `x` in
/// `[-87, 88]` (below, the smallest normal number; above, `e^88`): a range
/// reduction by `ln 2` and Cephes' degree-6 polynomial, branch-free so a
/// loop over a slice is vectorised (libm's scalar `expf` took 8 % of a
/// DURation step).
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let k = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((k + 127) << 23) as u32)
}

/// Reusable buffers of [`distributional_variance_grad`]: the kernel tiles
/// of the last call, kept so a training loop does not fault in fresh
/// pages each step.
#[derive(Debug, Clone, Default)]
pub struct AlignmentScratch {
    tiles: Vec<f32>,
}

/// The tiles of `n` rows: their ranges.
fn tile_ranges(n: usize) -> Vec<std::ops::Range<usize>> {
    (0..n.div_ceil(TILE))
        .map(|t| t * TILE..((t + 1) * TILE).min(n))
        .collect()
}

/// Eq. 4's alignment loss `A` (the distributional variance of eq. 2, as
/// [`crate::alignment::distributional_variance`]) of the sets laid out one
/// after another in `z` (`sizes[p]` rows of set `p`, each `d` wide), with
/// the RBF kernel `exp(-gamma ||x - y||^2)`; writes `scale * dA/dz` into
/// `grad` (overwritten, the shape of `z`).
pub fn distributional_variance_grad(
    z: &[f32],
    d: usize,
    sizes: &[usize],
    gamma: f64,
    scale: f32,
    grad: &mut [f32],
    scratch: &mut AlignmentScratch,
) -> Result<f64> {
    let p = sizes.len();
    let n: usize = sizes.iter().sum();
    if p < 2 || sizes.contains(&0) {
        bail!("distributional variance of sets of {sizes:?} rows: needs two or more, none empty");
    }
    if d == 0 || z.len() != n * d || grad.len() != z.len() {
        bail!(
            "distributional variance: {} values and {} gradients for {n} rows of {d}",
            z.len(),
            grad.len()
        );
    }
    if !(gamma.is_finite() && gamma >= 0.0) {
        bail!("distributional variance: gamma {gamma} is not a finite number >= 0");
    }
    // Eq. 4's weight of a kernel value between a row of set i and one of
    // set j, every ordered pair counted: (P-1)/(P^2 n_i^2) within a set,
    // -1/(P^2 n_i n_j) across.
    let pf = p as f64;
    let weight = |i: usize, j: usize| -> f32 {
        let w = if i == j {
            (pf - 1.0) / (pf * pf * (sizes[i] * sizes[i]) as f64)
        } else {
            -1.0 / (pf * pf * (sizes[i] * sizes[j]) as f64)
        };
        w as f32
    };
    let mut set_of = Vec::with_capacity(n);
    for (k, &s) in sizes.iter().enumerate() {
        set_of.extend(std::iter::repeat_n(k, s));
    }
    let norms: Vec<f32> = z.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
    let tiles = tile_ranges(n);
    let pairs: Vec<(usize, usize)> = (0..tiles.len())
        .flat_map(|a| (a..tiles.len()).map(move |b| (a, b)))
        .collect();
    let sizes_of: Vec<usize> = pairs
        .iter()
        .map(|&(a, b)| tiles[a].len() * tiles[b].len())
        .collect();
    scratch.tiles.resize(sizes_of.iter().sum(), 0.0);
    let mut parts: Vec<&mut [f32]> = Vec::with_capacity(pairs.len());
    let mut rest = &mut scratch.tiles[..];
    for &s in &sizes_of {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(s);
        parts.push(head);
        rest = tail;
    }
    let g = -(gamma as f32);
    let job = TileJob {
        z,
        d,
        norms: &norms,
        set_of: &set_of,
        g,
        weight: &weight,
    };
    // Forward: each upper tile's weighted kernel values and their sum.
    let sums: Vec<f64> = pairs
        .par_iter()
        .zip(parts.into_par_iter())
        .map(|(&(a, b), tile)| job.forward(tiles[a].clone(), tiles[b].clone(), tile))
        .collect::<Result<_>>()?;
    let value: f64 = pairs
        .iter()
        .zip(&sums)
        .map(|(&(a, b), s)| if a == b { *s } else { 2.0 * s })
        .sum();
    // Backward, per row tile a: dA/dz_r = -4 gamma (sum_s K_rs z_r - sum_s
    // K_rs z_s), K the weighted kernel, read from tile (a, b) or the
    // transpose of tile (b, a).
    let mut offset = vec![0usize; pairs.len()];
    for k in 1..pairs.len() {
        offset[k] = offset[k - 1] + sizes_of[k - 1];
    }
    let nt = tiles.len();
    let pair_index = |a: usize, b: usize| -> usize {
        // Pairs (a, b), a <= b, in row-major order of the upper triangle.
        a * nt - a * (a + 1) / 2 + b
    };
    let stored = &scratch.tiles;
    let factor = -4.0 * gamma as f32 * scale;
    grad.par_chunks_mut(TILE * d)
        .enumerate()
        .try_for_each(|(a, out)| -> Result<()> {
            let ra = tiles[a].clone();
            let rows = ra.len();
            out.iter_mut().for_each(|v| *v = 0.0);
            let mut row_sums = vec![0f32; rows];
            for (b, rb) in tiles.iter().enumerate() {
                let zb = &z[rb.start * d..rb.end * d];
                let cols = rb.len();
                if b >= a {
                    let k = pair_index(a, b);
                    let t = &stored[offset[k]..offset[k] + sizes_of[k]];
                    gemm(t, false, zb, false, out, (rows, cols, d), 1.0)?;
                    for (s, row) in row_sums.iter_mut().zip(t.chunks(cols)) {
                        *s += row.iter().sum::<f32>();
                    }
                } else {
                    // Tile (b, a) is cols x rows.
                    let k = pair_index(b, a);
                    let t = &stored[offset[k]..offset[k] + sizes_of[k]];
                    gemm(t, true, zb, false, out, (rows, cols, d), 1.0)?;
                    for row in t.chunks(rows) {
                        for (s, v) in row_sums.iter_mut().zip(row) {
                            *s += v;
                        }
                    }
                }
            }
            let za = &z[ra.start * d..ra.end * d];
            for ((o, zr), s) in out.chunks_mut(d).zip(za.chunks(d)).zip(&row_sums) {
                for (o, &v) in o.iter_mut().zip(zr) {
                    *o = factor * (s * v - *o);
                }
            }
            Ok(())
        })?;
    Ok(value)
}

/// What a tile's forward pass reads.
struct TileJob<'a, W> {
    z: &'a [f32],
    d: usize,
    norms: &'a [f32],
    set_of: &'a [usize],
    g: f32,
    weight: &'a W,
}

impl<W: Fn(usize, usize) -> f32 + Sync> TileJob<'_, W> {
    /// Tile `(ra, rb)`: `weight * exp(g ||z_r - z_s||^2)` into `tile`
    /// (`ra.len() x rb.len()`), and its sum.
    fn forward(
        &self,
        ra: std::ops::Range<usize>,
        rb: std::ops::Range<usize>,
        tile: &mut [f32],
    ) -> Result<f64> {
        let d = self.d;
        let cols = rb.len();
        gemm(
            &self.z[ra.start * d..ra.end * d],
            false,
            &self.z[rb.start * d..rb.end * d],
            true,
            tile,
            (ra.len(), d, cols),
            0.0,
        )?;
        // Column segments of one set each.
        let mut segments: Vec<(std::ops::Range<usize>, usize)> = Vec::new();
        for (c, s) in rb.clone().enumerate() {
            match segments.last_mut() {
                Some((r, set)) if *set == self.set_of[s] => r.end = c + 1,
                _ => segments.push((c..c + 1, self.set_of[s])),
            }
        }
        let nb = &self.norms[rb.clone()];
        let mut total = 0f64;
        for (row, r) in tile.chunks_mut(cols).zip(ra) {
            let (na, set) = (self.norms[r], self.set_of[r]);
            pulp::Arch::new().dispatch(ExpRow {
                row,
                nb,
                na,
                g: self.g,
            });
            for (cols, other) in &segments {
                let w = (self.weight)(set, *other);
                let seg = &mut row[cols.clone()];
                seg.iter_mut().for_each(|v| *v *= w);
                total += sum_f32(seg) as f64;
            }
        }
        Ok(total)
    }
}

/// One tile row's kernel values from its products, as a `pulp` job so the
/// loop is compiled for AVX2 + FMA where the CPU has them.
struct ExpRow<'a> {
    row: &'a mut [f32],
    nb: &'a [f32],
    na: f32,
    g: f32,
}

impl pulp::WithSimd for ExpRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (v, &b) in self.row.iter_mut().zip(self.nb) {
            // Rounding can make a distance slightly negative.
            let d2 = (self.na + b - 2.0 * *v).max(0.0);
            *v = fast_exp(self.g * d2);
        }
    }
}

/// `sum x` over 8 running sums added in a fixed order (vectorisable).
fn sum_f32(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for j in 0..8 {
            acc[j] += c[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Eq. 6's topology term of one item kind (as
/// [`crate::alignment::topology`]): `1/(4N) ||C_R - C_X||_F^2` between the
/// row covariances of its raw rows `raw` (`n x dr`, fixed data) and mapped
/// rows `mapped` (`n x dx`); adds `scale * dT/dmapped` into `grad`.
///
/// With the rows centred, `R` and `X`: `T = (||R^T R||^2 / kr^2 - 2
/// ||R^T X||^2 / (kr kx) + ||X^T X||^2 / kx^2) / (4N)` (`kr = dr - 1`,
/// `kx = dx - 1`), so `dT/dX = (-4 R (R^T X) / (kr kx) + 4 X (X^T X) /
/// kx^2) / (4N)`, then centred again (the centring is its own transpose).
pub fn topology_grad(
    raw: &[f32],
    dr: usize,
    mapped: &[f32],
    dx: usize,
    scale: f32,
    grad: &mut [f32],
) -> Result<f64> {
    if dr < 2 || dx < 2 {
        bail!("topology loss of {dr}- and {dx}-wide rows: needs two or more features");
    }
    let n = raw.len() / dr;
    if n == 0 || raw.len() != n * dr || mapped.len() != n * dx || grad.len() != mapped.len() {
        bail!(
            "topology loss: {} raw values of width {dr}, {} mapped of width {dx}, {} gradients",
            raw.len(),
            mapped.len(),
            grad.len()
        );
    }
    let centre = |v: &[f32], w: usize| -> Vec<f32> {
        let mut out = v.to_vec();
        for row in out.chunks_mut(w) {
            let mean = row.iter().sum::<f32>() / w as f32;
            row.iter_mut().for_each(|x| *x -= mean);
        }
        out
    };
    let (r, x) = (centre(raw, dr), centre(mapped, dx));
    let mut rr = vec![0f32; dr * dr];
    gemm(&r, true, &r, false, &mut rr, (dr, n, dr), 0.0)?;
    let mut rx = vec![0f32; dr * dx];
    gemm(&r, true, &x, false, &mut rx, (dr, n, dx), 0.0)?;
    let mut xx = vec![0f32; dx * dx];
    gemm(&x, true, &x, false, &mut xx, (dx, n, dx), 0.0)?;
    let sq = |v: &[f32]| v.iter().map(|&a| (a as f64) * (a as f64)).sum::<f64>();
    let (kr, kx) = ((dr - 1) as f64, (dx - 1) as f64);
    let value =
        (sq(&rr) / (kr * kr) - 2.0 * sq(&rx) / (kr * kx) + sq(&xx) / (kx * kx)) / (4 * n) as f64;
    // dX = (4 / (4N)) (X Q / kx^2 - R P / (kr kx)), into `dx_rows`.
    let c = (1.0 / n as f64) as f32 * scale;
    let mut d_rows = vec![0f32; n * dx];
    rx.iter_mut()
        .for_each(|v| *v *= -(c as f64 / (kr * kx)) as f32);
    xx.iter_mut()
        .for_each(|v| *v *= (c as f64 / (kx * kx)) as f32);
    gemm(&r, false, &rx, false, &mut d_rows, (n, dr, dx), 0.0)?;
    gemm(&x, false, &xx, false, &mut d_rows, (n, dx, dx), 1.0)?;
    for (g, row) in grad.chunks_mut(dx).zip(d_rows.chunks(dx)) {
        let mean = row.iter().sum::<f32>() / dx as f32;
        for (g, &v) in g.iter_mut().zip(row) {
            *g += v - mean;
        }
    }
    Ok(value)
}

/// The RBF bandwidth of the median heuristic (as
/// [`crate::alignment::median_gamma`]): one over the median squared
/// distance between the `n` rows of `x` (`n x d`), 1 when that is zero.
pub fn median_gamma_rows(x: &[f32], d: usize) -> Result<f64> {
    let n = x.len().checked_div(d).unwrap_or(0);
    if n < 2 || x.len() != n * d {
        bail!("median bandwidth of {n} rows: needs two or more");
    }
    // The products in f32 (one small GEMM), the distances in f64.
    let mut dots = vec![0f32; n * n];
    gemm(x, false, x, true, &mut dots, (n, d, n), 0.0)?;
    let norms: Vec<f64> = (0..n).map(|k| dots[k * n + k] as f64).collect();
    let mut off = Vec::with_capacity(n * (n - 1) / 2);
    for k in 0..n {
        for l in k + 1..n {
            off.push((norms[k] + norms[l] - 2.0 * dots[k * n + l] as f64).max(0.0));
        }
    }
    let mid = off.len() / 2;
    let (_, median, _) = off.select_nth_unstable_by(mid, f64::total_cmp);
    Ok(if *median > 0.0 { 1.0 / *median } else { 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alignment::{distributional_variance, median_gamma, topology};
    use candle_core::{Device, Tensor, Var};

    fn rows(seed: u64, n: usize, d: usize, spread: f64) -> Vec<f32> {
        crate::init::Rng::new(seed)
            .normal(n * d, spread)
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// `d loss / d var` by candle's autograd.
    fn autograd(loss: &Tensor, var: &Var) -> Vec<f64> {
        let grads = loss.backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap();
        g.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn fast_exp_is_within_2e7_of_exp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let got = fast_exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 2e-7, "{worst}");
        assert_eq!(fast_exp(0.0), 1.0);
        // Far below the range: the smallest normal, not zero or a NaN.
        assert!(fast_exp(-1e4) > 0.0 && fast_exp(-1e4) < 1e-37);
    }

    /// The value and gradient against candle's composed
    /// `distributional_variance` with autograd, in f64, on sets of 300,
    /// 200 and 80 rows (tiles of 256 that straddle the sets).
    #[test]
    fn alignment_matches_the_candle_loss_and_its_gradient() {
        let (d, sizes) = (5, [300usize, 200, 80]);
        let n: usize = sizes.iter().sum();
        let z = rows(3, n, d, 0.7);
        let gamma = 0.4;
        let mut grad = vec![0f32; n * d];
        let mut scratch = AlignmentScratch::default();
        let got = distributional_variance_grad(&z, d, &sizes, gamma, 2.0, &mut grad, &mut scratch)
            .unwrap();
        let z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let var = Var::from_vec(z64, (n, d), &Device::Cpu).unwrap();
        let sets: Vec<Tensor> = [(0, 300), (300, 200), (500, 80)]
            .iter()
            .map(|&(s, l)| var.as_tensor().narrow(0, s, l).unwrap())
            .collect();
        let refs: Vec<&Tensor> = sets.iter().collect();
        let want = distributional_variance(&refs, gamma).unwrap();
        let w = want.to_scalar::<f64>().unwrap();
        // A is a difference of sums of order one, kept in f32.
        assert!((got - w).abs() < 1e-6, "{got} {w}");
        let g = autograd(&want, &var);
        let top = g.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (a, b) in grad.iter().zip(&g) {
            assert!((*a as f64 - 2.0 * b).abs() < 1e-4 * top, "{a} {b}");
        }
        // A second call with the kept scratch gives the same.
        let mut again = vec![0f32; n * d];
        let v2 = distributional_variance_grad(&z, d, &sizes, gamma, 2.0, &mut again, &mut scratch)
            .unwrap();
        assert_eq!((v2, &again), (got, &grad));
    }

    #[test]
    fn alignment_of_two_points_by_hand_and_bad_inputs() {
        // Sets {0} and {2}: A = (1 - k) / 2 with k = e^{-gamma (z1 - z0)^2},
        // so dA/dz0 = -gamma (z1 - z0) k = -dA/dz1.
        let z = [0.0f32, 2.0];
        let mut grad = [0f32; 2];
        let gamma = 0.25;
        let a = distributional_variance_grad(
            &z,
            1,
            &[1, 1],
            gamma,
            1.0,
            &mut grad,
            &mut AlignmentScratch::default(),
        )
        .unwrap();
        let k = (-4.0 * gamma).exp();
        assert!((a - (1.0 - k) / 2.0).abs() < 1e-7);
        assert!((grad[0] as f64 + gamma * 2.0 * k).abs() < 1e-6, "{grad:?}");
        assert!((grad[0] + grad[1]).abs() < 1e-7);
        let mut s = AlignmentScratch::default();
        let mut g1 = [0f32; 1];
        assert!(distributional_variance_grad(&[1.0], 1, &[1], 1.0, 1.0, &mut g1, &mut s).is_err());
        assert!(distributional_variance_grad(&z, 1, &[2, 0], 1.0, 1.0, &mut grad, &mut s).is_err());
        assert!(
            distributional_variance_grad(&z, 1, &[1, 1], f64::NAN, 1.0, &mut grad, &mut s).is_err()
        );
    }

    #[test]
    fn topology_matches_the_candle_loss_and_its_gradient() {
        let (n, dr, dx) = (37, 6, 4);
        let raw = rows(5, n, dr, 1.0);
        let mapped = rows(6, n, dx, 0.5);
        let mut grad = vec![0.5f32; n * dx];
        let got = topology_grad(&raw, dr, &mapped, dx, 3.0, &mut grad).unwrap();
        let t = |v: &[f32], w: usize| {
            let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            Tensor::from_vec(v, (n, w), &Device::Cpu).unwrap()
        };
        let var = Var::from_tensor(&t(&mapped, dx)).unwrap();
        let want = topology(&t(&raw, dr), var.as_tensor()).unwrap();
        let w = want.to_scalar::<f64>().unwrap();
        assert!((got - w).abs() < 1e-4 * w.abs(), "{got} {w}");
        let g = autograd(&want, &var);
        // Added onto what was there (0.5).
        for (a, b) in grad.iter().zip(&g) {
            assert!((*a as f64 - 0.5 - 3.0 * b).abs() < 1e-4, "{a} {b}");
        }
        assert!(topology_grad(&raw, dr, &mapped[1..], dx, 1.0, &mut grad).is_err());
        assert!(topology_grad(&raw, 1, &mapped, dx, 1.0, &mut grad).is_err());
    }

    #[test]
    fn median_bandwidth_matches_the_candle_one() {
        let x = rows(9, 40, 3, 1.0);
        let t = Tensor::from_vec(x.clone(), (40, 3), &Device::Cpu).unwrap();
        let a = median_gamma_rows(&x, 3).unwrap();
        let b = median_gamma(&t).unwrap();
        assert!((a - b).abs() < 1e-5 * b, "{a} {b}");
        assert_eq!(median_gamma_rows(&[0.0, 1.0, 3.0], 1).unwrap(), 0.25);
        assert!(median_gamma_rows(&[1.0], 1).is_err());
    }
}
