//! The services of the mesh, named once: each one's name (its NATS user, stream suffix,
//! database and peer key), its default gRPC port, its stream, and whether it is a
//! department with cases. `onething serve` and `dev`, the coordinator's and supervision's
//! peers, supervision's streams, the event contract, the benchmark, the chaos suite and
//! the tests all read this list; the crate that builds each kind is chosen in the CLI.

use crate::events::nats::stream_name;

/// One service of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum ServiceKind {
    /// 户政: household registration (a department).
    #[value(name = "household")]
    Household,
    /// 出入境: exit and entry (a department).
    #[value(name = "exit_entry", alias = "exit-entry")]
    ExitEntry,
    /// 车管: vehicle inspection (a department).
    #[value(name = "vehicle")]
    Vehicle,
    /// 政企联络: enterprise liaison (a department).
    #[value(name = "liaison")]
    Liaison,
    /// The coordinator: each bundle as a saga across the departments.
    #[value(name = "coordinator")]
    Coordinator,
    /// Supervision: deadlines, complaints, ratings, KPIs, inspections.
    #[value(name = "supervision")]
    Supervision,
}

impl ServiceKind {
    /// Every service, departments first (the order `onething dev` starts them in).
    pub const ALL: [ServiceKind; 6] = [
        ServiceKind::Household,
        ServiceKind::ExitEntry,
        ServiceKind::Vehicle,
        ServiceKind::Liaison,
        ServiceKind::Coordinator,
        ServiceKind::Supervision,
    ];

    /// The departments: each serves `CaseService` and publishes case events.
    pub const DEPARTMENTS: [ServiceKind; 4] =
        [ServiceKind::Household, ServiceKind::ExitEntry, ServiceKind::Vehicle, ServiceKind::Liaison];

    /// The name, e.g. `exit_entry`.
    pub const fn name(self) -> &'static str {
        match self {
            ServiceKind::Household => "household",
            ServiceKind::ExitEntry => "exit_entry",
            ServiceKind::Vehicle => "vehicle",
            ServiceKind::Liaison => "liaison",
            ServiceKind::Coordinator => "coordinator",
            ServiceKind::Supervision => "supervision",
        }
    }

    /// The development gRPC port (`onething dev`, `make run`).
    pub const fn default_port(self) -> u16 {
        match self {
            ServiceKind::Coordinator => 18060,
            ServiceKind::Household => 18061,
            ServiceKind::ExitEntry => 18062,
            ServiceKind::Vehicle => 18063,
            ServiceKind::Liaison => 18064,
            ServiceKind::Supervision => 18065,
        }
    }

    /// Whether it is a department with cases.
    pub const fn is_department(self) -> bool {
        !matches!(self, ServiceKind::Coordinator | ServiceKind::Supervision)
    }

    /// The services it calls over gRPC, each with a token of its own signing key: the
    /// coordinator its departments, supervision every other service (for the owner of what
    /// is rated), household liaison (whether an applicant qualifies for a green channel).
    /// A service that calls any needs `auth.signing_key_file` and `peers`.
    pub fn calls(self) -> &'static [ServiceKind] {
        match self {
            ServiceKind::Coordinator => &ServiceKind::DEPARTMENTS,
            ServiceKind::Supervision => &[
                ServiceKind::Household,
                ServiceKind::ExitEntry,
                ServiceKind::Vehicle,
                ServiceKind::Liaison,
                ServiceKind::Coordinator,
            ],
            ServiceKind::Household => &[ServiceKind::Liaison],
            ServiceKind::ExitEntry | ServiceKind::Vehicle | ServiceKind::Liaison => &[],
        }
    }

    /// Its JetStream stream, e.g. `ONETHING_EXIT_ENTRY`.
    pub fn stream(self) -> String {
        stream_name(self.name())
    }

    /// Its development address, e.g. `http://127.0.0.1:18061`.
    pub fn dev_endpoint(self) -> String {
        format!("http://127.0.0.1:{}", self.default_port())
    }

    /// The service of this name (`exit-entry` is taken for `exit_entry`).
    pub fn parse(name: &str) -> Option<ServiceKind> {
        let name = name.replace('-', "_");
        ServiceKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const fn names<const N: usize>(kinds: [ServiceKind; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = kinds[i].name();
        i += 1;
    }
    out
}

/// The names of [`ServiceKind::ALL`], in its order.
pub const SERVICE_NAMES: [&str; 6] = names(ServiceKind::ALL);

/// The names of [`ServiceKind::DEPARTMENTS`], in its order.
pub const DEPARTMENT_NAMES: [&str; 4] = names(ServiceKind::DEPARTMENTS);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_ports_and_streams_are_distinct_and_parse_back() {
        let mut ports = std::collections::HashSet::new();
        for k in ServiceKind::ALL {
            assert!(ports.insert(k.default_port()), "{k} shares a port");
            assert_eq!(ServiceKind::parse(k.name()), Some(k));
            assert_eq!(ServiceKind::from_str(k.name(), false), Ok(k));
            assert_eq!(k.stream(), format!("ONETHING_{}", k.name().to_uppercase()));
            assert_eq!(k.is_department(), ServiceKind::DEPARTMENTS.contains(&k));
        }
        assert_eq!(ServiceKind::parse("exit-entry"), Some(ServiceKind::ExitEntry));
        assert_eq!(ServiceKind::from_str("exit-entry", false), Ok(ServiceKind::ExitEntry));
        assert_eq!(ServiceKind::parse("ghost"), None);
        assert_eq!(SERVICE_NAMES[4], "coordinator");
    }
}
