//! Generated protobuf messages and gRPC stubs of onething, one module per proto package,
//! plus the encoded file descriptor set that servers expose through gRPC reflection.

#![allow(missing_docs, clippy::all)]

/// The `onething.*` packages.
pub mod onething {
    /// Shapes shared by every department.
    pub mod common {
        /// Version 1.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/onething.common.v1.rs"));
        }
    }
    /// 一件事: the catalog and bundles.
    pub mod coordinator {
        /// Version 1.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/onething.coordinator.v1.rs"));
        }
    }
    /// 出入境.
    pub mod exit_entry {
        /// Version 1.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/onething.exit_entry.v1.rs"));
        }
    }
    /// 警企联络.
    pub mod liaison {
        /// Version 1.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/onething.liaison.v1.rs"));
        }
    }
    /// 督察.
    pub mod supervision {
        /// Version 1.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/onething.supervision.v1.rs"));
        }
    }
    /// 车管/车检.
    pub mod vehicle {
        /// Version 1.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/onething.vehicle.v1.rs"));
        }
    }
    /// 户政.
    pub mod household {
        /// Version 1.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/onething.household.v1.rs"));
        }
    }
}

pub use onething::{
    common::v1 as common, coordinator::v1 as coordinator, exit_entry::v1 as exit_entry, household::v1 as household,
    liaison::v1 as liaison, supervision::v1 as supervision, vehicle::v1 as vehicle,
};

/// Encoded `FileDescriptorSet` of every onething proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/onething_descriptor.bin"));
