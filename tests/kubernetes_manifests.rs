//! The Kubernetes manifests in `deploy/kubernetes/` parse, and the fields a split migration
//! depends on are right: no cluster is needed, only the YAML. A wrong field here would not fail
//! until a user's Job ran with overlapping shares, unread secrets or lost checkpoints.

use std::path::PathBuf;

use serde::Deserialize;
use serde_norway::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML document of a manifest file.
fn docs(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join(name)).expect("manifest file");
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn text(v: &Value, path: &str) -> String {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {:?}", get(v, path)))
        .to_string()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    &args[i + 1]
}

/// The image the Dockerfile's comment says it builds (`docker build -t NAME .`).
fn dockerfile_image() -> String {
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .expect("Dockerfile");
    let after = text
        .split("docker build -t ")
        .nth(1)
        .expect("Dockerfile names its image");
    after
        .split_whitespace()
        .next()
        .expect("image name")
        .to_string()
}

/// Env var `name` of a container comes from Secret key `key`.
fn assert_secret_env(container: &Value, name: &str, secret: &str, key: &str) {
    let env = get(container, "env").as_sequence().expect("env list");
    let var = env
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no env var {name}"));
    assert_eq!(text(var, "valueFrom.secretKeyRef.name"), secret);
    assert_eq!(text(var, "valueFrom.secretKeyRef.key"), key);
    assert!(var.get("value").is_none(), "{name} must not be inline");
}

fn mount_of<'a>(pod: &'a Value, container: &Value, path: &str) -> &'a Value {
    let mount = get(container, "volumeMounts")
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(path))
        .unwrap_or_else(|| panic!("nothing mounted at {path}"));
    get(pod, "volumes")
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume")
}

#[test]
fn migrate_job_is_an_indexed_job_over_disjoint_shares() {
    let job = &docs("migrate-job.yaml")[0];
    assert_eq!(text(job, "kind"), "Job");
    let spec = get(job, "spec");
    assert_eq!(text(spec, "completionMode"), "Indexed");
    let n = get(spec, "completions").as_u64().expect("completions");
    assert_eq!(
        get(spec, "parallelism").as_u64(),
        Some(n),
        "parallelism = completions"
    );
    assert!(get(spec, "backoffLimitPerIndex")
        .as_u64()
        .is_some_and(|b| b >= 1));
    let pod = get(spec, "template.spec");
    assert_eq!(
        text(pod, "restartPolicy"),
        "Never",
        "required by backoffLimitPerIndex"
    );
    let c = get(pod, "containers.0");
    assert_eq!(
        text(c, "image").split(':').next(),
        Some(dockerfile_image().as_str())
    );
    let args = strings(get(c, "args"));
    assert_eq!(args[0], "migrate");
    // The share is the completion index, read into an env var (Kubernetes expands $(VAR) in
    // args only from the container's env), over exactly `completions` shares.
    let share = flag(&args, "--partition");
    let (var, count) = share.split_once('/').expect("--partition I/N");
    assert_eq!(
        count.parse::<u64>().ok(),
        Some(n),
        "--partition {share} over {n} completions"
    );
    let var = var
        .strip_prefix("$(")
        .and_then(|v| v.strip_suffix(')'))
        .expect("$(VAR)/N");
    let env = get(c, "env").as_sequence().expect("env");
    let index = env
        .iter()
        .find(|e| e["name"].as_str() == Some(var))
        .expect("the index env var");
    assert_eq!(
        text(index, "valueFrom.fieldRef.fieldPath"),
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    // Each share its own report, named by the index, next to the checkpoints.
    assert!(flag(&args, "--report").contains(&format!("$({var})")));
    assert_secret_env(
        c,
        "FERRY_SOURCE_PASSWORD",
        "ferry-passwords",
        "source-password",
    );
    assert_secret_env(
        c,
        "FERRY_TARGET_PASSWORD",
        "ferry-passwords",
        "target-password",
    );
    assert!(
        !args.iter().any(|a| a.contains('@')),
        "no password in a URL: {args:?}"
    );
    // The CA from a Secret volume, at the path --target-cacert names.
    let cacert = flag(&args, "--target-cacert");
    let ca_dir = cacert.rsplit_once('/').expect("a path").0;
    let ca = mount_of(pod, c, ca_dir);
    let ca_secret = text(ca, "secret.secretName");
    // Checkpoints (written to the working directory) on the PersistentVolumeClaim.
    let workdir = text(c, "workingDir");
    assert!(
        args.iter().all(|a| a != "--checkpoint"),
        "default checkpoints, one per share"
    );
    let claim = text(
        mount_of(pod, c, &workdir),
        "persistentVolumeClaim.claimName",
    );
    let pvc = &docs("pvc.yaml")[0];
    assert_eq!(text(pvc, "kind"), "PersistentVolumeClaim");
    assert_eq!(text(pvc, "metadata.name"), claim);
    // The secrets it reads exist in the example.
    let secrets: Vec<String> = docs("secrets.example.yaml")
        .iter()
        .map(|d| text(d, "metadata.name"))
        .collect();
    assert!(secrets.contains(&ca_secret) && secrets.contains(&"ferry-passwords".to_string()));
    // The Dockerfile's working directory is where the volume goes.
    let dockerfile =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .unwrap();
    assert!(dockerfile.contains(&format!("WORKDIR {workdir}")));
}

#[test]
fn verify_job_merges_every_share_then_verifies_the_whole_job() {
    let n = get(&docs("migrate-job.yaml")[0], "spec.completions")
        .as_u64()
        .unwrap();
    let job = &docs("verify-job.yaml")[0];
    let pod = get(job, "spec.template.spec");
    let merge = strings(get(pod, "initContainers.0.args"));
    assert_eq!(&merge[..2], ["report", "merge"]);
    let reports: Vec<&String> = merge.iter().filter(|a| a.contains("migrate-")).collect();
    let wanted: Vec<String> = (0..n).map(|i| format!("/work/migrate-{i}.json")).collect();
    assert_eq!(
        reports,
        wanted.iter().collect::<Vec<_>>(),
        "one report per share"
    );
    let c = get(pod, "containers.0");
    let args = strings(get(c, "args"));
    assert_eq!(args[0], "verify");
    assert!(
        !args.contains(&"--partition".to_string()),
        "the final verify covers the whole job"
    );
    assert_secret_env(
        c,
        "FERRY_SOURCE_PASSWORD",
        "ferry-passwords",
        "source-password",
    );
    assert_secret_env(
        c,
        "FERRY_TARGET_PASSWORD",
        "ferry-passwords",
        "target-password",
    );
    let migrate_docs = docs("migrate-job.yaml");
    let migrate = get(&migrate_docs[0], "spec.template.spec.containers.0");
    let margs = strings(get(migrate, "args"));
    for f in ["--source", "--target", "--target-cacert"] {
        assert_eq!(
            flag(&args, f),
            flag(&margs, f),
            "{f} differs from the migrate Job's"
        );
    }
}
