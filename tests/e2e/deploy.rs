//! The example configurations under deploy/config load as service settings (unknown keys
//! are errors, so a renamed setting shows up here).

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
