//! Listing, deactivating and erasing patients on PostgreSQL: the shared code of
//! `store::patient_admin`, writing through `begin`.

use super::PostgresStore;

crate::store::patient_admin::patient_admin_store!(PostgresStore, begin);
