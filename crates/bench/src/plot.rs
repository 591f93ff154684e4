//! The accuracy-against-cost plot: one labelled point per approach (mean tokens per
//! question, accuracy) with its 95% interval, the Pareto front highlighted.
//!
//! Drawn with `plotters`' SVG backend only: text goes into `<text>` elements and its
//! size is estimated without font files, so no system font library is needed.

use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// One approach on the plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlotPoint {
    pub label: String,
    /// Mean prompt + completion tokens per question.
    pub tokens: f64,
    pub accuracy: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Indices of the points on the Pareto front: no other point has at most as many
/// tokens and at least the accuracy, and is strictly better in one of them.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            let (t, a) = points[i];
            !points
                .iter()
                .any(|&(tq, aq)| tq <= t && aq >= a && (tq < t || aq > a))
        })
        .collect()
}

const FRONT: RGBColor = RGBColor(214, 39, 40);
const OTHER: RGBColor = RGBColor(31, 119, 180);

/// The SVG document of the plot.
pub fn render_svg(title: &str, points: &[PlotPoint]) -> Result<String> {
    let coords: Vec<(f64, f64)> = points.iter().map(|p| (p.tokens, p.accuracy)).collect();
    let front = pareto_front(&coords);
    let max_tokens = points
        .iter()
        .map(|p| p.tokens)
        .filter(|t| t.is_finite())
        .fold(0.0_f64, f64::max);
    let x_max = if max_tokens > 0.0 {
        max_tokens * 1.25
    } else {
        1.0
    };

    // Small models score low: fit the accuracy axis to the intervals, in steps of 10%.
    let top = points
        .iter()
        .map(|p| p.ci_high.max(p.accuracy))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let y_max = ((top + 0.05) * 10.0).ceil().clamp(1.0, 10.0) / 10.0;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("mean tokens per question")
            .y_desc("accuracy")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .draw()
            .map_err(plot_error)?;

        // 95% intervals.
        for p in points {
            chart
                .draw_series(LineSeries::new(
                    [(p.tokens, p.ci_low), (p.tokens, p.ci_high)],
                    OTHER.mix(0.35).stroke_width(1),
                ))
                .map_err(plot_error)?;
        }

        // The front, left to right.
        let mut line: Vec<(f64, f64)> = front.iter().map(|&i| coords[i]).collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(line, FRONT.stroke_width(2)))
            .map_err(plot_error)?
            .label("Pareto front")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FRONT.stroke_width(2)));

        for (i, p) in points.iter().enumerate() {
            let on_front = front.contains(&i);
            let colour = if on_front { FRONT } else { OTHER };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((p.tokens, p.accuracy))
                        + Circle::new((0, 0), if on_front { 6 } else { 4 }, colour.filled())
                        + Text::new(p.label.clone(), (8, -14), ("sans-serif", 13)),
                ))
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Renders the plot and writes it to `path`.
pub fn write_svg(path: &Path, title: &str, points: &[PlotPoint]) -> Result<()> {
    let svg = render_svg(title, points)?;
    std::fs::write(path, svg).map_err(|e| BenchError::io(path, e))
}

fn plot_error<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Plot(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_of_known_points() {
        // (tokens, accuracy)
        let pts = [
            (100.0, 0.30), // cheapest: on the front
            (300.0, 0.50), // on the front
            (350.0, 0.45), // dominated by (300, 0.50)
            (900.0, 0.62), // best: on the front
            (900.0, 0.60), // dominated (same cost, lower accuracy)
            (50.0, 0.10),  // cheapest of all: on the front
        ];
        assert_eq!(pareto_front(&pts), vec![0, 1, 3, 5]);
        assert_eq!(pareto_front(&[(1.0, 0.5), (1.0, 0.5)]), vec![0, 1]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn labels_are_escaped_and_the_axis_fits_low_accuracies() {
        let p = |label: &str, tokens, accuracy| PlotPoint {
            label: label.into(),
            tokens,
            accuracy,
            ci_low: 0.0,
            ci_high: accuracy + 0.1,
        };
        let svg = render_svg(
            "low <scores>",
            &[p("none", 100.0, 0.1), p("re2&bon|moa", 900.0, 0.2)],
        )
        .unwrap();
        assert!(svg.contains("re2&amp;bon|moa") && !svg.contains("re2&bon"));
        assert!(svg.contains("low &lt;scores&gt;"));
        // Highest interval end 0.3: the axis stops at 40%, not 100%.
        assert!(svg.contains("40%") && !svg.contains("100%"));
    }
}
