//! The applicant's bundle: every entry of their money with its inclusion
//! proof, the keys that signed them, and a signed checkpoint.

use super::*;

/// What a verification code opens.
#[derive(Debug)]
pub enum CodeLookup {
    /// No code with this hash was issued.
    Unknown,
    /// Revoked by the entry at `seq`.
    Revoked { seq: u64 },
    /// Expired at `expires_ms`.
    Expired { expires_ms: u64 },
    /// The applicant's bundle.
    Bundle(Box<caseledger_verify::bundle::ApplicantBundle>),
}

impl Ledger {
    /// The applicant bundle for a verification code (canonical form): every
    /// entry of the applicant's disbursements (request, steps, payment),
    /// the case filing and account registrations, and the genesis and key
    /// entries of every signer, each with an inclusion proof against one
    /// signed checkpoint. `Ok(None)` for an unknown or revoked code (codes
    /// do not expire here: [`Ledger::applicant_lookup`] says why a code
    /// opens nothing, as of a time).
    pub fn applicant_bundle(&self, code: &str) -> Result<Option<caseledger_verify::bundle::ApplicantBundle>> {
        Ok(match self.applicant_lookup(code, 0)? {
            CodeLookup::Bundle(bundle) => Some(*bundle),
            _ => None,
        })
    }

    /// What the code (canonical form) opens at `now_ms` (0: ignore expiry).
    pub fn applicant_lookup(&self, code: &str, now_ms: u64) -> Result<CodeLookup> {
        use caseledger_verify::funds::model::{AccountState, ApplicantCodeState};
        let hash = caseledger_verify::funds::model::applicant_code_hash(code);
        let read = |key: &str| -> Result<Option<Vec<u8>>> { self.state_object(key) };
        fn parse<T: serde::de::DeserializeOwned>(bytes: Vec<u8>) -> Result<T> {
            serde_json::from_slice(&bytes).map_err(|e| Error::Storage(e.to_string()))
        }
        let Some(code_state) = read(&format!("code/{hash}"))?
            .map(parse::<ApplicantCodeState>)
            .transpose()?
        else {
            return Ok(CodeLookup::Unknown);
        };
        if let Some(seq) = code_state.revoked_seq {
            return Ok(CodeLookup::Revoked { seq });
        }
        if let Some(expires_ms) = code_state.expires_ms.filter(|e| now_ms > 0 && *e <= now_ms) {
            return Ok(CodeLookup::Expired { expires_ms });
        }
        let Some(view) = self.case_view(&code_state.case_number, 0)? else {
            return Ok(CodeLookup::Unknown);
        };
        let mut seqs = std::collections::BTreeSet::from([0, view.case.opened_seq]);
        let mut disbursement_ids = Vec::new();
        for disbursement in &view.disbursements {
            let Some(bytes) = read(&caseledger_verify::funds::account_key(&disbursement.account_id))? else {
                continue;
            };
            let account: AccountState = parse(bytes)?;
            if account.applicant_id != code_state.applicant_id {
                continue;
            }
            disbursement_ids.push(disbursement.disbursement_id.clone());
            seqs.insert(account.registered_seq);
            seqs.insert(disbursement.requested_seq);
            seqs.extend(disbursement.steps.iter().map(|s| s.seq));
            seqs.extend(
                [
                    disbursement.paid_seq,
                    disbursement.returned_seq,
                    disbursement.cancelled_seq,
                ]
                .into_iter()
                .flatten(),
            );
        }
        self.add_key_entries(&mut seqs)?;
        let last = seqs.iter().next_back().copied().unwrap_or(0);
        let (size, checkpoint) = match self.latest_checkpoint()? {
            Some((size, note)) if size > last => (size, note),
            _ => {
                let note = self.checkpoint_now()?;
                let size = Checkpoint::parse_body(&note)
                    .map_err(|e| Error::Storage(e.to_string()))?
                    .size;
                (size, note)
            }
        };
        let mut entries = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let proof = self.inclusion_proof(seq, size)?;
            entries.push(caseledger_verify::bundle::ProvenEntry {
                seq,
                entry: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, self.entry_bytes(seq)?),
                inclusion_proof: proof
                    .iter()
                    .map(|h| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h))
                    .collect(),
            });
        }
        Ok(CodeLookup::Bundle(Box::new(
            caseledger_verify::bundle::ApplicantBundle {
                format: caseledger_verify::bundle::APPLICANT_BUNDLE_FORMAT.to_owned(),
                case_number: code_state.case_number,
                applicant_id: code_state.applicant_id,
                disbursement_ids,
                tree_size: size,
                checkpoint,
                entries,
            },
        )))
    }

    /// Adds, until nothing changes, the registration (or rotation) entry,
    /// the co-signature and the revocation of every key that signed an
    /// entry in `seqs`, and of the old key of a rotation.
    fn add_key_entries(&self, seqs: &mut std::collections::BTreeSet<u64>) -> Result<()> {
        let registry = self.keys();
        let mut pending: Vec<u64> = seqs.iter().copied().collect();
        while let Some(seq) = pending.pop() {
            let entry = self.entry(seq)?;
            let mut signers = vec![entry.record.signer];
            if entry.record.kind == caseledger_verify::record::KIND_KEY_ROTATED {
                if let Ok(rotated) =
                    serde_json::from_slice::<caseledger_verify::record::KeyRotated>(&entry.record.payload)
                {
                    signers.extend(caseledger_keys::KeyId::from_hex(&rotated.key_id).ok());
                }
            }
            for signer in signers {
                if let Some(info) = registry.info(&signer) {
                    // The registration, the second person's co-signature
                    // and, if it came, the revocation (or rotation away).
                    let seqs_of_key = [Some(info.registered_seq), info.co_signed_seq, info.revoked_seq];
                    for seq in seqs_of_key.into_iter().flatten() {
                        if seqs.insert(seq) {
                            pending.push(seq);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
