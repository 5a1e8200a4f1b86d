//! Writes one test fixture's synthetic incident into a state directory and
//! investigates it, printing where the reports are — for looking at real
//! report output without running the whole runtime:
//!
//! ```text
//! cargo run -p demo-investigator --example fixture_report -- bad_deploy /tmp/inv-demo
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use demo_model::Catalog;
use investigator::{Investigator, InvestigatorConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, out] = args.as_slice() else {
        eprintln!(
            "usage: fixture_report FIXTURE OUT_DIR (fixtures: crates/investigator/tests/fixtures/*.yaml)"
        );
        std::process::exit(2);
    };
    let s = common::load(name);
    let out = std::path::Path::new(out);
    let repo = out.join("repo");
    let state = out.join("state");
    if s.use_repo {
        std::fs::create_dir_all(&repo).expect("create repo dir");
    }
    let (store, g) = common::build(&s, &state, s.use_repo.then_some(repo.as_path()));
    let inv = Investigator::new(
        InvestigatorConfig {
            state_dir: state,
            repo: s.use_repo.then_some(repo),
            catalog: Catalog::embedded(),
            time_scale: s.time_scale,
        },
        store.writer(),
    )
    .unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    match inv.investigate(&g.transition) {
        Ok(o) => println!(
            "{}\n{}\n{}\n{}",
            o.summary,
            o.paths.markdown.display(),
            o.paths.html.display(),
            o.paths.json.display()
        ),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}
