//! `batch/v1`.

pub mod cron_job;
pub mod job;
