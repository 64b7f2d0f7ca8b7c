//! Derived state: objects the rules keep (cases, receipts, disbursements...),
//! read through [`StateRead`] and changed through an [`Overlay`].
//!
//! The writer reads through an overlay over the RocksDB `state` column family
//! and writes the overlay's changes in the same batch as the entries that made
//! them; the auditor replays into memory. Both run the same rules, so the
//! stored state must equal the replayed state exactly.

use std::collections::BTreeMap;

use crate::Result;

/// Where derived state is read from.
pub trait StateRead {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
}

/// State held in memory (the auditor, tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryState(pub BTreeMap<String, Vec<u8>>);

impl StateRead for MemoryState {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(key).cloned())
    }
}

impl MemoryState {
    /// Applies an overlay's changes (`None` deletes).
    pub fn apply(&mut self, changes: BTreeMap<String, Option<Vec<u8>>>) {
        for (key, value) in changes {
            match value {
                Some(value) => self.0.insert(key, value),
                None => self.0.remove(&key),
            };
        }
    }
}

/// Pending changes in front of a base, with an undo journal so that a
/// refused record, or a refused request of several records, leaves no trace.
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    changes: BTreeMap<String, Option<Vec<u8>>>,
    journal: Vec<(String, Option<Option<Vec<u8>>>)>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> Self {
        Self {
            base,
            changes: BTreeMap::new(),
            journal: Vec::new(),
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.changes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
    }

    pub fn put(&mut self, key: String, value: Vec<u8>) {
        let previous = self.changes.insert(key.clone(), Some(value));
        self.journal.push((key, previous));
    }

    /// Removes a derived object (an index entry that no longer applies).
    pub fn delete(&mut self, key: String) {
        let previous = self.changes.insert(key.clone(), None);
        self.journal.push((key, previous));
    }

    /// How many keys under `prefix` this overlay has written.
    pub fn changes_under(&self, prefix: &str) -> usize {
        self.changes
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    /// A point to roll back to.
    pub fn mark(&self) -> usize {
        self.journal.len()
    }

    /// Undoes every change made since `mark`.
    pub fn rollback(&mut self, mark: usize) {
        while self.journal.len() > mark {
            let Some((key, previous)) = self.journal.pop() else {
                break;
            };
            match previous {
                Some(value) => self.changes.insert(key, value),
                None => self.changes.remove(&key),
            };
        }
    }

    /// The changes to write, in key order (`None` deletes).
    pub fn into_changes(self) -> BTreeMap<String, Option<Vec<u8>>> {
        self.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_earlier_values() {
        let mut base = MemoryState::default();
        base.0.insert("a".into(), b"1".to_vec());
        let mut overlay = Overlay::new(&base);
        overlay.put("a".into(), b"2".to_vec());
        let mark = overlay.mark();
        overlay.put("a".into(), b"3".to_vec());
        overlay.put("b".into(), b"4".to_vec());
        overlay.rollback(mark);
        assert_eq!(overlay.get("a").expect("get"), Some(b"2".to_vec()));
        assert_eq!(overlay.get("b").expect("get"), None);
        overlay.rollback(0);
        assert_eq!(overlay.get("a").expect("get"), Some(b"1".to_vec()));
        assert!(overlay.into_changes().is_empty());
    }
}
