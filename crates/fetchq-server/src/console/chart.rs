//! Charts as inline SVG drawn on the server: no script, no network, and the
//! colours come from the stylesheet (classes `s0`...`s4`).
//!
//! Hand-written rather than a plotting crate: a line chart over a few hundred
//! points is a hundred lines, while plotters' SVG backend needs font metrics
//! (a font file or a font crate) to lay out its labels.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// One line: a name for the legend and its points (time, value).
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub name: &'static str,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// A compact number for an axis: `950`, `1.2k`, `3.4M`.
fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The smallest of 1, 2, 5 × 10^n at or above `v` (a round axis top).
fn nice(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// A line chart of `series` over time, with `empty` shown when there is no point.
pub(crate) fn line_chart(label: &str, series: &[Series], empty: &str) -> Markup {
    if series.iter().all(|s| s.points.len() < 2) {
        return html! { div.chart-empty { (empty) } };
    }
    let all: Vec<&(DateTime<Utc>, f64)> = series.iter().flat_map(|s| &s.points).collect();
    let (Some(t0), Some(t1)) = (all.iter().map(|p| p.0).min(), all.iter().map(|p| p.0).max())
    else {
        return html! { div.chart-empty { (empty) } };
    };
    let span = ((t1 - t0).num_milliseconds() as f64 / 1000.0).max(1.0);
    let top = nice(all.iter().map(|p| p.1).fold(0.0, f64::max));
    let x = |t: DateTime<Utc>| {
        LEFT + ((t - t0).num_milliseconds() as f64 / 1000.0) / span * (W - LEFT - RIGHT)
    };
    let y = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    let mut svg = String::new();
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            compact(v)
        );
    }
    for i in 0..=3 {
        let t = t0 + chrono::Duration::milliseconds((span * 1000.0 * f64::from(i) / 3.0) as i64);
        let anchor = match i {
            0 => "start",
            3 => "end",
            _ => "middle",
        };
        let fmt = if span > 2.0 * 86400.0 {
            "%m-%d %H:%M"
        } else {
            "%H:%M"
        };
        let _ = write!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            x(t),
            H - 6.0,
            t.format(fmt)
        );
    }
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="line s{}" points="{}"/>"#,
            i % 5,
            pts.join(" ")
        );
    }
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(label) preserveAspectRatio="none" {
                (PreEscaped(svg))
            }
            figcaption.legend {
                @for (i, s) in series.iter().enumerate() {
                    span { i class={ "swatch s" (i % 5) } {} (s.name) }
                }
            }
        }
    }
}

/// A horizontal bar split by share: (name, value) parts, classes `s0`...
pub(crate) fn share_bar(label: &str, parts: &[(&'static str, i64)]) -> Markup {
    let total: i64 = parts.iter().map(|p| p.1.max(0)).sum();
    let mut svg = String::new();
    let mut at = 0.0;
    if total > 0 {
        for (i, (_, v)) in parts.iter().enumerate() {
            let w = (*v).max(0) as f64 / total as f64 * 1000.0;
            if w > 0.0 {
                let _ = write!(
                    svg,
                    r#"<rect class="fill s{}" x="{at:.2}" y="0" width="{w:.2}" height="20"/>"#,
                    i % 5
                );
            }
            at += w;
        }
    } else {
        svg.push_str(r#"<rect class="fill empty" x="0" y="0" width="1000" height="20"/>"#);
    }
    html! {
        figure.bar {
            svg viewBox="0 0 1000 20" role="img" aria-label=(label) preserveAspectRatio="none" { (PreEscaped(svg)) }
            figcaption.legend {
                @for (i, (name, v)) in parts.iter().enumerate() {
                    span { i class={ "swatch s" (i % 5) } {} (name) " " b { (crate::console::layout::count(*v)) } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round_and_numbers_compact() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(12.0), 20.0);
        assert_eq!(nice(4100.0), 5000.0);
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(2_500_000.0), "2.5M");
        assert_eq!(compact(0.5), "0.5");
    }

    #[test]
    fn a_chart_has_one_line_per_series_with_points() {
        let t = Utc::now();
        let s = vec![
            Series {
                name: "processed",
                points: vec![(t, 1.0), (t + chrono::Duration::minutes(5), 3.0)],
            },
            Series {
                name: "rejected",
                points: vec![],
            },
        ];
        let out = line_chart("c", &s, "none").into_string();
        assert_eq!(out.matches("<polyline").count(), 1);
        assert!(out.contains("processed") && out.contains("rejected"));
        assert_eq!(
            line_chart("c", &[], "no data").into_string(),
            "<div class=\"chart-empty\">no data</div>"
        );
    }
}
