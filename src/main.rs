//! The `ferry` binary: parse the command line, run, map the outcome to an exit code.

use clap::Parser;

use ferry::cli::{Cli, Command, ReportCommand};
use ferry::report::{self, Status};
use ferry::stop::Stop;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
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
            Command::Report(ReportCommand::Merge(args)) => merge_reports(&args),
        }
    });
    std::process::exit(code);
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

/// The async runtime for `--threads N`. With one thread every connection is driven by the
/// current-thread runtime: ferry's own work per key is small next to the servers', and where
/// they share the machine a second busy thread only competes with them for the cores (measured:
/// ~10% less CPU than the multi-thread runtime). More threads spread readers and writers (each
/// a spawned task) over N workers, for a worker given cores of its own. CPU-heavy RDB parsing
/// runs on `spawn_blocking` threads either way.
fn runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match command {
        Command::Migrate(a) => a.tuning.threads,
        Command::Verify(a) => a.tuning.threads,
        Command::Report(_) => Some(1),
    };
    let threads = threads
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
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
