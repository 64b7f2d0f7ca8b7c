//! The private tables beside the ledger (never hashed, never audited):
//! the notification outbox as the rules queued it, contacts, delivery
//! state and challenge data under `meta/private/`.

use super::*;

impl Ledger {
    /// Notifications queued by the rules, in order, from outbox key `from`
    /// (inclusive), at most `limit`.
    pub fn outbox_from(
        &self,
        from: &str,
        limit: usize,
    ) -> Result<Vec<(String, caseledger_verify::funds::notify::Notification)>> {
        let _gate = self.shared.state_read();
        let cf = self.shared.cf(CF_STATE);
        let start = if from.is_empty() { "outbox/" } else { from };
        let mode = IteratorMode::From(start.as_bytes(), rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.shared.db.iterator_cf(cf, mode) {
            let (key, value) = item.map_err(storage)?;
            if !key.starts_with(b"outbox/") || out.len() >= limit {
                break;
            }
            let notification = serde_json::from_slice(&value).map_err(|e| Error::Storage(e.to_string()))?;
            out.push((String::from_utf8_lossy(&key).into_owned(), notification));
        }
        Ok(out)
    }

    /// Private service data kept beside the ledger but never hashed or
    /// audited (phone numbers, delivery state): the `meta` column family
    /// under `private/`. Written synced.
    pub fn private_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.shared
            .db
            .put_cf_opt(self.shared.cf(CF_META), format!("private/{key}"), value, &sync)
            .map_err(storage)
    }

    /// Deletes private service data (synced).
    pub fn private_delete(&self, key: &str) -> Result<()> {
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.shared
            .db
            .delete_cf_opt(self.shared.cf(CF_META), format!("private/{key}"), &sync)
            .map_err(storage)
    }

    pub fn private_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.shared
            .db
            .get_cf(self.shared.cf(CF_META), format!("private/{key}"))
            .map_err(storage)
    }
}
