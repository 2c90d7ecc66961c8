//! Intake: what comes into the gateway (status changes, patient lists) parsed into
//! domain types and recorded, ready for fan-out.

pub mod patients;
pub mod status;
