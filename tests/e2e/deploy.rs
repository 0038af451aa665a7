//! The example configurations under deploy/config load as service settings (unknown keys
//! are errors, so a renamed setting shows up here), and the image and the chart agree; with
//! the helpers the chart tests share: rendering the chart and reading its manifests.

use serde_yaml::Value;

#[test]
fn example_configs_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let settings = onething_platform::config::load(
            onething_platform::config::Settings::default(),
            Some(&path),
            std::iter::empty(),
        )
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert!(settings.database_url.starts_with("postgres://"), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 2);
}

/// Renders the chart with helm (from `make tools`) and `values` files.
pub(crate) fn render(values: &[&str]) -> String {
    render_with(values, &[])
}

/// Renders the chart with `values` files and `--set` overrides `sets`.
pub(crate) fn render_with(values: &[&str], sets: &[String]) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let helm = std::env::var("HELM_BIN").map(std::path::PathBuf::from).unwrap_or_else(|_| root.join(".tools/bin/helm"));
    assert!(helm.exists(), "{} is missing: run `make tools`", helm.display());
    let mut cmd = std::process::Command::new(helm);
    cmd.arg("template").arg("onething").arg(root.join("charts/onething"));
    for v in values {
        cmd.arg("-f").arg(root.join("charts/onething").join(v));
    }
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The documents of a rendered manifest of `kind`.
fn docs<'a>(rendered: &'a str, kind: &str) -> Vec<&'a str> {
    rendered.split("\n---").filter(|d| d.lines().any(|l| l == format!("kind: {kind}"))).collect()
}

/// The indented block under `key:` (e.g. the config.toml of a ConfigMap), dedented.
fn block(doc: &str, key: &str) -> String {
    let mut lines = doc.lines().skip_while(|l| !l.trim_start().starts_with(key)).skip(1);
    let first = lines.next().unwrap_or_default();
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(lines.take_while(|l| l.len() - l.trim_start().len() >= indent || l.trim().is_empty()))
        .map(|l| l.get(indent..).unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_image_and_the_chart_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/onething", "serve"]"#));
    assert!(dockerfile.contains("USER 65532:65532"), "non-root");
    let exposed: std::collections::BTreeSet<u16> = dockerfile
        .lines()
        .find(|l| l.starts_with("EXPOSE"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    for values in [&[][..], &["values-production.yaml"][..]] {
        let rendered = render(values);
        let deployments = docs(&rendered, "Deployment");
        assert_eq!(deployments.len(), 6);
        let mut ports = std::collections::BTreeSet::new();
        for d in deployments {
            let port: u16 = d.lines().find_map(|l| l.trim().strip_prefix("containerPort: ")).unwrap().parse().unwrap();
            ports.insert(port);
            // Probes ask the plain metrics port (a gRPC probe cannot pass mTLS).
            assert_eq!(d.matches("httpGet: {path: /readyz, port: metrics}").count(), 2, "startup, readiness");
            assert_eq!(d.matches("httpGet: {path: /livez, port: metrics}").count(), 1, "liveness");
            assert!(d.contains("enableServiceLinks: false"));
            // The argument is a role `onething serve` knows.
            let role = d.lines().find_map(|l| l.trim().strip_prefix("args: [\"")).unwrap().trim_end_matches("\"]");
            assert!(onething_platform::service_kind::SERVICE_NAMES.contains(&role), "{role}");
            assert!(d.contains("readOnlyRootFilesystem: true") && d.contains("runAsNonRoot: true"));
        }
        assert_eq!(ports, exposed, "the chart's ports are the image's");
    }
}

#[test]
fn rendered_configs_load_as_service_settings() {
    for values in [&[][..], &["values-production.yaml"][..]] {
        let rendered = render(values);
        let maps: Vec<&str> = docs(&rendered, "ConfigMap").into_iter().filter(|m| m.contains("config.toml:")).collect();
        assert_eq!(maps.len(), 6);
        for m in maps {
            let toml = block(m, "config.toml:");
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("config.toml");
            std::fs::write(&file, &toml).unwrap();
            let s = onething_platform::config::load(
                onething_platform::config::Settings::default(),
                Some(&file),
                std::iter::empty(),
            )
            .unwrap_or_else(|e| panic!("{e:#}\n{toml}"));
            if s.nats.user == "supervision" {
                assert_eq!(s.peers.len(), 5, "supervision asks the departments and the coordinator");
            }
            if s.nats.user == "coordinator" {
                assert_eq!(s.peers.len(), 4, "the coordinator knows every department");
                let scheme = if s.tls.peer_ca_file.is_empty() { "http" } else { "https" };
                assert_eq!(s.peers["exit_entry"], format!("{scheme}://onething-exit-entry:18062"));
            }
            assert!(s.grpc_addr.starts_with("0.0.0.0:18"));
        }
    }
}

/// The documents of a rendered manifest, parsed (a document that is not YAML fails the test).
pub(crate) fn documents(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .map(|d| serde_yaml::from_str::<Value>(d).unwrap_or_else(|e| panic!("rendered YAML: {e}\n{d}")))
        .filter(|v| v.get("kind").is_some())
        .collect()
}

/// The documents of `kind`.
pub(crate) fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

/// A scalar as text (empty for anything else).
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// The NATS the chart's services run on, as deploy/ and the chart install it, writes every
/// event to disk before acknowledging it (docs/benchmark.md has the cost), allows the
/// payloads the outbox plans for, and takes its users from auth.conf.
#[test]
fn every_nats_configuration_syncs_always() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for conf in ["deploy/nats/cluster.conf", "deploy/nats/dev.conf"] {
        let text = std::fs::read_to_string(root.join(conf)).unwrap();
        let set: Vec<&str> = text.lines().map(str::trim).filter(|l| l.starts_with("sync_interval:")).collect();
        assert_eq!(set, ["sync_interval: always"], "{conf}");
    }
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("charts/onething/files/nats-values.yaml")).unwrap())
            .unwrap();
    let config = &values["config"];
    assert_eq!(config["jetstream"]["merge"]["sync_interval"].as_str(), Some("always"));
    assert_eq!(config["cluster"]["replicas"].as_u64(), Some(3), "three replicas, as values-production's streams");
    assert_eq!(config["merge"]["max_payload"].as_str(), Some("1MB"), "as cluster.conf");
    assert!(config["merge"]["$include"].as_str().is_some_and(|i| i.ends_with("auth.conf")));
}
