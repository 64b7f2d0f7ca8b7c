//! The policies in force, from the policy thread.

use super::{member_of, payload, require, Proven};
use crate::funds::model::*;
use crate::threads::Thread;

/// The policies in force, each from the seq of its approval.
pub(super) struct Policies(Vec<(u64, PolicySet)>);

impl Policies {
    pub(super) fn read(proven: &Proven) -> Result<Self, String> {
        let mut proposed: Option<(PolicySet, String, caseledger_keys::KeyId)> = None;
        let mut in_force: Vec<(u64, PolicySet)> = Vec::new();
        for entry in proven.thread(&Thread::Policy) {
            match entry.record.kind {
                KIND_POLICY_SET => {
                    let signer = proven.keys.get(&entry.record.signer);
                    require(
                        entry,
                        signer.is_some_and(|s| s.administrator),
                        "a policy is set by an administrator",
                    )?;
                    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&entry.record.payload));
                    proposed = Some((payload(entry)?, sha, entry.record.signer));
                }
                KIND_POLICY_APPROVED => {
                    let approved: PolicyApproved = payload(entry)?;
                    let (_, member) = member_of(&proven.keys, entry)?;
                    let (policy, sha, proposer) = proposed
                        .take()
                        .ok_or_else(|| format!("entry {}: no policy awaits approval", entry.seq))?;
                    let expected = in_force.last().map_or(1, |(_, p)| p.version + 1);
                    require(
                        entry,
                        member.role == Role::CourtLeader
                            && proposer != entry.record.signer
                            && approved.version == policy.version
                            && approved.proposal_sha256 == sha
                            && approved.version == expected,
                        "a policy is put in force by a court leader other than its proposer, for the proposal and version awaiting it",
                    )?;
                    in_force.push((entry.seq, policy));
                }
                _ => return Err(format!("entry {} does not belong in the policy thread", entry.seq)),
            }
        }
        Ok(Self(in_force))
    }

    /// The policy in force at `seq`.
    pub(super) fn at(&self, seq: u64) -> Option<&PolicySet> {
        self.0.iter().rev().find(|(from, _)| *from < seq).map(|(_, p)| p)
    }
}
