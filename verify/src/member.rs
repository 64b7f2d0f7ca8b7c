//! Court members: the roles and the member fields a key registration
//! carries. The key registry keeps them; the case-fund rules read them.

use serde::{Deserialize, Serialize};

/// A court member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 立案庭: files cases, their parties and the applicants' phones.
    FilingClerk,
    /// 承办人
    Officer,
    /// 案款管理人
    FundManager,
    /// 执行局长
    BureauHead,
    /// 分管院领导
    CourtLeader,
    /// 财务
    Finance,
    Auditor,
    Administrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::FilingClerk => "filing_clerk",
            Role::Officer => "officer",
            Role::FundManager => "fund_manager",
            Role::BureauHead => "bureau_head",
            Role::CourtLeader => "court_leader",
            Role::Finance => "finance",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
        }
    }
}

/// Member fields of a key registration (member enrolment), as the rules
/// read them: revealed from the registration's concealed values and
/// disclosures (docs/FORMAT.md §3j), with the digests that concealed them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub member_id: String,
    pub role: Role,
    /// `****1234`
    pub phone_masked: String,
    /// The court's commitment (HMAC) to the full number: absent from the
    /// administrator's `key_registered`, filled in from the node's
    /// `numbers_committed` right before it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone_commitment: String,
    /// The member's reference: the digest of their member id's disclosure
    /// (docs/FORMAT.md §3j), as their registration conceals it. Records
    /// other than the registration name the member by it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub member_ref: String,
    /// The digest that conceals `phone_masked` in the registration (a
    /// co-signature restates it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone_ref: String,
}
