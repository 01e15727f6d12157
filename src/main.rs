//! The `ferry` binary: parse the command line, resolve it into a plan (`resolve.rs`), run,
//! map the outcome to an exit code.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Parser;

use ferry::cli::{Cli, Command, ReportCommand};
use ferry::report::{self, Status};
use ferry::resolve::{self, Planned};
use ferry::stop::Stop;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a job runner's log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let report_path: Option<PathBuf> = match &cli.command {
        Command::Migrate(args) => args.output.report.clone(),
        Command::Verify(args) => args.output.report.clone(),
        Command::Cutover(args) => args.report.clone(),
        Command::Check(args) => args.report.clone(),
        Command::Report(ReportCommand::Merge(args)) => args.report.clone(),
    };
    // A report that cannot be written would only be found out after the whole copy.
    if let Some(path) = &report_path {
        if let Err(e) = report::check_writable(path) {
            eprintln!("ferry: error: {e:#}. Nothing was done");
            std::process::exit(2);
        }
    }
    // So is a dead-letter file (`migrate --dead-letter`); the default one is checked beside the
    // checkpoint before the copy.
    if let Command::Migrate(args) = &cli.command {
        if let Some(path) = &args.dead_letter {
            if let Err(e) = report::check_writable_as(path, "--dead-letter") {
                eprintln!("ferry: error: {e:#}. Nothing was done");
                std::process::exit(2);
            }
        }
    }
    let metrics_addr = match &cli.command {
        Command::Migrate(args) => args.output.metrics_addr,
        Command::Verify(args) => args.output.metrics_addr,
        Command::Cutover(_) | Command::Check(_) | Command::Report(_) => None,
    };
    let planned = resolve::plan(cli.command);
    let runtime = match runtime(&planned) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: error: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(async {
        let stop = Stop::new();
        watch_signals(stop.clone());
        if let Some(addr) = metrics_addr {
            if let Err(e) = ferry::metrics::serve(addr).await {
                eprintln!("ferry: error: {e:#}");
                return 2;
            }
        }
        run(planned, report_path.as_deref(), stop).await
    });
    std::process::exit(code);
}

/// Runs the resolved command (or reports why its command line was refused); returns the exit
/// code. `report_path` is the command's `--report`.
async fn run(planned: Planned, report_path: Option<&Path>, stop: Stop) -> i32 {
    match planned {
        Planned::Migrate(plan) => {
            let report = match plan {
                Ok(plan) => ferry::migrate::run(&plan, stop).await,
                Err(refused) => ferry::migrate::refused(refused),
            };
            ferry::migrate::print_summary(&report);
            finish(report_path, &report, report.status)
        }
        Planned::Verify(plan) => {
            let report = match plan {
                Ok(plan) => ferry::verify::run(&plan, stop).await,
                Err(refused) => ferry::verify::refused(refused),
            };
            ferry::verify::print_summary(&report);
            finish(report_path, &report, report.status)
        }
        Planned::Cutover(plan) => {
            let verdict = ferry::follow::cutover::command(&plan).await;
            ferry::follow::cutover::print_verdict(&verdict);
            let status = match verdict.code {
                0 => Status::Ok,
                1 => Status::Mismatch,
                _ => Status::Error,
            };
            finish(report_path, &verdict, status)
        }
        Planned::Check(plan) => {
            let report = match plan {
                Ok(plan) => ferry::check::run(&plan).await,
                Err(refused) => ferry::check::refused(refused),
            };
            ferry::check::print_table(&report);
            let code = finish(report_path, &report, Status::Ok);
            if code != 0 {
                return code;
            }
            report.status.exit_code()
        }
        Planned::Merge(args) => merge_reports(&args),
    }
}

/// The log filter from `FERRY_LOG`, else `RUST_LOG` (FERRY_LOG wins when both are set), else
/// `info`. A filter that does not parse is reported and replaced by `info`.
fn log_filter() -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    for var in ["FERRY_LOG", "RUST_LOG"] {
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
                Ok(filter) => return filter,
                Err(e) => {
                    eprintln!(
                        "ferry: warning: {var}={text:?} is not a log filter ({e}); using info"
                    );
                    return EnvFilter::new("info");
                }
            },
            _ => {}
        }
    }
    EnvFilter::new("info")
}

/// `ferry report merge`: the merged report to `--report` or stdout; the exit code of its status.
fn merge_reports(args: &ferry::cli::MergeArgs) -> i32 {
    let (merged, status) = match ferry::report_merge::merge_files(&args.files) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ferry: error: {e:#}");
            return 2;
        }
    };
    ferry::report_merge::print_summary(&merged, status);
    match &args.report {
        Some(path) => finish(Some(path), &merged, status),
        None => {
            println!(
                "{}",
                serde_json::to_string_pretty(&merged).unwrap_or_default()
            );
            status.exit_code()
        }
    }
}

/// The async runtime for `--threads N` (default: the cores available, capped by the source
/// streams; see `threads.rs`). With one thread every connection is driven by the
/// current-thread runtime, which costs the least CPU; more threads spread readers and writers
/// (each a spawned task) over N workers. CPU-heavy RDB parsing runs on `spawn_blocking` threads
/// either way.
fn runtime(planned: &Planned) -> std::io::Result<tokio::runtime::Runtime> {
    use ferry::threads;
    let threads = match planned {
        Planned::Migrate(Ok(plan)) => threads::for_migrate(plan),
        Planned::Verify(Ok(plan)) => threads::choose(
            plan.job.tuning.threads,
            threads::cores(),
            threads::VERIFY_STREAMS,
        ),
        // A refused command line only prints why.
        Planned::Migrate(Err(_)) | Planned::Verify(Err(_)) => 1,
        Planned::Cutover(_) | Planned::Check(_) | Planned::Merge(_) => 1,
    };
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Writes the JSON report if asked, and returns the exit code.
fn finish<T: serde::Serialize>(path: Option<&std::path::Path>, report: &T, status: Status) -> i32 {
    if let Some(path) = path {
        if let Err(e) = report::write_json(path, report) {
            eprintln!("ferry: error: {e:#}");
            return 2;
        }
    }
    status.exit_code()
}

/// First SIGINT/SIGTERM: stop cleanly (drain, save the checkpoint). Second: exit at once.
fn watch_signals(stop: Stop) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            count += 1;
            if count == 1 {
                eprintln!("ferry: stopping: finishing the batches in flight and saving the checkpoint (signal again to quit at once)");
                stop.interrupt();
            } else {
                eprintln!("ferry: quitting at once; the last saved checkpoint is still valid: rerun the same command to resume");
                std::process::exit(2);
            }
        }
    });
}
