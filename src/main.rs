//! The `ferry` binary: parse the command line, run, map the outcome to an exit code.

use std::io::IsTerminal;

use clap::Parser;

use ferry::cli::{Cli, Command, ReportCommand};
use ferry::report::{self, Status};
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
    let report_path = match &cli.command {
        Command::Migrate(args) => args.output.report.as_deref(),
        Command::Verify(args) => args.output.report.as_deref(),
        Command::Cutover(args) => args.report.as_deref(),
        Command::Check(args) => args.report.as_deref(),
        Command::Report(ReportCommand::Merge(args)) => args.report.as_deref(),
    };
    // A report that cannot be written would only be found out after the whole copy.
    if let Some(path) = report_path {
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
    let runtime = match runtime(&cli.command) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: error: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(async {
        let stop = Stop::new();
        watch_signals(stop.clone());
        let metrics_addr = match &cli.command {
            Command::Migrate(args) => args.output.metrics_addr,
            Command::Verify(args) => args.output.metrics_addr,
            Command::Cutover(_) | Command::Check(_) | Command::Report(_) => None,
        };
        if let Some(addr) = metrics_addr {
            if let Err(e) = ferry::metrics::serve(addr).await {
                eprintln!("ferry: error: {e:#}");
                return 2;
            }
        }
        match cli.command {
            Command::Migrate(args) => {
                let report = ferry::migrate::run(&args, stop).await;
                ferry::migrate::print_summary(&report);
                finish(args.output.report.as_deref(), &report, report.status)
            }
            Command::Verify(args) => {
                let report = ferry::verify::run(&args, stop).await;
                ferry::verify::print_summary(&report);
                finish(args.output.report.as_deref(), &report, report.status)
            }
            Command::Cutover(args) => {
                let verdict = ferry::follow::cutover::command(&args).await;
                ferry::follow::cutover::print_verdict(&verdict);
                let status = match verdict.code {
                    0 => Status::Ok,
                    1 => Status::Mismatch,
                    _ => Status::Error,
                };
                finish(args.report.as_deref(), &verdict, status)
            }
            Command::Check(args) => {
                let report = ferry::check::run(&args).await;
                ferry::check::print_table(&report);
                let code = finish(args.report.as_deref(), &report, Status::Ok);
                if code != 0 {
                    return code;
                }
                report.status.exit_code()
            }
            Command::Report(ReportCommand::Merge(args)) => merge_reports(&args),
        }
    });
    std::process::exit(code);
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
fn runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    use ferry::threads;
    let threads = match command {
        Command::Migrate(a) => threads::for_migrate(a),
        Command::Verify(a) => {
            threads::choose(a.tuning.threads, threads::cores(), threads::VERIFY_STREAMS)
        }
        Command::Cutover(_) | Command::Check(_) | Command::Report(_) => 1,
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
