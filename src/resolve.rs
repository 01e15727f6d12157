//! Turns what was typed (`cli.rs`) into the plan each command runs (`plan.rs`).
//!
//! The one place that reads clap's types: password files are read, certificates loaded, URLs
//! and `--db-map` parsed, combinations checked, seconds and milliseconds turned into
//! [`Duration`]s, clap's value enums into the policies. Everything after it takes a plan. May
//! call: cli, plan, job, endpoint (URLs, TLS, passwords), source::rdb_input, throttle, policy.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{
    CheckArgs, Command, CutoverArgs, EndpointArgs, FollowArgs, LimitArgs, MergeArgs, MigrateArgs,
    OutputArgs, ReadTuningArgs, ReportCommand, SelectionArgs, TuningArgs, VerifyArgs, VerifyTuning,
    DEFAULT_BATCH_KEYS, DEFAULT_WRITERS,
};
use crate::endpoint::cluster::AddrMap;
use crate::endpoint::tls::{self, TlsOptions};
use crate::endpoint::{url, PasswordOrigin, Secret, Server, Side};
use crate::job::{Job, SourceSpec, Tuning};
use crate::plan::{
    CheckPlan, CutoverPlan, FollowSettings, MigratePlan, Names, Output, Refused, VerifyPlan,
    VerifySettings,
};
use crate::source::rdb_input::RdbInput;
use crate::throttle::Limits;

/// A command, resolved: its plan, or why the command line cannot become one.
pub enum Planned {
    /// `ferry migrate`.
    Migrate(Result<MigratePlan, Refused>),
    /// `ferry verify`.
    Verify(Result<VerifyPlan, Refused>),
    /// `ferry cutover` (nothing to resolve that can fail).
    Cutover(CutoverPlan),
    /// `ferry check`.
    Check(Result<CheckPlan, Refused>),
    /// `ferry report merge`: file names only, handled by `main.rs`.
    Merge(MergeArgs),
}

/// Resolves the parsed command into its plan.
pub fn plan(command: Command) -> Planned {
    match command {
        Command::Migrate(args) => Planned::Migrate(migrate(&args)),
        Command::Verify(args) => Planned::Verify(verify(&args)),
        Command::Cutover(args) => Planned::Cutover(cutover(&args)),
        Command::Check(args) => Planned::Check(check(&args)),
        Command::Report(ReportCommand::Merge(args)) => Planned::Merge(args),
    }
}

/// `ferry migrate`'s plan.
pub fn migrate(args: &MigrateArgs) -> Result<MigratePlan, Refused> {
    let names = names(&args.endpoints, true);
    let verify = verify_settings(&args.verify);
    let job = job(&args.endpoints, &args.selection, write_tuning(&args.tuning))
        .map_err(|error| refused(&names, verify, error))?;
    Ok(MigratePlan {
        job,
        names,
        on_conflict: args.on_conflict.into(),
        on_key_error: args.on_key_error.into(),
        checkpoint: args.checkpoint.clone(),
        fresh: args.fresh,
        no_verify: args.no_verify,
        skip_functions: args.skip_functions,
        skip_modules: args.skip_modules,
        dead_letter: args.dead_letter.clone(),
        keys_from: args.keys_from.clone(),
        limits: limits(&args.limits),
        output: output(&args.output),
        verify,
        follow: follow(&args.follow),
    })
}

/// `ferry verify`'s plan: only the reading knobs (verify writes nothing).
pub fn verify(args: &VerifyArgs) -> Result<VerifyPlan, Refused> {
    let names = names(&args.endpoints, false);
    let verify = verify_settings(&args.verify);
    let job = job(&args.endpoints, &args.selection, read_tuning(&args.tuning))
        .map_err(|error| refused(&names, verify, error))?;
    Ok(VerifyPlan {
        job,
        names,
        verify,
        sample: args.sample,
        limits: limits(&args.limits),
        output: output(&args.output),
    })
}

/// `ferry check`'s plan.
pub fn check(args: &CheckArgs) -> Result<CheckPlan, Refused> {
    let names = names(&args.endpoints, true);
    let job = job(&args.endpoints, &args.selection, write_tuning(&args.tuning));
    let job = job.map_err(|error| refused(&names, verify_settings_default(), error))?;
    Ok(CheckPlan {
        job,
        names,
        on_conflict: args.on_conflict.into(),
        follow: args.follow.then_some(args.enable_notifications),
        report: args.report.clone(),
    })
}

/// `ferry cutover`'s plan.
pub fn cutover(args: &CutoverArgs) -> CutoverPlan {
    CutoverPlan {
        checkpoints: args.checkpoint.clone(),
        timeout: Duration::from_secs(args.timeout),
        quiet: Duration::from_secs(args.quiet),
        pause_source: args.pause_source.map(Duration::from_secs),
        full_verify: args.full_verify,
        report: args.report.clone(),
    }
}

/// Why a command line did not become a plan, with what its report still shows.
fn refused(names: &Names, verify: VerifySettings, error: anyhow::Error) -> Refused {
    Refused {
        names: names.clone(),
        verify,
        error,
    }
}

/// Both sides as a report names them before the job runs: URLs without their password; an RDB
/// source as `rdb:FILE` when `rdb_named` (migrate, check), else empty (verify).
fn names(ep: &EndpointArgs, rdb_named: bool) -> Names {
    let source = match (&ep.source, &ep.rdb) {
        (Some(raw), _) => url::redact(raw),
        (None, Some(path)) if rdb_named => format!("rdb:{}", path.display()),
        _ => String::new(),
    };
    Names {
        source,
        target: url::redact(&ep.target),
    }
}

/// A reading command's knobs; the writing ones keep their defaults (nothing is written).
fn read_tuning(read: &ReadTuningArgs) -> Tuning {
    Tuning {
        scan_count: read.scan_count,
        batch_keys: DEFAULT_BATCH_KEYS,
        batch_bytes: read.batch_bytes,
        writers: DEFAULT_WRITERS,
        retry_for: Duration::from_secs(read.retry_for),
        threads: read.threads,
        big_key_bytes: read.big_key_bytes,
    }
}

/// A writing command's knobs.
fn write_tuning(args: &TuningArgs) -> Tuning {
    Tuning {
        batch_keys: args.batch_keys,
        writers: args.writers,
        ..read_tuning(&args.read)
    }
}

/// The limits as the throttle takes them.
fn limits(args: &LimitArgs) -> Limits {
    Limits {
        keys_per_sec: args.max_keys_per_sec,
        bytes_per_sec: args.max_bytes_per_sec,
        latency_ms: args.source_latency_ms,
    }
}

/// `--report`, `--progress`, `--log-every`, `--metrics-addr`.
fn output(args: &OutputArgs) -> Output {
    Output {
        report: args.report.clone(),
        progress: args.progress.into(),
        log_every: Duration::from_secs(args.log_every),
        metrics_addr: args.metrics_addr,
    }
}

/// `--ttl-tolerance`, `--rounds`, `--round-pause`.
fn verify_settings(args: &VerifyTuning) -> VerifySettings {
    VerifySettings {
        ttl_tolerance_ms: args.ttl_tolerance,
        rounds: args.rounds,
        round_pause: Duration::from_millis(args.round_pause),
    }
}

/// What a refused `check` carries for a verification it does not run.
fn verify_settings_default() -> VerifySettings {
    VerifySettings {
        ttl_tolerance_ms: 0,
        rounds: 0,
        round_pause: Duration::ZERO,
    }
}

/// `--follow`, `--reconcile-every`, `--dirty-budget`, `--reconcile`, `--enable-notifications`.
fn follow(args: &FollowArgs) -> FollowSettings {
    FollowSettings {
        follow: args.follow,
        reconcile_every: args.reconcile_every.map(Duration::from_secs),
        dirty_budget: args.dirty_budget,
        reconcile: args.reconcile,
        enable_notifications: args.enable_notifications,
    }
}

/// The job: endpoints, passwords, TLS and DB selection resolved, with a command's `tuning`.
fn job(ep: &EndpointArgs, sel: &SelectionArgs, tuning: Tuning) -> anyhow::Result<Job> {
    let source = match (&ep.source, &ep.rdb) {
        (Some(raw), None) => {
            let password = password_from(Side::Source, ep.source_password_file.as_deref())?;
            let endpoint = url::parse(raw, Side::Source, password)?;
            let tls = TlsOptions {
                cacert: ep.source_cacert.clone(),
                cert: ep.source_cert.clone(),
                key: ep.source_key.clone(),
                sni: ep.source_sni.clone(),
                insecure: ep.source_insecure,
            };
            SourceSpec::Live(server(endpoint, &tls, &tuning)?)
        }
        (None, Some(path)) => SourceSpec::Rdb(RdbInput::new(path)?),
        _ => anyhow::bail!("give the source as --source URL or --rdb FILE"),
    };
    let password = password_from(Side::Target, ep.target_password_file.as_deref())?;
    let endpoint = url::parse(&ep.target, Side::Target, password)?;
    let tls = TlsOptions {
        cacert: ep.target_cacert.clone(),
        cert: ep.target_cert.clone(),
        key: ep.target_key.clone(),
        sni: ep.target_sni.clone(),
        insecure: ep.target_insecure,
    };
    let target = server(endpoint, &tls, &tuning)?;
    if let SourceSpec::Live(src) = &source {
        if src.endpoint.host == target.endpoint.host && src.endpoint.port == target.endpoint.port {
            anyhow::bail!(
                "--source and --target are the same server ({}); ferry copies between two servers",
                target.endpoint
            );
        }
    }
    if tuning.writers == 0 || tuning.batch_keys == 0 || tuning.scan_count == 0 {
        anyhow::bail!("--writers, --batch-keys and --scan-count must be at least 1");
    }
    let mut dbs = sel.db.clone();
    dbs.sort_unstable();
    dbs.dedup();
    Ok(Job {
        source,
        target,
        dbs,
        db_map: parse_db_map(&sel.db_map)?,
        tuning,
        source_addr_map: AddrMap::parse(&ep.source_map_addr, "--source-map-addr")?,
        target_addr_map: AddrMap::parse(&ep.target_map_addr, "--target-map-addr")?,
        partition: sel.partition,
        insecure: (ep.source_insecure, ep.target_insecure),
        keys_from: None,
    })
}

fn server(endpoint: url::Endpoint, opts: &TlsOptions, tuning: &Tuning) -> anyhow::Result<Server> {
    let flag = endpoint.side.name();
    let tls = if endpoint.tls {
        if opts.insecure {
            tracing::warn!(
                "!!! --{flag}-insecure: the {flag}'s TLS certificate is NOT verified. Anyone on the \
                 network path can impersonate {} and read the data and the password. Use \
                 --{flag}-cacert instead outside of tests. !!!",
                endpoint
            );
        }
        Some(tls::build(opts, flag)?)
    } else {
        let given =
            opts.cacert.is_some() || opts.cert.is_some() || opts.sni.is_some() || opts.insecure;
        if given {
            anyhow::bail!(
                "TLS flags were given for the {flag}, but its URL {endpoint} is plain redis://; use rediss:// to connect with TLS"
            );
        }
        None
    };
    Ok(Server {
        endpoint,
        tls,
        answer_timeout: crate::endpoint::retry::answer_timeout(tuning.retry_for),
    })
}

/// The password from `--*-password-file` or `FERRY_*_PASSWORD`, with where it came from. Both
/// at once are refused as ambiguous (and `url::parse` refuses either with a URL password).
fn password_from(
    side: Side,
    file: Option<&Path>,
) -> anyhow::Result<Option<(Secret, PasswordOrigin)>> {
    let var = format!("FERRY_{}_PASSWORD", side.name().to_uppercase());
    let env = std::env::var(&var).ok().filter(|s| !s.is_empty());
    if let Some(path) = file {
        if env.is_some() {
            anyhow::bail!(
                "the {side} password is given twice: in --{side}-password-file {} and in the environment \
                 variable {var}. Give it in one place only (unset {var}, or drop the flag)",
                path.display(),
                side = side.name()
            );
        }
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "--{}-password-file {}: cannot read the file",
                side.name(),
                path.display()
            )
        })?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            anyhow::bail!(
                "--{}-password-file {}: the file is empty",
                side.name(),
                path.display()
            );
        }
        let origin = PasswordOrigin::File(
            format!("--{}-password-file", side.name()),
            path.to_path_buf(),
        );
        return Ok(Some((Secret::new(line), origin)));
    }
    Ok(env.map(|pw| (Secret::new(pw), PasswordOrigin::Env(var))))
}

fn parse_db_map(items: &[String]) -> anyhow::Result<BTreeMap<u32, u32>> {
    let mut map = BTreeMap::new();
    for item in items {
        let parsed = item.split_once(':').and_then(|(s, t)| {
            Some((s.trim().parse::<u32>().ok()?, t.trim().parse::<u32>().ok()?))
        });
        let Some((s, t)) = parsed else {
            anyhow::bail!("--db-map {item:?}: expected SOURCE_DB:TARGET_DB, e.g. 3:0");
        };
        if map.insert(s, t).is_some() {
            anyhow::bail!("--db-map maps source DB {s} twice");
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_map_parses_and_rejects() {
        let m = parse_db_map(&["3:0".into(), "1:2".into()]).unwrap();
        assert_eq!(m.get(&3), Some(&0));
        assert!(parse_db_map(&["x".into()]).is_err());
        assert!(parse_db_map(&["1:0".into(), "1:2".into()]).is_err());
    }

    /// The command line as clap parses it.
    fn parse(args: &[&str]) -> Command {
        use clap::Parser;
        crate::cli::Cli::try_parse_from(args)
            .expect("the test's command line parses")
            .command
    }

    /// Seconds and milliseconds become durations; the policies their plain twins.
    #[test]
    fn migrate_plan_holds_durations_and_policies() {
        let Planned::Migrate(Ok(plan)) = plan(parse(&[
            "ferry",
            "migrate",
            "--source",
            "redis://127.0.0.1:1",
            "--target",
            "redis://127.0.0.1:2",
            "--retry-for",
            "7",
            "--round-pause",
            "250",
            "--reconcile-every",
            "9",
            "--follow",
            "--on-conflict",
            "replace",
            "--on-key-error",
            "skip",
            "--progress",
            "json",
        ])) else {
            panic!("migrate resolves")
        };
        assert_eq!(plan.job.retry_for(), Duration::from_secs(7));
        assert_eq!(plan.verify.round_pause, Duration::from_millis(250));
        assert_eq!(plan.follow.reconcile_every, Some(Duration::from_secs(9)));
        assert_eq!(plan.on_conflict, crate::policy::OnConflict::Replace);
        assert_eq!(plan.on_key_error, crate::policy::OnKeyError::Skip);
        assert_eq!(plan.output.progress, crate::progress::ProgressMode::Json);
        assert_eq!(plan.output.log_every, Duration::from_secs(5));
    }

    /// A command line that cannot become a plan names both sides without their password.
    #[test]
    fn refused_plan_keeps_passwords_out() {
        let Planned::Migrate(Err(refused)) = plan(parse(&[
            "ferry",
            "migrate",
            "--source",
            "redis://app:s3cret-pw@127.0.0.1:1",
            "--target",
            "redis://127.0.0.1:2",
            "--db-map",
            "nonsense",
        ])) else {
            panic!("a bad --db-map is refused")
        };
        let shown = format!("{refused:?} {:#}", refused.error);
        assert!(shown.contains("--db-map"), "{shown}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
    }

    /// `ferry cutover`'s seconds become durations (sent back as seconds in the request).
    #[test]
    fn cutover_plan() {
        let Planned::Cutover(plan) = plan(parse(&[
            "ferry",
            "cutover",
            "--checkpoint",
            "a.json",
            "--pause-source",
            "3",
        ])) else {
            panic!("cutover resolves")
        };
        assert_eq!(plan.timeout, Duration::from_secs(60));
        assert_eq!(plan.quiet, Duration::from_secs(2));
        assert_eq!(plan.pause_source, Some(Duration::from_secs(3)));
    }
}
