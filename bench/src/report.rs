//! `docs/benchmarks.md` and its chart, from the results of one run.

use std::fmt::Write as _;

use plotters::{coord::ranged1d::SegmentValue, prelude::*};

use crate::{
    cases::{Case, CaseResult, SUITE},
    ceilings::{Ceilings, DD_RUNS},
    s3::S3Ceilings,
    servers::{BARE, INTAKE, INTAKE_S3, S3_ALONE, is_peer},
    soak::Soak,
    tus,
};

/// The peers that completed a case without an error: every server but intake and the ceiling.
fn peers<'a>(results: &'a [CaseResult], case: &str) -> Vec<&'a CaseResult> {
    results
        .iter()
        .filter(|r| r.case == case && is_peer(&r.target) && r.errors == 0)
        .collect()
}

fn best_peer<'a>(results: &'a [CaseResult], case: &str) -> Option<&'a CaseResult> {
    peers(results, case)
        .into_iter()
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

/// One server's figure for a case: throughput, and for uploads the peak memory too.
fn figure(r: &CaseResult) -> String {
    if r.mib_s > 0.0 {
        format!(
            "{:.0} MiB/s, {:.0} req/s, peak {:.0} MiB",
            r.mib_s, r.rps, r.rss_peak_mib
        )
    } else {
        format!("{:.0} req/s, max {:.0} ms", r.rps, r.max_ms)
    }
}

/// Every server of the run but intake and the S3 server (on its own in `on_s3`), in the order
/// the run measured them.
fn servers(results: &[CaseResult]) -> Vec<(&str, &str)> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in (results.iter()).filter(|r| r.target == BARE || is_peer(&r.target)) {
        if !seen.iter().any(|(target, _)| *target == r.target) {
            seen.push((&r.target, &r.durability));
        }
    }
    seen
}

/// `results`: one per server and case (medians over rounds); `rounds`: every round's.
pub fn markdown(
    results: &[CaseResult],
    rounds: &[CaseResult],
    ceilings: &Ceilings,
    soak: Option<&Soak>,
    header: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n\n{header}\n");
    if results.iter().any(|r| r.quick) {
        let _ = writeln!(
            out,
            "**A quick run (`QUICK=1`): one small round per case, uploads of at most 1 MiB. It checks that every case works; its figures are not measurements, and no target is judged.**\n"
        );
    }
    let _ = writeln!(out, "![intake ÷ best peer](benchmarks.svg)\n");
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
    let _ = writeln!(
        out,
        "The server ceiling, `{BARE}` (`bench/src/bin/bare-ceiling.rs`), is measured like every server in the tables below.\n"
    );

    let _ = writeln!(out, "## The servers and what an answer means\n");
    let _ = writeln!(out, "| server | when it answers an upload |\n|---|---|");
    if let Some(intake) = results.iter().find(|r| r.target == INTAKE) {
        let _ = writeln!(out, "| {INTAKE} | {} |", intake.durability);
    }
    for (server, durability) in servers(results) {
        let _ = writeln!(out, "| {server} | {durability} |");
    }

    crate::targets::markdown(&mut out, rounds);
    let _ = writeln!(out, "\n## intake beside the best peer and the ceiling\n");
    let _ = writeln!(
        out,
        "Each figure the median over the rounds.\n\n| case | intake | best peer | intake ÷ peer | bare ceiling | intake ÷ ceiling |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for case in &SUITE {
        let name = label(case, results);
        let case = case.name;
        let Some(intake) = find(results, INTAKE, case) else {
            continue;
        };
        let (peer_text, ratio) = match best_peer(results, case) {
            Some(p) => (
                format!("{} ({})", figure(p), p.target),
                format!("{:.2}×", intake.rps / p.rps),
            ),
            None => ("—".into(), "—".into()),
        };
        let bare = find(results, BARE, case);
        let (bare_text, share) = match bare {
            Some(b) => (figure(b), format!("{:.0}%", 100.0 * intake.rps / b.rps)),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {peer_text} | {ratio} | {bare_text} | {share} |",
            figure(intake)
        );
    }
    each_peer(&mut out, results);
    cpu_per_stored_mib(&mut out, results);
    crate::rounds::markdown(&mut out, rounds);

    on_s3(&mut out, results, ceilings.s3_boto3.as_ref());
    resumable(&mut out, results);
    if let Some(soak) = soak {
        soaked(&mut out, soak);
    }

    let _ = writeln!(out, "\n## Every figure\n");
    let _ = writeln!(
        out,
        "| case | server | ok | errors | req/s | MiB/s | p50 ms | p99 ms | max ms | RSS before → peak (MiB) | CPU s | CPU ms per MiB |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let names = SUITE
        .iter()
        .map(|case| (case.name, label(case, results)))
        .chain([(tus::CASE.name, tus_label(results))]);
    for (case, name) in names {
        for r in results.iter().filter(|r| r.case == case) {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} → {:.1} | {:.2} | {} |",
                r.target,
                r.ok,
                r.errors,
                r.rps,
                r.mib_s,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.rss_start_mib,
                r.rss_peak_mib,
                r.cpu_s,
                per_mib(r),
            );
        }
    }
    out
}

/// intake's CPU time per stored MiB against the bare sink's, for the uploads both took.
fn cpu_per_stored_mib(out: &mut String, results: &[CaseResult]) {
    let _ = writeln!(out, "\n## CPU per stored MiB\n");
    let _ = writeln!(
        out,
        "User and system CPU time of the server's processes over the case (`/proc/PID/stat`), per MiB of payload stored: the figure the machine's noise moves least. Target (issue #32): at most 1.2× the bare sink's.\n"
    );
    let _ = writeln!(
        out,
        "| case | intake, CPU ms per MiB | bare sink, CPU ms per MiB | intake ÷ sink |\n|---|---:|---:|---:|"
    );
    for case in &SUITE {
        let (Some(intake), Some(bare)) = (
            find(results, INTAKE, case.name),
            find(results, BARE, case.name),
        ) else {
            continue;
        };
        // A tick is 10 ms: a case too short to measure shows no ratio.
        if intake.cpu_ms_per_mib > 0.0 && bare.cpu_ms_per_mib > 0.0 {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2}× |",
                label(case, results),
                per_mib(intake),
                per_mib(bare),
                intake.cpu_ms_per_mib / bare.cpu_ms_per_mib
            );
        }
    }
}

/// CPU milliseconds per MiB of payload, for the cases that carry payload.
fn per_mib(r: &CaseResult) -> String {
    if r.mib_s > 0.0 && r.cpu_ms_per_mib.is_finite() {
        format!("{:.2}", r.cpu_ms_per_mib)
    } else {
        "-".into()
    }
}

/// intake ÷ every other server, case by case (req/s; higher is better for intake).
fn each_peer(out: &mut String, results: &[CaseResult]) {
    let servers = servers(results);
    let _ = writeln!(
        out,
        "\n## intake ÷ each server, req/s (above 1: intake is faster)\n"
    );
    let mut head = String::from("| case |");
    let mut rule = String::from("|---|");
    for (server, _) in &servers {
        let _ = write!(head, " {server} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for case in &SUITE {
        let Some(intake) = find(results, INTAKE, case.name) else {
            continue;
        };
        let mut row = format!("| {} |", label(case, results));
        for (server, _) in &servers {
            match find(results, server, case.name) {
                Some(r) if r.errors == 0 => {
                    let _ = write!(row, " {:.2}× |", intake.rps / r.rps);
                }
                Some(r) => {
                    let _ = write!(row, " ({} errors) |", r.errors);
                }
                None => row.push_str(" — |"),
            }
        }
        let _ = writeln!(out, "{row}");
    }
}

/// intake storing in the run's S3 server, beside the server's own PUTs (same rounds), boto3's
/// (once, after the rounds) and intake on disk.
fn on_s3(out: &mut String, results: &[CaseResult], boto3: Option<&S3Ceilings>) {
    if !results.iter().any(|r| r.target == INTAKE_S3) {
        return;
    }
    let _ = writeln!(out, "\n## intake on S3 (s3s-fs on this machine)\n");
    let _ = writeln!(
        out,
        "| case | intake, S3 | {S3_ALONE} | share | the S3 server alone (boto3) | intake on disk | peak RSS, S3 |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let mib_s =
        |r: Option<&CaseResult>| r.map_or("—".into(), |r| format!("{:.0} MiB/s", r.mib_s));
    for (case, by_boto3) in [
        ("upload 1 MiB c=16", boto3.map(|b| b.one_mib_c16_mib_s)),
        ("upload 1 GiB c=1", boto3.map(|b| b.one_gib_mib_s)),
    ] {
        let Some(on_s3) = find(results, INTAKE_S3, case) else {
            continue;
        };
        let alone = find(results, S3_ALONE, case);
        let share = alone.map_or("—".into(), |a| {
            format!("{:.0}%", 100.0 * on_s3.mib_s / a.mib_s)
        });
        let case_label = SUITE
            .iter()
            .find(|c| c.name == case)
            .map_or(case.to_owned(), |c| label(c, results));
        let by_boto3 = by_boto3.map_or("—".into(), |m| format!("{m:.0} MiB/s"));
        let _ = writeln!(
            out,
            "| {case_label} | {:.0} MiB/s | {} | {share} | {by_boto3} | {} | {:.0} MiB (+{:.0}) |",
            on_s3.mib_s,
            mib_s(alone),
            mib_s(find(results, INTAKE, case)),
            on_s3.rss_peak_mib,
            on_s3.rss_peak_mib - on_s3.rss_start_mib,
        );
    }
    let _ = writeln!(
        out,
        "\nThe S3 server's own PUTs ran in the same rounds as intake on S3 (their CPU and memory in the last table are the S3 server's); boto3's once, after the rounds."
    );
}

fn tus_label(results: &[CaseResult]) -> String {
    if results.iter().any(|r| r.case == tus::CASE.name && r.quick) {
        tus::CASE.quick_label()
    } else {
        tus::CASE.name.to_owned()
    }
}

/// The resumable upload beside the multipart one of the same size, on each storage, and the
/// tus peers.
fn resumable(out: &mut String, results: &[CaseResult]) {
    let _ = writeln!(out, "\n## Resumable uploads (tus)\n");
    let _ = writeln!(
        out,
        "One keep-alive connection, a `POST` then a `PATCH` per chunk (intake records each in Postgres with the SHA-256 state); counted when the file made has the right SHA-256 (intake reports it; a peer's file is read back).\n"
    );
    let _ = writeln!(
        out,
        "| server | {} | multipart `upload 1 GiB c=1` | tus ÷ multipart | peak RSS, tus |",
        tus_label(results)
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    let runs = results
        .iter()
        .filter(|r| r.case == tus::CASE.name)
        .map(|r| match r.target.as_str() {
            INTAKE => (r, "intake, disk".to_owned()),
            INTAKE_S3 => (r, "intake, S3 (s3s-fs)".to_owned()),
            peer => (r, format!("{peer} ({})", r.durability)),
        });
    for (tus, server) in runs {
        let (multipart, ratio) = match find(results, &tus.target, "upload 1 GiB c=1") {
            Some(m) => (
                format!("{:.0} MiB/s", m.mib_s),
                format!("{:.2}×", tus.mib_s / m.mib_s),
            ),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {server} | {:.0} MiB/s | {multipart} | {ratio} | {:.0} MiB (+{:.0}) |",
            tus.mib_s,
            tus.rss_peak_mib,
            tus.rss_peak_mib - tus.rss_start_mib,
        );
    }
}

/// The soak, minute by minute, and whether it held steady.
fn soaked(out: &mut String, soak: &Soak) {
    let _ = writeln!(
        out,
        "\n## Soak: {} minutes at {} requests/s\n\nintake alone, each tenth of the requests: {}. Requests go out on the clock, whatever the answers; latency counts from when a request was due.\n",
        soak.minutes.len(),
        soak.rate,
        soak.mix
    );
    let _ = writeln!(
        out,
        "| minute | answered | errors | p50 ms | p99 ms | p99 without checkouts, ms | max ms | RSS at its end (MiB) |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in &soak.minutes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            m.minute,
            m.ok,
            m.errors,
            m.p50_ms,
            m.p99_ms,
            m.p99_without_checkout_ms,
            m.max_ms,
            m.rss_mib
        );
    }
    if let (Some(first), Some(last)) = (soak.minutes.first(), soak.minutes.last()) {
        let errors: usize = soak.minutes.iter().map(|m| m.errors).sum();
        let growth = 100.0 * (last.rss_mib - first.rss_mib) / first.rss_mib;
        let _ = writeln!(
            out,
            "\nRSS after the last minute is {growth:+.1}% of RSS after the first (target: within ±10%: {}); {errors} errors (target: none: {}).",
            if growth.abs() <= 10.0 {
                "met"
            } else {
                "**not met**"
            },
            if errors == 0 { "met" } else { "**not met**" },
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
            "intake ÷ best peer, req/s (higher is better; the peers table says what each stores)",
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
