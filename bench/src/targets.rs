//! The targets intake is held to (issues #18 and #32), each judged on the run's rounds: a ratio
//! is the median of the per-round ratios, so that the machine's drift between rounds falls on
//! both sides of it.

use std::fmt::Write as _;

use crate::{
    cases::CaseResult,
    rounds::{Run, THROUGHPUT, median, per_round, spread},
    servers::{BARE, DURABLE_PEER, INTAKE, INTAKE_S3, S3_ALONE, is_peer},
    tus,
};

const MIB_16: &str = "upload 1 MiB c=16";
const MIB_256: &str = "upload 1 MiB c=256";
const MIB_100: &str = "upload 100 MiB c=1";
const GIB: &str = "upload 1 GiB c=1";

/// One target as measured: `None` when the run has no round to judge it on.
struct Judged {
    issue: u32,
    target: String,
    measured: String,
    met: Option<bool>,
}

/// The median of `ratios` held to `at_least`, or to `at_most` when it is a ceiling.
fn ratio(issue: u32, target: String, ratios: &[f64], bound: Bound) -> Judged {
    let met = median(ratios.to_vec()).map(|mid| bound.holds(mid));
    Judged {
        issue,
        target,
        measured: spread(ratios),
        met,
    }
}

#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Bound {
    fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtLeast(bound) => value >= bound,
            Bound::AtMost(bound) => value <= bound,
        }
    }
}

/// Every round, not the median, ahead of the durable peer.
fn every_round_ahead(rounds: &[CaseResult], case: &str) -> Judged {
    let ratios = per_round(rounds, (INTAKE, case), (DURABLE_PEER, case), THROUGHPUT);
    let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let ahead = ratios.iter().filter(|r| **r >= 1.0).count();
    Judged {
        issue: 32,
        target: format!("{case}: ≥ 1.0× the durable FastAPI peer in every round"),
        measured: match ratios.len() {
            0 => "—".into(),
            n => format!("ahead in {ahead} of {n} rounds; lowest {lowest:.2}×"),
        },
        met: (!ratios.is_empty()).then_some(ahead == ratios.len()),
    }
}

/// intake's req/s ÷ the best peer's of the same round.
fn against_best_peer(rounds: &[CaseResult], case: &str) -> Vec<f64> {
    (rounds.iter())
        .filter(|r| r.target == INTAKE && r.case == case && r.errors == 0)
        .filter_map(|r| {
            let best = (rounds.iter())
                .filter(|p| p.case == case && p.round == r.round && p.errors == 0)
                .filter(|p| is_peer(&p.target))
                .map(|p| p.rps)
                .fold(f64::NAN, f64::max);
            Some(r.rps / best).filter(|ratio| ratio.is_finite())
        })
        .collect()
}

fn judge(rounds: &[CaseResult]) -> Vec<Judged> {
    let vs = |run: Run, other: Run, figure: fn(&CaseResult) -> f64| {
        per_round(rounds, run, other, figure)
    };
    let mut judged = Vec::new();
    // Each upload case's share of the bare sink, and whether it must also lead the durable peer.
    for (case, share, ahead) in [
        (MIB_16, 0.9, true),
        (MIB_256, 0.9, true),
        (MIB_100, 0.95, false),
        (GIB, 0.95, false),
    ] {
        judged.push(ratio(
            32,
            format!("{case}: ≥ {share}× the bare sink"),
            &vs((INTAKE, case), (BARE, case), THROUGHPUT),
            Bound::AtLeast(share),
        ));
        if ahead {
            judged.push(every_round_ahead(rounds, case));
        }
    }
    for case in [MIB_16, MIB_256, MIB_100, GIB] {
        judged.push(ratio(
            32,
            format!("{case}: CPU per stored MiB ≤ 1.2× the bare sink's"),
            &vs((INTAKE, case), (BARE, case), |r| r.cpu_ms_per_mib),
            Bound::AtMost(1.2),
        ));
    }
    judged.push(ratio(
        32,
        format!("{MIB_16} on S3: ≥ 0.8× the S3 server's own PUTs (object_store)"),
        &vs((INTAKE_S3, MIB_16), (S3_ALONE, MIB_16), THROUGHPUT),
        Bound::AtLeast(0.8),
    ));
    judged.push(ratio(
        32,
        format!("{} on S3: ≥ 0.8× multipart ({GIB}) on S3", tus::CASE.name),
        &vs((INTAKE_S3, tus::CASE.name), (INTAKE_S3, GIB), THROUGHPUT),
        Bound::AtLeast(0.8),
    ));
    judged.push(ratio(
        32,
        format!("{MIB_256}: peak RSS ≤ 1.3× the bare sink's"),
        &vs((INTAKE, MIB_256), (BARE, MIB_256), |r| r.rss_peak_mib),
        Bound::AtMost(1.3),
    ));
    let growth: Vec<f64> = (rounds.iter())
        .filter(|r| r.target == INTAKE && r.case == GIB)
        .map(|r| r.rss_peak_mib - r.rss_start_mib)
        .collect();
    let largest = growth.iter().copied().fold(f64::NAN, f64::max);
    judged.push(Judged {
        issue: 32,
        target: format!("{GIB}: RSS growth ≤ 16 MiB in every round"),
        measured: match growth.len() {
            0 => "—".into(),
            n => format!("largest {largest:.1} MiB ({n} rounds)"),
        },
        met: (!growth.is_empty()).then_some(largest <= 16.0),
    });
    judged.push(ratio(
        18,
        "upload 1 KiB c=64: ≥ the best peer's req/s".into(),
        &against_best_peer(rounds, "upload 1 KiB c=64"),
        Bound::AtLeast(1.0),
    ));
    judged.push(ratio(
        18,
        "ping c=64: ≥ 0.9× bare actix-web".into(),
        &vs((INTAKE, "ping c=64"), (BARE, "ping c=64"), THROUGHPUT),
        Bound::AtLeast(0.9),
    ));
    let slow: Vec<&CaseResult> = (rounds.iter())
        .filter(|r| r.target == INTAKE && r.case == "slow 1 s c=10000")
        .collect();
    let slowest = slow.iter().map(|r| r.max_ms).fold(f64::NAN, f64::max);
    let errors: usize = slow.iter().map(|r| r.errors).sum();
    judged.push(Judged {
        issue: 18,
        target: "slow 1 s c=10000: every request answered within 1.2 s".into(),
        measured: match slow.len() {
            0 => "—".into(),
            n => format!("slowest {slowest:.0} ms, {errors} errors ({n} rounds)"),
        },
        met: (!slow.is_empty()).then_some(errors == 0 && slowest <= 1200.0),
    });
    judged
}

/// The targets table; a quick run judges none.
pub fn markdown(out: &mut String, rounds: &[CaseResult]) {
    let _ = writeln!(out, "\n## intake against its targets\n");
    if rounds.iter().any(|r| r.quick) {
        let _ = writeln!(out, "Not judged on a quick run.");
        return;
    }
    let _ = writeln!(
        out,
        "Judged on the rounds: a ratio is the median of the per-round ratios (lowest–highest in brackets), CPU from `/proc/PID/stat`, peak memory sampled every 20 ms. Where a target is missed and why: [targets.md](targets.md).\n"
    );
    let _ = writeln!(
        out,
        "| issue | target | measured | met |\n|---|---|---|---|"
    );
    for j in judge(rounds) {
        let met = match j.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(
            out,
            "| #{} | {} | {} | {met} |",
            j.issue, j.target, j.measured
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, case: &str, round: u32, mib_s: f64) -> CaseResult {
        CaseResult {
            target: target.into(),
            case: case.into(),
            ok: 10,
            errors: 0,
            wall_s: 1.0,
            rps: mib_s,
            mib_s,
            p50_ms: 1.0,
            p99_ms: 1.0,
            max_ms: 1.0,
            rss_start_mib: 10.0,
            rss_peak_mib: 10.0 + mib_s / 100.0,
            cpu_s: 1.0,
            cpu_ms_per_mib: 1.0,
            round,
            quick: false,
            durability: String::new(),
        }
    }

    fn find<'a>(judged: &'a [Judged], target: &str) -> &'a Judged {
        judged.iter().find(|j| j.target == target).unwrap()
    }

    #[test]
    fn a_target_is_met_on_the_median_of_its_rounds_and_every_round_where_it_says_so() {
        let rounds = [
            run(INTAKE, MIB_16, 1, 950.0),
            run(BARE, MIB_16, 1, 1000.0),
            run(DURABLE_PEER, MIB_16, 1, 900.0),
            run(INTAKE, MIB_16, 2, 400.0),
            run(BARE, MIB_16, 2, 500.0),
            run(DURABLE_PEER, MIB_16, 2, 410.0),
            run(INTAKE, MIB_16, 3, 920.0),
            run(BARE, MIB_16, 3, 1000.0),
            run(DURABLE_PEER, MIB_16, 3, 800.0),
        ];
        let judged = judge(&rounds);
        // 0.95, 0.80, 0.92: the median is met although one round is not.
        let sink = find(&judged, "upload 1 MiB c=16: ≥ 0.9× the bare sink");
        assert_eq!(sink.met, Some(true));
        assert_eq!(sink.measured, "0.92× (0.80–0.95, 3 rounds)");
        // Behind the peer in round 2: "in every round" is missed.
        let peer = find(
            &judged,
            "upload 1 MiB c=16: ≥ 1.0× the durable FastAPI peer in every round",
        );
        assert_eq!(peer.met, Some(false));
        assert_eq!(peer.measured, "ahead in 2 of 3 rounds; lowest 0.98×");
        // Nothing measured, nothing judged.
        let absent = find(&judged, "upload 1 GiB c=1: ≥ 0.95× the bare sink");
        assert_eq!(absent.met, None);
    }

    #[test]
    fn tus_on_s3_is_held_to_multipart_on_s3_of_the_same_round() {
        let rounds = [
            run(INTAKE_S3, tus::CASE.name, 1, 80.0),
            run(INTAKE_S3, GIB, 1, 100.0),
            run(INTAKE_S3, tus::CASE.name, 2, 70.0),
            run(INTAKE_S3, GIB, 2, 140.0),
            run(INTAKE_S3, tus::CASE.name, 3, 90.0),
            run(INTAKE_S3, GIB, 3, 100.0),
        ];
        let judged = judge(&rounds);
        let tus = find(
            &judged,
            &format!("{} on S3: ≥ 0.8× multipart ({GIB}) on S3", tus::CASE.name),
        );
        assert_eq!(tus.measured, "0.80× (0.50–0.90, 3 rounds)");
        assert_eq!(tus.met, Some(true));
    }

    #[test]
    fn a_ceiling_on_memory_is_missed_above_it() {
        let rounds = [
            run(INTAKE, MIB_256, 1, 5000.0), // peak 60 MiB
            run(BARE, MIB_256, 1, 3000.0),   // peak 40 MiB
        ];
        let judged = judge(&rounds);
        let memory = find(
            &judged,
            "upload 1 MiB c=256: peak RSS ≤ 1.3× the bare sink's",
        );
        assert_eq!(memory.measured, "1.50× (1 round)");
        assert_eq!(memory.met, Some(false));
    }
}
