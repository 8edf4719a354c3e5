//! Charts as hand-written SVG: CDFs of TTFT and ITL (one line per run) and, over a sweep,
//! throughput against latency (one point per run, labelled with its load).

use crate::record::RequestRecord;
use crate::report::{Report, ms};
use std::fmt::Write;
use std::path::Path;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const MARGIN: (f64, f64, f64, f64) = (70.0, 30.0, 40.0, 55.0); // left, right, top, bottom
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
/// Points drawn per CDF line.
const CDF_POINTS: usize = 400;

struct Series {
    name: String,
    /// (x, y, label of the point)
    points: Vec<(f64, f64, String)>,
}

/// Writes `ttft_cdf.svg` and `itl_cdf.svg`, and with two runs or more `throughput_ttft.svg` and
/// `throughput_itl.svg`, into `dir`; returns the paths written.
pub fn write_plots(
    dir: &Path,
    runs: &[(Report, Vec<RequestRecord>)],
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let cdf = |values: &dyn Fn(&RequestRecord) -> Vec<f64>| -> Vec<Series> {
        runs.iter()
            .map(|(report, records)| Series {
                name: report.load.clone(),
                points: cdf_points(
                    records
                        .iter()
                        .filter(|r| r.error.is_none())
                        .flat_map(values),
                ),
            })
            .collect()
    };
    let mut charts = vec![
        (
            "ttft_cdf.svg",
            chart(
                "TTFT distribution",
                "time to first token (ms, log)",
                "fraction of requests",
                &cdf(&|r| r.ttft.map(ms).into_iter().collect()),
                true,
            ),
        ),
        (
            "itl_cdf.svg",
            chart(
                "ITL distribution",
                "inter-token latency (ms, log)",
                "fraction of gaps",
                &cdf(&|r| r.itl.iter().copied().map(ms).collect()),
                true,
            ),
        ),
    ];
    if runs.len() > 1 {
        let against = |name: &str, value: &dyn Fn(&Report) -> Option<f64>| Series {
            name: name.to_string(),
            points: runs
                .iter()
                .filter_map(|(r, _)| Some((r.output_tokens_per_second, value(r)?, r.load.clone())))
                .collect(),
        };
        charts.push((
            "throughput_ttft.svg",
            chart(
                "Throughput vs TTFT",
                "output tokens/s",
                "TTFT (ms)",
                &[
                    against("p50", &|r| r.ttft_ms.as_ref().map(|p| p.p50)),
                    against("p99", &|r| r.ttft_ms.as_ref().map(|p| p.p99)),
                ],
                false,
            ),
        ));
        charts.push((
            "throughput_itl.svg",
            chart(
                "Throughput vs inter-token latency",
                "output tokens/s",
                "ms",
                &[
                    against("TPOT p50", &|r| r.tpot_ms.as_ref().map(|p| p.p50)),
                    against("ITL p99", &|r| r.itl_ms.as_ref().map(|p| p.p99)),
                ],
                false,
            ),
        ));
    }
    let mut written = Vec::new();
    for (name, svg) in charts {
        let path = dir.join(name);
        std::fs::write(&path, svg)?;
        written.push(path);
    }
    Ok(written)
}

/// The empirical CDF, thinned to about [`CDF_POINTS`] points.
fn cdf_points(values: impl Iterator<Item = f64>) -> Vec<(f64, f64, String)> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let step = n.div_ceil(CDF_POINTS).max(1);
    (0..n)
        .step_by(step)
        .chain((n > 0).then_some(n - 1))
        .map(|i| (values[i], (i + 1) as f64 / n as f64, String::new()))
        .collect()
}

/// A line chart of `series`; `log_x` puts x on a log scale with decade ticks.
fn chart(title: &str, x_label: &str, y_label: &str, series: &[Series], log_x: bool) -> String {
    let (left, right, top, bottom) = MARGIN;
    let (plot_w, plot_h) = (WIDTH - left - right, HEIGHT - top - bottom);
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let fx = |x: f64| if log_x { x.max(1e-3).log10() } else { x };
    let (x_min, x_max) = range(xs.map(fx), log_x);
    let (y_min, y_max) = range(ys, false);
    let px = |x: f64| left + (fx(x) - x_min) / (x_max - x_min) * plot_w;
    let py = |y: f64| top + plot_h - (y - y_min) / (y_max - y_min) * plot_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n",
        WIDTH / 2.0,
        escape(title),
        left + plot_w / 2.0,
        HEIGHT - 12.0,
        escape(x_label),
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(y_label)
    );
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#888\"/>"
    );
    for (t, label) in ticks(x_min, x_max, log_x) {
        let x = left + (t - x_min) / (x_max - x_min) * plot_w;
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            top + plot_h,
            top + plot_h + 16.0
        );
    }
    for (t, label) in ticks(y_min, y_max, false) {
        let y = py(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            left + plot_w,
            left - 6.0,
            y + 4.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y, _)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" points=\"{}\"/>",
            path.join(" ")
        );
        for (x, y, label) in s.points.iter().filter(|p| !p.2.is_empty()) {
            let (x, y) = (px(*x), py(*y));
            let _ = writeln!(
                svg,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
                x + 5.0,
                y - 5.0,
                escape(label)
            );
        }
        let ly = top + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"{:.1}\">{}</text>",
            left + 10.0,
            ly - 4.0,
            left + 28.0,
            ly,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The data's range, padded so that a single value still spans something; from zero when linear.
fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if log {
        (lo.floor(), hi.ceil().max(lo.floor() + 1.0))
    } else {
        (lo.min(0.0), if hi > lo.min(0.0) { hi * 1.05 } else { 1.0 })
    }
}

/// About five round ticks over `lo..hi` (on a log axis: the decades, labelled in real units).
fn ticks(lo: f64, hi: f64, log: bool) -> Vec<(f64, String)> {
    if log {
        return (lo as i32..=hi as i32)
            .map(|e| (e as f64, format!("{}", 10f64.powi(e))))
            .collect();
    }
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 20 {
        out.push((t, format!("{}", (t * 1e6).round() / 1e6)));
        t += step;
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Slo;
    use std::time::Duration;

    #[test]
    fn writes_cdfs_and_sweep_charts() {
        let run = |load: &str, ms: u64| {
            let records: Vec<RequestRecord> = (1..=50)
                .map(|i| RequestRecord {
                    ttft: Some(Duration::from_millis(ms * i)),
                    e2e: Duration::from_millis(ms * i + 100),
                    itl: vec![Duration::from_millis(ms); 4],
                    output_tokens: 5,
                    ..Default::default()
                })
                .collect();
            let report = Report::new(
                load.into(),
                "w".into(),
                &records,
                Duration::from_secs(1),
                Slo::default(),
            );
            (report, records)
        };
        let dir = std::env::temp_dir().join(format!("turbine-plot-{}", std::process::id()));
        let written =
            write_plots(&dir, &[run("concurrency 1", 1), run("concurrency <4>", 3)]).unwrap();
        assert_eq!(written.len(), 4);
        let svg = std::fs::read_to_string(dir.join("throughput_ttft.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("concurrency &lt;4&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
