//! qikchat-bridge: Qikchat webhooks in, exact Kafka records out.
pub mod auth;
pub mod classify;
pub mod config;
pub mod kafka_props;
pub mod topics;
