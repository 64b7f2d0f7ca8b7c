//! The private tables beside the ledger (never hashed, never audited):
//! the notification outbox as the rules queued it, contacts, delivery
//! state and challenge data under `meta/private/`.

use hmac::Mac as _;

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
    /// under `private/`. Written synced, each value followed by its tag
    /// ([`private_tag`]); refused ([`Error::OutOfSpace`]) below the
    /// free-space reserve, as the writer's groups are.
    pub fn private_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let node = self.node.as_ref().ok_or(Error::ReadOnly)?;
        let full_key = format!("private/{key}");
        let mut stored = value.to_vec();
        stored.extend_from_slice(&private_tag(node, &full_key, value));
        self.private_write(|batch, cf| batch.put_cf(cf, &full_key, &stored))
    }

    /// Deletes private service data (synced).
    pub fn private_delete(&self, key: &str) -> Result<()> {
        self.private_write(|batch, cf| batch.delete_cf(cf, format!("private/{key}")))
    }

    fn private_write(&self, change: impl FnOnce(&mut rocksdb::WriteBatch, &ColumnFamily)) -> Result<()> {
        self.space_left()?;
        let mut batch = rocksdb::WriteBatch::default();
        change(&mut batch, self.shared.cf(CF_META));
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.shared.db.write_opt(batch, &sync).map_err(|e| {
            let text = e.into_string();
            if storage::is_out_of_space(&text) {
                Error::OutOfSpace(text)
            } else {
                Error::Storage(text)
            }
        })
    }

    /// A private value, its tag checked: a value the node did not write (a
    /// database insider marked a notification sent, changed a contact)
    /// is an integrity failure (`private_tag`) that stops every later
    /// write, as a damaged entry does.
    pub fn private_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let node = self.node.as_ref().ok_or(Error::ReadOnly)?;
        let full_key = format!("private/{key}");
        let Some(mut stored) = self
            .shared
            .db
            .get_cf(self.shared.cf(CF_META), &full_key)
            .map_err(storage)?
        else {
            return Ok(None);
        };
        let holds = stored.len() >= PRIVATE_TAG_BYTES && {
            let (value, tag) = stored.split_at(stored.len() - PRIVATE_TAG_BYTES);
            private_mac(node, &full_key, value).verify_slice(tag).is_ok()
        };
        if !holds {
            let detail = format!("the private value {full_key} is not one the node wrote");
            self.fail(&format!("integrity failure: private_tag: {detail}"));
            return Err(Error::Integrity {
                seq: 0,
                check: "private_tag".into(),
                detail,
            });
        }
        stored.truncate(stored.len() - PRIVATE_TAG_BYTES);
        Ok(Some(stored))
    }
}

/// Bytes of the tag after each private value.
const PRIVATE_TAG_BYTES: usize = 32;

/// HMAC-SHA-256 under SHA-256("caseledger/private/v1" || node key seed)
/// over u32 big-endian key length, key, value (docs/FORMAT.md §8e).
fn private_mac(node: &Identity, key: &str, value: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use sha2::Digest as _;
    let mut derived = sha2::Sha256::new();
    derived.update(b"caseledger/private/v1");
    derived.update(node.seed());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&derived.finalize()).expect("HMAC takes any key length");
    let length = u32::try_from(key.len()).unwrap_or(u32::MAX);
    mac.update(&length.to_be_bytes());
    mac.update(key.as_bytes());
    mac.update(value);
    mac
}

/// The tag stored after a private value.
fn private_tag(node: &Identity, key: &str, value: &[u8]) -> [u8; PRIVATE_TAG_BYTES] {
    private_mac(node, key, value).finalize().into_bytes().into()
}
