//! `policy/v1`.

pub mod pod_disruption_budget;
