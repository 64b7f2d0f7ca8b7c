//! `caseledger demo`: synthetic signed entries for tests and benchmarks.
//!
//! Keys are derived from `--seed`, so a later run with the same seed can add
//! to the same ledger. Demo keys are not secret: never use them for a court.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use caseledger::court::Staff;
use caseledger_keys::Identity;
use caseledger_ledger::store::{Ledger, Options, SystemClock};
use caseledger_verify::entry::Record;
use caseledger_verify::record::{self, DemoNote, KeyCoSigned, KeyRegistered, KeyText};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// Entries appended per batch.
const DEMO_BATCH_ENTRIES: usize = 1024;
/// Writer keys that take turns signing demo entries.
const DEMO_WRITERS: usize = 4;
/// Origin of a demo ledger.
pub const DEMO_ORIGIN: &str = "demo.caseledger.local/ledger";

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["entries", "cases"])))]
pub struct DemoArgs {
    /// Ledger folder.
    #[arg(long)]
    data: PathBuf,
    /// Number of synthetic signed entries (demo notes) to append.
    #[arg(long)]
    entries: Option<u64>,
    /// Number of realistic case histories to append (filing, accounts,
    /// receipts, disbursements, approvals, payments), all rule-checked.
    #[arg(long)]
    cases: Option<u64>,
    /// Seed for keys and payloads (random when absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Write the demo court's staff keys here (each 0600, in a folder made
    /// 0700), with `staff.txt` naming whose each is, so that a demo ledger
    /// served with `caseledger serve` can be driven with `caseledger
    /// client` and `caseledger admin` (the staff are enrolled with
    /// `--cases`). Demo keys only: their seeds are derived from `--seed`.
    #[arg(long, value_name = "DIR")]
    staff_keys: Option<PathBuf>,
}

struct DemoKeys {
    node: Identity,
    admin: Identity,
    writers: Vec<Identity>,
    staff: Staff,
}

impl DemoKeys {
    fn from_seed(seed: u64) -> Self {
        // A stream of its own, apart from the staff's keys.
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6e6f_6465_2d6b_6579);
        let staff = Staff::from_seed(seed, DEMO_ORIGIN);
        Self {
            node: Identity::from_seed(rng.gen()),
            admin: staff.administrator.identity.clone(),
            writers: (0..DEMO_WRITERS).map(|_| Identity::from_seed(rng.gen())).collect(),
            staff,
        }
    }
}

fn open_or_create(args: &DemoArgs, keys: &DemoKeys) -> anyhow::Result<Ledger> {
    let clock = Arc::new(SystemClock);
    if args.data.join(caseledger_ledger::store::DB_DIR).exists() {
        return Ledger::open(&args.data, clock, Options::default())
            .with_context(|| format!("opening {}", args.data.display()));
    }
    let admins = keys.staff.genesis_administrators();
    let options = Options {
        demo_ledger: true,
        ..Options::default()
    };
    let ledger = Ledger::create(&args.data, DEMO_ORIGIN, &keys.node, &admins, clock, options)
        .with_context(|| format!("creating {}", args.data.display()))?;
    // The demo staff's commitments are made with this key: with it beside
    // the ledger, `caseledger serve` serves the demo court (0600, like
    // every file this process makes).
    std::fs::write(
        args.data.join(caseledger::service::serve::COMMITMENT_KEY_FILE),
        hex::encode(keys.staff.commitment_key),
    )?;
    Ok(ledger)
}

/// Registers the writer keys that the ledger does not know yet.
fn register_writers(ledger: &Ledger, keys: &DemoKeys) -> anyhow::Result<()> {
    let registry = ledger.registry()?;
    let mut records = Vec::new();
    for (i, writer) in keys.writers.iter().enumerate() {
        if registry.info(&writer.public_key().key_id()).is_none() {
            let payload = KeyRegistered {
                name: format!("demo writer {i}"),
                public_key: KeyText::from_key(&writer.public_key()),
                administrator: false,
                member: None,
            };
            let co_signature = KeyCoSigned::of(&payload).map_err(anyhow::Error::msg)?;
            records.push(Record::sign(
                DEMO_ORIGIN,
                record::KIND_KEY_REGISTERED,
                serde_json::to_vec(&payload)?,
                &keys.admin,
            ));
            // The second administrator's co-signature puts it in force.
            records.push(Record::sign(
                DEMO_ORIGIN,
                record::KIND_KEY_CO_SIGNED,
                serde_json::to_vec(&co_signature)?,
                &keys.staff.co_administrator.identity,
            ));
        }
    }
    if !records.is_empty() {
        ledger
            .append(records)
            .context("registering demo writer keys (was this ledger made by demo with the same --seed?)")?;
    }
    Ok(())
}

fn note_text(rng: &mut StdRng) -> String {
    const WORDS: &[&str] = &[
        "receipt",
        "case",
        "applicant",
        "transfer",
        "approval",
        "finance",
        "bureau",
        "court",
        "account",
        "amount",
        "payment",
        "deadline",
        "officer",
        "ledger",
        "seizure",
        "reference",
    ];
    let mut text = String::with_capacity(260);
    while text.len() < 240 {
        text.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        text.push(' ');
    }
    text
}

/// Signs one batch of demo notes, spread over the available cores.
fn sign_batch(keys: &DemoKeys, first_number: u64, payloads: Vec<Vec<u8>>) -> Vec<Record> {
    caseledger::parallel_flat_map(&payloads, |i, payload| {
        let n = first_number as usize + i;
        let writer = &keys.writers[n % keys.writers.len()];
        vec![Record::sign(
            DEMO_ORIGIN,
            record::KIND_DEMO_NOTE,
            payload.clone(),
            writer,
        )]
    })
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let keys = DemoKeys::from_seed(seed);
    let ledger = open_or_create(args, &keys)?;
    if let Some(entries) = args.entries.filter(|n| *n > 0) {
        write_notes(&ledger, &keys, seed, entries)?;
    }
    if let Some(cases) = args.cases.filter(|n| *n > 0) {
        // The node key the ledger was made with (also for a folder made earlier).
        let node = caseledger_keys::files::read_private_key(&args.data.join(caseledger_ledger::store::NODE_KEY_FILE))?;
        crate::demo_cases::write_cases(&ledger, &keys.staff, &node, seed, cases)?;
    }
    if let Some(folder) = &args.staff_keys {
        write_staff_keys(folder, &keys.staff)?;
    }
    let checkpoint = ledger.checkpoint_now()?;
    println!(
        "the ledger in {} has {} entries (seed {seed})",
        args.data.display(),
        ledger.size()
    );
    println!("latest checkpoint:\n{checkpoint}");
    ledger.close()?;
    Ok(ExitCode::SUCCESS)
}

/// The demo staff's private keys in `folder`, one file per person, and
/// `staff.txt`: file, role, member id, name, masked phone.
fn write_staff_keys(folder: &std::path::Path, staff: &Staff) -> anyhow::Result<()> {
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let mut people: Vec<(&str, &caseledger::court::Person)> = vec![
        ("administrator", &staff.administrator),
        ("administrator-2", &staff.co_administrator),
    ];
    people.extend(staff.members().into_iter().map(|p| (p.role.as_str(), p)));
    let mut listing = String::from("# file, role, member id, name, phone (masked)\n");
    for (label, person) in people {
        let file = format!("{label}-{}.key", person.member_id);
        let path = folder.join(&file);
        if !path.exists() {
            caseledger_keys::files::write_private_key(&path, &person.identity)?;
        }
        listing.push_str(&format!(
            "{file}, {}, {}, {}, {}\n",
            person.role.as_str(),
            person.member_id,
            person.name,
            caseledger::commitments::mask(&person.phone)
        ));
    }
    std::fs::write(folder.join("staff.txt"), listing)?;
    println!("staff keys written to {} (see staff.txt)", folder.display());
    Ok(())
}

fn write_notes(ledger: &Ledger, keys: &DemoKeys, seed: u64, entries: u64) -> anyhow::Result<()> {
    register_writers(ledger, keys)?;
    let mut rng = StdRng::seed_from_u64(seed ^ ledger.size());
    let progress = indicatif::ProgressBar::new(entries);
    let mut written = 0u64;
    while written < entries {
        let count = (entries - written).min(DEMO_BATCH_ENTRIES as u64);
        let payloads = (0..count)
            .map(|i| {
                let note = DemoNote {
                    number: written + i,
                    text: note_text(&mut rng),
                };
                serde_json::to_vec(&note).expect("serialisable")
            })
            .collect();
        ledger.append(sign_batch(keys, written, payloads))?;
        written += count;
        progress.set_position(written);
    }
    progress.finish_and_clear();
    println!("wrote {written} demo notes");
    Ok(())
}
