//! The integration tests that need no process of their own, as modules of one test binary: one
//! link instead of one per file, and a fraction of the disk (each binary carries the whole bridge
//! and librdkafka). Tests that install a process-wide log subscriber, replace the allocator or
//! measure the process itself keep binaries of their own (`tests/*.rs`).

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod bad_input;
mod chaos;
mod cli;
mod connections;
mod contract;
mod crash;
mod disk_full;
mod fatal;
mod http2_heads;
mod kafka_outage;
mod limits;
mod logs_stalled;
mod oauthbearer_secrets;
mod observability;
mod oidc;
mod open_files;
mod process;
mod readme_layout;
mod readme_settings;
mod records;
mod sasl;
mod server_drain;
mod shutdown;
mod slow_clients;
mod spool;
mod spool_dir;
mod spool_sync;
mod tls;
