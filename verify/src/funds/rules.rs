//! One function per case-fund record kind: check, then apply.

use sha2::{Digest, Sha256};

use super::model::*;
use super::*;
use crate::funds::notify;

type Rules = Result<Outcome, RuleError>;

/// `a + b`, refusing to overflow: a sum of money that does not fit in 64
/// bits is refused (`overflow`), never wrapped and never a panic.
fn plus(a: u64, b: u64, what: &str) -> Result<u64, RuleError> {
    a.checked_add(b)
        .ok_or_else(|| rule("overflow", format!("{what} would overflow ({a} + {b})")))
}

/// `a - b`, refusing to go below zero: a balance is never negative.
fn minus(a: u64, b: u64, what: &str) -> Result<u64, RuleError> {
    a.checked_sub(b)
        .ok_or_else(|| rule("balance", format!("{what} would go below zero ({a} - {b} fen)")))
}

pub(super) fn apply(objects: &mut Objects, context: &Context, record: &Record, signer: &KeyInfo) -> Rules {
    match record.kind {
        KIND_POLICY_SET => policy_set(
            objects,
            context,
            parse(record)?,
            signer,
            hex::encode(Sha256::digest(&record.payload)),
        ),
        KIND_POLICY_APPROVED => policy_approved(objects, parse(record)?, signer),
        KIND_CASE_OPENED => case_opened(objects, context, parse(record)?, signer, context.payload_sha256),
        KIND_ACCOUNT_REGISTERED => account_registered(objects, context, parse(record)?, signer, context.payload_sha256),
        KIND_NUMBERS_COMMITTED => numbers_committed(objects, context, parse(record)?),
        KIND_ACCOUNT_CONFIRMED => account_confirmed(objects, context, parse(record)?, signer),
        KIND_ACCOUNT_CHALLENGE => account_challenge(objects, context, parse(record)?),
        KIND_PHONE_CHALLENGE => phone_challenge(objects, context, parse(record)?),
        KIND_PHONE_CONFIRMED => phone_confirmed(objects, context, parse(record)?),
        KIND_ACCOUNT_CHANGE_APPROVED => account_change_approved(objects, parse(record)?, signer),
        KIND_RECEIPT_RECORDED => receipt_recorded(objects, context, parse(record)?, signer),
        KIND_RECEIPT_CLAIMED => receipt_claimed(objects, context, parse(record)?, signer),
        KIND_RECEIPT_CLAIM_DECIDED => receipt_claim_decided(objects, context, parse(record)?, signer),
        KIND_DISBURSEMENT_REQUESTED => disbursement_requested(objects, context, parse(record)?, signer),
        KIND_APPROVAL_SIGNED => approval_signed(
            objects,
            context,
            parse(record)?,
            signer,
            &hex::encode(Sha256::digest(&record.payload)),
        ),
        KIND_SMS_CHALLENGE => sms_challenge(objects, context, parse(record)?),
        KIND_SMS_SENT => sms_sent(objects, parse(record)?),
        KIND_SMS_CODE_REVEALED => sms_code_revealed(objects, context, parse(record)?),
        KIND_DISBURSEMENT_PAID => disbursement_paid(objects, context, parse(record)?, signer),
        KIND_PAYMENT_RETURNED => payment_returned(objects, context, parse(record)?, signer),
        KIND_DISBURSEMENT_CANCELLED => disbursement_cancelled(objects, context, parse(record)?, signer),
        KIND_DELAY_APPROVED => delay_approved(objects, context, parse(record)?, signer),
        KIND_DELAY_ENDED => delay_ended(objects, context, parse(record)?, signer),
        KIND_APPLICANT_CODE_ISSUED => code_issued(objects, context, parse(record)?),
        KIND_APPLICANT_CODE_REVOKED => code_revoked(objects, context, parse(record)?, signer),
        other => Err(rule("payload", format!("unknown record kind {other:#06x}"))),
    }
}

fn totals(objects: &Objects) -> Result<Totals, RuleError> {
    Ok(objects.get(TOTALS_KEY)?.unwrap_or_default())
}

fn policy_set(
    objects: &mut Objects,
    context: &Context,
    policy: PolicySet,
    signer: &KeyInfo,
    proposal_sha256: String,
) -> Rules {
    if !signer.administrator {
        return Err(rule("role", "a policy is set by an administrator"));
    }
    let current: Option<PolicySet> = objects.get(POLICY_KEY)?;
    let expected = current.as_ref().map_or(1, |p| p.version + 1);
    if policy.version != expected {
        return Err(rule("policy", format!("policy version must be {expected}")));
    }
    let tiers_ok = policy.tiers.first().is_some_and(|t| t.from_fen == 0)
        && policy.tiers.windows(2).all(|w| w[0].from_fen < w[1].from_fen)
        && policy.tiers.iter().all(|t| {
            t.chain.last() == Some(&Role::Finance)
                && t.chain.contains(&Role::BureauHead)
                && !t.chain.iter().any(|r| {
                    matches!(
                        r,
                        Role::FilingClerk | Role::Officer | Role::Auditor | Role::Administrator
                    )
                })
        });
    if !tiers_ok {
        return Err(rule(
            "policy",
            "tiers must start at 0 fen and rise strictly; every chain names the bureau head, ends with finance and names only approver roles",
        ));
    }
    // Floors no signature lowers.
    if current.as_ref().is_some_and(|c| c.sms_confirmation_required) && !policy.sms_confirmation_required {
        return Err(rule("policy", "SMS confirmation, once required, stays required"));
    }
    if policy.amount_max_fen > AMOUNT_FEN_MAX_CEILING || policy.deadline_days > DEADLINE_DAYS_MAX {
        return Err(rule(
            "policy",
            format!("amount_max_fen is at most {AMOUNT_FEN_MAX_CEILING} and deadline_days at most {DEADLINE_DAYS_MAX}"),
        ));
    }
    if !(1..=366).contains(&policy.split_window_days) {
        return Err(rule("policy", "split_window_days must be 1 to 366"));
    }
    if !(1..=30).contains(&policy.booking_days)
        || !(1..=366).contains(&policy.delay_days_max)
        || !(1..=30).contains(&policy.unidentified_claim_days)
    {
        return Err(rule(
            "policy",
            "booking_days and unidentified_claim_days must be 1 to 30, delay_days_max 1 to 366",
        ));
    }
    if policy.deadline_days == 0 || policy.near_due_days >= policy.deadline_days || policy.amount_max_fen == 0 {
        return Err(rule(
            "policy",
            "deadline_days must be positive and larger than near_due_days; amount_max_fen positive",
        ));
    }
    // Proposed: in force once a court leader co-signs it. A newer proposal
    // of the same version replaces this one.
    let proposal = PolicyProposal {
        policy,
        proposed_by: signer.public_key.0.clone(),
        proposed_seq: context.seq,
        proposal_sha256,
    };
    objects.put(POLICY_PROPOSED_KEY.to_owned(), &proposal);
    Ok(Outcome::New)
}

const POLICY_PROPOSED_KEY: &str = "policy_proposed";

/// A court leader (not the proposer's key) puts the proposed policy in
/// force: one person alone never loosens the money rules.
fn policy_approved(objects: &mut Objects, approved: PolicyApproved, signer: &KeyInfo) -> Rules {
    require_role(signer, &[Role::CourtLeader], "approving a policy")?;
    let proposal: PolicyProposal = objects.need(POLICY_PROPOSED_KEY, "policy", "a proposed policy")?;
    if proposal.policy.version != approved.version || proposal.proposal_sha256 != approved.proposal_sha256 {
        return Err(rule(
            "policy",
            format!(
                "the proposal awaiting a co-signature is version {} with payload SHA-256 {}",
                proposal.policy.version, proposal.proposal_sha256
            ),
        ));
    }
    if proposal.proposed_by == signer.public_key.0 {
        return Err(rule("self_approval", "the proposer cannot co-sign their own policy"));
    }
    let current: Option<PolicySet> = objects.get(POLICY_KEY)?;
    let expected = current.as_ref().map_or(1, |p| p.version + 1);
    if approved.version != expected {
        return Err(rule("policy", format!("policy version must be {expected}")));
    }
    objects.delete(POLICY_PROPOSED_KEY.to_owned());
    objects.put(format!("policy/{:010}", proposal.policy.version), &proposal.policy);
    objects.put(POLICY_KEY.to_owned(), &proposal.policy);
    Ok(Outcome::New)
}

/// The node commits to the numbers of the request whose record comes next.
fn numbers_committed(objects: &mut Objects, context: &Context, numbers: NumbersCommitted) -> Rules {
    check_commitment("record_sha256", &numbers.record_sha256)?;
    if numbers.commitments.is_empty() || numbers.commitments.len() > PARTIES_MAX {
        return Err(rule(
            "payload",
            format!("1 to {PARTIES_MAX} commitments in one numbers_committed"),
        ));
    }
    for commitment in &numbers.commitments {
        check_commitment("commitment", commitment)?;
    }
    let pending = CommittedNumbers {
        seq: context.seq,
        record_sha256: numbers.record_sha256,
        commitments: numbers.commitments,
    };
    objects.put(COMMITTED_NUMBERS_KEY.to_owned(), &pending);
    Ok(Outcome::New)
}

fn case_opened(
    objects: &mut Objects,
    context: &Context,
    mut case: CaseOpened,
    signer: &KeyInfo,
    record_sha256: &str,
) -> Rules {
    // The filing division (立案庭) files the parties, never the officer the
    // case names: an officer cannot invent an applicant with their phone.
    require_role(signer, &[Role::FilingClerk], "opening a case")?;
    check_case_number(&case.case_number)?;
    check_ascii_id("officer_member_id", &case.officer_member_id, false)?;
    if objects.get::<CaseState>(&case_key(&case.case_number))?.is_some() {
        return Err(rule(
            "duplicate_case",
            format!("case {} is already open", case.case_number),
        ));
    }
    if case.applicants.is_empty() || case.respondents.is_empty() {
        return Err(rule(
            "payload",
            "a case needs at least one applicant and one respondent",
        ));
    }
    if case.applicants.len() > PARTIES_MAX || case.respondents.len() > PARTIES_MAX {
        return Err(rule(
            "payload",
            format!("at most {PARTIES_MAX} applicants and {PARTIES_MAX} respondents"),
        ));
    }
    for applicant in &case.applicants {
        check_ascii_id("applicant_id", &applicant.applicant_id, false)?;
        check_text("applicant name", &applicant.name)?;
        check_masked("phone_masked", &applicant.phone_masked)?;
        if !applicant.phone_commitment.is_empty() {
            return Err(rule(
                "commitment",
                "a phone commitment is made by the node from the number in the request, never given",
            ));
        }
    }
    for respondent in &case.respondents {
        check_text("respondent", respondent)?;
    }
    let mut ids: Vec<&str> = case.applicants.iter().map(|a| a.applicant_id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(rule("payload", "applicant ids must be distinct"));
    }
    let commitments = take_committed_numbers(objects, context.seq, record_sha256, case.applicants.len())?;
    let mut phones: Vec<&String> = commitments.iter().collect();
    phones.sort_unstable();
    if phones.windows(2).any(|w| w[0] == w[1]) {
        return Err(rule(
            "payee",
            "two applicants of a case with one phone: one person would be paid as two",
        ));
    }
    for (applicant, commitment) in case.applicants.iter_mut().zip(commitments) {
        applicant.phone_commitment = commitment;
        objects.put(
            applicant_phone_key(&applicant.phone_commitment),
            &format!("{}/{}", case.case_number, applicant.applicant_id),
        );
    }
    let state = CaseState {
        case_number: case.case_number.clone(),
        applicants: case.applicants,
        respondents: case.respondents,
        officer_member_id: case.officer_member_id,
        opened_seq: context.seq,
        ..CaseState::default()
    };
    objects.put(case_key(&case.case_number), &state);
    let mut totals = totals(objects)?;
    totals.cases = plus(totals.cases, 1, "the number of cases")?;
    objects.put(TOTALS_KEY.to_owned(), &totals);
    Ok(Outcome::New)
}

fn require_case_officer(case: &CaseState, signer: &KeyInfo, what: &str) -> Result<(), RuleError> {
    let member = member_of(signer)?;
    if member.role == Role::Officer && member.member_id == case.officer_member_id {
        return Ok(());
    }
    Err(rule(
        "role",
        format!("{what} is done by the case's officer {}", case.officer_member_id),
    ))
}

fn account_registered(
    objects: &mut Objects,
    context: &Context,
    mut account: AccountRegistered,
    signer: &KeyInfo,
    record_sha256: &str,
) -> Rules {
    check_ascii_id("account_id", &account.account_id, false)?;
    check_text("bank", &account.bank)?;
    check_masked("account_number_masked", &account.account_number_masked)?;
    if !account.account_number_commitment.is_empty() {
        return Err(rule(
            "commitment",
            "an account number's commitment is made by the node from the number in the request, never given",
        ));
    }
    let case: CaseState = objects.need(&case_key(&account.case_number), "unknown_case", "the case")?;
    require_case_officer(&case, signer, "registering an applicant account")?;
    let applicant = case
        .applicants
        .iter()
        .find(|a| a.applicant_id == account.applicant_id)
        .ok_or_else(|| {
            rule(
                "payee",
                format!("{} is not an applicant of {}", account.applicant_id, case.case_number),
            )
        })?;
    if account.account_name != applicant.name {
        return Err(rule("payee", "the account name must be the applicant's name"));
    }
    if sms_required(objects)? && !case.phones_confirmed.contains(&account.applicant_id) {
        return Err(rule(
            "phone_confirmation",
            format!(
                "{}'s phone is not confirmed yet: the applicant enters the code sent to it first",
                account.applicant_id
            ),
        ));
    }
    let [commitment] = <[String; 1]>::try_from(take_committed_numbers(objects, context.seq, record_sha256, 1)?)
        .map_err(|_| rule("commitment", "one commitment for an account number"))?;
    account.account_number_commitment = commitment;
    if objects
        .get::<AccountState>(&account_key(&account.account_id))?
        .is_some()
    {
        return Err(rule(
            "duplicate_account",
            format!("account {} exists", account.account_id),
        ));
    }
    // Any account of this applicant that is not superseded (active, or
    // still pending) makes this registration a change, which the bureau
    // head approves: an applicant has one payee account at a time.
    let accounts_key = applicant_accounts_key(&account.case_number, &account.applicant_id);
    let mut ids: Vec<String> = objects.get(&accounts_key)?.unwrap_or_default();
    let mut standing = Vec::new();
    for id in &ids {
        let other: AccountState = objects.need(&account_key(id), "unknown_account", "an account of the applicant")?;
        if other.status != AccountStatus::Superseded {
            standing.push(other);
        }
    }
    let replaces = standing
        .iter()
        .find(|a| a.status == AccountStatus::Active)
        .or(standing.last())
        .map(|a| a.account_id.clone());
    // One account number belongs to one applicant of a case: the same
    // number under two applicants would let one creditor be paid as two,
    // each below the tier of the whole.
    let number_key = format!(
        "case_account_number/{}/{}",
        account.case_number, account.account_number_commitment
    );
    match objects.get::<String>(&number_key)? {
        Some(owner) if owner != account.applicant_id => {
            return Err(rule(
                "payee",
                format!("this account number is registered for {owner}, another applicant of the case"),
            ))
        }
        Some(_) => {}
        None => objects.put(number_key, &account.applicant_id),
    }
    ids.push(account.account_id.clone());
    objects.put(accounts_key, &ids);
    let state = AccountState::registered(account, replaces, context.seq);
    let event = if state.replaces.is_some() {
        notify::Event::AccountChanged
    } else {
        notify::Event::AccountRegistered
    };
    let masked = Some(state.account_number_masked.clone());
    notify::queue(
        objects,
        context.seq,
        &notify::Notice {
            event,
            case_number: &state.case_number,
            amount_fen: None,
            account_masked: masked,
            step: None,
        },
        std::slice::from_ref(&state.applicant_id),
    )?;
    objects.put(account_key(&state.account_id), &state);
    Ok(Outcome::New)
}

fn applicant_accounts_key(case_number: &str, applicant_id: &str) -> String {
    format!("applicant_accounts/{case_number}/{applicant_id}")
}

/// Activates an account once confirmed (and, for a change, approved); it
/// supersedes the applicant's active account and every account registered
/// before it, pending or not: one account at most is payable, and none it
/// replaced can come back. A later registration (a change of this one)
/// stays pending.
fn maybe_activate(objects: &mut Objects, mut account: AccountState) -> Result<(), RuleError> {
    if account.confirmed && account.change_approved && account.status == AccountStatus::Pending {
        let ids: Vec<String> = objects
            .get(&applicant_accounts_key(&account.case_number, &account.applicant_id))?
            .unwrap_or_default();
        for id in ids.iter().filter(|id| **id != account.account_id) {
            let mut other: AccountState =
                objects.need(&account_key(id), "unknown_account", "an account of the applicant")?;
            let replaced = other.status == AccountStatus::Active
                || (other.status == AccountStatus::Pending && other.registered_seq < account.registered_seq);
            if replaced {
                other.status = AccountStatus::Superseded;
                objects.put(account_key(id), &other);
            }
        }
        account.status = AccountStatus::Active;
        let active_key = format!("applicant_account/{}/{}", account.case_number, account.applicant_id);
        objects.put(active_key, &account.account_id);
    }
    objects.put(account_key(&account.account_id), &account);
    Ok(())
}

fn sms_required(objects: &Objects) -> Result<bool, RuleError> {
    Ok(objects
        .get::<PolicySet>(POLICY_KEY)?
        .is_some_and(|p| p.sms_confirmation_required))
}

fn account_challenge_key(account_id: &str) -> String {
    format!("account_challenge/{account_id}")
}

/// The node commits to the code it is about to send the applicant.
fn account_challenge(objects: &mut Objects, context: &Context, challenge: AccountChallenge) -> Rules {
    let account: AccountState = objects.need(&account_key(&challenge.account_id), "unknown_account", "the account")?;
    if account.confirmed || account.status != AccountStatus::Pending {
        return Err(rule("account", "the account is not waiting for confirmation"));
    }
    record_challenge(
        objects,
        context,
        account_challenge_key(&challenge.account_id),
        challenge.commitment,
        challenge.expires_ms,
    )
}

/// The applicant's confirmation: recorded by the node with the code the
/// applicant entered (it must open the node's latest commitment for this
/// account, before it expired), or, where the policy does not require SMS,
/// by the case's officer with the reference of a confirmation in person.
fn account_confirmed(objects: &mut Objects, context: &Context, confirmed: AccountConfirmed, signer: &KeyInfo) -> Rules {
    let mut account: AccountState =
        objects.need(&account_key(&confirmed.account_id), "unknown_account", "the account")?;
    let case: CaseState = objects.need(&case_key(&account.case_number), "unknown_case", "the case")?;
    if account.confirmed || account.status != AccountStatus::Pending {
        return Err(rule("account", "the account is not waiting for confirmation"));
    }
    if context.by_node {
        let Some(reveal) = &confirmed.sms else {
            return Err(rule(
                "sms_confirmation",
                "the node records an account confirmation only with the applicant's code",
            ));
        };
        check_sms_code(&reveal.code)?;
        check_salt(&reveal.salt)?;
        let opened = account_code_commitment(&reveal.salt, &reveal.code, &account_binding(context.origin, &account));
        spend_challenge(
            objects,
            context,
            account_challenge_key(&confirmed.account_id),
            "this account",
            &opened,
        )?;
    } else {
        require_case_officer(&case, signer, "recording the applicant's confirmation")?;
        if sms_required(objects)? {
            return Err(rule(
                "sms_confirmation",
                "the policy requires the applicant to confirm the account with the code sent to their phone",
            ));
        }
        if confirmed.sms.is_some() {
            return Err(rule("payload", "an officer's confirmation carries no SMS code"));
        }
        check_text("confirmation", confirmed.confirmation.as_deref().unwrap_or_default())?;
    }
    account.confirmed = true;
    maybe_activate(objects, account)?;
    Ok(Outcome::New)
}

fn phone_challenge_key(case_number: &str, applicant_id: &str) -> String {
    format!("phone_challenge/{case_number}/{applicant_id}")
}

/// The applicant of `case_number` named `applicant_id`, whose phone is not
/// confirmed yet.
fn unconfirmed_applicant(
    objects: &Objects,
    case_number: &str,
    applicant_id: &str,
) -> Result<(CaseState, Applicant), RuleError> {
    let case: CaseState = objects.need(&case_key(case_number), "unknown_case", "the case")?;
    let applicant = case
        .applicants
        .iter()
        .find(|a| a.applicant_id == applicant_id)
        .cloned()
        .ok_or_else(|| rule("payee", format!("{applicant_id} is not an applicant of {case_number}")))?;
    if case.phones_confirmed.iter().any(|a| a == applicant_id) {
        return Err(rule(
            "phone_confirmation",
            "this applicant's phone is confirmed already",
        ));
    }
    Ok((case, applicant))
}

/// The node commits to the code it is about to send an applicant's phone.
fn phone_challenge(objects: &mut Objects, context: &Context, challenge: PhoneChallenge) -> Rules {
    unconfirmed_applicant(objects, &challenge.case_number, &challenge.applicant_id)?;
    record_challenge(
        objects,
        context,
        phone_challenge_key(&challenge.case_number, &challenge.applicant_id),
        challenge.commitment,
        challenge.expires_ms,
    )
}

/// The node records the code the applicant entered: it must open the
/// latest commitment for this applicant's phone, before it expired.
fn phone_confirmed(objects: &mut Objects, context: &Context, confirmed: PhoneConfirmed) -> Rules {
    check_sms_code(&confirmed.sms.code)?;
    check_salt(&confirmed.sms.salt)?;
    let (mut case, applicant) = unconfirmed_applicant(objects, &confirmed.case_number, &confirmed.applicant_id)?;
    let opened = phone_code_commitment(
        &confirmed.sms.salt,
        &confirmed.sms.code,
        &phone_binding(context.origin, &case.case_number, &applicant),
    );
    spend_challenge(
        objects,
        context,
        phone_challenge_key(&confirmed.case_number, &confirmed.applicant_id),
        "this applicant's phone",
        &opened,
    )?;
    case.phones_confirmed.push(applicant.applicant_id);
    objects.put(case_key(&confirmed.case_number), &case);
    Ok(Outcome::New)
}

fn account_change_approved(objects: &mut Objects, approved: AccountChangeApproved, signer: &KeyInfo) -> Rules {
    require_role(signer, &[Role::BureauHead], "approving an account change")?;
    let mut account: AccountState =
        objects.need(&account_key(&approved.account_id), "unknown_account", "the account")?;
    if account.replaces.is_none() || account.change_approved || account.status != AccountStatus::Pending {
        return Err(rule("account", "the account is not a change waiting for approval"));
    }
    account.change_approved = true;
    maybe_activate(objects, account)?;
    Ok(Outcome::New)
}

fn receipt_recorded(objects: &mut Objects, context: &Context, receipt: ReceiptRecorded, signer: &KeyInfo) -> Rules {
    require_role(signer, &[Role::Finance, Role::FundManager], "recording a receipt")?;
    check_ascii_id("bank_reference", &receipt.bank_reference, true)?;
    // What the bank reported, without the client's request id: the same
    // reference with the same facts is a retry, with other facts a conflict.
    let hash = {
        let mut facts = receipt.clone();
        facts.request_id.clear();
        hex::encode(Sha256::digest(serde_json::to_vec(&facts).expect("serialisable")))
    };
    if let Some(earlier) = objects.get::<ReceiptState>(&receipt_key(&receipt.bank_reference))? {
        return if earlier.payload_hash == hash {
            Ok(Outcome::Duplicate(earlier.recorded_seq))
        } else {
            Err(rule(
                "duplicate_reference",
                format!(
                    "bank reference {} was recorded at seq {}",
                    receipt.bank_reference, earlier.recorded_seq
                ),
            ))
        };
    }
    if objects
        .get::<String>(&format!("credit/{}", receipt.bank_reference))?
        .is_some()
    {
        return Err(rule(
            "duplicate_reference",
            format!(
                "bank reference {} brought a returned payment back",
                receipt.bank_reference
            ),
        ));
    }
    check_amount(objects, receipt.amount_fen)?;
    check_text("payer", &receipt.payer)?;
    let arrival_ms = start_of_day_cst(parse_date(&receipt.value_date)?)?;
    if arrival_ms > context.timestamp_ms {
        return Err(rule(
            "value_date",
            format!(
                "value date {} is in the future: money is booked after it arrives",
                receipt.value_date
            ),
        ));
    }
    let policy: Option<PolicySet> = objects.get(POLICY_KEY)?;
    let booking_days = policy.as_ref().map_or(BOOKING_DAYS_DEFAULT, |p| p.booking_days);
    let booked_late = context.timestamp_ms >= arrival_ms.saturating_add(u64::from(booking_days + 1) * DAY_MS);
    let (deadline_days, claim_days) = policy.map_or((30, 3), |p| (p.deadline_days, p.unidentified_claim_days));
    let mut totals = totals(objects)?;
    totals.receipts_fen = plus(totals.receipts_fen, receipt.amount_fen, "totals receipts")?;
    let due_days = match &receipt.case_number {
        Some(number) => {
            let mut case: CaseState = objects.need(&case_key(number), "unknown_case", "the case")?;
            case.available_fen = plus(case.available_fen, receipt.amount_fen, "case available")?;
            case.received_fen = plus(case.received_fen, receipt.amount_fen, "case received")?;
            case.receipts.push(receipt.bank_reference.clone());
            objects.put(case_key(number), &case);
            let amount = Some(receipt.amount_fen);
            notify::queue(
                objects,
                context.seq,
                &notify::Notice {
                    event: notify::Event::ReceiptArrived,
                    case_number: number,
                    amount_fen: amount,
                    account_masked: None,
                    step: None,
                },
                &notify::applicants(&case),
            )?;
            deadline_days
        }
        None => {
            totals.unidentified_fen = plus(totals.unidentified_fen, receipt.amount_fen, "totals unidentified")?;
            objects.mark(format!("unidentified/{}", receipt.bank_reference));
            claim_days
        }
    };
    objects.put(TOTALS_KEY.to_owned(), &totals);
    let state = ReceiptState {
        bank_reference: receipt.bank_reference.clone(),
        amount_fen: receipt.amount_fen,
        payer: receipt.payer,
        value_date: receipt.value_date,
        channel: receipt.channel,
        assigned_ms: receipt.case_number.is_some().then_some(context.timestamp_ms),
        case_number: receipt.case_number,
        recorded_seq: context.seq,
        recorded_ms: context.timestamp_ms,
        arrival_ms,
        // The clock starts when the money arrives, not when it is booked.
        due_ms: arrival_ms.saturating_add(u64::from(due_days) * DAY_MS),
        delayed: false,
        booked_late,
        payload_hash: hash,
    };
    objects.put(receipt_key(&state.bank_reference), &state);
    Ok(Outcome::New)
}

fn claim_key(bank_reference: &str) -> String {
    format!("claim/{bank_reference}")
}

/// A claim of an unidentified receipt for a case, by the fund manager or
/// the case's officer: it waits for a second person's decision, and the
/// money stays unidentified until then.
fn receipt_claimed(objects: &mut Objects, context: &Context, claim: ReceiptClaimed, signer: &KeyInfo) -> Rules {
    let receipt: ReceiptState = objects.need(&receipt_key(&claim.bank_reference), "unknown_receipt", "the receipt")?;
    let case: CaseState = objects.need(&case_key(&claim.case_number), "unknown_case", "the case")?;
    let member = member_of(signer)?;
    let allowed = member.role == Role::FundManager
        || (member.role == Role::Officer && member.member_id == case.officer_member_id);
    if !allowed {
        return Err(rule(
            "role",
            "an unidentified receipt is claimed by the fund manager or the case's officer",
        ));
    }
    if receipt.case_number.is_some() {
        return Err(rule("receipt", "the receipt already belongs to a case"));
    }
    if let Some(pending) = objects.get::<ClaimState>(&claim_key(&claim.bank_reference))? {
        return Err(rule(
            "receipt",
            format!(
                "the receipt is claimed for {} (seq {}), waiting for a decision",
                pending.case_number, pending.claimed_seq
            ),
        ));
    }
    let state = ClaimState {
        bank_reference: claim.bank_reference.clone(),
        case_number: claim.case_number,
        claimed_by: member.member_id.clone(),
        claimant_role: member.role,
        claimed_seq: context.seq,
    };
    objects.put(claim_key(&claim.bank_reference), &state);
    Ok(Outcome::New)
}

/// The second person's decision on a claim: the fund manager decides an
/// officer's claim, the bureau head the fund manager's; never the claimant
/// and never the case's officer. An approval moves the money into the case.
fn receipt_claim_decided(
    objects: &mut Objects,
    context: &Context,
    decided: ReceiptClaimDecided,
    signer: &KeyInfo,
) -> Rules {
    let claim: ClaimState = objects.need(
        &claim_key(&decided.bank_reference),
        "unknown_claim",
        "a claim of the receipt",
    )?;
    if claim.case_number != decided.case_number {
        return Err(rule(
            "receipt",
            format!(
                "the receipt is claimed for {}, not {}",
                claim.case_number, decided.case_number
            ),
        ));
    }
    let mut case: CaseState = objects.need(&case_key(&claim.case_number), "unknown_case", "the case")?;
    let member = member_of(signer)?;
    let decider = if claim.claimant_role == Role::FundManager {
        Role::BureauHead
    } else {
        Role::FundManager
    };
    if member.member_id == claim.claimed_by || member.member_id == case.officer_member_id {
        return Err(rule(
            "second_person",
            "a claim is decided by a second person, neither the claimant nor the case's officer",
        ));
    }
    if member.role != decider {
        return Err(rule(
            "role",
            format!("this claim is decided by the {}", decider.as_str()),
        ));
    }
    objects.delete(claim_key(&decided.bank_reference));
    if decided.decision == Decision::Reject {
        return Ok(Outcome::New);
    }
    let mut receipt: ReceiptState =
        objects.need(&receipt_key(&claim.bank_reference), "unknown_receipt", "the receipt")?;
    if receipt.case_number.is_some() {
        return Err(rule("receipt", "the receipt already belongs to a case"));
    }
    let policy: Option<PolicySet> = objects.get(POLICY_KEY)?;
    receipt.case_number = Some(claim.case_number.clone());
    receipt.assigned_ms = Some(context.timestamp_ms);
    // Counted from the money's arrival: the days it sat unidentified count.
    receipt.due_ms = receipt
        .arrival_ms
        .saturating_add(u64::from(policy.map_or(30, |p| p.deadline_days)) * DAY_MS);
    case.available_fen = plus(case.available_fen, receipt.amount_fen, "case available")?;
    case.received_fen = plus(case.received_fen, receipt.amount_fen, "case received")?;
    case.receipts.push(receipt.bank_reference.clone());
    let mut totals = totals(objects)?;
    totals.unidentified_fen = minus(totals.unidentified_fen, receipt.amount_fen, "unidentified receipts")?;
    objects.put(TOTALS_KEY.to_owned(), &totals);
    objects.delete(format!("unidentified/{}", receipt.bank_reference));
    objects.put(case_key(&claim.case_number), &case);
    let amount = Some(receipt.amount_fen);
    notify::queue(
        objects,
        context.seq,
        &notify::Notice {
            event: notify::Event::ReceiptArrived,
            case_number: &claim.case_number,
            amount_fen: amount,
            account_masked: None,
            step: None,
        },
        &notify::applicants(&case),
    )?;
    objects.put(receipt_key(&claim.bank_reference), &receipt);
    Ok(Outcome::New)
}

fn active_payee(objects: &Objects, case: &CaseState, account_id: &str) -> Result<AccountState, RuleError> {
    let account: AccountState = objects.need(&account_key(account_id), "unknown_account", "the payee account")?;
    let applicant = case.applicants.iter().find(|a| a.applicant_id == account.applicant_id);
    match applicant {
        Some(applicant) if account.case_number == case.case_number && account.account_name == applicant.name => {}
        _ => {
            return Err(rule(
                "payee",
                format!(
                    "account {account_id} is not an account of an applicant of {}",
                    case.case_number
                ),
            ))
        }
    }
    if account.status != AccountStatus::Active {
        return Err(rule(
            "account",
            format!("account {account_id} is not active (confirmed by the applicant and, for a change, approved)"),
        ));
    }
    Ok(account)
}

fn disbursement_requested(
    objects: &mut Objects,
    context: &Context,
    request: DisbursementRequested,
    signer: &KeyInfo,
) -> Rules {
    check_ascii_id("disbursement_id", &request.disbursement_id, false)?;
    check_text("reason", &request.reason)?;
    let mut case: CaseState = objects.need(&case_key(&request.case_number), "unknown_case", "the case")?;
    require_case_officer(&case, signer, "requesting a disbursement")?;
    if objects
        .get::<DisbursementState>(&disbursement_key(&request.disbursement_id))?
        .is_some()
    {
        return Err(rule(
            "duplicate_disbursement",
            format!("disbursement {} exists", request.disbursement_id),
        ));
    }
    check_amount(objects, request.amount_fen)?;
    let payee = active_payee(objects, &case, &request.account_id)?;
    let policy: PolicySet = objects.need(POLICY_KEY, "policy", "a policy in force")?;
    if request.policy_version != policy.version {
        return Err(rule(
            "policy",
            format!(
                "the request names policy version {}, but version {} is in force",
                request.policy_version, policy.version
            ),
        ));
    }
    if request.amount_fen > case.available_fen {
        return Err(rule(
            "balance",
            format!(
                "amount {} fen exceeds the case's available {} fen",
                request.amount_fen, case.available_fen
            ),
        ));
    }
    let tier_basis_fen = plus(
        request.amount_fen,
        recent_to_applicant(objects, context, &case, &payee.applicant_id, policy.split_window_days)?,
        "the amount with the recent disbursements to the applicant",
    )?;
    let chain = policy
        .tiers
        .iter()
        .rev()
        .find(|t| tier_basis_fen >= t.from_fen)
        .map(|t| t.chain.clone())
        .ok_or_else(|| rule("policy", "no tier covers the amount"))?;
    case.available_fen = minus(case.available_fen, request.amount_fen, "the case's available money")?;
    case.reserved_fen = plus(case.reserved_fen, request.amount_fen, "case reserved")?;
    case.disbursements.push(request.disbursement_id.clone());
    objects.put(case_key(&request.case_number), &case);
    let state = DisbursementState {
        disbursement_id: request.disbursement_id.clone(),
        case_number: request.case_number,
        account_id: request.account_id,
        amount_fen: request.amount_fen,
        reason: request.reason,
        requester_member_id: member_of(signer)?.member_id.clone(),
        policy_version: policy.version,
        chain,
        steps: Vec::new(),
        status: DisbursementStatus::Pending,
        requested_seq: context.seq,
        requested_ms: context.timestamp_ms,
        tier_basis_fen,
        payment_reference: None,
        paid_seq: None,
        paid_ms: None,
        paid_by: None,
        returned_seq: None,
        cancelled_seq: None,
    };
    objects.mark(pending_key(state.chain[0], &state.disbursement_id));
    objects.put(disbursement_key(&state.disbursement_id), &state);
    Ok(Outcome::New)
}

/// The sum of the case's disbursements to `applicant_id` (to any of their
/// accounts) that are still open (pending or approved, however old) or
/// were paid within `window_days` before this entry: splitting a payment
/// into smaller ones, or parking one until the window has passed, does not
/// lower the approval tier.
fn recent_to_applicant(
    objects: &Objects,
    context: &Context,
    case: &CaseState,
    applicant_id: &str,
    window_days: u32,
) -> Result<u64, RuleError> {
    let since = context.timestamp_ms.saturating_sub(u64::from(window_days) * DAY_MS);
    let mut sum = 0u64;
    for id in &case.disbursements {
        let other: DisbursementState = objects.need(
            &disbursement_key(id),
            "unknown_disbursement",
            "a disbursement of the case",
        )?;
        let counts = match other.status {
            DisbursementStatus::Pending | DisbursementStatus::Approved => true,
            DisbursementStatus::Paid => other.paid_ms.is_some_and(|paid| paid >= since),
            _ => false,
        };
        if !counts {
            continue;
        }
        let account: AccountState =
            objects.need(&account_key(&other.account_id), "unknown_account", "a payee account")?;
        if account.applicant_id == applicant_id {
            sum = plus(sum, other.amount_fen, "the recent disbursements to the applicant")?;
        }
    }
    Ok(sum)
}

/// Releases a reservation back to the case's available money.
fn release(objects: &mut Objects, disbursement: &DisbursementState) -> Result<(), RuleError> {
    let mut case: CaseState = objects.need(&case_key(&disbursement.case_number), "unknown_case", "the case")?;
    case.reserved_fen = minus(case.reserved_fen, disbursement.amount_fen, "the case's reserved money")?;
    case.available_fen = plus(case.available_fen, disbursement.amount_fen, "case available")?;
    objects.put(case_key(&disbursement.case_number), &case);
    Ok(())
}

fn approval_signed(
    objects: &mut Objects,
    context: &Context,
    statement: ApprovalSigned,
    signer: &KeyInfo,
    payload_sha256: &str,
) -> Rules {
    let key = disbursement_key(&statement.disbursement_id);
    let mut disbursement: DisbursementState = objects.need(&key, "unknown_disbursement", "the disbursement")?;
    let member = member_of(signer)?;
    let Some(next_role) = disbursement.next_role() else {
        return Err(rule(
            "status",
            format!(
                "disbursement {} is {:?}: no step is awaited",
                disbursement.disbursement_id, disbursement.status
            ),
        ));
    };
    let step = disbursement.steps.len() as u32 + 1;
    let same = statement.origin == context.origin
        && statement.case_number == disbursement.case_number
        && statement.amount_fen == disbursement.amount_fen
        && statement.account_id == disbursement.account_id;
    if !same {
        return Err(rule(
            "statement",
            "the signed statement does not name this disbursement's origin, case, amount and payee",
        ));
    }
    if statement.step != step || statement.role != next_role {
        return Err(rule(
            "step_order",
            format!(
                "the next step is {step} ({}), not {} ({})",
                next_role.as_str(),
                statement.step,
                statement.role.as_str()
            ),
        ));
    }
    if member.role != next_role {
        return Err(rule(
            "role",
            format!(
                "step {step} needs the role {}; {} is {}",
                next_role.as_str(),
                member.member_id,
                member.role.as_str()
            ),
        ));
    }
    if member.member_id == disbursement.requester_member_id {
        return Err(rule("self_approval", "the requester cannot approve their own request"));
    }
    if statement.decision == Decision::Approve {
        let case: CaseState = objects.need(&case_key(&disbursement.case_number), "unknown_case", "the case")?;
        active_payee(objects, &case, &disbursement.account_id)?;
    }
    if disbursement.steps.iter().any(|s| s.member_id == member.member_id) {
        return Err(rule(
            "signed_twice",
            format!("{} already signed a step of this disbursement", member.member_id),
        ));
    }

    check_sms_reveal(
        objects,
        context,
        &disbursement,
        step,
        &member.member_id,
        statement.sms_code.as_deref().map(|code| (code, payload_sha256)),
    )?;
    objects.delete(pending_key(next_role, &disbursement.disbursement_id));
    disbursement.steps.push(StepState {
        step,
        role: next_role,
        member_id: member.member_id.clone(),
        decision: statement.decision,
        seq: context.seq,
    });
    let (payee, masked) = notify::payee(objects, &disbursement.account_id)?;
    let event = match statement.decision {
        Decision::Approve => notify::Event::StepApproved,
        Decision::Reject => notify::Event::StepRejected,
    };
    let amount = Some(disbursement.amount_fen);
    let of = u32::try_from(disbursement.chain.len()).unwrap_or(u32::MAX);
    notify::queue(
        objects,
        context.seq,
        &notify::Notice {
            event,
            case_number: &disbursement.case_number,
            amount_fen: amount,
            account_masked: Some(masked),
            step: Some(notify::StepOf { step, of }),
        },
        &[payee],
    )?;
    match statement.decision {
        Decision::Reject => {
            disbursement.status = DisbursementStatus::Rejected;
            release(objects, &disbursement)?;
        }
        Decision::Approve => match disbursement.chain.get(step as usize) {
            Some(role) => objects.mark(pending_key(*role, &disbursement.disbursement_id)),
            None => disbursement.status = DisbursementStatus::Approved,
        },
    }
    objects.put(key, &disbursement);
    Ok(Outcome::New)
}

fn disbursement_paid(objects: &mut Objects, context: &Context, paid: DisbursementPaid, signer: &KeyInfo) -> Rules {
    require_role(signer, &[Role::Finance], "paying a disbursement")?;
    check_ascii_id("bank_reference", &paid.bank_reference, true)?;
    let key = disbursement_key(&paid.disbursement_id);
    let mut disbursement: DisbursementState = objects.need(&key, "unknown_disbursement", "the disbursement")?;
    if disbursement.status != DisbursementStatus::Approved {
        return Err(rule(
            "status",
            format!(
                "only an approved disbursement is paid; this one is {:?}",
                disbursement.status
            ),
        ));
    }
    if paid.amount_fen != disbursement.amount_fen || paid.account_id != disbursement.account_id {
        return Err(rule(
            "payment_mismatch",
            "the payment must be the approved amount to the approved account",
        ));
    }
    // The applicant may have changed the account since the request: money
    // goes only to the account that is payable now.
    let mut case: CaseState = objects.need(&case_key(&disbursement.case_number), "unknown_case", "the case")?;
    active_payee(objects, &case, &disbursement.account_id)?;
    let payment_key = format!("payment/{}", paid.bank_reference);
    if objects.get::<String>(&payment_key)?.is_some() {
        return Err(rule(
            "duplicate_reference",
            format!("bank reference {} was used for another payment", paid.bank_reference),
        ));
    }
    case.reserved_fen = minus(case.reserved_fen, disbursement.amount_fen, "the case's reserved money")?;
    case.paid_fen = plus(case.paid_fen, disbursement.amount_fen, "case paid")?;
    objects.put(case_key(&disbursement.case_number), &case);
    let mut totals = totals(objects)?;
    totals.payments_fen = plus(totals.payments_fen, disbursement.amount_fen, "totals payments")?;
    objects.put(TOTALS_KEY.to_owned(), &totals);
    objects.put(payment_key, &disbursement.disbursement_id);
    disbursement.status = DisbursementStatus::Paid;
    disbursement.payment_reference = Some(paid.bank_reference);
    disbursement.paid_seq = Some(context.seq);
    disbursement.paid_ms = Some(context.timestamp_ms);
    disbursement.paid_by = Some(member_of(signer)?.member_id.clone());
    let (payee, masked) = notify::payee(objects, &disbursement.account_id)?;
    let amount = Some(disbursement.amount_fen);
    notify::queue(
        objects,
        context.seq,
        &notify::Notice {
            event: notify::Event::Paid,
            case_number: &disbursement.case_number,
            amount_fen: amount,
            account_masked: Some(masked),
            step: None,
        },
        &[payee],
    )?;
    objects.put(key, &disbursement);
    Ok(Outcome::New)
}

fn payment_returned(objects: &mut Objects, context: &Context, returned: PaymentReturned, signer: &KeyInfo) -> Rules {
    require_role(
        signer,
        &[Role::Finance, Role::FundManager],
        "recording a returned payment",
    )?;
    check_text("reason", &returned.reason)?;
    check_ascii_id("credit_reference", &returned.credit_reference, true)?;
    let key = disbursement_key(&returned.disbursement_id);
    let mut disbursement: DisbursementState = objects.need(&key, "unknown_disbursement", "the disbursement")?;
    if disbursement.status != DisbursementStatus::Paid
        || disbursement.payment_reference.as_deref() != Some(&returned.bank_reference)
    {
        return Err(rule(
            "status",
            "only a paid disbursement is returned, naming its payment's bank reference",
        ));
    }
    // The money coming back is the bank's credit: its own reference, the
    // payment's amount, from the payment's account; and whoever paid does
    // not also book the money as back (it would be paid again).
    if returned.amount_fen != disbursement.amount_fen || returned.account_id != disbursement.account_id {
        return Err(rule(
            "payment_mismatch",
            "a return is the payment's amount, back from the payment's account",
        ));
    }
    if disbursement.paid_by.as_deref() == Some(member_of(signer)?.member_id.as_str()) {
        return Err(rule(
            "second_person",
            "a returned payment is recorded by someone other than who recorded the payment",
        ));
    }
    let credit_key = format!("credit/{}", returned.credit_reference);
    if objects.get::<String>(&credit_key)?.is_some()
        || objects
            .get::<ReceiptState>(&receipt_key(&returned.credit_reference))?
            .is_some()
    {
        return Err(rule(
            "duplicate_reference",
            format!("bank reference {} was booked before", returned.credit_reference),
        ));
    }
    objects.put(credit_key, &returned.disbursement_id);
    let mut case: CaseState = objects.need(&case_key(&disbursement.case_number), "unknown_case", "the case")?;
    case.available_fen = plus(case.available_fen, disbursement.amount_fen, "case available")?;
    case.returned_fen = plus(case.returned_fen, disbursement.amount_fen, "case returned")?;
    objects.put(case_key(&disbursement.case_number), &case);
    let mut totals = totals(objects)?;
    totals.returns_fen = plus(totals.returns_fen, disbursement.amount_fen, "totals returns")?;
    objects.put(TOTALS_KEY.to_owned(), &totals);
    disbursement.status = DisbursementStatus::Returned;
    disbursement.returned_seq = Some(context.seq);
    let (payee, masked) = notify::payee(objects, &disbursement.account_id)?;
    let event = notify::Event::PaymentReturned;
    notify::queue(
        objects,
        context.seq,
        &notify::Notice {
            event,
            case_number: &disbursement.case_number,
            amount_fen: Some(disbursement.amount_fen),
            account_masked: Some(masked),
            step: None,
        },
        &[payee],
    )?;
    objects.put(key, &disbursement);
    Ok(Outcome::New)
}

fn disbursement_cancelled(
    objects: &mut Objects,
    context: &Context,
    cancelled: DisbursementCancelled,
    signer: &KeyInfo,
) -> Rules {
    check_text("reason", &cancelled.reason)?;
    let key = disbursement_key(&cancelled.disbursement_id);
    let mut disbursement: DisbursementState = objects.need(&key, "unknown_disbursement", "the disbursement")?;
    let member = member_of(signer)?;
    if member.member_id != disbursement.requester_member_id && member.role != Role::BureauHead {
        return Err(rule(
            "role",
            "a disbursement is cancelled by its requester or the bureau head",
        ));
    }
    if !matches!(
        disbursement.status,
        DisbursementStatus::Pending | DisbursementStatus::Approved
    ) {
        return Err(rule(
            "status",
            format!("a {:?} disbursement cannot be cancelled", disbursement.status),
        ));
    }
    if let Some(role) = disbursement.next_role() {
        objects.delete(pending_key(role, &disbursement.disbursement_id));
    }
    disbursement.status = DisbursementStatus::Cancelled;
    disbursement.cancelled_seq = Some(context.seq);
    release(objects, &disbursement)?;
    objects.put(key, &disbursement);
    Ok(Outcome::New)
}

fn delay_approved(objects: &mut Objects, context: &Context, delay: DelayApproved, signer: &KeyInfo) -> Rules {
    require_role(signer, &[Role::BureauHead], "approving a delay")?;
    if delay.reason == DelayReason::Other {
        check_text("delay text", delay.text.as_deref().unwrap_or(""))?;
    }
    let mut receipt: ReceiptState =
        objects.need(&receipt_key(&delay.bank_reference), "unknown_receipt", "the receipt")?;
    // A delay is decided before the deadline passes, for money of a case:
    // approved afterwards, it would erase a late payment or an overdue
    // receipt from the audit; an unidentified receipt is claimed, not
    // delayed.
    if receipt.case_number.is_none() {
        return Err(rule(
            "delay",
            "an unidentified receipt is claimed for a case, not delayed",
        ));
    }
    if context.timestamp_ms > receipt.due_ms {
        return Err(rule(
            "delay",
            "the deadline has passed: a delay is approved before it, not after",
        ));
    }
    // End of that day in China Standard Time (UTC+8).
    let due_ms = start_of_day_cst(parse_date(&delay.new_due_date)? + 1)?;
    if due_ms <= receipt.due_ms {
        return Err(rule("delay", "the new due date must be later than the current one"));
    }
    let days_max = objects
        .get::<PolicySet>(POLICY_KEY)?
        .map_or(DELAY_DAYS_MAX_DEFAULT, |p| p.delay_days_max);
    if due_ms > context.timestamp_ms.saturating_add(u64::from(days_max) * DAY_MS) {
        return Err(rule(
            "delay",
            format!("a delay reaches at most {days_max} days past its approval; approve another when it ends"),
        ));
    }
    receipt.due_ms = due_ms;
    receipt.delayed = true;
    store_receipt_and_tell(objects, context, receipt, notify::Event::DelayApproved)
}

/// Stores a receipt whose deadline changed and tells the case's applicants.
fn store_receipt_and_tell(
    objects: &mut Objects,
    context: &Context,
    receipt: ReceiptState,
    event: notify::Event,
) -> Rules {
    if let Some(number) = &receipt.case_number {
        let case: CaseState = objects.need(&case_key(number), "unknown_case", "the case")?;
        notify::queue(
            objects,
            context.seq,
            &notify::Notice {
                event,
                case_number: number,
                amount_fen: None,
                account_masked: None,
                step: None,
            },
            &notify::applicants(&case),
        )?;
    }
    objects.put(receipt_key(&receipt.bank_reference), &receipt);
    Ok(Outcome::New)
}

/// The reason for a delay has ended: the receipt is due within
/// [`DELAY_ENDED_DAYS`] of this entry (or earlier, if the approved date
/// comes first), and counts as delayed no longer.
fn delay_ended(objects: &mut Objects, context: &Context, ended: DelayEnded, signer: &KeyInfo) -> Rules {
    check_text("delay_ended text", &ended.text)?;
    let mut receipt: ReceiptState =
        objects.need(&receipt_key(&ended.bank_reference), "unknown_receipt", "the receipt")?;
    let member = member_of(signer)?;
    let officer_of_case = match &receipt.case_number {
        Some(number) => {
            let case: CaseState = objects.need(&case_key(number), "unknown_case", "the case")?;
            member.role == Role::Officer && member.member_id == case.officer_member_id
        }
        None => false,
    };
    if member.role != Role::BureauHead && !officer_of_case {
        return Err(rule(
            "role",
            "the end of a delay is recorded by the bureau head or the case's officer",
        ));
    }
    if !receipt.delayed {
        return Err(rule("delay", "the receipt is not delayed"));
    }
    receipt.due_ms = receipt
        .due_ms
        .min(context.timestamp_ms.saturating_add(DELAY_ENDED_DAYS * DAY_MS));
    receipt.delayed = false;
    store_receipt_and_tell(objects, context, receipt, notify::Event::DelayEnded)
}

fn code_key(hash: &str) -> String {
    format!("code/{hash}")
}

fn check_code_hash(hash: &str) -> Result<(), RuleError> {
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(rule("payload", "code_hash must be 64 lower-case hex digits"));
    }
    Ok(())
}

/// A verification code the node drew for an applicant, at the request of
/// the case's officer (`requested_by`): only its hash is recorded.
fn code_issued(objects: &mut Objects, context: &Context, issued: ApplicantCodeIssued) -> Rules {
    check_code_hash(&issued.code_hash)?;
    check_ascii_id("requested_by", &issued.requested_by, false)?;
    let case: CaseState = objects.need(&case_key(&issued.case_number), "unknown_case", "the case")?;
    if !context.by_node || issued.requested_by != case.officer_member_id {
        return Err(rule(
            "role",
            format!(
                "an applicant's code is drawn by the node at the request of the case's officer {}",
                case.officer_member_id
            ),
        ));
    }
    if !case.applicants.iter().any(|a| a.applicant_id == issued.applicant_id) {
        return Err(rule(
            "payee",
            format!("{} is not an applicant of {}", issued.applicant_id, case.case_number),
        ));
    }
    if objects
        .get::<ApplicantCodeState>(&code_key(&issued.code_hash))?
        .is_some()
    {
        return Err(rule("duplicate_code", "this code was issued before"));
    }
    if issued.expires_ms.is_some_and(|expires| expires <= context.timestamp_ms) {
        return Err(rule("payload", "expires_ms must be after the entry's time"));
    }
    let latest = context
        .timestamp_ms
        .saturating_add(APPLICANT_CODE_TTL_MAX_DAYS * DAY_MS);
    if issued.expires_ms.is_some_and(|expires| expires > latest) {
        return Err(rule(
            "code_expiry",
            format!("a code opens the bundle for at most {APPLICANT_CODE_TTL_MAX_DAYS} days"),
        ));
    }
    let state = ApplicantCodeState {
        case_number: issued.case_number,
        applicant_id: issued.applicant_id,
        issued_seq: context.seq,
        revoked_seq: None,
        expires_ms: issued.expires_ms,
    };
    objects.put(code_key(&issued.code_hash), &state);
    Ok(Outcome::New)
}

fn code_revoked(objects: &mut Objects, context: &Context, revoked: ApplicantCodeRevoked, signer: &KeyInfo) -> Rules {
    let mut code: ApplicantCodeState = objects.need(&code_key(&revoked.code_hash), "unknown_code", "the code")?;
    let case: CaseState = objects.need(&case_key(&code.case_number), "unknown_case", "the case")?;
    let member = member_of(signer)?;
    let allowed =
        member.role == Role::BureauHead || (member.role == Role::Officer && member.member_id == case.officer_member_id);
    if !allowed {
        return Err(rule(
            "role",
            "a code is revoked by the case's officer or the bureau head",
        ));
    }
    if code.revoked_seq.is_some() {
        return Err(rule("status", "the code is already revoked"));
    }
    code.revoked_seq = Some(context.seq);
    objects.put(code_key(&revoked.code_hash), &code);
    Ok(Outcome::New)
}

/// The provider's message id for a challenge recorded before it.
fn sms_sent(objects: &mut Objects, sent: SmsSent) -> Rules {
    check_id("message_id", &sent.message_id)?;
    check_id("provider", &sent.provider)?;
    let challenge: Option<RequestState> = objects.get(&format!("request/{}", sent.challenge_request_id))?;
    if challenge.is_none() {
        return Err(rule(
            "sms_confirmation",
            format!("no challenge {} was recorded before", sent.challenge_request_id),
        ));
    }
    Ok(Outcome::New)
}

fn challenge_key(disbursement_id: &str, step: u32, member_id: &str) -> String {
    format!("challenge/{disbursement_id}/{step}/{member_id}")
}

/// The node commits to the code it is about to send an approver.
fn sms_challenge(objects: &mut Objects, context: &Context, challenge: SmsChallenge) -> Rules {
    let disbursement: DisbursementState = objects.need(
        &disbursement_key(&challenge.disbursement_id),
        "unknown_disbursement",
        "the disbursement",
    )?;
    // Whether the member holds the step's role is checked when the step is
    // signed (roles live in the key registry, not in the derived state).
    if disbursement.next_role().is_none() {
        return Err(rule("status", "no step of this disbursement is awaited"));
    }
    let step = disbursement.steps.len() as u32 + 1;
    if challenge.step != step {
        return Err(rule(
            "step_order",
            format!("the next step is {step}, not {}", challenge.step),
        ));
    }
    if challenge.member_id == disbursement.requester_member_id
        || disbursement.steps.iter().any(|s| s.member_id == challenge.member_id)
    {
        return Err(rule(
            "signed_twice",
            "this member may not sign a step of this disbursement",
        ));
    }
    record_challenge(
        objects,
        context,
        challenge_key(&challenge.disbursement_id, step, &challenge.member_id),
        challenge.commitment,
        challenge.expires_ms,
    )
}

/// An approval that carries a code (`code_and_payload`: the code and the
/// SHA-256 of the step's payload) spends the node's latest challenge for this step and
/// member, which the node opened for exactly this payload in the entry
/// right before (an [`SmsCodeRevealed`], written in the same request); a
/// code is required when the policy says so.
fn check_sms_reveal(
    objects: &mut Objects,
    context: &Context,
    disbursement: &DisbursementState,
    step: u32,
    member_id: &str,
    code_and_payload: Option<(&str, &str)>,
) -> Result<(), RuleError> {
    let required = sms_required(objects)?;
    let Some((code, payload_sha256)) = code_and_payload else {
        return if required {
            Err(rule(
                "sms_confirmation",
                "this step needs the SMS code sent to the approver's phone",
            ))
        } else {
            Ok(())
        };
    };
    let key = challenge_key(&disbursement.disbursement_id, step, member_id);
    let challenge: ChallengeState =
        objects.need(&key, "sms_confirmation", "an SMS challenge for this step and member")?;
    match &challenge.revealed {
        Some(opened)
            if opened.seq.checked_add(1) == Some(context.seq)
                && opened.step_sha256 == payload_sha256
                && opened.code == code => {}
        _ => {
            return Err(rule(
                "sms_confirmation",
                "the node must open its commitment for exactly this step, with its code, in the entry right before it",
            ))
        }
    }
    objects.delete(key);
    Ok(())
}

/// The node opens its commitment to an approver's code: the code the
/// approver entered, with the salt the node kept, must open the latest
/// challenge for the awaited step and this member, before it expired. The
/// step that carries the code must be the next entry.
fn sms_code_revealed(objects: &mut Objects, context: &Context, reveal: SmsCodeRevealed) -> Rules {
    check_sms_code(&reveal.code)?;
    check_salt(&reveal.salt)?;
    check_code_hash(&reveal.step_sha256)?;
    let disbursement: DisbursementState = objects.need(
        &disbursement_key(&reveal.disbursement_id),
        "unknown_disbursement",
        "the disbursement",
    )?;
    let Some(role) = disbursement.next_role() else {
        return Err(rule("status", "no step of this disbursement is awaited"));
    };
    let step = disbursement.steps.len() as u32 + 1;
    if reveal.step != step {
        return Err(rule(
            "step_order",
            format!("the next step is {step}, not {}", reveal.step),
        ));
    }
    let key = challenge_key(&reveal.disbursement_id, step, &reveal.member_id);
    let mut challenge: ChallengeState =
        objects.need(&key, "sms_confirmation", "an SMS challenge for this step and member")?;
    if context.timestamp_ms > challenge.expires_ms {
        return Err(rule("sms_confirmation", "the code had expired"));
    }
    if challenge.revealed.is_some() {
        return Err(rule("sms_confirmation", "this challenge was opened before"));
    }
    let binding = sms_binding(context.origin, &disbursement, step, role, &reveal.member_id);
    if sms_commitment(&reveal.salt, &reveal.code, &binding) != challenge.commitment {
        return Err(rule(
            "sms_confirmation",
            "the code does not match the node's commitment for this step and member",
        ));
    }
    challenge.revealed = Some(Revealed {
        seq: context.seq,
        code: reveal.code,
        step_sha256: reveal.step_sha256,
    });
    objects.put(key, &challenge);
    Ok(Outcome::New)
}

/// Ms at the start of `day` (days since 1970-01-01) in China Standard
/// Time (UTC+8).
pub(crate) fn start_of_day_cst(day: i64) -> Result<u64, RuleError> {
    u64::try_from(day * DAY_MS as i64 - 8 * 3_600_000).map_err(|_| rule("payload", "a date before 1970"))
}

/// A masked number: `****` and its last four digits.
fn check_masked(what: &str, masked: &str) -> Result<(), RuleError> {
    let ok = masked
        .strip_prefix("****")
        .is_some_and(|tail| tail.len() == 4 && tail.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(rule("payload", format!("{what} must be **** and the last four digits")));
    }
    Ok(())
}

/// A commitment: 64 lower-case hex digits (HMAC-SHA256).
fn check_commitment(what: &str, commitment: &str) -> Result<(), RuleError> {
    if commitment.len() != 64
        || !commitment
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(rule("payload", format!("{what} must be 64 lower-case hex digits")));
    }
    Ok(())
}

/// A code is 6 ASCII digits.
fn check_sms_code(code: &str) -> Result<(), RuleError> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(rule("payload", "an SMS code is 6 digits"));
    }
    Ok(())
}

/// A salt is 16 bytes, 32 lower-case hex digits.
fn check_salt(salt: &str) -> Result<(), RuleError> {
    if salt.len() != 32 || !salt.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(rule("payload", "a salt is 32 lower-case hex digits"));
    }
    Ok(())
}

/// Keeps the node's commitment at `key`; a new challenge replaces the
/// previous one, so only the latest code counts.
fn record_challenge(
    objects: &mut Objects,
    context: &Context,
    key: String,
    commitment: String,
    expires_ms: u64,
) -> Rules {
    check_code_hash(&commitment)?;
    if expires_ms <= context.timestamp_ms {
        return Err(rule("sms_confirmation", "the challenge expires before it is recorded"));
    }
    let state = ChallengeState {
        seq: context.seq,
        commitment,
        expires_ms,
        revealed: None,
    };
    objects.put(key, &state);
    Ok(Outcome::New)
}

/// Spends the node's challenge at `key` (single use) if `opened`, the
/// commitment recomputed from the revealed code, is the one it committed to,
/// before it expired.
fn spend_challenge(
    objects: &mut Objects,
    context: &Context,
    key: String,
    what: &str,
    opened: &str,
) -> Result<(), RuleError> {
    let challenge: ChallengeState = objects.need(&key, "sms_confirmation", &format!("an SMS challenge for {what}"))?;
    if context.timestamp_ms > challenge.expires_ms {
        return Err(rule("sms_confirmation", "the code had expired"));
    }
    if opened != challenge.commitment {
        return Err(rule(
            "sms_confirmation",
            format!("the code does not match the node's commitment for {what}"),
        ));
    }
    objects.delete(key);
    Ok(())
}
