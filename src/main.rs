//! The project CLI. Thin: parses arguments, calls into the crates, maps errors to exit codes.

fn main() -> anyhow::Result<()> {
    let catalog = demo_model::Catalog::embedded();
    println!("{} alarms", catalog.alarms.len());
    Ok(())
}
