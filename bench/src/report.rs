//! `docs/benchmarks.md` and its chart, from the results of one run.

use std::fmt::Write as _;

use plotters::{coord::ranged1d::SegmentValue, prelude::*};

use crate::{
    cases::{Case, CaseResult, SUITE},
    ceilings::{Ceilings, DD_RUNS},
    tus,
};

pub const INTAKE: &str = "intake";
/// intake with `storage.kind = "s3"`, against the run's S3 server.
pub const INTAKE_S3: &str = "intake (S3)";

/// What a case is held to (issue: "Benchmarks in one command … then make intake fast").
fn target(
    case: &str,
    intake: &CaseResult,
    peer: Option<&CaseResult>,
    ceilings: &Ceilings,
) -> Option<(String, bool)> {
    let disk = ceilings.disk_write_mib_s;
    let peer_rps = peer.map_or(f64::NAN, |p| p.rps);
    if intake.quick {
        return None;
    }
    let growth = intake.rss_peak_mib - intake.rss_start_mib;
    Some(match case {
        "upload 1 KiB c=64" => ("≥ 3× best peer req/s".into(), intake.rps >= 3.0 * peer_rps),
        "upload 1 MiB c=16" => ("≥ 80% of disk ceiling".into(), intake.mib_s >= 0.8 * disk),
        "upload 1 MiB c=256" => ("peak RSS ≤ 64 MiB".into(), intake.rss_peak_mib <= 64.0),
        "upload 1 GiB c=1" => (
            "≥ 80% of disk ceiling, RSS growth ≤ 16 MiB".into(),
            intake.mib_s >= 0.8 * disk && growth <= 16.0,
        ),
        "slow 1 s c=10000" => (
            "all answered within 1.2 s".into(),
            intake.errors == 0 && intake.max_ms <= 1200.0,
        ),
        "ping c=64" => (
            "≥ 10× best peer req/s".into(),
            intake.rps >= 10.0 * peer_rps,
        ),
        _ => return None,
    })
}

fn best_peer<'a>(results: &'a [CaseResult], case: &str) -> Option<&'a CaseResult> {
    results
        .iter()
        .filter(|r| r.case == case && !r.target.starts_with(INTAKE) && r.errors == 0)
        .max_by(|a, b| a.rps.total_cmp(&b.rps))
}

fn find<'a>(results: &'a [CaseResult], target: &str, case: &str) -> Option<&'a CaseResult> {
    results
        .iter()
        .find(|r| r.case == case && r.target == target)
}

/// A case's name as the report shows it: what a quick run really sent, when it was quick.
fn label(case: &Case, results: &[CaseResult]) -> String {
    if results.iter().any(|r| r.case == case.name && r.quick) {
        case.quick_label()
    } else {
        case.name.to_owned()
    }
}

pub fn markdown(results: &[CaseResult], ceilings: &Ceilings, header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n\n{header}\n");
    if results.iter().any(|r| r.quick) {
        let _ = writeln!(
            out,
            "**A quick run (`QUICK=1`): one small round per case, uploads of at most 1 MiB. It checks that every case works; its figures are not measurements, and no target is judged.**\n"
        );
    }
    let _ = writeln!(out, "![intake ÷ best FastAPI peer](benchmarks.svg)\n");
    let _ = writeln!(out, "## The machine's ceilings (same run)\n");
    let _ = writeln!(out, "| ceiling | MiB/s |\n|---|---:|");
    let [slowest, fastest] = ceilings.disk_write_range_mib_s;
    let _ = writeln!(
        out,
        "| disk write, `dd bs=1M count=1024 conv=fdatasync` (median of {DD_RUNS}; slowest {slowest:.0}, fastest {fastest:.0}) | {:.0} |",
        ceilings.disk_write_mib_s
    );
    let _ = writeln!(
        out,
        "| SHA-256, one core (`sha2` crate) | {:.0} |",
        ceilings.sha256_mib_s
    );
    let _ = writeln!(
        out,
        "| loopback TCP, one stream | {:.0} |\n",
        ceilings.loopback_mib_s
    );

    let _ = writeln!(out, "## intake against the best peer and the machine\n");
    let _ = writeln!(
        out,
        "| case | intake | best peer | intake ÷ peer | share of disk ceiling | target | met |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---|");
    for case in &SUITE {
        let name = label(case, results);
        let case = case.name;
        let Some(intake) = find(results, INTAKE, case) else {
            continue;
        };
        let peer = best_peer(results, case);
        let is_upload = intake.mib_s > 0.0;
        let figure = |r: &CaseResult| {
            if is_upload {
                format!("{:.0} MiB/s, {:.0} req/s", r.mib_s, r.rps)
            } else {
                format!("{:.0} req/s, max {:.0} ms", r.rps, r.max_ms)
            }
        };
        let (peer_text, ratio) = match peer {
            Some(p) => (
                format!("{} ({})", figure(p), p.target),
                format!("{:.2}×", intake.rps / p.rps),
            ),
            None => ("—".into(), "—".into()),
        };
        let share = if is_upload {
            format!("{:.0}%", 100.0 * intake.mib_s / ceilings.disk_write_mib_s)
        } else {
            "—".into()
        };
        let (goal, met) = match target(case, intake, peer, ceilings) {
            Some((goal, met)) => (goal, if met { "yes" } else { "**no**" }.to_owned()),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {peer_text} | {ratio} | {share} | {goal} | {met} |",
            figure(intake)
        );
    }

    if let Some(s3) = &ceilings.s3 {
        on_s3(&mut out, results, s3);
    }
    resumable(&mut out, results);

    let _ = writeln!(out, "\n## Every figure\n");
    let _ = writeln!(
        out,
        "| case | server | ok | errors | req/s | MiB/s | p50 ms | p99 ms | max ms | RSS before → peak (MiB) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let names = SUITE
        .iter()
        .map(|case| (case.name, label(case, results)))
        .chain([(tus::CASE.name, tus_label(results))]);
    for (case, name) in names {
        for r in results.iter().filter(|r| r.case == case) {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} → {:.1} |",
                r.target,
                r.ok,
                r.errors,
                r.rps,
                r.mib_s,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.rss_start_mib,
                r.rss_peak_mib
            );
        }
    }
    out
}

/// intake storing in the run's S3 server, beside the server's own PUTs and intake on disk.
fn on_s3(out: &mut String, results: &[CaseResult], s3: &crate::s3::S3Ceilings) {
    let _ = writeln!(out, "\n## intake on S3 (s3s-fs on this machine)\n");
    let _ = writeln!(
        out,
        "| case | intake, S3 | the S3 server alone (object_store PUTs) | share | intake on disk | peak RSS, S3 |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (case, ceiling) in [
        ("upload 1 MiB c=16", s3.one_mib_c16_mib_s),
        ("upload 1 GiB c=1", s3.one_gib_mib_s),
    ] {
        let Some(on_s3) = find(results, INTAKE_S3, case) else {
            continue;
        };
        let on_disk =
            find(results, INTAKE, case).map_or("—".into(), |r| format!("{:.0} MiB/s", r.mib_s));
        let case_label = SUITE
            .iter()
            .find(|c| c.name == case)
            .map_or(case.to_owned(), |c| label(c, results));
        let _ = writeln!(
            out,
            "| {case_label} | {:.0} MiB/s | {ceiling:.0} MiB/s | {:.0}% | {on_disk} | {:.0} MiB (+{:.0}) |",
            on_s3.mib_s,
            100.0 * on_s3.mib_s / ceiling,
            on_s3.rss_peak_mib,
            on_s3.rss_peak_mib - on_s3.rss_start_mib,
        );
    }
}

fn tus_label(results: &[CaseResult]) -> String {
    if results.iter().any(|r| r.case == tus::CASE.name && r.quick) {
        tus::CASE.quick_label()
    } else {
        tus::CASE.name.to_owned()
    }
}

/// The resumable upload beside the multipart one of the same size, on each storage.
fn resumable(out: &mut String, results: &[CaseResult]) {
    let _ = writeln!(out, "\n## Resumable uploads (tus)\n");
    let _ = writeln!(
        out,
        "One keep-alive connection, a `POST` then a `PATCH` per chunk (each recorded in Postgres with the SHA-256 state); counted when the file made has the right SHA-256.\n"
    );
    let _ = writeln!(
        out,
        "| storage | {} | multipart `upload 1 GiB c=1` | tus ÷ multipart | peak RSS, tus |",
        tus_label(results)
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (target, storage) in [(INTAKE, "disk"), (INTAKE_S3, "S3 (s3s-fs)")] {
        let Some(tus) = find(results, target, tus::CASE.name) else {
            continue;
        };
        let (multipart, ratio) = match find(results, target, "upload 1 GiB c=1") {
            Some(m) => (
                format!("{:.0} MiB/s", m.mib_s),
                format!("{:.2}×", tus.mib_s / m.mib_s),
            ),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {storage} | {:.0} MiB/s | {multipart} | {ratio} | {:.0} MiB (+{:.0}) |",
            tus.mib_s,
            tus.rss_peak_mib,
            tus.rss_peak_mib - tus.rss_start_mib,
        );
    }
}

/// One bar per case: intake's requests per second over the best peer's.
pub fn chart(
    results: &[CaseResult],
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let bars: Vec<(String, f64)> = SUITE
        .iter()
        .filter_map(|case| {
            let intake = find(results, INTAKE, case.name)?;
            let peer = best_peer(results, case.name)?;
            Some((label(case, results), intake.rps / peer.rps))
        })
        .collect();
    let max = bars.iter().map(|(_, r)| *r).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 60 + 44 * bars.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "intake ÷ best FastAPI peer, req/s (higher is better; intake fsyncs, the peer keeps nothing)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(170)
        .build_cartesian_2d(0.0..max, (0..bars.len()).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|value| match value {
            SegmentValue::CenterOf(i) => {
                bars.get(*i).map_or(String::new(), |(name, _)| name.clone())
            }
            _ => String::new(),
        })
        .x_desc("× the peer")
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, ratio))| {
        let color = if *ratio >= 1.0 {
            RGBColor(46, 125, 50)
        } else {
            RGBColor(198, 40, 40)
        };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*ratio, SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        );
        bar.set_margin(6, 6, 0, 0);
        bar
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, ratio))| {
        Text::new(
            format!(" {ratio:.1}×"),
            (*ratio, SegmentValue::CenterOf(i)),
            ("sans-serif", 15),
        )
    }))?;
    chart.draw_series(LineSeries::new(
        [
            (1.0, SegmentValue::Exact(0)),
            (1.0, SegmentValue::Exact(bars.len())),
        ],
        BLACK.stroke_width(1),
    ))?;
    root.present()?;
    Ok(())
}
