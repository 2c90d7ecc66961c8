//! Outgoing requests to addresses that came from outside the gateway (push endpoints now;
//! any URL a practice or patient supplies later): they may reach public addresses only,
//! unless an operator allows an internal network in config (`[push] allowed_networks`).
//!
//! Names are resolved by the gateway itself and checked when the request connects, so a
//! name that passed a check earlier cannot be pointed at an internal address later (DNS
//! rebinding). IP-literal hosts are checked explicitly, since no resolver sees them. A
//! refusal is reported only as [`ADDRESS_NOT_ALLOWED`].

mod address;
mod resolver;

pub use address::{is_internal, AddressPolicy, BadNetwork, Network};
pub use resolver::{
    check_literal, guarded_client, is_address_refusal, AddressNotAllowed, GuardedResolver,
    ADDRESS_NOT_ALLOWED,
};
