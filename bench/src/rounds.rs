//! An interleaved run measures every case in rounds, the servers one after another within each
//! round, so that the machine's drift (page cache, writeback, the disk's own state) falls on all
//! of them alike. The report's figures are medians over the rounds, and a comparison between two
//! servers is the median of its per-round ratios, with their spread.

use std::fmt::Write as _;

use crate::{
    cases::{CaseResult, SUITE},
    servers::{BARE, DURABLE_PEER, INTAKE, INTAKE_S3},
    tus,
};

/// One result per server and case: each figure the median of that server's rounds; errors are
/// summed and the worst latency kept.
pub fn medians(rounds: &[CaseResult]) -> Vec<CaseResult> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in rounds {
        if !seen.contains(&(r.target.as_str(), r.case.as_str())) {
            seen.push((&r.target, &r.case));
        }
    }
    seen.into_iter()
        .map(|(target, case)| {
            let runs: Vec<&CaseResult> = (rounds.iter())
                .filter(|r| r.target == target && r.case == case)
                .collect();
            let median_of = |figure: fn(&CaseResult) -> f64| {
                median(runs.iter().map(|r| figure(r)).collect()).unwrap_or(f64::NAN)
            };
            CaseResult {
                ok: median_of(|r| r.ok as f64) as usize,
                errors: runs.iter().map(|r| r.errors).sum(),
                wall_s: median_of(|r| r.wall_s),
                rps: median_of(|r| r.rps),
                mib_s: median_of(|r| r.mib_s),
                p50_ms: median_of(|r| r.p50_ms),
                p99_ms: median_of(|r| r.p99_ms),
                max_ms: runs.iter().map(|r| r.max_ms).fold(0.0, f64::max),
                rss_start_mib: median_of(|r| r.rss_start_mib),
                rss_peak_mib: median_of(|r| r.rss_peak_mib),
                cpu_s: median_of(|r| r.cpu_s),
                cpu_ms_per_mib: median_of(|r| r.cpu_ms_per_mib),
                round: runs.len() as u32,
                ..runs[0].clone()
            }
        })
        .collect()
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// A server in one case: `(target, case)`.
pub type Run<'a> = (&'a str, &'a str);

/// `figure` of `run` ÷ that of `other`, in each round where both completed without an error
/// (`other` may be another server, or the same server in another case).
pub fn per_round(
    rounds: &[CaseResult],
    run: Run,
    other: Run,
    figure: fn(&CaseResult) -> f64,
) -> Vec<f64> {
    let find = |(target, case): Run, round: u32| {
        (rounds.iter()).find(|r| r.target == target && r.case == case && r.round == round)
    };
    (rounds.iter())
        .filter(|r| r.target == run.0 && r.case == run.1 && r.errors == 0)
        .filter_map(|r| {
            let o = find(other, r.round).filter(|o| o.errors == 0)?;
            Some(figure(r) / figure(o))
        })
        .filter(|ratio| ratio.is_finite())
        .collect()
}

/// "1.05× (0.96–1.12, 5 rounds)", "0.98× (1 round)", or "—" without a round to compare.
pub fn spread(ratios: &[f64]) -> String {
    let Some(mid) = median(ratios.to_vec()) else {
        return "—".into();
    };
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match ratios.len() {
        1 => format!("{mid:.2}× (1 round)"),
        n => format!("{mid:.2}× ({low:.2}–{high:.2}, {n} rounds)"),
    }
}

/// MiB/s for uploads, req/s otherwise.
pub const THROUGHPUT: fn(&CaseResult) -> f64 = |r| if r.mib_s > 0.0 { r.mib_s } else { r.rps };

/// The round-by-round comparisons: intake (on disk, and on S3 where it ran) against the bare
/// sink and the durable peer, in throughput and in CPU per MiB.
pub fn markdown(out: &mut String, rounds: &[CaseResult]) {
    let _ = writeln!(out, "\n## Round by round\n");
    let _ = writeln!(
        out,
        "Each case ran in rounds, the servers one after another within a round. Every ratio is the median of the per-round ratios (lowest–highest in brackets): throughput (MiB/s for uploads, req/s otherwise), and CPU per MiB stored (lower is better for intake).\n"
    );
    let _ = writeln!(
        out,
        "| case | server | ÷ bare sink | ÷ durable FastAPI peer | rounds ahead of the durable peer | CPU per MiB ÷ bare sink's |\n|---|---|---:|---:|---:|---:|"
    );
    let names = (SUITE.iter().map(|case| case.name)).chain([tus::CASE.name]);
    for case in names {
        for target in [INTAKE, INTAKE_S3] {
            if !rounds.iter().any(|r| r.target == target && r.case == case) {
                continue;
            }
            let bare = per_round(rounds, (target, case), (BARE, case), THROUGHPUT);
            let peer = per_round(rounds, (target, case), (DURABLE_PEER, case), THROUGHPUT);
            let cpu = per_round(rounds, (target, case), (BARE, case), |r| r.cpu_ms_per_mib);
            if bare.is_empty() && peer.is_empty() {
                continue;
            }
            let ahead = match peer.len() {
                0 => "—".into(),
                n => format!("{} of {n}", peer.iter().filter(|r| **r >= 1.0).count()),
            };
            let _ = writeln!(
                out,
                "| {case} | {target} | {} | {} | {ahead} | {} |",
                spread(&bare),
                spread(&peer),
                spread(&cpu)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(target: &str, round: u32, mib_s: f64) -> CaseResult {
        CaseResult {
            target: target.into(),
            case: "upload 1 MiB c=16".into(),
            ok: 100,
            errors: 0,
            wall_s: 1.0,
            rps: mib_s,
            mib_s,
            p50_ms: mib_s,
            p99_ms: 1.0,
            max_ms: mib_s,
            rss_start_mib: 1.0,
            rss_peak_mib: 2.0,
            cpu_s: 1.0,
            cpu_ms_per_mib: 1.0,
            round,
            quick: false,
            durability: String::new(),
        }
    }

    #[test]
    fn figures_are_medians_over_rounds_and_ratios_are_per_round() {
        // The disk slows down in round 2 for both servers alike.
        let rounds = [
            result(INTAKE, 1, 700.0),
            result(BARE, 1, 1000.0),
            result(INTAKE, 2, 400.0),
            result(BARE, 2, 450.0),
            result(INTAKE, 3, 650.0),
            result(BARE, 3, 1100.0),
        ];
        let medians = medians(&rounds);
        assert_eq!(medians.len(), 2);
        assert_eq!((medians[0].mib_s, medians[1].mib_s), (650.0, 1000.0));
        assert_eq!(medians[0].max_ms, 700.0, "the worst latency is kept");
        let case = "upload 1 MiB c=16";
        let ratios = per_round(&rounds, (INTAKE, case), (BARE, case), |r| r.mib_s);
        // 0.70, 0.89, 0.59: their median, not the ratio of the medians (0.65).
        assert_eq!(spread(&ratios), "0.70× (0.59–0.89, 3 rounds)");
    }
}
