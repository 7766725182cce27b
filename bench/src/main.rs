//! intake's benchmark. `scripts/bench.sh` runs it end to end; see README → Benchmarks and docs/benchmarks.md.

mod cases;
mod ceilings;
mod load;
mod report;
mod rounds;
mod s3;
mod servers;
mod soak;
mod targets;
mod tus;
mod usage;
mod wire;

use std::{
    fs::{self, OpenOptions},
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "intake's benchmark: load, ceilings, report")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The server a load runs against, and where its figures go.
#[derive(clap::Args)]
struct Server {
    /// The server, on loopback only, e.g. 127.0.0.1:18080.
    #[arg(long)]
    address: SocketAddr,
    /// The server's process id, for its memory.
    #[arg(long)]
    pid: u32,
    /// The name the report shows for this server.
    #[arg(long)]
    target: String,
    /// What the server has done with an upload when it answers, for the report.
    #[arg(long, default_value = "")]
    durability: String,
    #[arg(long)]
    out: PathBuf,
    /// One small round: a smoke test, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Which round of an interleaved run this is (scripts/bench.sh alternates the servers
    /// within each round); the report takes the median over rounds.
    #[arg(long, default_value_t = 1)]
    round: u32,
}

impl Server {
    /// The results file, once the address is known to be on loopback.
    fn results(&self) -> Result<fs::File, Box<dyn std::error::Error>> {
        if !self.address.ip().is_loopback() {
            return Err("the benchmark only sends load to loopback addresses".into());
        }
        Ok(OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.out)?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs every case against one server and appends one JSON line per case.
    Suite {
        #[command(flatten)]
        server: Server,
        /// Only the cases whose name contains one of these texts (all when none is given).
        #[arg(long)]
        only: Vec<String>,
        /// Only the cases of exactly these names (all when none is given).
        #[arg(long)]
        case: Vec<String>,
        /// A bearer token sent with every request, for a server with auth on.
        #[arg(long)]
        token: Option<String>,
        /// How the server takes an upload.
        #[arg(long, value_enum, default_value_t)]
        api: cases::Api,
        /// Where a `url` server keeps the files it names (read back after each case).
        #[arg(long)]
        stored_in: Option<PathBuf>,
    },
    /// Prints the suite's case names, one per line, in the order a run measures them.
    Cases,
    /// Uploads 1 GiB with tus (resumable) in 10 MiB chunks and appends one JSON line.
    Tus {
        #[command(flatten)]
        server: Server,
    },
    /// Sends one case's objects straight to an S3 server with object_store (the server's own
    /// ceiling, in the rounds beside intake on S3) and appends one JSON line.
    S3Put {
        /// `http://KEY:SECRET@HOST:PORT/BUCKET`, on loopback only.
        #[arg(long)]
        s3: String,
        /// The S3 server's process id, for its memory and CPU.
        #[arg(long)]
        pid: u32,
        /// The upload case whose objects are sent.
        #[arg(long)]
        case: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 1)]
        round: u32,
    },
    /// Measures disk write (in DIR), SHA-256 and loopback TCP; writes JSON.
    Ceilings {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The S3 server's figures as boto3 reached them (`bench/peer/s3_put.py`'s JSON).
        #[arg(long)]
        s3_boto3: Option<PathBuf>,
    },
    /// A mixed load at a fixed rate for some minutes; writes the minute-by-minute figures as
    /// JSON.
    Soak {
        /// The server, on loopback only.
        #[arg(long)]
        address: SocketAddr,
        #[arg(long)]
        pid: u32,
        /// Requests per second.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        minutes: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Fails unless every case in a results file completed with every answer verified: the
    /// smoke test's verdict (`QUICK=1 scripts/bench.sh`), which judges no speed.
    Check {
        #[arg(long)]
        results: PathBuf,
        /// The soak's figures: it must have had no error either.
        #[arg(long)]
        soak: Option<PathBuf>,
    },
    /// Writes the Markdown report and the SVG chart from a run's files.
    Report {
        #[arg(long)]
        results: PathBuf,
        #[arg(long)]
        ceilings: PathBuf,
        #[arg(long)]
        header: String,
        #[arg(long)]
        markdown: PathBuf,
        #[arg(long)]
        svg: PathBuf,
        /// The soak's figures, when the run had one.
        #[arg(long)]
        soak: Option<PathBuf>,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Suite {
            server,
            only,
            case: named,
            token,
            api,
            stored_in,
        } => {
            let mut file = server.results()?;
            let chosen = |case: &cases::Case| {
                (only.is_empty() || only.iter().any(|text| case.name.contains(text.as_str())))
                    && (named.is_empty() || named.iter().any(|name| name == case.name))
            };
            for case in cases::SUITE.into_iter().filter(chosen) {
                let case = if server.quick { case.quick() } else { case };
                let mut result = case.run(
                    &server.target,
                    server.address,
                    server.pid,
                    token.as_deref(),
                    api,
                    stored_in.as_deref(),
                );
                result.quick = server.quick;
                result.round = server.round;
                result.durability.clone_from(&server.durability);
                record(&mut file, &result)?;
            }
        }
        Command::Cases => {
            for case in cases::SUITE {
                println!("{}", case.name);
            }
        }
        Command::Tus { server } => {
            let mut file = server.results()?;
            let case = if server.quick {
                tus::CASE.quick()
            } else {
                tus::CASE
            };
            let mut result = case.run(&server.target, server.address, server.pid);
            result.quick = server.quick;
            result.round = server.round;
            result.durability.clone_from(&server.durability);
            record(&mut file, &result)?;
        }
        Command::S3Put {
            s3,
            pid,
            case,
            out,
            quick,
            round,
        } => {
            if !s3.contains("@127.0.0.1:") {
                return Err("the benchmark only sends load to loopback addresses".into());
            }
            let case = (cases::SUITE.into_iter())
                .find(|c| c.name == case)
                .ok_or_else(|| format!("no case {case:?}"))?;
            let case = if quick { case.quick() } else { case };
            let mut result = s3::put(&s3, &case, pid)?;
            result.quick = quick;
            result.round = round;
            let mut file = OpenOptions::new().create(true).append(true).open(out)?;
            record(&mut file, &result)?;
        }
        Command::Ceilings { dir, out, s3_boto3 } => {
            let s3_boto3 = match s3_boto3 {
                Some(path) => Some(serde_json::from_str(&fs::read_to_string(path)?)?),
                None => None,
            };
            let ceilings = ceilings::measure(&dir, s3_boto3);
            eprintln!("{ceilings:?}");
            fs::write(out, serde_json::to_string_pretty(&ceilings)?)?;
        }
        Command::Soak {
            address,
            pid,
            rate,
            minutes,
            out,
        } => {
            if !address.ip().is_loopback() {
                return Err("the benchmark only sends load to loopback addresses".into());
            }
            let soak = soak::run(address, pid, rate, minutes);
            for minute in &soak.minutes {
                eprintln!("{minute:?}");
            }
            fs::write(out, serde_json::to_string_pretty(&soak)?)?;
        }
        Command::Check { results, soak } => {
            let results = read_results(&results)?;
            if let Some(path) = soak {
                let soak: soak::Soak = serde_json::from_str(&fs::read_to_string(path)?)?;
                let errors: usize = soak.minutes.iter().map(|m| m.errors).sum();
                if soak.minutes.is_empty() || errors > 0 {
                    return Err(format!("the soak had {errors} errors").into());
                }
            }
            let failed: Vec<String> = results
                .iter()
                .filter(|r| r.errors > 0 || r.ok == 0)
                .map(|r| {
                    format!(
                        "{} / {}: {} ok, {} errors",
                        r.target, r.case, r.ok, r.errors
                    )
                })
                .collect();
            if results.is_empty() || !failed.is_empty() {
                return Err(format!("cases that did not complete: {failed:?}").into());
            }
            eprintln!(
                "all {} cases completed, every answer verified",
                results.len()
            );
        }
        Command::Report {
            results,
            ceilings,
            header,
            markdown,
            svg,
            soak,
        } => {
            let rounds = read_results(&results)?;
            let results = rounds::medians(&rounds);
            let ceilings: ceilings::Ceilings =
                serde_json::from_str(&fs::read_to_string(ceilings)?)?;
            let soak: Option<soak::Soak> = match soak {
                Some(path) => Some(serde_json::from_str(&fs::read_to_string(path)?)?),
                None => None,
            };
            fs::write(
                markdown,
                report::markdown(&results, &rounds, &ceilings, soak.as_ref(), &header),
            )?;
            report::chart(&results, &svg)?;
        }
    }
    Ok(())
}

fn read_results(path: &Path) -> Result<Vec<cases::CaseResult>, Box<dyn std::error::Error>> {
    Ok(fs::read_to_string(path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// Prints a case's figures and appends them to the results file.
fn record(
    file: &mut fs::File,
    result: &cases::CaseResult,
) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!(
        "{:<10} {:<20} ok {:>6} err {:>4}  {:>9.1} req/s {:>8.1} MiB/s  p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  RSS {:>6.1} → {:>6.1} MiB",
        result.target,
        result.case,
        result.ok,
        result.errors,
        result.rps,
        result.mib_s,
        result.p50_ms,
        result.p99_ms,
        result.max_ms,
        result.rss_start_mib,
        result.rss_peak_mib
    );
    writeln!(file, "{}", serde_json::to_string(result)?)?;
    Ok(())
}
