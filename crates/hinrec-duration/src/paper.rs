//! The paper's alignment figure: each kind's mapped rows `f_p(r)` in one
//! 2-D projection (the first two principal axes of the kinds' rows
//! together), drawn as an SVG, with the distributional variance (eq. 2-4,
//! the alignment loss) of the same rows as its number.

use candle_core::{Device, Tensor};
use hinrec_nn::alignment::{distributional_variance, median_gamma};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::network::Duration;
use crate::params::{DurationError, Result};

/// One model's mapped rows, projected.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignmentView {
    /// Each kind's name.
    pub kinds: Vec<String>,
    /// Each kind's points on the two principal axes.
    pub points: Vec<Vec<[f64; 2]>>,
    /// The distributional variance of the kinds' mapped rows, RBF kernel
    /// at the median-distance bandwidth of all of them.
    pub variance: f64,
    /// The share of the rows' variance the two axes hold.
    pub explained: f64,
}

impl Duration {
    /// `f_p(r)` of `items` of kind `kind`, row-major `items.len() x dim`;
    /// an error for the DMF variant, which maps no attributes.
    pub fn mapped(&self, kind: usize, items: &[u32]) -> Result<Vec<f32>> {
        if !self.cfg.maps_attributes() {
            return Err(DurationError::Data(
                "this variant maps no attributes (variant = \"dmf\")".into(),
            ));
        }
        if kind >= self.kinds.len() {
            return Err(DurationError::Data(format!(
                "kind {kind} of {}",
                self.kinds.len()
            )));
        }
        Ok(self.map_items(kind, items)?.1.flatten_all()?.to_vec1()?)
    }
}

/// Up to `per_kind` items of each kind (drawn with `seed`), their mapped
/// rows projected on the first two principal axes of all of them.
pub fn alignment_view(model: &Duration, per_kind: usize, seed: u64) -> Result<AlignmentView> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dim = model.cfg.dim;
    let mut sets: Vec<Vec<f32>> = Vec::new();
    for (k, kind) in model.kinds().iter().enumerate() {
        let n = kind.len().min(per_kind);
        let mut items: Vec<u32> = sample(&mut rng, kind.len(), n)
            .into_iter()
            .map(|i| kind.items.start + i as u32)
            .collect();
        items.sort_unstable();
        sets.push(model.mapped(k, &items)?);
    }
    if sets.len() < 2 || sets.iter().any(Vec::is_empty) {
        return Err(DurationError::Data(
            "the alignment view needs two or more item kinds with items".into(),
        ));
    }
    let dev = Device::Cpu;
    let tensors: Vec<Tensor> = sets
        .iter()
        .map(|s| Tensor::from_slice(s, (s.len() / dim, dim), &dev))
        .collect::<candle_core::Result<_>>()?;
    let all = Tensor::cat(&tensors, 0)?;
    let gamma = median_gamma(&all)?;
    let refs: Vec<&Tensor> = tensors.iter().collect();
    let variance = distributional_variance(&refs, gamma)?.to_scalar::<f32>()? as f64;
    let rows: Vec<&[f32]> = sets.iter().flat_map(|s| s.chunks(dim)).collect();
    let mean = column_means(&rows, dim);
    let (axes, explained) = principal_axes(&rows, &mean);
    let project = |r: &[f32]| {
        let mut p = [0.0; 2];
        for (a, axis) in axes.iter().enumerate() {
            p[a] = r
                .iter()
                .zip(&mean)
                .zip(axis)
                .map(|((&x, m), v)| (x as f64 - m) * v)
                .sum();
        }
        p
    };
    Ok(AlignmentView {
        kinds: model.kinds().iter().map(|k| k.name.clone()).collect(),
        points: sets
            .iter()
            .map(|s| s.chunks(dim).map(project).collect())
            .collect(),
        variance,
        explained,
    })
}

fn column_means(rows: &[&[f32]], dim: usize) -> Vec<f64> {
    let mut mean = vec![0.0; dim];
    for r in rows {
        for (m, &x) in mean.iter_mut().zip(*r) {
            *m += x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows.len().max(1) as f64);
    mean
}

/// The top two eigenvectors of the covariance of `rows` about their
/// column means `mean` (power iteration with deflation, from a fixed
/// start), and the share of the total variance they hold.
fn principal_axes(rows: &[&[f32]], mean: &[f64]) -> ([Vec<f64>; 2], f64) {
    let dim = mean.len();
    let mut cov = vec![0.0; dim * dim];
    for r in rows {
        let c: Vec<f64> = r.iter().zip(mean).map(|(&x, m)| x as f64 - m).collect();
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] += c[i] * c[j];
            }
        }
    }
    let n = rows.len().max(2) as f64 - 1.0;
    cov.iter_mut().for_each(|v| *v /= n);
    let total: f64 = (0..dim).map(|i| cov[i * dim + i]).sum();
    let mut axes: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut held = 0.0;
    for axis in &mut axes {
        let mut v: Vec<f64> = (0..dim).map(|i| 1.0 + i as f64 / dim as f64).collect();
        let mut lambda = 0.0;
        for _ in 0..500 {
            let w: Vec<f64> = (0..dim)
                .map(|i| (0..dim).map(|j| cov[i * dim + j] * v[j]).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            lambda = norm;
            v = w.iter().map(|x| x / norm).collect();
        }
        // Deflate: the next axis is the top one of what is left.
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] -= lambda * v[i] * v[j];
            }
        }
        held += lambda;
        *axis = v;
    }
    (axes, if total > 0.0 { held / total } else { 0.0 })
}

/// Colours of the kinds, in order.
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// Side of one panel, in pixels.
const PANEL: f64 = 320.0;

/// An SVG with one panel per `(title, view)`, side by side, each kind's
/// points in its colour, each panel's distributional variance under it.
pub fn alignment_svg(views: &[(&str, &AlignmentView)]) -> String {
    let margin = 30.0;
    let width = views.len() as f64 * (PANEL + margin) + margin;
    let height = PANEL + 3.0 * margin + 20.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (p, (title, view)) in views.iter().enumerate() {
        let x0 = margin + p as f64 * (PANEL + margin);
        let y0 = margin + 10.0;
        // The frame holds 98 % of the points: a few far items would
        // otherwise squeeze the rest into a dot. The others are clipped
        // and counted.
        let mut reach: Vec<f64> = view
            .points
            .iter()
            .flatten()
            .map(|q| q[0].abs().max(q[1].abs()))
            .collect();
        reach.sort_by(f64::total_cmp);
        let extent = reach
            .get((reach.len() * 98 / 100).min(reach.len().saturating_sub(1)))
            .copied()
            .unwrap_or(1.0)
            .max(1e-12);
        let outside = reach.iter().filter(|&&r| r > extent).count();
        let scale = (PANEL / 2.0 - 6.0) / extent;
        out += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n\
             <rect x=\"{x0}\" y=\"{y0}\" width=\"{PANEL}\" height=\"{PANEL}\" fill=\"none\" stroke=\"#999\"/>\n\
             <clipPath id=\"panel{p}\"><rect x=\"{x0}\" y=\"{y0}\" width=\"{PANEL}\" height=\"{PANEL}\"/></clipPath>\n\
             <g clip-path=\"url(#panel{p})\">\n",
            x0 + PANEL / 2.0,
            y0 - 8.0,
            escape(title)
        );
        for (k, pts) in view.points.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            for q in pts {
                out += &format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.6\" fill=\"{colour}\" fill-opacity=\"0.45\"/>\n",
                    x0 + PANEL / 2.0 + q[0] * scale,
                    y0 + PANEL / 2.0 - q[1] * scale
                );
            }
        }
        out += "</g>\n";
        let legend: Vec<String> = view
            .kinds
            .iter()
            .enumerate()
            .map(|(k, name)| {
                format!(
                    "<tspan fill=\"{}\">&#9679; {}</tspan>",
                    COLOURS[k % COLOURS.len()],
                    escape(name)
                )
            })
            .collect();
        out += &format!(
            "<text x=\"{x0}\" y=\"{}\">{} ({outside} points beyond the frame)</text>\n<text x=\"{x0}\" y=\"{}\">distributional variance {:.4}; axes hold {:.0}% of the variance</text>\n",
            y0 + PANEL + 18.0,
            legend.join(" "),
            y0 + PANEL + 36.0,
            view.variance,
            100.0 * view.explained
        );
    }
    out + "</svg>\n"
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_axes_find_the_long_direction() {
        // Points along (1, 1, 0) with a little spread along (1, -1, 0).
        let pts: Vec<[f32; 3]> = (-5..=5)
            .flat_map(|t| {
                [-1.0f32, 1.0].map(move |s| [t as f32 + 0.1 * s, t as f32 - 0.1 * s, 0.0])
            })
            .collect();
        let rows: Vec<&[f32]> = pts.iter().map(|p| &p[..]).collect();
        let (axes, explained) = principal_axes(&rows, &column_means(&rows, 3));
        let h = 1.0 / 2f64.sqrt();
        assert!((axes[0][0].abs() - h).abs() < 1e-6 && (axes[0][1] - axes[0][0]).abs() < 1e-6);
        assert!((axes[1][0] + axes[1][1]).abs() < 1e-6 && axes[1][2].abs() < 1e-6);
        assert!((explained - 1.0).abs() < 1e-9);
    }

    #[test]
    fn svg_has_a_point_per_row_and_the_variance() {
        let view = AlignmentView {
            kinds: vec!["book".into(), "movie<1>".into()],
            points: vec![vec![[0.0, 1.0], [1.0, 0.0]], vec![[-1.0, -1.0]]],
            variance: 0.25,
            explained: 0.5,
        };
        let svg = alignment_svg(&[("with A", &view), ("without A", &view)]);
        assert_eq!(svg.matches("<circle").count(), 6);
        assert_eq!(svg.matches("distributional variance 0.2500").count(), 2);
        assert!(svg.contains("movie&lt;1&gt;") && svg.ends_with("</svg>\n"));
    }
}
