//! Commands that practice staff text to the gateway from their own phones (`CLOSED until
//! 2pm`, `STATUS`, `YES 123456`), read into [`command::StaffCommand`] without touching the
//! database: who sent a text, and what happens next, is decided by the caller.

/// The grammar of a command, times in the practice's zone, and the answers to a text that
/// is not one.
pub mod command;
/// A staff member's text from the inbound webhook to its answer: lookup, limits, audit.
pub mod inbox;
/// Registering and removing staff numbers, shared by the API and the console.
pub mod numbers;
#[cfg(test)]
mod proptests;
/// English and Welsh words of the commands, in one table.
mod words;
