//! BENCHMARKS.md from the benchmark results: an index (area, headline, target met), one section
//! per area (the command to rerun it, when and at which revision it ran, the table) and SVG
//! charts under `docs/bench/` beside the page.
//!
//! Every area leaves one result file, `<out>/<area>.result.json`, in one schema:
//!
//! ```json
//! { "area": "tiers", "command": "bash benches/tiers.sh target/release/larder 40",
//!   "date": "2026-12-04 02:50 UTC", "revision": "3d2a2eb", "dirty": ["src/x.rs"],
//!   "load_start": [0.1, 0.2, 0.3], "load_end": [1.0, 0.5, 0.4], "duration_s": 61.2,
//!   "settings": "40 runs per row",
//!   "rows": [ { "what": "...", "larder": "4.0 ms", "baseline": "plain fs hit, 3.9 ms",
//!               "ratio": 0.96, "ratio_text": "0.96× the speed", "target": "≥ 0.95×",
//!               "met": true, "headline": true } ],
//!   "charts": [ { "file": "stores.svg", "caption": "MB/s per store" } ] }
//! ```
//!
//! The benchmarks write `area` and `rows` (and `charts`, `settings` when they have them);
//! `cargo xtask bench` adds the rest when it runs them. `met` may be a boolean or the text
//! `yes`/`no`; a row without a target has `met` null. A ratio's target is read from its text
//! (`≥ 0.9×`, `≤ 1.1× the time`) for the chart of every ratio against its target.
//!
//! The prose of an area (what it measures, and the cause of a result in a sentence or two) is
//! `docs/bench/<area>.md`, included under its table.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// One benchmark area: its key (file names, `--areas`), its heading and the command that
/// reruns it alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AreaInfo {
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    /// The commands to rerun this area alone, shown in its section.
    pub(crate) rerun: &'static str,
}

/// One row of an area's table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) what: String,
    pub(crate) larder: String,
    pub(crate) baseline: String,
    pub(crate) ratio: Option<f64>,
    pub(crate) ratio_text: Option<String>,
    pub(crate) target: String,
    pub(crate) met: Option<bool>,
    pub(crate) headline: bool,
}

/// An area's last result, as read from its result file.
#[derive(Debug, Clone)]
pub(crate) struct AreaResult {
    pub(crate) command: String,
    pub(crate) date: String,
    pub(crate) revision: String,
    pub(crate) dirty: Vec<String>,
    pub(crate) load_start: Option<f64>,
    pub(crate) load_end: Option<f64>,
    pub(crate) duration_s: Option<f64>,
    pub(crate) settings: String,
    pub(crate) rows: Vec<Row>,
    /// (file in the out dir, caption).
    pub(crate) charts: Vec<(String, String)>,
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The first of a load-average triple (or a single number).
fn load(v: &Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        Value::Array(a) => a.first()?.as_f64(),
        x => x.as_f64(),
    }
}

/// `met` as written: a boolean, `"yes"`, `"no"`, `"**no**"`, or empty/null (no target).
fn met(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => {
            let s = s.trim_matches('*').trim().to_ascii_lowercase();
            if s.starts_with("yes") {
                Some(true)
            } else if s.starts_with("no") {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

impl Row {
    fn from_json(v: &Value) -> Row {
        Row {
            what: text(v, "what"),
            larder: text(v, "larder"),
            baseline: text(v, "baseline"),
            ratio: v.get("ratio").and_then(Value::as_f64),
            ratio_text: v
                .get("ratio_text")
                .and_then(Value::as_str)
                .map(str::to_owned),
            target: text(v, "target"),
            met: met(v.get("met")),
            headline: v.get("headline").and_then(Value::as_bool).unwrap_or(false),
        }
    }

    fn ratio_cell(&self) -> String {
        match (&self.ratio_text, self.ratio) {
            (Some(t), _) => t.clone(),
            (None, Some(r)) => format!("{}×", fmt_ratio(r)),
            (None, None) => String::new(),
        }
    }

    fn met_cell(&self) -> &'static str {
        match self.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        }
    }

    /// The ratio target in the target text, as (at least?, value): `≥ 0.9×` → (true, 0.9).
    pub(crate) fn ratio_goal(&self) -> Option<(bool, f64)> {
        let t = self.target.replace(">=", "≥").replace("<=", "≤");
        let (at_least, rest) = if let Some(i) = t.find(['≥', '>']) {
            (true, &t[i..])
        } else if let Some(i) = t.find(['≤', '<']) {
            (false, &t[i..])
        } else {
            return None;
        };
        let rest = rest.trim_start_matches(['≥', '≤', '<', '>', ' ']);
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let after = &rest[num.len()..];
        if !after.trim_start().starts_with('×') {
            return None;
        }
        num.parse().ok().map(|n| (at_least, n))
    }
}

/// A ratio with two decimals, or more where two would read as 0.00 or 1.00 for a value that
/// is not.
fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

impl AreaResult {
    pub(crate) fn from_json(v: &Value) -> AreaResult {
        let rows = v
            .get("rows")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Row::from_json).collect())
            .unwrap_or_default();
        let charts = v
            .get("charts")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| Some((c.get("file")?.as_str()?.to_owned(), text(c, "caption"))))
                    .collect()
            })
            .unwrap_or_default();
        let dirty = v
            .get("dirty")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        AreaResult {
            command: text(v, "command"),
            date: text(v, "date"),
            revision: text(v, "revision"),
            dirty,
            load_start: load(v, "load_start"),
            load_end: load(v, "load_end"),
            duration_s: v.get("duration_s").and_then(Value::as_f64),
            settings: text(v, "settings"),
            rows,
            charts,
        }
    }

    pub(crate) fn read(path: &Path) -> Result<Option<AreaResult>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let v: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        Ok(Some(AreaResult::from_json(&v)))
    }

    /// `yes`, `no`, `partly` or `(no target)`: the area's rows with a target.
    fn met_summary(&self) -> &'static str {
        let with: Vec<bool> = self.rows.iter().filter_map(|r| r.met).collect();
        if with.is_empty() {
            "(no target)"
        } else if with.iter().all(|m| *m) {
            "yes"
        } else if with.iter().any(|m| *m) {
            "partly"
        } else {
            "no"
        }
    }

    /// The rows marked as headline, else the first row with a ratio, else the first row.
    fn headline(&self) -> String {
        let marked: Vec<&Row> = self.rows.iter().filter(|r| r.headline).collect();
        let rows = if marked.is_empty() {
            self.rows
                .iter()
                .find(|r| r.ratio.is_some() || r.ratio_text.is_some())
                .or(self.rows.first())
                .into_iter()
                .collect()
        } else {
            marked
        };
        rows.iter()
            .map(|r| {
                let fig = r.ratio_cell();
                match (r.larder.is_empty(), fig.is_empty()) {
                    (_, true) => format!("{}: {}", r.what, r.larder),
                    (true, false) => format!("{}: {fig}", r.what),
                    (false, false) => format!("{}: {}, {fig}", r.what, r.larder),
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes.
pub(crate) fn anchor(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// A table cell: no line breaks, no column separators.
fn cell(s: &str) -> String {
    s.replace('\n', " ").replace('|', "\\|")
}

fn fmt_duration(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// Where a chart of `area` goes beside the page, relative to it.
fn chart_path(area: &str, file: &str) -> String {
    let name = Path::new(file)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_owned());
    if name.starts_with(area) {
        format!("docs/bench/{name}")
    } else {
        format!("docs/bench/{area}-{name}")
    }
}

/// The page's charts: (path relative to the page, SVG text).
pub(crate) struct Page {
    pub(crate) markdown: String,
    /// (path relative to the page, file to copy from in the out dir).
    pub(crate) copies: Vec<(String, String)>,
    /// (path relative to the page, SVG text).
    pub(crate) svgs: Vec<(String, String)>,
}

/// The markdown page for `areas` (in order) with their results (None: never run) and the
/// per-area prose.
pub(crate) fn render(areas: &[AreaInfo], results: &[Option<AreaResult>], prose: &[String]) -> Page {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "Results, one section per area: the command that reruns it, when and at which revision \
         it ran, and a table of what was measured against a baseline **in the same run**. \
         Absolute figures on a shared 2-core VM drift from run to run; ratios to a baseline \
         measured alongside drift less. Ratios are larder's speed ÷ the baseline's unless a row \
         says otherwise. This page is written by `cargo xtask bench --all` (every area, about \
         40 minutes) from the result files in `benches/results/`; `cargo xtask bench --areas \
         a,b` reruns some areas and keeps the others' last results. How figures were \
         investigated: [docs/notes/benchmark-investigations.md]\
         (docs/notes/benchmark-investigations.md).\n\n",
    );
    md.push_str("| area | headline | target met |\n|---|---|---|\n");
    for (a, r) in areas.iter().zip(results) {
        let (head, met) = match r {
            Some(r) => (r.headline(), r.met_summary()),
            None => ("not measured yet".to_owned(), ""),
        };
        let _ = writeln!(
            md,
            "| [{}](#{}) | {} | {} |",
            a.title,
            anchor(a.title),
            cell(&head),
            met
        );
    }
    let mut svgs = Vec::new();
    let mut copies = Vec::new();
    let ratio_chart = ratio_chart(areas, results);
    if let Some(svg) = ratio_chart {
        md.push_str(
            "\nEvery ratio with a target, against it (log scale; green: met, red: not met; the \
             tick is the target):\n\n![ratios against their targets](docs/bench/ratios.svg)\n",
        );
        svgs.push(("docs/bench/ratios.svg".to_owned(), svg));
    }
    for ((a, r), text) in areas.iter().zip(results).zip(prose) {
        let _ = write!(md, "\n## {}\n\n```sh\n{}\n```\n\n", a.title, a.rerun.trim());
        let Some(r) = r else {
            let _ = writeln!(
                md,
                "Not measured yet: `cargo xtask bench --areas {}`.",
                a.name
            );
            continue;
        };
        let mut when = format!(
            "Ran {} at revision `{}`",
            if r.date.is_empty() {
                "(no date)"
            } else {
                &r.date
            },
            if r.revision.is_empty() {
                "?"
            } else {
                &r.revision
            }
        );
        if !r.dirty.is_empty() {
            // The shared tree may hold many files with others' edits: name a few.
            let mut named: Vec<String> = r.dirty.iter().take(3).map(|d| format!("`{d}`")).collect();
            if r.dirty.len() > 3 {
                named.push(format!("{} more files", r.dirty.len() - 3));
            }
            let _ = write!(when, " (with uncommitted edits in {})", named.join(", "));
        }
        if !r.command.is_empty() {
            let _ = write!(when, " as `{}`", r.command);
        }
        if let (Some(s), Some(e)) = (r.load_start, r.load_end) {
            let _ = write!(
                when,
                "; load average {s:.1} at the start, {e:.1} at the end"
            );
        }
        if let Some(d) = r.duration_s {
            let _ = write!(when, "; took {}", fmt_duration(d));
        }
        when.push('.');
        if !r.settings.is_empty() {
            let _ = write!(when, " Settings: {}.", r.settings.trim_end_matches('.'));
        }
        md.push_str(&when);
        md.push_str("\n\n| what | larder | baseline | ratio | target | met |\n");
        md.push_str("|---|---|---|---|---|---|\n");
        for row in &r.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&row.what),
                cell(&row.larder),
                cell(&row.baseline),
                cell(&row.ratio_cell()),
                cell(&row.target),
                row.met_cell()
            );
        }
        for (file, caption) in &r.charts {
            let dest = chart_path(a.name, file);
            let _ = write!(md, "\n![{}]({dest})\n", cell(caption));
            copies.push((dest, file.clone()));
        }
        if !text.trim().is_empty() {
            let _ = write!(md, "\n{}\n", text.trim());
        }
    }
    Page {
        markdown: md,
        copies,
        svgs,
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Every row with a ratio and a ratio target, grouped by area: a dot at the ratio, a tick at
/// the target, on a log scale from 0.1× to 10×. None when no row has both.
pub(crate) fn ratio_chart(areas: &[AreaInfo], results: &[Option<AreaResult>]) -> Option<String> {
    // (label, None for an area's heading or Some((ratio, target, met)) for a row).
    type Line = (String, Option<(f64, f64, bool)>);
    let mut lines: Vec<Line> = Vec::new();
    for (a, r) in areas.iter().zip(results) {
        let Some(r) = r else { continue };
        let rows: Vec<(String, f64, f64, bool)> = r
            .rows
            .iter()
            .filter_map(|row| {
                let ratio = row.ratio?;
                let (at_least, goal) = row.ratio_goal()?;
                let met = row.met.unwrap_or(if at_least {
                    ratio >= goal
                } else {
                    ratio <= goal
                });
                // Labels are plain text: no Markdown code marks; ratios of times say so.
                let mut label = row.what.replace('`', "");
                if !at_least {
                    label.push_str(" (time)");
                }
                Some((label, ratio, goal, met))
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        lines.push((a.title.to_owned(), None));
        for (what, ratio, goal, met) in rows {
            lines.push((what, Some((ratio, goal, met))));
        }
    }
    if lines.is_empty() {
        return None;
    }
    let (width, left, right, row_h, top) = (960.0, 430.0, 30.0, 18.0, 40.0);
    let height = top + row_h * lines.len() as f64 + 30.0;
    let plot = width - left - right;
    let (lo, hi) = (0.1f64.log10(), 10f64.log10());
    let x = |v: f64| left + (v.clamp(0.1, 10.0).log10() - lo) / (hi - lo) * plot;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(
        svg,
        "<text x=\"10\" y=\"18\" font-size=\"13\">Ratio against its target (log scale): \
         green met, red not met, black tick the target</text>"
    );
    let bottom = top + row_h * lines.len() as f64;
    for v in [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0] {
        let stroke = if v == 1.0 { "#888" } else { "#ddd" };
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{bottom}\" stroke=\"{stroke}\"/>\
             <text x=\"{0:.1}\" y=\"{1}\" text-anchor=\"middle\">{v}×</text>",
            x(v),
            bottom + 14.0
        );
    }
    for (i, (label, fig)) in lines.iter().enumerate() {
        let y = top + row_h * i as f64 + row_h / 2.0;
        let mut shown: String = label.chars().take(70).collect();
        if label.chars().count() > 70 {
            shown.push('…');
        }
        match fig {
            None => {
                let _ = writeln!(
                    svg,
                    "<text x=\"10\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
                    y + 4.0,
                    esc(&shown)
                );
            }
            Some((ratio, goal, met)) => {
                let color = if *met { "#2a2" } else { "#d33" };
                let _ = writeln!(
                    svg,
                    "<text x=\"22\" y=\"{:.1}\">{}</text>\
                     <line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>\
                     <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\" stroke-width=\"2\"/>\
                     <circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{color}\"/>\
                     <text x=\"{:.1}\" y=\"{:.1}\">{}×</text>",
                    y + 4.0,
                    esc(&shown),
                    x(*goal),
                    x(*ratio),
                    x(*goal),
                    y - 6.0,
                    x(*goal),
                    y + 6.0,
                    x(*ratio),
                    x(*ratio).max(x(*goal)) + 8.0,
                    y + 4.0,
                    fmt_ratio(*ratio)
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    Some(svg)
}

/// Read the results of `areas` from `out` and their prose from `root/docs/bench/`, then write
/// the page to `md_path` and its charts under `docs/bench/` beside it.
pub(crate) fn write_page(
    root: &Path,
    areas: &[AreaInfo],
    out: &Path,
    md_path: &Path,
) -> Result<()> {
    let mut results = Vec::new();
    let mut prose = Vec::new();
    for a in areas {
        results.push(AreaResult::read(
            &out.join(format!("{}.result.json", a.name)),
        )?);
        let p = root.join("docs/bench").join(format!("{}.md", a.name));
        prose.push(std::fs::read_to_string(&p).unwrap_or_default());
    }
    let page = render(areas, &results, &prose);
    let base = md_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(base.join("docs/bench"))?;
    for (rel, svg) in &page.svgs {
        std::fs::write(base.join(rel), svg).with_context(|| format!("writing {rel}"))?;
    }
    for (rel, from) in &page.copies {
        let src = out.join(from);
        std::fs::copy(&src, base.join(rel))
            .with_context(|| format!("copying {} to {rel}", src.display()))?;
    }
    std::fs::write(md_path, &page.markdown)
        .with_context(|| format!("writing {}", md_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AREAS: [AreaInfo; 3] = [
        AreaInfo {
            name: "tiers",
            title: "Tiers: a local tier in front of `larder serve`",
            rerun: "bash benches/tiers.sh target/release/larder 40",
        },
        AreaInfo {
            name: "demo",
            title: "The demo",
            rerun: "cargo xtask demo",
        },
        AreaInfo {
            name: "never",
            title: "Never run",
            rerun: "true",
        },
    ];

    fn results() -> Vec<Option<AreaResult>> {
        let tiers = serde_json::json!({
            "area": "tiers", "command": "bash benches/tiers.sh target/release/larder 40",
            "date": "2026-12-04 02:50 UTC", "revision": "3d2a2eb",
            "load_start": [0.5, 0.4, 0.3], "load_end": [1.3, 1.0, 0.9], "duration_s": 75.0,
            "rows": [
                {"what": "local tier hit", "larder": "4.0 ms", "baseline": "plain fs hit, 3.9 ms",
                 "ratio": 0.96, "target": "≥ 0.95×", "met": true, "headline": true},
                {"what": "backfill | hit", "larder": "9.8 ms", "baseline": "remote hit, 7.9 ms",
                 "ratio": 1.234, "ratio_text": "1.23× the time", "target": "≤ 1.2× the time",
                 "met": "**no**"},
                {"what": "a hanging remote", "larder": "2.9 s", "baseline": "", "ratio": null,
                 "target": "", "met": ""}
            ],
            "charts": [{"file": "tiers.svg", "caption": "hit times"}]
        });
        let demo = serde_json::json!({
            "area": "demo", "date": "2026-12-04 03:00 UTC", "revision": "abc1234",
            "dirty": ["README.md"],
            "rows": [{"what": "demo, larder built", "larder": "4.1 s", "baseline": "",
                      "target": "", "met": null}]
        });
        vec![
            Some(AreaResult::from_json(&tiers)),
            Some(AreaResult::from_json(&demo)),
            None,
        ]
    }

    #[test]
    fn markdown_rows_from_results() {
        let prose = vec!["Tiers prose.\n".to_owned(), String::new(), String::new()];
        let page = render(&AREAS, &results(), &prose);
        let md = &page.markdown;
        // Index: headline from the marked row, met summary over rows with a target.
        assert!(
            md.contains(
                "| [Tiers: a local tier in front of `larder serve`](#tiers-a-local-tier-in-front-of-larder-serve) | local tier hit: 4.0 ms, 0.96× | partly |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| [The demo](#the-demo) | demo, larder built: 4.1 s | (no target) |"),
            "{md}"
        );
        assert!(
            md.contains("| [Never run](#never-run) | not measured yet |  |"),
            "{md}"
        );
        // Section rows.
        assert!(md.contains(
            "| local tier hit | 4.0 ms | plain fs hit, 3.9 ms | 0.96× | ≥ 0.95× | yes |\n"
        ));
        assert!(md.contains(
            "| backfill \\| hit | 9.8 ms | remote hit, 7.9 ms | 1.23× the time | ≤ 1.2× the time | **no** |\n"
        ));
        assert!(md.contains("| a hanging remote | 2.9 s |  |  |  |  |\n"));
        assert!(md.contains(
            "Ran 2026-12-04 02:50 UTC at revision `3d2a2eb` as `bash benches/tiers.sh target/release/larder 40`; load average 0.5 at the start, 1.3 at the end; took 1 min 15 s."
        ), "{md}");
        assert!(md.contains("(with uncommitted edits in `README.md`)"));
        assert!(md.contains("```sh\ncargo xtask demo\n```"));
        assert!(md.contains("Not measured yet: `cargo xtask bench --areas never`."));
        assert!(md.contains("\n![hit times](docs/bench/tiers.svg)\n"));
        assert!(md.contains("\nTiers prose.\n"));
        assert_eq!(
            page.copies,
            vec![("docs/bench/tiers.svg".to_owned(), "tiers.svg".to_owned())]
        );
        assert!(md.contains("![ratios against their targets](docs/bench/ratios.svg)"));
    }

    #[test]
    fn ratio_goals_from_target_text() {
        let mut r = Row::from_json(&serde_json::json!({"target": "≥ 0.9×"}));
        assert_eq!(r.ratio_goal(), Some((true, 0.9)));
        r.target = "≤ 1.1× the time".into();
        assert_eq!(r.ratio_goal(), Some((false, 1.1)));
        r.target = "≥ 200,000/s".into();
        assert_eq!(r.ratio_goal(), None);
        r.target = "≤ 3 ms".into();
        assert_eq!(r.ratio_goal(), None);
        r.target = String::new();
        assert_eq!(r.ratio_goal(), None);
    }

    /// The chart is well-formed XML: every element closed, in order, attributes quoted.
    #[test]
    fn ratio_chart_is_well_formed_svg() {
        let svg = ratio_chart(&AREAS, &results()).expect("rows with ratio targets");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        check_xml(&svg);
        // Two rows with a ratio target: two dots, one green (met) and one red.
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("fill=\"#2a2\"") && svg.contains("fill=\"#d33\""));
        assert!(svg.contains("backfill | hit (time)"));
        assert!(ratio_chart(&AREAS[1..], &results()[1..]).is_none());
    }

    /// A small XML check: tags nest and close, attribute values are quoted, text has no bare
    /// `<` or `&`.
    fn check_xml(s: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find(['<', '&']) {
            let after = &rest[i..];
            if after.starts_with('&') {
                let end = after.find(';').expect("entity ends with ;");
                let ent = &after[1..end];
                assert!(
                    ["amp", "lt", "gt", "quot", "apos"].contains(&ent),
                    "entity &{ent};"
                );
                rest = &after[end + 1..];
                continue;
            }
            let end = after.find('>').expect("tag closes");
            let tag = &after[1..end];
            assert!(!tag.contains('<'), "< inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "closing {name}");
            } else {
                let self_closing = tag.ends_with('/');
                let body = tag.trim_end_matches('/');
                let mut parts = body.splitn(2, char::is_whitespace);
                let name = parts.next().expect("tag name").to_owned();
                assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()));
                let attrs = parts.next().unwrap_or("");
                assert_eq!(attrs.matches('"').count() % 2, 0, "quotes in {tag}");
                for a in attrs.split('"').step_by(2) {
                    let a = a.trim();
                    assert!(
                        a.is_empty() || a.ends_with('='),
                        "unquoted attribute in {tag}"
                    );
                }
                if !self_closing {
                    stack.push(name);
                }
            }
            rest = &after[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }
}
