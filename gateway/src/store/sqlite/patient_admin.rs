//! Listing, deactivating and erasing patients on SQLite: the shared code of
//! `store::patient_admin`, writing through `begin_write`.

use super::SqliteStore;

crate::store::patient_admin::patient_admin_store!(SqliteStore, begin_write);
