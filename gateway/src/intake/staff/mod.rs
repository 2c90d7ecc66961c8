//! Commands that practice staff text to the gateway from their own phones (`CLOSED until
//! 2pm`, `STATUS`, `YES 123456`), read into [`command::StaffCommand`] without touching the
//! database: who sent a text, and what happens next, is decided by the caller.

pub mod command;
#[cfg(test)]
mod proptests;
mod words;
