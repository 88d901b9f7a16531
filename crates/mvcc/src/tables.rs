//! The redb tables (layout in [`crate::codec`]) and the metadata names.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::{storage_error, Error};

/// History in revision order.
pub const REVS: TableDefinition<u128, &[u8]> = TableDefinition::new("revs");
/// (key, main revision) → sub revision: a store's key index before it moved to memory, dropped
/// when such a store opens.
pub const OLD_INDEX: TableDefinition<(&[u8], u64), u64> = TableDefinition::new("index");
/// Live key → its current state: likewise dropped.
pub const OLD_LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");
/// Lease id → (ttl, remaining ttl).
pub const LEASES: TableDefinition<i64, (i64, i64)> = TableDefinition::new("leases");
/// (lease id, key) of attached keys.
pub const LEASE_KEYS: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("lease_keys");
/// (alarm kind, member id) of raised alarms.
pub const ALARMS: TableDefinition<(u8, u64), ()> = TableDefinition::new("alarms");
/// First key of a bucket of live keys → live keys in it (see [`crate::counts`]).
pub const COUNTS: TableDefinition<&[u8], u64> = TableDefinition::new("counts");
/// Member id → encoded [`crate::MemberRecord`] (see [`crate::command_codec::encode_member`]).
pub const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("members");
/// Ids of removed members, which may never come back.
pub const MEMBERS_REMOVED: TableDefinition<u64, ()> = TableDefinition::new("members_removed");
/// The auth switch and revision (see [`crate::auth`]).
pub const AUTH: TableDefinition<&str, u64> = TableDefinition::new("auth");
/// User name → `authpb.User`.
pub const AUTH_USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("auth_users");
/// Role name → `authpb.Role`.
pub const AUTH_ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("auth_roles");
/// Entry stamp (hybrid logical clock, see `ballot_raft::hlc`) → the revision its entry made:
/// both increase together, so the newest revision at or before a time is one range lookup.
/// Rows below the compact revision are trimmed a batch at a time.
pub const STAMPS: TableDefinition<u64, i64> = TableDefinition::new("stamps");
/// Named counters.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Last applied log index.
pub const META_APPLIED: &str = "applied_index";
/// Current revision.
pub const META_REVISION: &str = "revision";
/// Compact revision.
pub const META_COMPACT: &str = "compact_revision";
/// Next main revision physical compaction examines.
pub const META_COMPACT_CURSOR: &str = "compaction_cursor";
/// The newest stamp of any applied entry, commands or not (a no-op or a membership change makes
/// no revision, so its stamp is in no row of `stamps`): where a node's clock resumes after a
/// restart or a snapshot. Carried by snapshot images as an item of its own.
pub const META_LAST_STAMP: &str = "last_entry_stamp";
/// Every metadata name, in the order snapshot images carry them.
pub const META_NAMES: [&str; 4] = [META_APPLIED, META_REVISION, META_COMPACT, META_COMPACT_CURSOR];

/// Every table, opened in one write transaction.
pub struct Open<'t> {
    /// `revs`.
    pub revs: Table<'t, u128, &'static [u8]>,
    /// `leases`.
    pub leases: Table<'t, i64, (i64, i64)>,
    /// `lease_keys`.
    pub lease_keys: Table<'t, (i64, &'static [u8]), ()>,
    /// `meta`.
    pub meta: Table<'t, &'static str, u64>,
    /// `alarms`.
    pub alarms: Table<'t, (u8, u64), ()>,
    /// `counts`.
    pub counts: Table<'t, &'static [u8], u64>,
    /// `members`.
    pub members: Table<'t, u64, &'static [u8]>,
    /// `members_removed`.
    pub members_removed: Table<'t, u64, ()>,
    /// `auth`, `auth_users` and `auth_roles`.
    pub auth: WriteAuth<'t>,
}

/// The auth tables in a write transaction.
pub type WriteAuth<'t> = crate::auth::AuthTables<
    Table<'t, &'static str, u64>,
    Table<'t, &'static str, &'static [u8]>,
    Table<'t, &'static str, &'static [u8]>,
>;

impl<'t> Open<'t> {
    /// Opens (creating if needed) every table in `txn`.
    pub fn write(txn: &'t WriteTransaction) -> Result<Open<'t>, Error> {
        Ok(Open {
            revs: txn.open_table(REVS).map_err(storage_error)?,
            leases: txn.open_table(LEASES).map_err(storage_error)?,
            lease_keys: txn.open_table(LEASE_KEYS).map_err(storage_error)?,
            meta: txn.open_table(META).map_err(storage_error)?,
            alarms: txn.open_table(ALARMS).map_err(storage_error)?,
            counts: txn.open_table(COUNTS).map_err(storage_error)?,
            members: txn.open_table(MEMBERS).map_err(storage_error)?,
            members_removed: txn.open_table(MEMBERS_REMOVED).map_err(storage_error)?,
            auth: crate::auth::AuthTables {
                auth: txn.open_table(AUTH).map_err(storage_error)?,
                users: txn.open_table(AUTH_USERS).map_err(storage_error)?,
                roles: txn.open_table(AUTH_ROLES).map_err(storage_error)?,
            },
        })
    }

    /// Empties every table.
    pub fn clear(&mut self) -> Result<(), Error> {
        self.revs.retain(|_, _| false).map_err(storage_error)?;
        self.leases.retain(|_, _| false).map_err(storage_error)?;
        self.lease_keys.retain(|_, _| false).map_err(storage_error)?;
        self.meta.retain(|_, _| false).map_err(storage_error)?;
        self.alarms.retain(|_, _| false).map_err(storage_error)?;
        self.counts.retain(|_, _| false).map_err(storage_error)?;
        self.members.retain(|_, _| false).map_err(storage_error)?;
        self.members_removed.retain(|_, _| false).map_err(storage_error)?;
        self.auth.auth.retain(|_, _| false).map_err(storage_error)?;
        self.auth.users.retain(|_, _| false).map_err(storage_error)?;
        self.auth.roles.retain(|_, _| false).map_err(storage_error)?;
        Ok(())
    }

    /// Writes the metadata.
    pub fn write_meta(&mut self, applied: u64, revision: u64, compact: u64, cursor: u64) -> Result<(), Error> {
        for (name, value) in META_NAMES.iter().zip([applied, revision, compact, cursor]) {
            self.meta.insert(*name, value).map_err(storage_error)?;
        }
        Ok(())
    }
}

/// The keys attached to lease `id`, in key order (from `lease_keys`, in any transaction).
pub fn attached_keys(
    lease_keys: &impl ReadableTable<(i64, &'static [u8]), ()>,
    id: i64,
) -> Result<Vec<Vec<u8>>, Error> {
    lease_keys
        .range::<(i64, &[u8])>((id, &[][..])..(id + 1, &[][..]))
        .map_err(storage_error)?
        .map(|item| item.map(|(key, _)| key.value().1.to_vec()).map_err(storage_error))
        .collect()
}

/// True if a NOSPACE alarm is raised for any member.
pub fn no_space(alarms: &impl ReadableTable<(u8, u64), ()>) -> Result<bool, Error> {
    Ok(alarms.range((NO_SPACE_CODE, 0)..=(NO_SPACE_CODE, u64::MAX)).map_err(storage_error)?.next().is_some())
}

/// True if a CORRUPT alarm is raised for any member.
pub fn corrupt(alarms: &impl ReadableTable<(u8, u64), ()>) -> Result<bool, Error> {
    Ok(alarms.range((CORRUPT_CODE, 0)..=(CORRUPT_CODE, u64::MAX)).map_err(storage_error)?.next().is_some())
}

/// The `alarms` table's code for NOSPACE.
pub const NO_SPACE_CODE: u8 = 1;
/// The `alarms` table's code for CORRUPT.
pub const CORRUPT_CODE: u8 = 2;
