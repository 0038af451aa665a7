//! The rendered NetworkPolicies evaluated against the call graph the services are configured
//! with: a small evaluator of the NetworkPolicy semantics the chart uses (pod and namespace
//! selectors by labels, ports, the default allow of a pod no policy selects) decides, for
//! every source and every port of every service, whether a connection is admitted. Each
//! caller→callee pair in a rendered `[peers]` must be admitted; the gateway must reach every
//! gRPC port, Prometheus every metrics port; nothing else may pass.

use crate::deploy::{documents, of_kind, text};
use onething_tests::ServiceKind;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The namespace of the release.
const NAMESPACE: &str = "onething";

/// A pod that may open a connection: its labels and its namespace's labels.
#[derive(Debug)]
struct Source {
    name: String,
    labels: BTreeMap<String, String>,
    namespace: BTreeMap<String, String>,
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping().into_iter().flatten().map(|(k, v)| (text(k), text(v))).collect()
}

fn namespace(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("kubernetes.io/metadata.name".to_string(), name.to_string())])
}

/// Whether `selector` (`matchLabels`; an empty selector selects everything) selects `l`.
fn selects(selector: &Value, l: &BTreeMap<String, String>) -> bool {
    assert!(selector.get("matchExpressions").is_none(), "the evaluator does not model matchExpressions: {selector:?}");
    labels(&selector["matchLabels"]).iter().all(|(k, v)| l.get(k) == Some(v))
}

/// Whether a connection from `src` to a pod labelled `dst` on `port` is admitted.
fn admitted(policies: &[&Value], src: &Source, dst: &BTreeMap<String, String>, port: u16) -> bool {
    let selecting: Vec<&&Value> = policies.iter().filter(|p| selects(&p["spec"]["podSelector"], dst)).collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|p| {
        p["spec"]["ingress"].as_sequence().into_iter().flatten().any(|rule| {
            let ports_ok = rule.get("ports").and_then(Value::as_sequence).is_none_or(|ports| {
                ports.iter().any(|q| {
                    assert!(q["port"].as_u64().is_some(), "the evaluator models numeric ports only: {q:?}");
                    assert!(q.get("endPort").is_none() && text(&q["protocol"]) == "TCP", "TCP only: {q:?}");
                    q["port"].as_u64() == Some(u64::from(port))
                })
            });
            let from = rule.get("from").and_then(Value::as_sequence).filter(|f| !f.is_empty());
            let from_ok = from.is_none_or(|peers| {
                peers.iter().any(|peer| {
                    assert!(peer.get("ipBlock").is_none(), "the evaluator does not model ipBlock: {peer:?}");
                    let pods = peer.get("podSelector");
                    let nss = peer.get("namespaceSelector");
                    let ns_ok = match nss {
                        Some(n) => selects(n, &src.namespace),
                        // A podSelector alone means the policy's own namespace.
                        None => src.namespace == namespace(NAMESPACE),
                    };
                    ns_ok && pods.is_none_or(|s| selects(s, &src.labels))
                })
            });
            ports_ok && from_ok
        })
    })
}

/// A service of the release: its pods' labels, its gRPC and metrics ports.
struct Target {
    labels: BTreeMap<String, String>,
    grpc: u16,
    metrics: u16,
}

fn port_named(container: &Value, name: &str) -> u16 {
    let p = container["ports"].as_sequence().unwrap().iter().find(|p| text(&p["name"]) == name).unwrap();
    u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap()
}

fn check(values: &[&str]) {
    let docs = documents(&crate::deploy::render(values));
    let policies = of_kind(&docs, "NetworkPolicy");
    assert!(!policies.is_empty(), "networkPolicy.enabled is on by default");
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    for d in of_kind(&docs, "Deployment") {
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        let t = Target {
            labels: labels(&d["spec"]["template"]["metadata"]["labels"]),
            grpc: port_named(c, "grpc"),
            metrics: port_named(c, "metrics"),
        };
        targets.insert(text(&d["metadata"]["name"]), t);
    }
    // Services by name → the Deployment their selector picks.
    let mut service_of: BTreeMap<String, String> = BTreeMap::new();
    for s in of_kind(&docs, "Service") {
        let selector = labels(&s["spec"]["selector"]);
        let target = targets.iter().find(|(_, t)| selector.iter().all(|(k, v)| t.labels.get(k) == Some(v))).unwrap();
        service_of.insert(text(&s["metadata"]["name"]), target.0.clone());
    }
    // The call graph as configured: each service's [peers], host → its Deployment.
    let mut calls: BTreeSet<(String, String, u16)> = BTreeSet::new();
    for m in of_kind(&docs, "ConfigMap") {
        let Some(toml) = m["data"]["config.toml"].as_str() else { continue };
        let caller = text(&m["metadata"]["name"]);
        let mut in_peers = false;
        for line in toml.lines() {
            if line.starts_with('[') {
                in_peers = line == "[peers]";
            } else if in_peers && let Some((_, url)) = line.split_once(" = ") {
                let hostport = url.trim_matches('"').split("://").nth(1).unwrap();
                let (host, port) = hostport.split_once(':').unwrap();
                calls.insert((caller.clone(), service_of[host].clone(), port.parse().unwrap()));
            }
        }
    }
    // What the code needs, not what the values say (ServiceKind::calls): the coordinator
    // creates cases in every department; supervision asks every department and the
    // coordinator whether a rater owns what they rate; household asks liaison about a green
    // channel's employer.
    let deployment = |name: &str| format!("onething-{}", name.replace('_', "-"));
    let needed: Vec<(String, String)> = ServiceKind::ALL
        .into_iter()
        .flat_map(|caller| {
            caller.calls().iter().map(move |callee| (deployment(caller.name()), deployment(callee.name())))
        })
        .collect();
    for (caller, callee) in &needed {
        assert!(
            calls.iter().any(|(a, b, _)| a == caller && b == callee),
            "{caller} needs {callee} but the chart gives it no peer ({values:?})"
        );
    }
    for (caller, callee, port) in &calls {
        assert_eq!(targets[callee].grpc, *port, "{caller} calls {callee} on its gRPC port");
    }

    let mut sources: Vec<Source> = targets
        .iter()
        .map(|(n, t)| Source { name: n.clone(), labels: t.labels.clone(), namespace: namespace(NAMESPACE) })
        .collect();
    let gateway = BTreeMap::from([("app.kubernetes.io/name".to_string(), "api-gateway".to_string())]);
    sources.push(Source { name: "gateway".into(), labels: gateway.clone(), namespace: namespace(NAMESPACE) });
    sources.push(Source { name: "prometheus".into(), labels: BTreeMap::new(), namespace: namespace("monitoring") });
    let stranger = BTreeMap::from([("app".to_string(), "something-else".to_string())]);
    sources.push(Source { name: "stranger".into(), labels: stranger, namespace: namespace(NAMESPACE) });
    sources.push(Source { name: "gateway elsewhere".into(), labels: gateway, namespace: namespace("default") });

    for src in &sources {
        for (name, t) in &targets {
            let expected_grpc = match src.name.as_str() {
                "gateway" => true,
                s => calls.contains(&(s.to_string(), name.clone(), t.grpc)),
            };
            let expected_metrics = src.name == "prometheus";
            assert_eq!(
                admitted(&policies, src, &t.labels, t.grpc),
                expected_grpc,
                "{} → {name} gRPC port {} ({values:?})",
                src.name,
                t.grpc
            );
            assert_eq!(
                admitted(&policies, src, &t.labels, t.metrics),
                expected_metrics,
                "{} → {name} metrics port {} ({values:?})",
                src.name,
                t.metrics
            );
        }
    }
}

#[test]
fn network_policies_admit_exactly_the_call_graph() {
    check(&[]);
    check(&["values-production.yaml"]);
}

#[test]
fn the_evaluator_knows_an_open_rule_from_a_closed_one() {
    // A rule with ports and no `from` admits everyone: the chart must never render one for
    // a service nobody calls (the evaluator has to see that, or it proves nothing).
    let open: Value = serde_yaml::from_str(
        "spec: {podSelector: {matchLabels: {a: b}}, ingress: [{ports: [{port: 1, protocol: TCP}]}]}",
    )
    .unwrap();
    let anyone = Source { name: "x".into(), labels: BTreeMap::new(), namespace: namespace("elsewhere") };
    let dst = BTreeMap::from([("a".to_string(), "b".to_string())]);
    assert!(admitted(&[&open], &anyone, &dst, 1));
    assert!(!admitted(&[&open], &anyone, &dst, 2));
    let closed: Value = serde_yaml::from_str("spec: {podSelector: {}, ingress: []}").unwrap();
    assert!(!admitted(&[&closed], &anyone, &dst, 1));
    let unrelated = BTreeMap::from([("c".to_string(), "d".to_string())]);
    assert!(admitted(&[&open], &anyone, &unrelated, 9), "a pod no policy selects admits everything");
}
