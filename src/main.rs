//! The `ferry` binary: parse the command line, run, map the outcome to an exit code.

use clap::Parser;

use ferry::cli::{Cli, Command};
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
    // One thread drives every connection: ferry's own work per key is small next to the
    // servers', and on a small machine a second busy thread only competes with them for the
    // cores (measured: ~10% less CPU and fewer context switches than the multi-thread runtime,
    // no slower for verify). CPU-heavy RDB parsing runs on `spawn_blocking` threads.
    let mut builder = tokio::runtime::Builder::new_current_thread();
    let runtime = match builder.enable_all().build() {
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
            Command::Check(_) => None,
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
            Command::Check(args) => {
                let report = ferry::check::run(&args).await;
                ferry::check::print_table(&report);
                let code = finish(args.report.as_deref(), &report, Status::Ok);
                if code != 0 {
                    return code;
                }
                report.status.exit_code()
            }
        }
    });
    std::process::exit(code);
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
