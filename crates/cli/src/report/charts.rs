//! SVG charts for the HTML report, drawn with plotters' SVG backend.
//!
//! Every chart draws its text, axes and outlines in black, which [`finish`] turns into
//! `currentColor`: the page's CSS sets the colour for light and dark mode, so one SVG reads on
//! both. Fills come from the Okabe–Ito palette (distinguishable with the common colour-vision
//! deficiencies, black left out); every bar also has a `currentColor` outline, so it stands out
//! against either background whatever its fill. Legends are HTML beside the chart (see
//! [`legend_html`]), and every chart comes with its numbers as a table.

use std::fmt::Write as _;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Okabe–Ito colours without black: blue, orange, bluish green, vermillion, reddish purple, sky
/// blue, yellow, grey.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0xF0, 0xE4, 0x42),
    RGBColor(0x99, 0x99, 0x99),
];

/// The colour of the `i`-th series.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `#rrggbb` of a colour.
pub fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

const FONT: &str = "sans-serif";

/// Pixels from a non-negative length (rounded up).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked: finite, >= 0, small
fn px(x: f64) -> u32 {
    if x.is_finite() && x > 0.0 { x.ceil().min(f64::from(u32::MAX)) as u32 } else { 0 }
}

/// The category index at position `x` (the nearest integer), if it is one.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked: finite, >= 0
pub fn index(x: f64) -> Option<usize> {
    (-0.5..1e9).contains(&x).then(|| x.round().max(0.0) as usize)
}

/// An HTML legend: a swatch and a name per series.
pub fn legend_html(names: &[(String, RGBColor)]) -> String {
    let mut s = String::from("<ul class=\"legend\">");
    for (name, c) in names {
        let _ = write!(
            s,
            "<li><span class=\"swatch\" style=\"background:{}\"></span>{}</li>",
            hex(*c),
            esc(name)
        );
    }
    s.push_str("</ul>");
    s
}

/// HTML-escape text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Make plotters' SVG page-ready: black becomes `currentColor`, and the root gets an accessible
/// name (`role="img"`, a `<title>`) and a class.
fn finish(svg: &str, title: &str) -> String {
    // Inline SVG in HTML needs no namespace declaration: without it the page holds no URL at all.
    let svg = svg.replace("\"#000000\"", "\"currentColor\"").replacen(
        " xmlns=\"http://www.w3.org/2000/svg\"",
        "",
        1,
    );
    let open_end = svg.find('>').unwrap_or(0);
    let (head, rest) = svg.split_at(open_end);
    format!(
        "{head} role=\"img\" aria-label=\"{t}\" class=\"chart-svg\"><title>{t}</title>{}",
        &rest[1..],
        t = esc(title)
    )
}

fn text_style(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK)
}

/// Format a number for an axis or a label: integers plainly, others with up to 3 significant
/// decimals, large values with a thousands separator.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let x = if x.abs() >= 100.0 { x.round() + 0.0 } else { x + 0.0 };
    if x.fract() == 0.0 && x.abs() < 1e15 {
        let s = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        if x < 0.0 { format!("-{out}") } else { out }
    } else if x.abs() >= 1.0 {
        format!("{x:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        // Three significant digits below 1 (0.998, 0.0123), at most nine decimals.
        let decimals = (2.0 - x.abs().log10().floor()).clamp(3.0, 9.0);
        let decimals = index(decimals).unwrap_or(3);
        format!("{x:.decimals$}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One stacked component of a bar chart: its name and a value per row.
#[derive(Debug, Clone)]
pub struct Component {
    /// Legend name.
    pub name: String,
    /// One value per row.
    pub values: Vec<f64>,
}

/// Rows of a bar chart, in groups separated by a gap (runs of one scenario, say).
#[derive(Debug, Clone)]
pub struct Rows {
    /// Row labels.
    pub labels: Vec<String>,
    /// The group of each row; a new group starts with a gap and its name above it.
    pub group: Vec<usize>,
    /// Group names (shown when there is more than one group).
    pub group_names: Vec<String>,
}

const ROW_PX: u32 = 16;
const GROUP_GAP_PX: u32 = 22;

/// A horizontal stacked bar chart: one bar per row, one segment per component; the total is
/// written at the end of each bar. Returns the SVG.
pub fn hbar(title: &str, x_desc: &str, rows: &Rows, comps: &[Component]) -> String {
    let n = rows.labels.len();
    let groups = rows.group_names.len().max(1);
    let show_groups = rows.group_names.len() > 1;
    // Vertical layout in row units: each group gap is worth GROUP_GAP_PX / ROW_PX rows.
    let gap = if show_groups { f64::from(GROUP_GAP_PX) / f64::from(ROW_PX) } else { 0.0 };
    let mut y = Vec::with_capacity(n);
    let mut pos = 0.0;
    let mut last_group = usize::MAX;
    let mut group_top = Vec::new();
    for i in 0..n {
        let g = rows.group.get(i).copied().unwrap_or(0);
        if g != last_group {
            if show_groups {
                pos += gap;
                group_top.push((g, pos));
            }
            last_group = g;
        }
        y.push(pos);
        pos += 1.0;
    }
    let height_rows = pos.max(1.0);
    let label_chars = rows.labels.iter().map(|l| l.chars().count()).max().unwrap_or(4).min(60);
    let label_px = (label_chars as u32) * 7 + 14;
    let plot_h = px(height_rows * f64::from(ROW_PX));
    let width = label_px + 620;
    let height = plot_h + 40 + 46 + if groups > 1 { 4 } else { 0 };
    let totals: Vec<f64> =
        (0..n).map(|i| comps.iter().map(|c| c.values.get(i).copied().unwrap_or(0.0)).sum()).collect();
    let max = totals.iter().copied().fold(0.0_f64, f64::max);
    let x_max = if max > 0.0 { max * 1.18 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, text_style(15))
            .margin_left(6)
            .margin_right(16)
            .margin_top(6)
            .x_label_area_size(44)
            .y_label_area_size(label_px)
            .build_cartesian_2d(0.0..x_max, height_rows..0.0)
            .expect("chart layout");
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .y_labels(0)
            .x_labels(6)
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.15))
            .axis_style(BLACK)
            .x_desc(x_desc)
            .label_style(text_style(11))
            .axis_desc_style(text_style(12))
            .x_label_formatter(&|v| fmt_num(*v))
            .draw()
            .expect("mesh");
        for (ci, comp) in comps.iter().enumerate() {
            let fill = colour(ci).filled();
            let bars = (0..n).filter_map(|i| {
                let v = comp.values.get(i).copied().unwrap_or(0.0);
                if v <= 0.0 {
                    return None;
                }
                let start: f64 = comps[..ci].iter().map(|c| c.values.get(i).copied().unwrap_or(0.0)).sum();
                Some(Rectangle::new([(start, y[i] + 0.15), (start + v, y[i] + 0.85)], fill))
            });
            chart.draw_series(bars).expect("bars");
        }
        let outline = ShapeStyle { color: BLACK.to_rgba(), filled: false, stroke_width: 1 };
        let outlines = (0..n)
            .filter(|&i| totals[i] > 0.0)
            .map(|i| Rectangle::new([(0.0, y[i] + 0.15), (totals[i], y[i] + 0.85)], outline));
        chart.draw_series(outlines).expect("outlines");
        let value_style = text_style(11).pos(Pos::new(HPos::Left, VPos::Center));
        let labels = (0..n).map(|i| {
            EmptyElement::at((totals[i], y[i] + 0.5))
                + Text::new(fmt_num(totals[i]), (4, 0), value_style.clone())
        });
        chart.draw_series(labels).expect("values");
        let row_style = text_style(11).pos(Pos::new(HPos::Right, VPos::Center));
        let group_style = text_style(12).pos(Pos::new(HPos::Left, VPos::Bottom));
        for (yi, label) in y.iter().zip(&rows.labels) {
            let (x, py) = chart.backend_coord(&(0.0, yi + 0.5));
            let label: String = label.chars().take(60).collect();
            root.draw(&Text::new(label, (x - 6, py), row_style.clone())).expect("row label");
        }
        for (g, top) in group_top {
            let (_, py) = chart.backend_coord(&(0.0, top));
            let name = rows.group_names.get(g).cloned().unwrap_or_default();
            root.draw(&Text::new(name, (8, py - 2), group_style.clone())).expect("group label");
        }
        root.present().expect("svg");
    }
    finish(&svg, title)
}

/// NPT coverage over simulated time: stacked shares of guest memory mapped at 4K, 2M and 1G and
/// not mapped (`shares[i]` in percent, summing to 100, holding from `t_us[i]` to `t_us[i + 1]`);
/// `empty` is written across a chart without points.
pub fn coverage(
    title: &str,
    t_us: &[f64],
    shares: &[[f64; 4]],
    colours: [RGBColor; 4],
    empty: &str,
) -> String {
    let (w, h) = (340u32, 200u32);
    // From the first sample (the end of the first step: nothing is known before it) to the end.
    let x_min = t_us.first().copied().unwrap_or(0.0);
    let t_end = t_us.last().copied().unwrap_or(0.0);
    let x_max = if t_end > x_min { t_end } else { x_min + 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, text_style(12))
            .margin(6)
            .margin_right(14)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(x_min..x_max, 0.0..100.0)
            .expect("chart layout");
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .axis_style(BLACK)
            .x_labels(3)
            .y_labels(5)
            .x_desc("simulated time (µs)")
            .y_desc("guest memory (%)")
            .label_style(text_style(10))
            .axis_desc_style(text_style(10))
            .x_label_formatter(&|v| fmt_num(*v))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .expect("mesh");
        if t_us.is_empty() {
            let (px, py) = chart.backend_coord(&(f64::midpoint(x_min, x_max), 50.0));
            let style = text_style(11).pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(empty.to_string(), (px, py), style)).expect("note");
        } else {
            // Layers from the top of the stack down, each drawn over the one before: unmapped on
            // top of 1G on top of 2M on top of 4K.
            for layer in (0..4).rev() {
                let mut pts = Vec::with_capacity(2 * t_us.len());
                for (i, &t) in t_us.iter().enumerate() {
                    let v: f64 = shares[i][..=layer].iter().sum();
                    let next = t_us.get(i + 1).copied().unwrap_or(t);
                    pts.push((t, v));
                    pts.push((next, v));
                }
                chart.draw_series(AreaSeries::new(pts, 0.0, colours[layer].filled())).expect("area");
            }
        }
        root.present().expect("svg");
    }
    finish(&svg, title)
}

/// The x axis of a line chart: numbers, or categories in order.
#[derive(Debug, Clone)]
pub enum XAxis {
    /// Numeric positions.
    Numeric,
    /// Category names; points are at their index.
    Categories(Vec<String>),
}

/// A line of a line chart: (x, mean, min, max) per point, sorted by x.
#[derive(Debug, Clone)]
pub struct Line {
    /// Points.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// A metric against a swept parameter: one line per series, the mean over seeds with a min–max
/// bar where seeds differ.
/// `y` is the range of the y axis to cover (charts side by side share one).
pub fn lines(title: &str, x_desc: &str, y_desc: &str, x: &XAxis, series: &[Line], y: (f64, f64)) -> String {
    let (w, h) = (520u32, 300u32);
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (y0, y1) = y;
    for &(px, ..) in all {
        x0 = x0.min(px);
        x1 = x1.max(px);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if let XAxis::Categories(c) = x {
        x0 = -0.5;
        x1 = c.len() as f64 - 0.5;
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y_top = if y1 > y0 { y1 + (y1 - y0) * 0.08 } else { y0 + 1.0 };
    // Small counts get whole-number ticks only.
    let integral = series.iter().flat_map(|s| &s.points).all(|p| p.2.fract() == 0.0 && p.3.fract() == 0.0);
    let y_ticks = if integral && y1 - y0 <= 8.0 { index(y1 - y0).unwrap_or(5) + 1 } else { 6 };
    let cats = match x {
        XAxis::Categories(c) => c.clone(),
        XAxis::Numeric => Vec::new(),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, text_style(13))
            .margin(8)
            .margin_right(18)
            .x_label_area_size(42)
            .y_label_area_size(58)
            .build_cartesian_2d(x0..x1, y0..y_top)
            .expect("chart layout");
        let cat_fmt = |v: &f64| -> String {
            if (v - v.round()).abs() < 1e-6 {
                index(*v).and_then(|i| cats.get(i)).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .axis_style(BLACK)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .y_labels(y_ticks)
            .label_style(text_style(10))
            .axis_desc_style(text_style(11))
            .y_label_formatter(&|v| fmt_num(*v));
        if cats.is_empty() {
            mesh.x_labels(6).x_label_formatter(&|v| fmt_num(*v));
        } else {
            mesh.x_labels(cats.len() * 2 + 1).x_label_formatter(&cat_fmt);
        }
        mesh.draw().expect("mesh");
        for (si, s) in series.iter().enumerate() {
            let c = colour(si);
            chart
                .draw_series(LineSeries::new(s.points.iter().map(|p| (p.0, p.1)), c.stroke_width(2)))
                .expect("line");
            let marker = si % 3;
            chart
                .draw_series(s.points.iter().map(|p| -> DynElement<'static, SVGBackend<'_>, (f64, f64)> {
                    let at = (p.0, p.1);
                    match marker {
                        0 => Circle::new(at, 4, c.filled()).into_dyn(),
                        1 => TriangleMarker::new(at, 5, c.filled()).into_dyn(),
                        _ => Cross::new(at, 4, c.stroke_width(2)).into_dyn(),
                    }
                }))
                .expect("markers");
            let whiskers = s
                .points
                .iter()
                .filter(|p| p.3 > p.2)
                .map(|p| PathElement::new(vec![(p.0, p.2), (p.0, p.3)], c.stroke_width(1)));
            chart.draw_series(whiskers).expect("whiskers");
        }
        root.present().expect("svg");
    }
    finish(&svg, title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(16417.0), "16,417");
        assert_eq!(fmt_num(-1_234_567.0), "-1,234,567");
        assert_eq!(fmt_num(0.998), "0.998");
        assert_eq!(fmt_num(0.000_512_3), "0.000512");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(13.5), "13.5");
        assert_eq!(fmt_num(f64::NAN), "–");
    }

    #[test]
    fn charts_are_svg_with_an_accessible_name_and_no_black() {
        let rows =
            Rows { labels: vec!["a".into(), "b".into()], group: vec![0, 0], group_names: vec!["g".into()] };
        let comps = vec![Component { name: "x".into(), values: vec![1.0, 3.0] }];
        for svg in [
            hbar("Bars & more", "count", &rows, &comps),
            coverage(
                "cov",
                &[0.0, 1.0],
                &[[10.0, 40.0, 0.0, 50.0], [100.0, 0.0, 0.0, 0.0]],
                [PALETTE[3], PALETTE[0], PALETTE[2], PALETTE[7]],
                "nothing",
            ),
            coverage("empty", &[], &[], [PALETTE[3], PALETTE[0], PALETTE[2], PALETTE[7]], "VM not created"),
            lines("l", "x", "y", &XAxis::Numeric, &[Line { points: vec![(0.0, 1.0, 0.5, 1.5)] }], (0.0, 1.5)),
        ] {
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(svg.contains("role=\"img\""));
            assert!(svg.contains("<title>"));
            assert!(!svg.contains("#000000"));
        }
        assert!(hbar("Bars & more", "count", &rows, &comps).contains("Bars &amp; more"));
    }
}
