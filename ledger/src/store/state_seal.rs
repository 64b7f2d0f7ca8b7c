//! The derived tables (`keys`, `state`) are checked before the node acts
//! on them (docs/FORMAT.md §8d). At a clean close the node seals them: an
//! HMAC, under a key only the node key's holder can derive, over every
//! key and value of both tables, stored with the ledger size. A writable
//! open recomputes it and refuses a ledger whose tables differ (a database
//! insider changed a balance, a phone commitment, a key); the seal is then
//! removed, so after an unclean stop, or with the seal deleted, the open
//! replays the whole chain and compares the tables instead.

use caseledger_keys::Identity;
use hmac::Mac as _;
use rocksdb::{IteratorMode, DB};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::schema::{CF_KEYS, CF_STATE};
use crate::{Error, Result};

/// The stored seal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSeal {
    /// The ledger size the tables were sealed at.
    pub size: u64,
    /// Hex HMAC-SHA-256 of the tables ([`mac`]).
    pub mac: String,
}

/// HMAC-SHA-256 under SHA-256("caseledger/state-seal/v1" || node key seed)
/// of, for each table (`keys`, then `state`): the table name, then each
/// pair in key order as u32 big-endian key length, key, u32 big-endian
/// value length, value.
pub fn mac(db: &DB, node: &Identity, size: u64) -> Result<String> {
    let mut key = Sha256::new();
    key.update(b"caseledger/state-seal/v1");
    key.update(node.seed());
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key.finalize()).expect("HMAC takes any key length");
    mac.update(&size.to_be_bytes());
    for name in [CF_KEYS, CF_STATE] {
        let cf = db
            .cf_handle(name)
            .ok_or_else(|| Error::Storage(format!("{name} column family missing")))?;
        mac.update(name.as_bytes());
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| Error::Storage(e.into_string()))?;
            for part in [&k[..], &v[..]] {
                let length = u32::try_from(part.len()).map_err(|_| Error::Storage("oversized pair".into()))?;
                mac.update(&length.to_be_bytes());
                mac.update(part);
            }
        }
    }
    Ok(hex::encode(mac.finalize().into_bytes()))
}
