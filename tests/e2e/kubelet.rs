//! The chart started the way a kubelet starts it. No container runtime or API server can run
//! on this machine, so the test plays the kubelet's part from the rendered manifests: for each
//! Deployment it runs the real `onething` binary with the image's entrypoint and the pod's
//! args, the pod's environment (Secret and ConfigMap references resolved from test objects)
//! plus the service-link variables Kubernetes injects for every Service of the release and
//! `KUBERNETES_SERVICE_HOST/PORT`, each mounted ConfigMap and Secret written at its mount path
//! under a test root (that one prefix rewritten, nothing else), the pod's user, and a hosts
//! file naming every Service (the cluster's DNS) bind-mounted over /etc/hosts in a mount
//! namespace of its own. The spec's probes run against the process until they pass; then one
//! bundle goes through the six services. With the production values every hop is TLS: mTLS
//! between the services, NATS over TLS, PostgreSQL verified against its root certificate.

use crate::common::*;
use crate::deploy::{documents, of_kind, text};
use onething_proto::coordinator::{self as pb, BundleState, bundle_service_client::BundleServiceClient};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use serde_yaml::Value;
use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Where the chart mounts everything it mounts from ConfigMaps and Secrets.
const MOUNT_PREFIX: &str = "/etc/onething";
/// The namespace the release is installed in.
const NAMESPACE: &str = "onething";

/// Test objects by name: key → bytes (the Secrets and ConfigMaps the chart expects).
type Objects = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// A pod's one container, running.
struct Pod {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Pod {
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// Every pod of a release; stopped with SIGTERM (then SIGKILL) when dropped.
struct Release {
    pods: Vec<Pod>,
}

impl Drop for Release {
    fn drop(&mut self) {
        for p in &self.pods {
            let _ = Command::new("kill").arg("-TERM").arg(p.child.id().to_string()).status();
        }
        let until = Instant::now() + Duration::from_secs(25);
        for p in &mut self.pods {
            while Instant::now() < until && matches!(p.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// The service-link variables of every Service of the release (with made-up cluster IPs, as
/// a cluster has them), and the API server's.
fn service_links(docs: &[Value]) -> Vec<(String, String)> {
    let mut env = vec![
        ("KUBERNETES_SERVICE_HOST".to_string(), "10.96.0.1".to_string()),
        ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".to_string(), "443".to_string()),
        ("KUBERNETES_PORT".to_string(), "tcp://10.96.0.1:443".to_string()),
        ("KUBERNETES_PORT_443_TCP".to_string(), "tcp://10.96.0.1:443".to_string()),
        ("KUBERNETES_PORT_443_TCP_PROTO".to_string(), "tcp".to_string()),
        ("KUBERNETES_PORT_443_TCP_PORT".to_string(), "443".to_string()),
        ("KUBERNETES_PORT_443_TCP_ADDR".to_string(), "10.96.0.1".to_string()),
    ];
    for (i, svc) in of_kind(docs, "Service").into_iter().enumerate() {
        let name = text(&svc["metadata"]["name"]).to_ascii_uppercase().replace('-', "_");
        let ip = format!("10.96.0.{}", 10 + i);
        let ports = svc["spec"]["ports"].as_sequence().cloned().unwrap_or_default();
        for (j, p) in ports.iter().enumerate() {
            let port = text(&p["port"]);
            let proto = text(&p["protocol"]).to_ascii_uppercase();
            let url = format!("{}://{ip}:{port}", proto.to_ascii_lowercase());
            if j == 0 {
                env.push((format!("{name}_SERVICE_HOST"), ip.clone()));
                env.push((format!("{name}_SERVICE_PORT"), port.clone()));
                env.push((format!("{name}_PORT"), url.clone()));
            }
            let port_name = text(&p["name"]).to_ascii_uppercase().replace('-', "_");
            env.push((format!("{name}_SERVICE_PORT_{port_name}"), port.clone()));
            let base = format!("{name}_PORT_{port}_{proto}");
            env.push((base.clone(), url));
            env.push((format!("{base}_PROTO"), proto.to_ascii_lowercase()));
            env.push((format!("{base}_PORT"), port.clone()));
            env.push((format!("{base}_ADDR"), ip.clone()));
        }
    }
    env
}

/// The hosts file the cluster's DNS stands for: every Service of the release, and NATS.
fn hosts_file(docs: &[Value], extra: &[&str]) -> String {
    let mut names: Vec<String> = extra.iter().map(|s| (*s).to_string()).collect();
    for svc in of_kind(docs, "Service") {
        let n = text(&svc["metadata"]["name"]);
        names.push(format!("{n}.{NAMESPACE}.svc.cluster.local"));
        names.push(format!("{n}.{NAMESPACE}.svc"));
        names.push(n);
    }
    format!("127.0.0.1 localhost\n127.0.0.1 {}\n", names.join(" "))
}

/// The image's entrypoint, from deploy/Dockerfile, with the image's binary replaced by the
/// one cargo built (the image holds that binary and nothing else).
fn entrypoint() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    let line = dockerfile.lines().find_map(|l| l.strip_prefix("ENTRYPOINT ")).unwrap();
    let mut words: Vec<String> = serde_json::from_str(line).unwrap();
    assert_eq!(words[0], "/usr/local/bin/onething");
    words[0] = crate::bench::onething_binary().display().to_string();
    words
}

/// Writes the files of volume `volume` at `dir`, owned by `owner`, readable as the spec says.
fn mount(volume: &Value, dir: &Path, maps: &Objects, secrets: &Objects, owner: (u32, u32), root: &Path) {
    let (source, mode) = if let Some(cm) = volume.get("configMap") {
        (maps.get(&text(&cm["name"])), cm["defaultMode"].as_u64().unwrap_or(0o644))
    } else if let Some(s) = volume.get("secret") {
        (secrets.get(&text(&s["secretName"])), s["defaultMode"].as_u64().unwrap_or(0o644))
    } else {
        panic!("unexpected volume {volume:?}");
    };
    let files = source.unwrap_or_else(|| panic!("volume {volume:?}: the object is missing"));
    std::fs::create_dir_all(dir).unwrap();
    for (key, bytes) in files {
        let path = dir.join(key);
        // The one rewrite: paths under the mount prefix point under the test root.
        let bytes = match std::str::from_utf8(bytes) {
            Ok(t) => rewrite(t, root).into_bytes(),
            Err(_) => bytes.clone(),
        };
        std::fs::write(&path, bytes).unwrap();
        std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(u32::try_from(mode).unwrap())).unwrap();
    }
}

fn rewrite(text: &str, root: &Path) -> String {
    text.replace(&format!("{MOUNT_PREFIX}/"), &format!("{}{MOUNT_PREFIX}/", root.display()))
}

/// The container's environment: literal values, Secret and ConfigMap references resolved.
fn container_env(c: &Value, maps: &Objects, secrets: &Objects, root: &Path) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for e in c["env"].as_sequence().cloned().unwrap_or_default() {
        let name = text(&e["name"]);
        let value = if let Some(v) = e.get("value") {
            text(v)
        } else {
            let from = &e["valueFrom"];
            let (objects, r) =
                if let Some(r) = from.get("secretKeyRef") { (secrets, r) } else { (maps, &from["configMapKeyRef"]) };
            let bytes = objects
                .get(&text(&r["name"]))
                .and_then(|o| o.get(&text(&r["key"])))
                .unwrap_or_else(|| panic!("{name}: {r:?} is missing"));
            String::from_utf8(bytes.clone()).unwrap()
        };
        env.push((name, rewrite(&value, root)));
    }
    env
}

/// Starts the pod of Deployment `d` under `root`.
fn start_pod(d: &Value, docs: &[Value], objects: (&Objects, &Objects), hosts: &Path, root: &Path) -> Pod {
    let (maps, secrets) = objects;
    let spec = &d["spec"]["template"]["spec"];
    let name = text(&d["metadata"]["name"]);
    let containers = spec["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1, "{name}: one container");
    let c = &containers[0];
    let user = spec["securityContext"]["runAsUser"].as_u64().unwrap_or(0);
    let group = spec["securityContext"]["fsGroup"].as_u64().unwrap_or(user);
    let owner = (u32::try_from(user).unwrap(), u32::try_from(group).unwrap());
    let pod_root = root.join(&name);
    let volumes: BTreeMap<String, &Value> =
        spec["volumes"].as_sequence().unwrap().iter().map(|v| (text(&v["name"]), v)).collect();
    for m in c["volumeMounts"].as_sequence().unwrap() {
        let path = text(&m["mountPath"]);
        let volume = volumes[&text(&m["name"])];
        if volume.get("emptyDir").is_some() {
            continue; // /tmp: the host's, writable by everyone.
        }
        assert!(path.starts_with(MOUNT_PREFIX), "{name}: mount {path} outside {MOUNT_PREFIX}");
        mount(volume, &pod_root.join(path.trim_start_matches('/')), maps, secrets, owner, &pod_root);
    }
    let mut dir = pod_root.clone();
    while dir != *root {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir = dir.parent().unwrap().to_path_buf();
    }
    for entry in walk(&pod_root) {
        if entry.is_dir() {
            std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let mut env = service_links(docs);
    env.extend(container_env(c, maps, secrets, &pod_root));
    let mut argv = match c.get("command") {
        Some(cmd) => cmd.as_sequence().unwrap().iter().map(text).collect(),
        None => entrypoint(),
    };
    argv.extend(c["args"].as_sequence().cloned().unwrap_or_default().iter().map(text));
    let log = root.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    // A mount namespace of its own: the hosts file over /etc/hosts (as the kubelet manages a
    // pod's /etc/hosts), then the pod's user.
    let child = Command::new("/usr/bin/unshare")
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(format!(
            "/bin/mount --bind \"$0\" /etc/hosts && exec /usr/bin/setpriv --reuid={} --regid={} --clear-groups -- \"$@\"",
            owner.0, owner.1
        ))
        .arg(hosts)
        .args(&argv)
        .env_clear()
        .envs(env)
        .current_dir(&pod_root)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Pod { name, child, log }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            all.extend(walk(&p));
        }
        all.push(p);
    }
    all
}

/// One probe of the spec: `httpGet` (2xx/3xx passes), `grpc` (SERVING) or `tcpSocket`.
async fn probe_once(probe: &Value, ports: &BTreeMap<String, u16>) -> bool {
    let port_of = |v: &Value| match v {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => ports.get(s).copied(),
        _ => None,
    };
    if let Some(h) = probe.get("httpGet") {
        let Some(port) = port_of(&h["port"]) else { return false };
        let answer = http_get(&format!("127.0.0.1:{port}"), &text(&h["path"])).await;
        return answer.is_some_and(|(s, _)| (200..400).contains(&s));
    }
    if let Some(g) = probe.get("grpc") {
        let Some(port) = port_of(&g["port"]) else { return false };
        let Ok(ch) = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await else {
            return false;
        };
        let service = text(&g["service"]);
        let req = tonic_health::pb::HealthCheckRequest { service };
        return tonic_health::pb::health_client::HealthClient::new(ch)
            .check(req)
            .await
            .is_ok_and(|r| r.into_inner().status() == tonic_health::pb::health_check_response::ServingStatus::Serving);
    }
    if let Some(t) = probe.get("tcpSocket") {
        let Some(port) = port_of(&t["port"]) else { return false };
        return tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok();
    }
    panic!("unknown probe {probe:?}")
}

/// Runs `kind` of `c`'s probes until it passes, within the spec's failureThreshold × periodSeconds.
async fn until_probe_passes(pod: &mut Pod, c: &Value, kind: &str) {
    let Some(probe) = c.get(kind) else { return };
    let ports: BTreeMap<String, u16> = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (text(&p["name"]), u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap()))
        .collect();
    let period = probe["periodSeconds"].as_u64().unwrap_or(10);
    let threshold = probe["failureThreshold"].as_u64().unwrap_or(3);
    let until = Instant::now() + Duration::from_secs(period * threshold);
    loop {
        if probe_once(probe, &ports).await {
            return;
        }
        if let Ok(Some(status)) = pod.child.try_wait() {
            panic!("{} exited ({status}) before its {kind} passed:\n{}", pod.name, pod.log());
        }
        assert!(Instant::now() < until, "{}: {kind} never passed:\n{}", pod.name, pod.log());
        // Faster than the spec's period: the test only waits, the verdict is the same.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A certificate authority of the test cluster (cert-manager's part).
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Self { pem, issuer: Issuer::new(params, key) }
    }

    /// A leaf for `names`, usable as server and as client (certificate, key).
    fn leaf(&self, names: &[String]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.to_vec()).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

/// A nats-server with onething's users and permissions (deploy/nats/dev.conf), on `port`,
/// with TLS for `nats.nats.svc` when `tls` holds (certificate, key).
fn start_nats(dir: &Path, port: u16, tls: Option<&(String, String)>) -> Child {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats");
    let mut conf = format!("include \"{}/dev.conf\"\n", root.canonicalize().unwrap().display());
    if let Some((cert, key)) = tls {
        std::fs::write(dir.join("nats.crt"), cert).unwrap();
        std::fs::write(dir.join("nats.key"), key).unwrap();
        conf.push_str(&format!(
            "tls {{\n  cert_file: \"{0}/nats.crt\"\n  key_file: \"{0}/nats.key\"\n}}\n",
            dir.display()
        ));
    }
    std::fs::write(dir.join("nats.conf"), conf).unwrap();
    let mut cmd = Command::new(nats_server_bin());
    for user in NATS_USERS {
        cmd.env(format!("NATS_{}_PASSWORD", user.to_ascii_uppercase()), nats_password(user));
    }
    cmd.arg("-c")
        .arg(dir.join("nats.conf"))
        .args(["-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("js"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nats.log")).unwrap())
        .spawn()
        .unwrap()
}

/// The keys of a release as docs/deploy.md has them: the JWKS holds the SSO's key as an SSO
/// publishes it (no scope: it signs people, never a service) and each calling service's own
/// key, made by `onething key`'s function and scoped to that service alone; with those
/// services' private keys for their Secrets.
fn release_keys() -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let dir = tempfile::tempdir().unwrap();
    let sso = onething_platform::auth::Minter::load(&dev_keys().signing_key, auth_settings()).unwrap();
    let mut published = sso.jwk(&serde_json::json!({}));
    published.as_object_mut().unwrap().remove("signs");
    let mut keys = vec![published];
    let mut pems = Vec::new();
    // Every service that calls another signs its calls with a key of its own.
    for service in ServiceKind::ALL.into_iter().filter(|k| !k.calls().is_empty()).map(ServiceKind::name) {
        let path = dir.path().join(format!("{service}.pem"));
        let minter = onething_platform::auth::new_signing_key(&path, auth_settings()).unwrap();
        keys.push(minter.jwk(&serde_json::json!({ "services": [service] })));
        pems.push((service.to_string(), std::fs::read(&path).unwrap()));
    }
    (serde_json::json!({ "keys": keys }).to_string().into_bytes(), pems)
}

/// The Secrets and ConfigMaps a platform team creates before installing (docs/deploy.md).
fn objects(dbs: &[(String, TestDb)], ca: &Ca, tls: bool, docs: &[Value]) -> (Objects, Objects) {
    let mut maps: Objects = BTreeMap::new();
    for cm in of_kind(docs, "ConfigMap") {
        let data = cm["data"].as_mapping().unwrap();
        let files = data.iter().map(|(k, v)| (text(k), text(v).into_bytes())).collect();
        maps.insert(text(&cm["metadata"]["name"]), files);
    }
    let (jwks, signing) = release_keys();
    maps.entry("onething-jwks".into()).or_insert_with(|| BTreeMap::from([("jwks.json".into(), jwks)]));
    // The e-licence issuers the release trusts: the tests' development ones, their trust list
    // and revocation lists as the files of one ConfigMap.
    let issuers = dev_issuers();
    let mut elicence = BTreeMap::from([("trust-list.json".into(), std::fs::read(&issuers.trust_list).unwrap())]);
    for entry in std::fs::read_dir(&issuers.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jws") {
            elicence.insert(path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap());
        }
    }
    maps.insert("onething-elicence".into(), elicence);
    let mut secrets: Objects = BTreeMap::new();
    let mut db = BTreeMap::new();
    let mut nats = BTreeMap::new();
    for (service, d) in dbs {
        // verify-full checks the name in the server's certificate: Debian's is for localhost.
        db.insert(format!("{service}-database-url"), d.url.replace("@127.0.0.1:", "@localhost:").into_bytes());
        nats.insert(format!("{service}-password"), nats_password(&service.replace('-', "_")).into_bytes());
    }
    secrets.insert("onething-db".into(), db);
    secrets.insert("onething-nats".into(), nats);
    for (service, pem) in signing {
        secrets.insert(format!("onething-{service}-key"), BTreeMap::from([("key.pem".into(), pem)]));
    }
    if tls {
        secrets.insert("onething-nats-tls".into(), BTreeMap::from([("ca.crt".into(), ca.pem.clone().into_bytes())]));
        let snakeoil = std::fs::read("/etc/ssl/certs/ssl-cert-snakeoil.pem").expect("PostgreSQL's certificate");
        secrets.insert("onething-db-ca".into(), BTreeMap::from([("ca.crt".into(), snakeoil)]));
        for (service, _) in dbs {
            let name = format!("onething-{service}");
            let (cert, key) = ca.leaf(&[name.clone(), format!("{name}.{NAMESPACE}.svc")]);
            secrets.insert(
                format!("{name}-tls"),
                BTreeMap::from([
                    ("tls.crt".into(), cert.into_bytes()),
                    ("tls.key".into(), key.into_bytes()),
                    ("ca.crt".into(), ca.pem.clone().into_bytes()),
                ]),
            );
        }
    }
    (maps, secrets)
}

/// An enterprise's token from the SSO the release trusts (its issuer as the chart sets it;
/// the test's key is in the JWKS).
fn sso_token(docs: &[Value], code: &str) -> String {
    let config = of_kind(docs, "ConfigMap")
        .into_iter()
        .find_map(|m| m["data"]["config.toml"].as_str().map(str::to_string))
        .unwrap();
    let issuer = config.lines().find_map(|l| l.trim().strip_prefix("issuer = ")).unwrap().trim_matches('"');
    let settings = onething_platform::auth::AuthSettings { issuer: issuer.into(), ..auth_settings() };
    let minter = onething_platform::auth::Minter::load(&dev_keys().signing_key, settings).unwrap();
    minter.mint(enterprise_principal(code), 600).unwrap()
}

/// The coordinator's bundle API as the gateway reaches it: plain, or with the gateway's
/// client certificate (`identity`) when the mesh is on mTLS.
async fn coordinator(
    ca: &Ca,
    tls: bool,
    identity: Option<(String, String)>,
    token: &str,
) -> Result<BundleServiceClient<Authed>, String> {
    let scheme = if tls { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://127.0.0.1:18060")).unwrap();
    if tls {
        let mut c =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.pem)).domain_name("onething-coordinator");
        if let Some((cert, key)) = identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(c).map_err(|e| e.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    Ok(BundleServiceClient::new(tonic::service::interceptor::InterceptedService::new(
        channel,
        Bearer::new(Some(token)),
    )))
}

/// Renders the chart with `values`, starts every Deployment as a kubelet would, waits for
/// every probe, and sends one 企业开办 bundle through all of them.
async fn install_and_apply(values: &[&str], tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca = Ca::new();
    let nats_port = free_port();
    let nats_cert = ca.leaf(&["nats.nats.svc".into()]);
    let mut nats = start_nats(dir.path(), nats_port, tls.then_some(&nats_cert));
    // The platform team's values for this cluster: where NATS is.
    let rendered = crate::deploy::render_with(values, &[format!("nats.url=nats://nats.nats.svc:{nats_port}")]);
    let docs = documents(&rendered);
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 6);
    let mut dbs = Vec::new();
    for d in &deployments {
        let service = text(&d["metadata"]["labels"]["app.kubernetes.io/component"]);
        dbs.push((service, TestDb::fresh(Backend::Postgres).await.expect("PostgreSQL")));
    }
    let (maps, secrets) = objects(&dbs, &ca, tls, &docs);
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, hosts_file(&docs, &["nats.nats.svc"])).unwrap();
    std::fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut release = Release { pods: Vec::new() };
    for d in &deployments {
        release.pods.push(start_pod(d, &docs, (&maps, &secrets), &hosts, dir.path()));
    }
    for (pod, d) in release.pods.iter_mut().zip(&deployments) {
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        until_probe_passes(pod, c, "startupProbe").await;
        until_probe_passes(pod, c, "readinessProbe").await;
        until_probe_passes(pod, c, "livenessProbe").await;
    }

    let company = onething_platform::ids::CreditCode::complete("91371002MA3C00123").unwrap().to_string();
    let token = sso_token(&docs, &company);
    let gateway = tls.then(|| ca.leaf(&["api-gateway".into()]));
    let mut bundles = coordinator(&ca, tls, gateway, &token).await.unwrap();
    let who = crate::bundles::applicant(onething_proto::common::ApplicantKind::Enterprise, &company, "威海示例企业");
    let request = crate::bundles::opening(who, "kubelet-open");
    let b = bundles.submit_bundle(request).await.unwrap().into_inner().bundle.unwrap();
    let b = crate::bundles::finished(&mut bundles, &b.bundle_id).await;
    let logs = || release.pods.iter().map(|p| format!("== {}\n{}", p.name, p.log())).collect::<Vec<_>>().join("\n");
    assert_eq!(b.state(), BundleState::Completed, "{b:?}\n{}", logs());
    assert_eq!(b.steps.len(), 3, "liaison, household and vehicle each did their part");

    if tls {
        // A caller without a client certificate gets no service at all.
        let stranger = coordinator(&ca, true, None, &token).await;
        let refused = match stranger {
            Err(_) => true,
            Ok(mut c) => c.get_bundle(pb::GetBundleRequest { bundle_id: b.bundle_id.clone() }).await.is_err(),
        };
        assert!(refused, "a caller without a client certificate was served");
    }
    drop(release);
    let _ = nats.kill();
    let _ = nats.wait();
}

// One test: the release binds the chart's fixed ports (as pods on one host network would),
// so the two installations run one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_starts_as_a_kubelet_starts_it_and_serves_a_bundle() {
    install_and_apply(&[], false).await;
    install_and_apply(&["values-production.yaml"], true).await;
}
