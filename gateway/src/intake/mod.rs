//! Intake: what comes into the gateway (status changes, patient lists) parsed into
//! domain types and recorded, ready for fan-out.

/// Appointments: imported bookings, and one-patient changes that message the patient.
pub mod appointments;
/// Proposed status changes and their approval (console, API, or a code texted to staff).
pub mod approval;
/// Stopping a broadcast: its unsent messages cancelled, with who did it and why.
pub mod cancel;
/// A status group's progress as its viewer may see it: totals and each practice's part.
pub mod group_progress;
/// Stopping a status group as a whole: each member broadcast cancelled, none posted later.
pub mod group_stop;
/// One status change to many practices (a list, a tag, or all), each its own broadcast.
pub mod groups;
/// CSV import of patient lists: streamed, checked row by row, resumable, with a report.
pub mod import;
/// Invitations to get notifications in the browser: signed links sent by SMS or email.
pub mod invite;
pub mod patients;
/// Status changes planned ahead: once, weekly or on dates, each occurrence posted once.
pub mod scheduled;
/// Supplier status pages and feeds read into incidents, mapped to the systems practices use.
pub mod sources;
/// Commands texted by practice staff (`CLOSED until 2pm`, `YES 123456`), parsed without I/O.
pub mod staff;
pub mod status;
